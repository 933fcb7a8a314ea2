/**
 * The console's only way to the server: the public HTTP routes, with the same auth any client
 * has (the admin token is sent only on PUT/DELETE, as a Bearer header, from memory).
 */
import { SseParser } from './sse.js';

/** A base model, from `GET /v1/models`. */
export interface BaseModel {
  id: string;
  task: 'sequence-classification' | 'feature-extraction' | 'text-generation' | string;
  bytes_on_disk?: number;
}

/** An adapter, from `GET /v1/adapters`. */
export interface Adapter {
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
  relative_to_base: number;
  cached: boolean;
  pinned: boolean;
  base: string;
  task: string;
}

export interface Prediction { label: string; score: number }

/** A refused request: the server's status, error code and message, shown as they are. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
  /** "401 UNAUTHORIZED: the admin token is not valid". */
  get display(): string {
    return `${this.status}${this.code ? ` ${this.code}` : ''}: ${this.message}`;
  }
}

/** The error body of either shape the server uses (`{error:{code,message}}`, OpenAI's `{error:{message,type,code}}`). */
async function failure(res: Response): Promise<ApiError> {
  const text = await res.text();
  try {
    const e = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } }).error;
    if (e && typeof e.message === 'string') return new ApiError(res.status, typeof e.code === 'string' ? e.code : '', e.message);
  } catch { /* not JSON */ }
  return new ApiError(res.status, '', text.slice(0, 500) || res.statusText);
}

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

const post = (url: string, body: unknown, signal?: AbortSignal) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });

export async function listModels(): Promise<BaseModel[]> {
  const r = await json<{ data: Array<BaseModel & { parent: string | null }> }>(await fetch('/v1/models'));
  return r.data.filter((m) => m.parent === null);
}

export async function listAdapters(): Promise<Adapter[]> {
  return (await json<{ data: Adapter[] }>(await fetch('/v1/adapters'))).data;
}

export async function metricsText(): Promise<string> {
  const res = await fetch('/metrics');
  if (!res.ok) throw await failure(res);
  return res.text();
}

/** `GET /readyz`: null when ready, else the reason. */
export async function readiness(): Promise<string | null> {
  const res = await fetch('/readyz');
  return res.ok ? null : (await failure(res)).display;
}

export async function predict(adapterId: string, text: string): Promise<Prediction[]> {
  const r = await json<{ predictions: Prediction[][] }>(await post('/v1/predict', { adapter_id: adapterId, inputs: text }));
  return r.predictions[0] ?? [];
}

export async function embed(model: string, text: string): Promise<{ vector: number[]; tokens: number }> {
  const r = await json<{ data: Array<{ embedding: number[] }>; usage: { prompt_tokens: number } }>(await post('/v1/embeddings', { model, input: text }));
  return { vector: r.data[0]?.embedding ?? [], tokens: r.usage.prompt_tokens };
}

export interface GenerateParams {
  model: string;
  text: string;
  /** chat: /v1/chat/completions with one user message (the base's chat template); completion: /v1/completions, the text as the prompt. */
  mode: 'chat' | 'completion';
  maxTokens: number;
  temperature: number | null;
  seed: number | null;
}

export interface GenerateEvents {
  onText(delta: string): void;
  onDone(r: { finishReason: string | null; completionTokens: number | null }): void;
}

/**
 * A streamed generation (`stream: true`, the SSE route any OpenAI client uses). Aborting
 * `signal` closes the connection, which cancels the sequence on the server. An error chunk
 * in the stream is thrown as an ApiError.
 */
export async function generate(p: GenerateParams, ev: GenerateEvents, signal: AbortSignal): Promise<void> {
  const body: Record<string, unknown> = {
    model: p.model, max_tokens: p.maxTokens, stream: true, stream_options: { include_usage: true },
    ...(p.mode === 'chat' ? { messages: [{ role: 'user', content: p.text }] } : { prompt: p.text }),
  };
  if (p.temperature !== null) body.temperature = p.temperature;
  if (p.seed !== null) body.seed = p.seed;
  const res = await post(p.mode === 'chat' ? '/v1/chat/completions' : '/v1/completions', body, signal);
  if (!res.ok || !res.body) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  const sse = new SseParser();
  let finishReason: string | null = null;
  let completionTokens: number | null = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const data of sse.push(value)) {
      if (data === '[DONE]') {
        ev.onDone({ finishReason, completionTokens });
        return;
      }
      const chunk = JSON.parse(data) as {
        error?: { message?: string; code?: string | null };
        choices?: Array<{ text?: string; delta?: { content?: string }; finish_reason?: string | null }>;
        usage?: { completion_tokens?: number };
      };
      if (chunk.error) throw new ApiError(res.status, chunk.error.code ?? '', chunk.error.message ?? 'the stream failed');
      const c = chunk.choices?.[0];
      const delta = c?.delta?.content ?? c?.text ?? '';
      if (delta) ev.onText(delta);
      if (c?.finish_reason) finishReason = c.finish_reason;
      if (chunk.usage?.completion_tokens !== undefined) completionTokens = chunk.usage.completion_tokens;
    }
  }
  throw new ApiError(res.status, '', 'the stream ended without [DONE]');
}

const bearer = (token: string): Record<string, string> => (token === '' ? {} : { authorization: `Bearer ${token}` });

/** `PUT /v1/adapters/{id}` with the two PEFT files (multipart, the part names the route reads). */
export async function uploadAdapter(id: string, config: Blob, model: Blob, token: string): Promise<{ adapter: Adapter; created: boolean }> {
  const form = new FormData();
  form.append('adapter_config', config, 'adapter_config.json');
  form.append('adapter_model', model, 'adapter_model.safetensors');
  return json(await fetch(`/v1/adapters/${encodeURIComponent(id)}`, { method: 'PUT', headers: bearer(token), body: form }));
}

export async function deleteAdapter(id: string, token: string): Promise<void> {
  const res = await fetch(`/v1/adapters/${encodeURIComponent(id)}`, { method: 'DELETE', headers: bearer(token) });
  if (!res.ok) throw await failure(res);
}
