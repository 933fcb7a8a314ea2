import express, { type Express } from 'express';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import type { Services } from '../services.js';
import type { ServerState } from './admission.js';
import { errorHandler, routeNotFound } from './errors.js';
import { methodGuard } from './method-guard.js';
import { requestContext } from './request-id.js';
import { adapterRoutes } from './routes-adapters.js';
import { embeddingsRoutes } from './routes-embeddings.js';
import { healthRoutes } from './routes-health.js';
import { metricsRoutes } from './routes-metrics.js';
import { modelsRoutes } from './routes-models.js';
import { predictRoutes } from './routes-predict.js';
import { generationRoutes } from './routes-generation.js';
import { consoleRoutes } from './routes-console.js';

export type { ServerState } from './admission.js';

export interface AppDeps {
  config: Config;
  services: Services;
  metrics: Metrics;
  log: Logger;
  /** Readiness and drain flags, owned by serve.ts. */
  state: ServerState;
  /** The built web console (default: dist/console beside the compiled server). */
  consoleDir?: string;
}

/** The HTTP app (no listen): routes, auth, request ids, metrics, the one error handler. */
export function createApp({ config, services, metrics, log, state, consoleDir }: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Query strings are not used; keep them from being parsed into nested objects.
  app.set('query parser', 'simple');

  app.use(requestContext(log, (d) => metrics.observeRequest(d)));
  app.use(methodGuard(app));
  app.use(healthRoutes(state));
  app.use(metricsRoutes(metrics));
  app.use(modelsRoutes(services, new Date()));
  app.use(adapterRoutes(config, services, state));
  app.use(predictRoutes(config.maxBodyKb, services, metrics, state));
  app.use(embeddingsRoutes(config.maxBodyKb, services, state, (model) => metrics.countAdapterRequest(model)));
  app.use(generationRoutes(config.maxBodyKb, {
    bases: (services.generation ?? []).map((g) => g.service),
    notGenerative: (model) => (model === services.manifest.baseModel || services.manifest.aliases.includes(model) || services.registry.has(model)
      ? `model "${model}" is a ${services.manifest.task} model (base ${services.manifest.baseModel}): it cannot generate text; use /v1/predict or /v1/embeddings`
      : null),
  }, state, config.streamStallMs));
  // The web console at `/` (docs/console.md): static files, a client of the routes above.
  app.use(consoleRoutes(consoleDir));
  app.use(routeNotFound());
  app.use(errorHandler());
  return app;
}
