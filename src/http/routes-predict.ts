import { Router } from 'express';
import { validateAdapterId } from '../adapter/adapter-id.js';
import { AppError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Services } from '../services.js';
import { acceptingWork, type ServerState } from './admission.js';
import { jsonBody } from './json-body.js';
import { parseBody, PredictRequest } from './schemas.js';

/** `POST /v1/predict`: one label list per input, from the named adapter's head. */
export function predictRoutes(maxBodyKb: number, services: Pick<Services, 'inference' | 'generation'>, metrics: Metrics, state: ServerState): Router {
  const r = Router();
  r.post('/v1/predict', acceptingWork(state), ...jsonBody(maxBodyKb), async (req, res) => {
    const body: unknown = req.body;
    if (body !== null && typeof body === 'object' && !Array.isArray(body) && (body as Record<string, unknown>).adapter_id === undefined) {
      throw new AppError('ADAPTER_REQUIRED', 'the base model has no classification head; name an adapter ("adapter_id", see GET /v1/adapters)');
    }
    const q = parseBody(PredictRequest, body, 'invalid predict request');
    const id = validateAdapterId(q.adapter_id);
    const gen = services.generation?.find((g) => g.registry.has(id));
    if (gen) throw new AppError('BAD_REQUEST', `adapter "${id}" is a text-generation adapter of ${gen.manifest.baseModel}: it has no classification head; use /v1/chat/completions or /v1/completions`);
    const inputs = typeof q.inputs === 'string' ? [q.inputs] : q.inputs;
    const predictions = await services.inference.predict(id, inputs, q.truncate ?? false);
    metrics.countPredictions(id, inputs.length);
    res.json({ adapter_id: id, predictions });
  });
  return r;
}
