import type { ServerResponse } from 'node:http';
import type { RequestHandler } from 'express';
import { AppError } from '../errors.js';

/** Owned by serve.ts: readiness and drain state, read by the probes and the admission check. */
export interface ServerState {
  /** True once the base model is loaded and a warm-up inference passed. */
  ready: boolean;
  /** True from the first SIGTERM/SIGINT: no new work, in-flight work finishes. */
  draining: boolean;
  /**
   * The inference worker's state, when there is one: readiness is 503 WORKER_RESTARTING while
   * it is down (it died and is being restarted).
   */
  worker?: { readonly up: boolean; readonly retryAfterSeconds: number };
  /**
   * Generation responses still open (the routes add and remove them). A shutdown cuts their
   * sequences short, then destroys the ones whose clients still have not read their end.
   */
  generations?: Set<ServerResponse>;
}

/** Refuses new work (inference, uploads, deletes) once draining; in-flight requests finish. */
export function acceptingWork(state: ServerState): RequestHandler {
  return (_req, res, next) => {
    if (state.draining) {
      res.setHeader('Connection', 'close');
      throw new AppError('SHUTTING_DOWN', 'the server is shutting down; retry on another instance', { headers: { 'Retry-After': '1' } });
    }
    next();
  };
}
