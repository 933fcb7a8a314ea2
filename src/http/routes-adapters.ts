import { Router, type RequestHandler } from 'express';
import { validateAdapterId } from '../adapter/adapter-id.js';
import type { Config } from '../config.js';
import type { Services } from '../services.js';
import { acceptingWork, type ServerState } from './admission.js';
import { requireAdmin } from './auth.js';
import { checkUploadHeaders, readAdapterUpload, uploadSlots } from './upload.js';
import { adapterView } from './views.js';
import { allBases, type BaseEntry } from './routes-models.js';
import type { AdapterInfo } from '../adapter/loader.js';
import { sameBase } from '../adapter/lora-weights.js';
import { DEFAULT_MAX_CONFIG_BYTES } from '../adapter/peft-config.js';
import { AppError, clip } from '../errors.js';

/**
 * `GET /v1/adapters[/:id]` for everyone; `PUT` (multipart upload) and `DELETE` for the admin.
 * Auth, the id, the upload's headers and a free upload slot (429 past
 * `--max-concurrent-uploads`) are checked before a byte of the upload is read.
 */
export function adapterRoutes(config: Pick<Config, 'adminToken' | 'maxUploadMb' | 'maxConcurrentUploads' | 'allowBaseMismatch'>, services: Pick<Services, 'registry' | 'manifest' | 'generation'>, state: ServerState): Router {
  const r = Router();
  const bases = allBases(services);
  const ownerOf = (id: string) => bases.find((b) => b.registry.has(id)) ?? bases[0]!;
  const view = (b: BaseEntry, info: AdapterInfo) => ({ ...adapterView(info, b.registry), base: b.manifest.baseModel, task: b.manifest.task });
  /** The base an upload belongs to: the one its base_model_name_or_path names (422 naming the loaded bases if none). */
  const uploadTarget = (id: string, configBytes: Buffer): BaseEntry => {
    const existing = bases.find((b) => b.registry.has(id));
    let name: unknown = null;
    // Only a config within the size cap is read here; anything else is refused by the registry's validation.
    if (configBytes.length <= DEFAULT_MAX_CONFIG_BYTES) {
      try { name = (JSON.parse(configBytes.toString('utf8')) as { base_model_name_or_path?: unknown })?.base_model_name_or_path ?? null; } catch { /* reported by validation */ }
    }
    const named = typeof name === 'string' ? bases.find((b) => sameBase(name as string, b.manifest)) : undefined;
    const target = named ?? (bases.length === 1 || typeof name !== 'string' || config.allowBaseMismatch ? existing ?? bases[0]! : null);
    if (!target) {
      throw new AppError('INCOMPATIBLE_ADAPTER', `base_model_name_or_path "${clip(String(name))}" names no base this server has loaded (${bases.map((b) => b.manifest.baseModel).join(', ')})`);
    }
    if (existing && existing !== target) {
      throw new AppError('CONFLICT', `adapter "${id}" exists for base ${existing.manifest.baseModel}; this upload is for ${target.manifest.baseModel}: delete it first`);
    }
    return target;
  };
  const admin = requireAdmin(config.adminToken);
  const maxBytes = Math.floor(config.maxUploadMb * 1024 * 1024);
  const slots = uploadSlots(config.maxConcurrentUploads);
  // Cheap header checks (type, encoding, declared size) before a slot is taken.
  const uploadHeaders: RequestHandler = (req, _res, next) => {
    checkUploadHeaders(req, { maxBytes });
    next();
  };

  const validId: RequestHandler = (req, _res, next) => {
    validateAdapterId(req.params.id);
    next();
  };

  r.get('/v1/adapters', (_req, res) => {
    res.json({ data: bases.flatMap((b) => b.registry.list().map((a) => view(b, a))).sort((a, b) => a.id.localeCompare(b.id)) });
  });

  r.get('/v1/adapters/:id', (req, res) => {
    const id = validateAdapterId(req.params.id);
    const b = ownerOf(id);
    res.json(view(b, b.registry.get(id)));
  });

  r.put('/v1/adapters/:id', admin, acceptingWork(state), validId, uploadHeaders, slots, async (req, res) => {
    const id = validateAdapterId(req.params.id);
    const files = await readAdapterUpload(req, { maxBytes });
    const b = uploadTarget(id, files.config);
    const { created, info } = await b.registry.upload(id, files);
    res.status(created ? 201 : 200).json({ adapter: view(b, info), created });
  });

  r.delete('/v1/adapters/:id', admin, acceptingWork(state), async (req, res) => {
    const id = validateAdapterId(req.params.id);
    await ownerOf(id).registry.remove(id);
    res.status(204).end();
  });
  return r;
}
