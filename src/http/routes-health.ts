import { Router } from 'express';
import { AppError } from '../errors.js';
import type { ServerState } from './admission.js';

/** `/healthz`: the process is up. `/readyz`: warmed up, not draining, and the inference worker running. */
export function healthRoutes(state: ServerState): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  r.get('/readyz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    if (state.draining) throw new AppError('SHUTTING_DOWN', 'the server is shutting down');
    if (!state.ready) throw new AppError('NOT_READY', 'the server is starting: the warm-up inference has not passed yet');
    if (state.worker && !state.worker.up) {
      throw new AppError('WORKER_RESTARTING', 'the inference worker died and is restarting', { headers: { 'Retry-After': String(state.worker.retryAfterSeconds || 1) } });
    }
    res.json({ status: 'ready' });
  });
  return r;
}
