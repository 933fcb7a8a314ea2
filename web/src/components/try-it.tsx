import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, embed, generate, predict, type Adapter, type BaseModel, type Prediction } from '../api.js';

/** What a model answers with, from its base's task and (for encoder adapters) its head. */
export type TryKind = 'classify' | 'embed' | 'generate';

export function kindOf(model: string, bases: readonly BaseModel[], adapters: readonly Adapter[]): TryKind {
  const base = bases.find((b) => b.id === model);
  const a = adapters.find((x) => x.id === model);
  const task = base?.task ?? a?.task;
  if (task === 'text-generation') return 'generate';
  return a?.has_head ? 'classify' : 'embed';
}

const SAMPLES: Record<TryKind, string> = {
  classify: 'Congratulations! You have won a free cruise. Reply now to claim your prize.',
  embed: 'A multi-adapter inference server.',
  generate: 'The GNU Image Manipulation Program is a versatile graphics manipulation package. It supports many file formats and has a plug-in interface.',
};

type Outcome =
  | { kind: 'idle' }
  | { kind: 'labels'; predictions: Prediction[] }
  | { kind: 'vector'; vector: number[]; tokens: number }
  | { kind: 'text'; text: string; state: 'streaming' | 'done' | 'stopped'; detail: string }
  | { kind: 'error'; message: string };

const display = (e: unknown) => (e instanceof ApiError ? e.display : e instanceof Error ? e.message : String(e));
const numberOrNull = (s: string) => (s.trim() === '' || !Number.isFinite(Number(s)) ? null : Number(s));

export interface TryItProps {
  bases: readonly BaseModel[];
  adapters: readonly Adapter[];
  model: string;
  setModel(id: string): void;
}

/** Try a base or adapter: labels as score bars, an embedding's size and first values, or a streamed generation with a stop button. */
export function TryIt({ bases, adapters, model, setModel }: TryItProps) {
  const kind = kindOf(model, bases, adapters);
  const [text, setText] = useState(SAMPLES.classify);
  const [edited, setEdited] = useState(false);
  const [mode, setMode] = useState<'chat' | 'completion'>('chat');
  const [maxTokens, setMaxTokens] = useState('64');
  const [temperature, setTemperature] = useState('');
  const [seed, setSeed] = useState('');
  const [out, setOut] = useState<Outcome>({ kind: 'idle' });
  const [running, setRunning] = useState(false);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => { if (!edited) setText(SAMPLES[kind]); }, [kind, edited]);
  useEffect(() => () => abort.current?.abort(), []);

  const run = async () => {
    if (running || model === '') return;
    setRunning(true);
    try {
      if (kind === 'classify') {
        setOut({ kind: 'labels', predictions: await predict(model, text) });
      } else if (kind === 'embed') {
        const r = await embed(model, text);
        setOut({ kind: 'vector', ...r });
      } else {
        const ac = new AbortController();
        abort.current = ac;
        let acc = '';
        setOut({ kind: 'text', text: '', state: 'streaming', detail: 'waiting for the first token…' });
        try {
          await generate({ model, text, mode, maxTokens: Math.max(1, Math.floor(numberOrNull(maxTokens) ?? 64)), temperature: numberOrNull(temperature), seed: numberOrNull(seed) }, {
            onText: (d) => { acc += d; setOut({ kind: 'text', text: acc, state: 'streaming', detail: 'streaming…' }); },
            onDone: (r) => setOut({ kind: 'text', text: acc, state: 'done', detail: `finished: ${r.finishReason ?? 'unknown'}${r.completionTokens !== null ? `, ${r.completionTokens} tokens` : ''}` }),
          }, ac.signal);
        } catch (e) {
          if (ac.signal.aborted) setOut({ kind: 'text', text: acc, state: 'stopped', detail: 'stopped: the request was cancelled' });
          else throw e;
        } finally {
          abort.current = null;
        }
      }
    } catch (e) {
      setOut({ kind: 'error', message: display(e) });
    } finally {
      setRunning(false);
    }
  };

  const action = kind === 'classify' ? 'Classify' : kind === 'embed' ? 'Embed' : 'Generate';
  return (
    <form class="try" onSubmit={(e) => { e.preventDefault(); void run(); }}>
      <div class="field">
        <label for="try-model">Model</label>
        <select id="try-model" value={model} onChange={(e) => { setModel(e.currentTarget.value); setOut({ kind: 'idle' }); }}>
          {bases.map((b) => (
            <optgroup key={b.id} label={`${b.id} (${b.task})`}>
              <option value={b.id}>{b.id} (base)</option>
              {adapters.filter((a) => a.base === b.id).map((a) => <option key={a.id} value={a.id}>{a.id}</option>)}
            </optgroup>
          ))}
        </select>
        <span class="hint" id="try-kind">{kind === 'classify' ? 'classifier: POST /v1/predict' : kind === 'embed' ? 'embeddings: POST /v1/embeddings' : `text generation, streamed: POST /v1/${mode === 'chat' ? 'chat/completions' : 'completions'}`}</span>
      </div>
      <div class="field">
        <label for="try-text">Text</label>
        <textarea id="try-text" rows={4} value={text} onInput={(e) => { setText(e.currentTarget.value); setEdited(true); }} />
      </div>
      {kind === 'generate' && (
        <fieldset class="gen-options">
          <legend>Generation</legend>
          <label>Route <select id="try-mode" value={mode} onChange={(e) => setMode(e.currentTarget.value === 'completion' ? 'completion' : 'chat')}>
            <option value="chat">chat (the base's chat template)</option>
            <option value="completion">completion (raw prompt)</option>
          </select></label>
          <label>Max tokens <input id="try-max-tokens" type="number" min={1} inputMode="numeric" value={maxTokens} onInput={(e) => setMaxTokens(e.currentTarget.value)} /></label>
          <label>Temperature <input id="try-temperature" type="number" min={0} max={2} step={0.1} placeholder="model default" value={temperature} onInput={(e) => setTemperature(e.currentTarget.value)} /></label>
          <label>Seed <input id="try-seed" type="number" step={1} placeholder="random" value={seed} onInput={(e) => setSeed(e.currentTarget.value)} /></label>
        </fieldset>
      )}
      <div class="buttons">
        <button type="submit" id="try-run" disabled={running || model === ''}>{action}</button>
        {kind === 'generate' && <button type="button" id="try-stop" disabled={!running} onClick={() => abort.current?.abort()}>Stop</button>}
      </div>
      <Output out={out} />
    </form>
  );
}

function Output({ out }: { out: Outcome }) {
  switch (out.kind) {
    case 'idle':
      return <div id="try-output" class="output" aria-live="polite" />;
    case 'error':
      return <div id="try-output" class="output"><p class="error" role="alert" id="try-error">{out.message}</p></div>;
    case 'labels':
      return (
        <div id="try-output" class="output" aria-live="polite">
          <ol class="scores">
            {out.predictions.map((p, i) => (
              <li key={p.label} class={i === 0 ? 'top' : undefined}>
                <span class="score-label">{p.label}</span>
                <span class="score-track" aria-hidden="true"><span class="score-bar" style={{ width: `${(100 * p.score).toFixed(1)}%` }} /></span>
                <span class="score-value">{(100 * p.score).toFixed(1)} %</span>
              </li>
            ))}
          </ol>
        </div>
      );
    case 'vector':
      return (
        <div id="try-output" class="output" aria-live="polite">
          <p>{out.vector.length} dimensions from {out.tokens} tokens; the first 8:</p>
          <p class="mono">[{out.vector.slice(0, 8).map((v) => v.toFixed(4)).join(', ')}, …]</p>
        </div>
      );
    case 'text':
      return (
        <div id="try-output" class="output">
          <p class="gen-status" id="try-status" data-state={out.state} role="status">{out.detail}</p>
          <pre class="gen-text" id="try-text-out" data-state={out.state}>{out.text}</pre>
        </div>
      );
  }
}
