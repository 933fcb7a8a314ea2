import { Router } from 'express';
import { validateAdapterId } from '../adapter/adapter-id.js';
import type { Config } from '../config.js';
import type { Services } from '../services.js';
import { acceptingWork, type ServerState } from './admission.js';
import { requireAdmin } from './auth.js';
import { readAdapterUpload } from './upload.js';
import { adapterView } from './views.js';

/**
 * `GET /v1/adapters[/:id]` for everyone; `PUT` (multipart upload) and `DELETE` for the admin.
 * Auth and the id are checked before a byte of the upload is read.
 */
export function adapterRoutes(config: Pick<Config, 'adminToken' | 'maxUploadMb'>, services: Pick<Services, 'registry'>, state: ServerState): Router {
  const r = Router();
  const { registry } = services;
  const admin = requireAdmin(config.adminToken);
  const maxBytes = Math.floor(config.maxUploadMb * 1024 * 1024);

  r.get('/v1/adapters', (_req, res) => {
    res.json({ data: registry.list().map((a) => adapterView(a, registry)) });
  });

  r.get('/v1/adapters/:id', (req, res) => {
    const id = validateAdapterId(req.params.id);
    res.json(adapterView(registry.get(id), registry));
  });

  r.put('/v1/adapters/:id', admin, acceptingWork(state), async (req, res) => {
    const id = validateAdapterId(req.params.id);
    const files = await readAdapterUpload(req, { maxBytes });
    const { created, info } = await registry.upload(id, files);
    res.status(created ? 201 : 200).json({ adapter: adapterView(info, registry), created });
  });

  r.delete('/v1/adapters/:id', admin, acceptingWork(state), async (req, res) => {
    await registry.remove(validateAdapterId(req.params.id));
    res.status(204).end();
  });
  return r;
}
