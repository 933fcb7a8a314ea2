import { useEffect, useMemo, useState } from 'preact/hooks';
import type { Adapter } from '../api.js';
import { formatBytes, formatRatio } from '../format.js';

/** Rows per page: the table stays quick with thousands of adapters. */
export const PAGE_SIZE = 50;

type SortKey = 'id' | 'task_type' | 'rank' | 'bytes' | 'state' | 'requests';
const COLUMNS: Array<{ key: SortKey | null; label: string; numeric?: boolean }> = [
  { key: 'id', label: 'Adapter' },
  { key: 'task_type', label: 'Task' },
  { key: 'rank', label: 'Rank', numeric: true },
  { key: null, label: 'Targets' },
  { key: null, label: 'Labels' },
  { key: 'bytes', label: 'Bytes on disk', numeric: true },
  { key: null, label: '÷ base', numeric: true },
  { key: 'state', label: 'Memory' },
  { key: 'requests', label: 'Requests', numeric: true },
  { key: null, label: 'Actions' },
];

const stateOf = (a: Adapter) => (a.pinned ? 'pinned' : a.cached ? 'cached' : 'on disk');
const targetsOf = (a: Adapter) => (Array.isArray(a.target_modules) ? a.target_modules.join(', ') : a.target_modules);

export interface AdaptersTableProps {
  base: string;
  adapters: readonly Adapter[];
  /** Requests served per adapter id. */
  served: ReadonlyMap<string, number>;
  /** Case-insensitive substring of the id. */
  filter: string;
  onTry(id: string): void;
  /** Deletes through the API; rejects with the server's message. */
  onDelete(id: string): Promise<void>;
}

/** One base's adapters: sortable by column, filtered by id, a page at a time. */
export function AdaptersTable({ base, adapters, served, filter, onTry, onDelete }: AdaptersTableProps) {
  const [sort, setSort] = useState<{ key: SortKey; dir: 1 | -1 }>({ key: 'id', dir: 1 });
  const [page, setPage] = useState(0);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const rows = useMemo(() => {
    const f = filter.trim().toLowerCase();
    const picked = f === '' ? [...adapters] : adapters.filter((a) => a.id.toLowerCase().includes(f));
    const value = (a: Adapter): string | number => {
      switch (sort.key) {
        case 'id': return a.id;
        case 'task_type': return a.task_type ?? '';
        case 'rank': return a.rank;
        case 'bytes': return a.bytes_on_disk;
        case 'state': return stateOf(a);
        case 'requests': return served.get(a.id) ?? 0;
      }
    };
    return picked.sort((x, y) => {
      const a = value(x);
      const b = value(y);
      const c = typeof a === 'number' && typeof b === 'number' ? a - b : String(a).localeCompare(String(b));
      return (c || x.id.localeCompare(y.id)) * sort.dir;
    });
  }, [adapters, filter, sort, served]);

  const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
  useEffect(() => { setPage(0); }, [filter, sort]);
  const current = Math.min(page, pages - 1);
  const shown = rows.slice(current * PAGE_SIZE, (current + 1) * PAGE_SIZE);
  const toggle = (key: SortKey) => setSort((s) => ({ key, dir: s.key === key ? (s.dir === 1 ? -1 : 1) : 1 }));

  if (adapters.length === 0) return <p class="muted">No adapters on this base yet.</p>;
  return (
    <div>
      <p class="table-info" aria-live="polite">
        {rows.length === adapters.length ? `${adapters.length.toLocaleString('en-US')} adapters` : `${rows.length.toLocaleString('en-US')} of ${adapters.length.toLocaleString('en-US')} adapters match`}
        {rows.length > PAGE_SIZE && `; showing ${current * PAGE_SIZE + 1}–${Math.min(rows.length, (current + 1) * PAGE_SIZE)}`}
      </p>
      <div class="table-scroll" role="region" aria-label={`Adapters of ${base}`} tabIndex={0}>
        <table class="adapters" data-base={base}>
          <thead>
            <tr>
              {COLUMNS.map((c) => {
                const active = c.key !== null && sort.key === c.key;
                return (
                  <th key={c.label} scope="col" class={c.numeric ? 'num' : undefined} aria-sort={active ? (sort.dir === 1 ? 'ascending' : 'descending') : undefined}>
                    {c.key === null ? c.label : (
                      <button type="button" class="sort" onClick={() => toggle(c.key!)}>
                        {c.label}
                        <span class="sort-mark" aria-hidden="true">{active ? (sort.dir === 1 ? ' ▲' : ' ▼') : ' ↕'}</span>
                      </button>
                    )}
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {shown.map((a) => (
              <tr key={a.id} data-adapter={a.id}>
                <th scope="row" class="id">{a.id}</th>
                <td>{a.task_type ?? '–'}</td>
                <td class="num">{a.rank}</td>
                <td class="targets">{targetsOf(a)}</td>
                <td class="labels">{a.labels ? a.labels.join(', ') : '–'}</td>
                <td class="num">{formatBytes(a.bytes_on_disk)}</td>
                <td class="num">{formatRatio(a.relative_to_base)}</td>
                <td>{stateOf(a)}</td>
                <td class="num">{(served.get(a.id) ?? 0).toLocaleString('en-US')}</td>
                <td class="actions">
                  {confirming === a.id ? (
                    <span class="confirm">
                      <span>Delete {a.id}?</span>
                      <button type="button" class="danger" disabled={busy} onClick={() => {
                        setBusy(true);
                        onDelete(a.id).then(() => setConfirming(null), () => setConfirming(null)).finally(() => setBusy(false));
                      }}>Yes, delete</button>
                      <button type="button" onClick={() => setConfirming(null)}>Cancel</button>
                    </span>
                  ) : (
                    <>
                      <button type="button" onClick={() => onTry(a.id)} aria-label={`Try ${a.id}`}>Try</button>
                      <button type="button" onClick={() => setConfirming(a.id)} aria-label={`Delete ${a.id}`}>Delete</button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {pages > 1 && (
        <nav class="pager" aria-label={`Pages of ${base}'s adapters`}>
          <button type="button" disabled={current === 0} onClick={() => setPage(0)}>First</button>
          <button type="button" disabled={current === 0} onClick={() => setPage(current - 1)}>Previous</button>
          <span>Page {current + 1} of {pages}</span>
          <button type="button" disabled={current >= pages - 1} onClick={() => setPage(current + 1)}>Next</button>
          <button type="button" disabled={current >= pages - 1} onClick={() => setPage(pages - 1)}>Last</button>
        </nav>
      )}
    </div>
  );
}
