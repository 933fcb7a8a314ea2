import { Router } from 'express';
import type { AdapterInfo } from '../adapter/loader.js';
import { AppError, clip } from '../errors.js';
import type { Services } from '../services.js';

/** OpenAI's model object, with adapterhost's extras (`parent`, `task_type`, `has_head`). */
interface ModelView {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'adapterhost';
  root: string;
  parent: string | null;
  task_type?: string | null;
  has_head?: boolean;
}

/**
 * OpenAI's `GET /v1/models` (the base first, then every adapter with the base as parent) and
 * `GET /v1/models/{id}` (the base, by its name or an alias, or one adapter; 404 MODEL_NOT_FOUND
 * otherwise). A base name with a slash (`org/model`) works sent as `org%2Fmodel` (what the
 * OpenAI SDKs send) or as two path segments.
 */
export function modelsRoutes(services: Pick<Services, 'manifest' | 'registry'>, startedAt: Date): Router {
  const r = Router();
  const started = Math.floor(startedAt.getTime() / 1000);
  const baseView = (id = services.manifest.baseModel): ModelView => ({ id, object: 'model', created: started, owned_by: 'adapterhost', root: services.manifest.baseModel, parent: null });
  const adapterModelView = (a: AdapterInfo): ModelView => {
    const base = services.manifest.baseModel;
    const stored = a.storedAt ? Math.floor(Date.parse(a.storedAt) / 1000) : NaN;
    return {
      id: a.id, object: 'model', created: Number.isFinite(stored) ? stored : started, owned_by: 'adapterhost',
      root: base, parent: base, task_type: a.taskType, has_head: a.hasHead,
    };
  };

  r.get('/v1/models', (_req, res) => {
    res.json({ object: 'list', data: [baseView(), ...services.registry.list().map(adapterModelView)] });
  });

  r.get('/v1/models/*id', (req, res) => {
    const segments: unknown = req.params.id;
    const id = Array.isArray(segments) ? segments.join('/') : String(segments);
    const base = services.manifest.baseModel;
    if (id === base || services.manifest.aliases.includes(id)) {
      res.json(baseView(id));
      return;
    }
    if (services.registry.has(id)) {
      res.json(adapterModelView(services.registry.get(id)));
      return;
    }
    throw new AppError('MODEL_NOT_FOUND', `model "${clip(id)}" is neither the base model "${base}" nor an adapter (GET /v1/models lists them)`);
  });
  return r;
}
