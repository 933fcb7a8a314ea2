import { Router } from 'express';
import type { AdapterInfo } from '../adapter/loader.js';
import { AppError, clip } from '../errors.js';
import type { AdapterRegistry } from '../adapter/registry.js';
import type { ModelManifest, ModelTask } from '../model/manifest.js';
import type { Services } from '../services.js';

/** OpenAI's model object, with adapterhost's extras (`parent`, `task`, `task_type`, `has_head`, a base's `bytes_on_disk`). */
interface ModelView {
  id: string;
  object: 'model';
  created: number;
  owned_by: 'adapterhost';
  root: string;
  parent: string | null;
  /** The base's task: sequence-classification, feature-extraction or text-generation. */
  task: ModelTask;
  task_type?: string | null;
  has_head?: boolean;
  /** Bases only: bytes of the base model file (what one merged fine-tuned copy costs). */
  bytes_on_disk?: number;
}

/** A base with its adapters, as the model routes see it. */
export interface BaseEntry { manifest: ModelManifest; registry: AdapterRegistry }

/** Every loaded base, the encoder first, with its adapter registry (adapter ids are unique across them). */
export function allBases(services: Pick<Services, 'manifest' | 'registry' | 'generation'>): BaseEntry[] {
  return [{ manifest: services.manifest, registry: services.registry }, ...(services.generation ?? []).map((g) => ({ manifest: g.manifest, registry: g.registry }))];
}

/**
 * OpenAI's `GET /v1/models` (each base, then its adapters with the base as parent) and
 * `GET /v1/models/{id}` (a base, by its name or an alias, or one adapter; 404 MODEL_NOT_FOUND
 * otherwise). A base name with a slash (`org/model`) works sent as `org%2Fmodel` (what the
 * OpenAI SDKs send) or as two path segments.
 */
export function modelsRoutes(services: Pick<Services, 'manifest' | 'registry' | 'generation'>, startedAt: Date): Router {
  const r = Router();
  const started = Math.floor(startedAt.getTime() / 1000);
  const baseView = (m: ModelManifest, id = m.baseModel): ModelView => ({ id, object: 'model', created: started, owned_by: 'adapterhost', root: m.baseModel, parent: null, task: m.task, bytes_on_disk: m.baseBytes });
  const adapterModelView = (m: ModelManifest, a: AdapterInfo): ModelView => {
    const base = m.baseModel;
    const stored = a.storedAt ? Math.floor(Date.parse(a.storedAt) / 1000) : NaN;
    return {
      id: a.id, object: 'model', created: Number.isFinite(stored) ? stored : started, owned_by: 'adapterhost',
      root: base, parent: base, task: m.task, task_type: a.taskType, has_head: a.hasHead,
    };
  };

  r.get('/v1/models', (_req, res) => {
    res.json({ object: 'list', data: allBases(services).flatMap((b) => [baseView(b.manifest), ...b.registry.list().map((a) => adapterModelView(b.manifest, a))]) });
  });

  r.get('/v1/models/*id', (req, res) => {
    const segments: unknown = req.params.id;
    const id = Array.isArray(segments) ? segments.join('/') : String(segments);
    for (const b of allBases(services)) {
      if (id === b.manifest.baseModel || b.manifest.aliases.includes(id)) {
        res.json(baseView(b.manifest, id));
        return;
      }
      if (b.registry.has(id)) {
        res.json(adapterModelView(b.manifest, b.registry.get(id)));
        return;
      }
    }
    const names = allBases(services).map((b) => b.manifest.baseModel).join(', ');
    throw new AppError('MODEL_NOT_FOUND', `model "${clip(id)}" is neither a base model (${names}) nor an adapter (GET /v1/models lists them)`);
  });
  return r;
}
