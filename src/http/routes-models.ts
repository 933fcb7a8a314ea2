import { Router } from 'express';
import type { Services } from '../services.js';

/** OpenAI's `GET /v1/models`: the base first, then every adapter with the base as parent. */
export function modelsRoutes(services: Pick<Services, 'manifest' | 'registry'>, startedAt: Date): Router {
  const r = Router();
  const started = Math.floor(startedAt.getTime() / 1000);
  r.get('/v1/models', (_req, res) => {
    const base = services.manifest.baseModel;
    const data = [
      { id: base, object: 'model', created: started, owned_by: 'adapterhost', root: base, parent: null },
      ...services.registry.list().map((a) => {
        const stored = a.storedAt ? Math.floor(Date.parse(a.storedAt) / 1000) : NaN;
        return {
          id: a.id, object: 'model', created: Number.isFinite(stored) ? stored : started, owned_by: 'adapterhost',
          root: base, parent: base, task_type: a.taskType, has_head: a.hasHead,
        };
      }),
    ];
    res.json({ object: 'list', data });
  });
  return r;
}
