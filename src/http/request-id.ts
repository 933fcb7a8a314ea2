import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import type { Logger } from 'pino';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The request id: the client's `X-Request-Id` when well-formed, else a random UUID. */
      id: string;
      /** A child logger carrying the request id. */
      log: Logger;
    }
  }
}

/** A client-sent id is echoed and logged, so it must be short and plain. */
const CLIENT_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** What the middleware reports once a request is over. */
export interface RequestDone {
  id: string;
  method: string;
  /** The matched route pattern (`/v1/adapters/:id`), or `unmatched`. */
  route: string;
  /** The status sent, or 499 when the client went away before a response. */
  status: number;
  seconds: number;
}

/**
 * The route pattern that served `req`: bounded, unlike the raw URL (which metrics must never use).
 * A 405 or OPTIONS answered by the method guard carries the pattern of the path's route.
 */
export function routeLabel(req: Request): string {
  const p: unknown = (req.route as { path?: unknown } | undefined)?.path;
  if (typeof p === 'string') return `${req.baseUrl ?? ''}${p}`;
  const guarded: unknown = req.res?.locals.routePattern;
  return typeof guarded === 'string' ? guarded : 'unmatched';
}

/**
 * Gives each request an id (response header `X-Request-Id`) and a child logger, and logs one
 * line when it is over: method, route, status, ms.
 */
export function requestContext(log: Logger, onDone?: (d: RequestDone) => void): RequestHandler {
  return (req, res, next) => {
    const t0 = performance.now();
    const given = req.get('x-request-id');
    const id = given !== undefined && CLIENT_ID.test(given) ? given : randomUUID();
    req.id = id;
    req.log = log.child({ reqId: id });
    res.setHeader('X-Request-Id', id);
    let reported = false;
    const over = () => {
      if (reported) return;
      reported = true;
      const seconds = (performance.now() - t0) / 1000;
      const status = res.headersSent ? res.statusCode : 499;
      const route = routeLabel(req);
      const line = { method: req.method, route, status, ms: Math.round(seconds * 10_000) / 10 };
      // An expected 5xx (not ready, draining, worker restarting) is logged at the level the
      // error handler chose for it; any other 5xx is an error.
      const expected: unknown = res.locals.expectedOutcome;
      if (expected === 'warn') req.log.warn(line, 'request');
      else if (status >= 500 && expected !== 'info') req.log.error(line, 'request');
      else req.log.info(line, 'request');
      onDone?.({ id, method: req.method, route, status, seconds });
    };
    res.once('finish', over);
    res.once('close', over);
    next();
  };
}
