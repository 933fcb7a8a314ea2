import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express } from 'express';
import { pino, type Logger } from 'pino';
import { loadConfig, type Config } from './config.js';
import { isAppError } from './errors.js';
import { createApp, type ServerState } from './http/app.js';
import { continueGate } from './http/expect-continue.js';
import { closeOnlyIdleConnections } from './http/idle-connections.js';
import { createMetrics, type Metrics } from './metrics.js';
import { createServices, type Services } from './services.js';

export interface StartOptions {
  /** Logger to use; default a pino logger at `config.logLevel` on stdout. */
  log?: Logger;
  /** Awaited before the warm-up inference runs (tests use it to hold readiness back). */
  beforeWarmup?: () => Promise<void>;
}

/** A listening server and what it is made of. */
export interface RunningServer {
  /** `http://host:port` it listens on. */
  url: string;
  port: number;
  state: ServerState;
  services: Services;
  metrics: Metrics;
  app: Express;
  server: http.Server;
  /** Resolves once the warm-up inference passed (`state.ready` is then true); rejects if it failed. */
  ready: Promise<void>;
  /**
   * Graceful stop: draining at once (readyz 503, new work 503), stop listening, let in-flight
   * requests and uploads finish, drain the batcher, stop the worker. Generation that would outlast
   * `shutdownGraceMs` is cut short before it ends (see {@link shutdownTimes}). Idempotent.
   */
  close(): Promise<void>;
}

/**
 * When a graceful shutdown with `graceMs` cuts running generation short (every sequence ends with
 * finish_reason "length", waiting ones get 503), and when it then destroys generation connections
 * whose clients have not read their end: the last quarter of the grace period, at most 2 s, is
 * left for the cut streams to flush and the workers to stop.
 */
export function shutdownTimes(graceMs: number): { cutMs: number; dropMs: number } {
  const cutMs = Math.max(0, graceMs - Math.min(2000, graceMs / 4));
  return { cutMs, dropMs: cutMs + (graceMs - cutMs) / 2 };
}

/** Starts the real app on `config.port` (0 picks a free one); no signal handlers. */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.log ?? pino({ level: config.logLevel });
  const metrics = createMetrics({ executionProvider: config.executionProvider });
  const services = await createServices(config, log, metrics.hooks);
  metrics.attach(services);
  const state: ServerState = { ready: false, draining: false, worker: services.engine, generations: new Set() };
  const app = createApp({ config, services, metrics, log, state });
  const server = http.createServer(app);
  // Expect: 100-continue: the admin check comes before the 100 (see continueGate).
  server.on('checkContinue', continueGate({ adminToken: config.adminToken, state }, app));
  // A drain closes idle connections, but never one whose response is still being flushed.
  closeOnlyIdleConnections(server);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.port, config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await services.close();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' || addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${host}:${addr.port}`;

  const ready = (async () => {
    await opts.beforeWarmup?.();
    await services.warmup();
    if (!state.draining) state.ready = true;
  })();
  ready.catch(() => undefined); // observed by whoever awaits `ready`; never an unhandled rejection

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      state.draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections that finish their request become idle: close them as they do,
      // so server.close() does not wait for the keep-alive timeout.
      const sweep = setInterval(() => server.closeIdleConnections(), 50);
      // Streams can be longer than the grace period: cut them short with a clean finish before it
      // ends, then drop the generation connections whose clients still have not read their end.
      const times = shutdownTimes(config.shutdownGraceMs);
      const cut = setTimeout(() => { for (const g of services.generation) g.scheduler.cutShort(); }, times.cutMs);
      const drop = setTimeout(() => { for (const r of state.generations ?? []) r.destroy(); }, times.dropMs);
      try {
        await closed;
      } finally {
        clearInterval(sweep);
        clearTimeout(cut);
        clearTimeout(drop);
      }
      await ready.catch(() => undefined);
      await services.close();
    })();
    return closing;
  };

  return { url, port: addr.port, state, services, metrics, app, server, ready, close };
}

/**
 * `adapterhost serve`: config from flags and environment (invalid: every problem printed,
 * exit code 2), listen, warm up, and on SIGTERM/SIGINT drain gracefully (exit 0), or exit 1
 * when `shutdownGraceMs` passes first.
 */
export async function serveMain(argv: string[]): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(argv, process.env);
  } catch (e) {
    if (isAppError(e, 'INVALID_CONFIG')) {
      console.error(`adapterhost: ${e.message}`);
      process.exitCode = 2;
      return;
    }
    throw e;
  }
  const log = pino({ level: config.logLevel });
  const s = await startServer(config, { log });
  log.info({ url: s.url, port: s.port }, `listening on ${s.url}`);

  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (shuttingDown) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    shuttingDown = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'draining: finishing in-flight requests');
    const force = setTimeout(() => {
      log.error({ graceMs: config.shutdownGraceMs }, 'shutdown grace period over: exiting with work unfinished');
      process.exit(1);
    }, config.shutdownGraceMs);
    s.close().then(
      () => {
        clearTimeout(force);
        log.info('shut down cleanly');
        process.exit(0);
      },
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  s.ready.then(
    () => log.info({ url: s.url }, 'ready'),
    (e: unknown) => {
      log.fatal({ err: e }, 'warm-up inference failed; not serving');
      process.exitCode = 1;
      void s.close().finally(() => process.exit(1));
    },
  );
}
