import type { AdapterInfo } from '../adapter/loader.js';
import type { AdapterRegistry } from '../adapter/registry.js';

/** An adapter as the API shows it (snake_case, the field names clients rely on). */
export interface AdapterView {
  id: string;
  task_type: string | null;
  rank: number;
  target_modules: string[] | string;
  modules: string[];
  labels: string[] | null;
  has_head: boolean;
  base_model: string | null;
  bytes_on_disk: number;
  bytes_in_memory: number;
  /** bytes_on_disk ÷ base model bytes. */
  relative_to_base: number;
  cached: boolean;
  pinned: boolean;
  sha256: string | null;
  stored_at: string | null;
}

export function adapterView(info: AdapterInfo, registry: Pick<AdapterRegistry, 'isCached' | 'isPinned'>): AdapterView {
  return {
    id: info.id,
    task_type: info.taskType,
    rank: info.rank,
    target_modules: info.targetModules,
    modules: info.modules,
    labels: info.labels,
    has_head: info.hasHead,
    base_model: info.baseModel,
    bytes_on_disk: info.bytesOnDisk,
    bytes_in_memory: info.bytesInMemory,
    relative_to_base: info.relativeToBase,
    cached: registry.isCached(info.id),
    pinned: registry.isPinned(info.id),
    sha256: info.sha256,
    stored_at: info.storedAt,
  };
}
