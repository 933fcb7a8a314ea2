import { useState } from 'preact/hooks';
import { ApiError, uploadAdapter, type Adapter } from '../api.js';
import { formatBytes } from '../format.js';

export interface AdminProps {
  /** The admin token, held in the page's memory only (never stored, never in a URL). */
  token: string;
  setToken(t: string): void;
  onUploaded(a: Adapter): void;
}

const display = (e: unknown) => (e instanceof ApiError ? e.display : e instanceof Error ? e.message : String(e));

/**
 * The admin token, and an adapter upload: the two PEFT files picked or dropped, sent with
 * `PUT /v1/adapters/{id}`; the server's answer (or its error message) is shown as it is.
 */
export function Admin({ token, setToken, onUploaded }: AdminProps) {
  const [id, setId] = useState('');
  const [config, setConfig] = useState<File | null>(null);
  const [model, setModel] = useState<File | null>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string } | null>(null);
  const [over, setOver] = useState(false);

  /** Dropped files go where their names say: *.json is the config, anything else the weights. */
  const take = (files: FileList | null) => {
    for (const f of Array.from(files ?? [])) {
      if (f.name.endsWith('.json')) setConfig(f);
      else setModel(f);
    }
  };

  const submit = async () => {
    if (!config || !model || id.trim() === '') {
      setResult({ ok: false, text: 'Name the adapter and pick both files: adapter_config.json and adapter_model.safetensors.' });
      return;
    }
    setBusy(true);
    setResult(null);
    try {
      const r = await uploadAdapter(id.trim(), config, model, token);
      setResult({ ok: true, text: `${r.created ? 'Created' : 'Replaced'} adapter ${r.adapter.id} on ${r.adapter.base}: ${formatBytes(r.adapter.bytes_on_disk)}, rank ${r.adapter.rank}.` });
      onUploaded(r.adapter);
    } catch (e) {
      setResult({ ok: false, text: display(e) });
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="admin">
      <form class="field" onSubmit={(e) => e.preventDefault()}>
        <label for="admin-token">Admin token</label>
        <input id="admin-token" type="password" autoComplete="off" spellcheck={false} value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <span class="hint">Sent as <code>Authorization: Bearer …</code> on uploads and deletes; kept in this page's memory only (a reload forgets it).</span>
      </form>
      <form class="upload" onSubmit={(e) => { e.preventDefault(); void submit(); }}>
        <fieldset
          class={over ? 'drop over' : 'drop'}
          onDragOver={(e) => { e.preventDefault(); setOver(true); }}
          onDragLeave={() => setOver(false)}
          onDrop={(e) => { e.preventDefault(); setOver(false); take(e.dataTransfer?.files ?? null); }}
        >
          <legend>Upload an adapter (PEFT folder: two files; pick them or drop them here)</legend>
          <div class="field">
            <label for="upload-id">Adapter id</label>
            <input id="upload-id" type="text" autoComplete="off" spellcheck={false} value={id} onInput={(e) => setId(e.currentTarget.value)} />
          </div>
          <div class="field">
            <label for="upload-config">adapter_config.json</label>
            <input id="upload-config" type="file" accept=".json,application/json" onChange={(e) => setConfig(e.currentTarget.files?.[0] ?? null)} />
            <span class="hint">{config ? `${config.name}, ${formatBytes(config.size)}` : 'none picked'}</span>
          </div>
          <div class="field">
            <label for="upload-model">adapter_model.safetensors</label>
            <input id="upload-model" type="file" accept=".safetensors" onChange={(e) => setModel(e.currentTarget.files?.[0] ?? null)} />
            <span class="hint">{model ? `${model.name}, ${formatBytes(model.size)}` : 'none picked'}</span>
          </div>
          <div class="buttons"><button type="submit" id="upload-submit" disabled={busy}>{busy ? 'Uploading…' : 'Upload'}</button></div>
        </fieldset>
      </form>
      {result && <p id="upload-result" class={result.ok ? 'ok' : 'error'} role={result.ok ? 'status' : 'alert'}>{result.ok ? 'Done: ' : 'Refused: '}{result.text}</p>}
    </div>
  );
}
