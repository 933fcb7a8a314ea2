import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, deleteAdapter, listAdapters, listModels, type Adapter, type BaseModel } from './api.js';
import { Admin } from './components/admin.js';
import { AdaptersTable } from './components/adapters-table.js';
import { MetricsPanel } from './components/metrics-panel.js';
import { SavingsPicture } from './components/savings.js';
import { TryIt } from './components/try-it.js';
import { formatBytes, savings } from './format.js';
import { useLiveMetrics } from './use-polling.js';

/** How often the adapter list is read again (uploads by other clients, cache state). */
const ADAPTERS_EVERY_MS = 15_000;

const display = (e: unknown) => (e instanceof ApiError ? e.display : e instanceof Error ? e.message : String(e));

export function App() {
  const [bases, setBases] = useState<BaseModel[]>([]);
  const [adapters, setAdapters] = useState<Adapter[] | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [filter, setFilter] = useState('');
  const [model, setModel] = useState('');
  const [token, setToken] = useState('');
  const [notice, setNotice] = useState<{ ok: boolean; text: string } | null>(null);
  const live = useLiveMetrics();

  const refresh = useCallback(async () => {
    try {
      const [b, a] = await Promise.all([listModels(), listAdapters()]);
      setBases(b);
      setAdapters(a);
      setLoadError(null);
      setModel((m) => (m !== '' && (b.some((x) => x.id === m) || a.some((x) => x.id === m)) ? m : a.find((x) => x.has_head)?.id ?? b[0]?.id ?? ''));
    } catch (e) {
      setLoadError(display(e));
    }
  }, []);

  useEffect(() => {
    void refresh();
    const t = setInterval(() => void refresh(), ADAPTERS_EVERY_MS);
    return () => clearInterval(t);
  }, [refresh]);

  const tryAdapter = (id: string) => {
    setModel(id);
    document.getElementById('try')?.scrollIntoView();
    document.getElementById('try-text')?.focus();
  };
  const remove = async (id: string) => {
    try {
      await deleteAdapter(id, token);
      setNotice({ ok: true, text: `Deleted adapter ${id}.` });
      await refresh();
    } catch (e) {
      setNotice({ ok: false, text: `Deleting ${id} was refused: ${display(e)}` });
      throw e;
    }
  };

  const ready = live.readiness;
  return (
    <>
      <a class="skip" href="#main">Skip to the content</a>
      <header class="masthead">
        <h1>adapterhost</h1>
        <p class="status" id="server-status" role="status">
          {ready === undefined ? 'Server: checking…' : ready === null ? 'Server: ready' : `Server: not ready (${ready})`}
        </p>
        <nav aria-label="Sections">
          <a href="#models">Models</a>
          <a href="#try">Try it</a>
          <a href="#metrics">Metrics</a>
          <a href="#admin">Admin</a>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <section id="models" aria-labelledby="models-h">
          <h2 id="models-h">Bases and adapters</h2>
          {loadError && <p class="error" role="alert">Could not read the models: {loadError}</p>}
          {notice && <p id="models-notice" class={notice.ok ? 'ok' : 'error'} role={notice.ok ? 'status' : 'alert'}>{notice.text}</p>}
          <div class="field inline">
            <label for="filter">Filter adapters by id</label>
            <input id="filter" type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} autoComplete="off" spellcheck={false} />
            <button type="button" onClick={() => void refresh()}>Refresh</button>
          </div>
          {adapters === null && !loadError && <p>Loading…</p>}
          {adapters !== null && bases.map((b, i) => {
            const own = adapters.filter((a) => a.base === b.id);
            return (
              <article class="base" key={b.id} data-base={b.id} aria-labelledby={`base-${i}`}>
                <h3 id={`base-${i}`}>{b.id}</h3>
                <p class="base-facts">{b.task} · base model {b.bytes_on_disk !== undefined ? formatBytes(b.bytes_on_disk) : 'size unknown'} · {own.length.toLocaleString('en-US')} adapter{own.length === 1 ? '' : 's'}</p>
                {b.bytes_on_disk !== undefined && <SavingsPicture s={savings(b.bytes_on_disk, own.map((a) => a.bytes_on_disk))} />}
                <AdaptersTable base={b.id} adapters={own} served={live.served} filter={filter} onTry={tryAdapter} onDelete={remove} />
              </article>
            );
          })}
        </section>
        <div class="two">
          <section id="try" aria-labelledby="try-h">
            <h2 id="try-h">Try it</h2>
            {bases.length > 0 && adapters !== null ? <TryIt bases={bases} adapters={adapters} model={model} setModel={setModel} /> : <p>Loading…</p>}
          </section>
          <section id="metrics" aria-labelledby="metrics-h">
            <h2 id="metrics-h">Live metrics</h2>
            <MetricsPanel points={live.points} error={live.error} />
          </section>
        </div>
        <section id="admin" aria-labelledby="admin-h">
          <h2 id="admin-h">Admin</h2>
          <Admin token={token} setToken={setToken} onUploaded={() => void refresh()} />
        </section>
      </main>
      <footer class="foot">
        <p>This page uses only the public API: <code>/v1/models</code>, <code>/v1/adapters</code>, <code>/v1/predict</code>, <code>/v1/embeddings</code>, <code>/v1/chat/completions</code>, <code>/v1/completions</code>, <code>/metrics</code>, <code>/readyz</code>.</p>
      </footer>
    </>
  );
}
