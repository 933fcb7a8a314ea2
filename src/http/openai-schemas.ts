import { z } from 'zod';
import { AppError, echo, MAX_LISTED_PROBLEMS } from '../errors.js';
import type { ChatMessage } from '../generation/chat-template.js';
import type { SamplingParams } from '../generation/sampler.js';
import { withParam } from './openai-errors.js';

/**
 * Request bodies of `POST /v1/completions` and `POST /v1/chat/completions`, as the official
 * `openai` SDK sends them. Strict: an unknown field is a 400 naming it; OpenAI fields the
 * server does not implement are a 400 saying so, unless they carry the value that means "off"
 * (`logprobs: null`, `echo: false`, `tools: []` …), which clients and frameworks often send.
 * Every problem is listed in one BAD_REQUEST; the first one's field is the error's OpenAI `param`.
 */

/** Most stop strings (OpenAI's limit). */
export const MAX_STOPS = 4;
/** Longest stop string, in UTF-16 code units. */
export const MAX_STOP_CHARS = 256;

/** What both routes ask for besides the input. */
export interface GenerationRequest {
  /** A base model name or an adapter id (resolved by the route; unknown is a 404). */
  model: string;
  /** Most tokens to generate (`max_completion_tokens`, else `max_tokens`); null: up to the model's limit. */
  maxTokens: number | null;
  sampling: SamplingParams;
  /** Stop strings (0 to {@link MAX_STOPS}, each non-empty); the text ends before the first one generated. */
  stop: string[];
  /** Send Server-Sent Events. */
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with usage (only with `stream`). */
  includeUsage: boolean;
}

/** A parsed `POST /v1/completions` body. */
export interface CompletionRequest extends GenerationRequest {
  /** The one prompt, as text (never empty). */
  prompt: string;
}

/** A parsed `POST /v1/chat/completions` body. */
export interface ChatRequest extends GenerationRequest {
  /** The conversation, content flattened to text; `developer` messages become `system`. */
  messages: ChatMessage[];
}

/** OpenAI's defaults for the sampling fields a request leaves out. */
export const OPENAI_SAMPLING_DEFAULTS: Readonly<SamplingParams> = Object.freeze({ temperature: 1, topP: 1, topK: 0, presencePenalty: 0, frequencyPenalty: 0, seed: null });

type Check = (v: number) => boolean;

/** An optional, nullable number field: every way to get it wrong has the same message, with what was sent. */
function num(text: string, ok: Check) {
  const error = (iss: { input?: unknown }) => `must be ${text} (got ${echo(iss.input, 40)})`;
  return z.number({ error }).refine(ok, { error }).nullable().optional();
}

const optBool = z.boolean({ error: (iss) => `must be true or false (got ${echo(iss.input, 40)})` }).nullable().optional();

/**
 * A field OpenAI defines that is not implemented: absent, null, or a value in `off` is fine
 * (it asks for nothing), anything else is a 400 saying why.
 */
function unsupported(why: string, off: (v: unknown) => boolean = () => false) {
  return z.unknown().refine((v) => v === undefined || v === null || off(v), { error: `is not supported: ${why}` }).optional();
}
const isEmptyArray = (v: unknown) => Array.isArray(v) && v.length === 0;
const isEmptyObject = (v: unknown) => v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0;

const Stop = z.unknown().transform((v, ctx): string[] => {
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    ctx.addIssue({ code: 'custom', message: `must be a string or an array of at most ${MAX_STOPS} strings (got ${echo(v, 40)})` });
    return z.NEVER;
  }
  if (list.length > MAX_STOPS) ctx.addIssue({ code: 'custom', message: `holds ${list.length} strings; at most ${MAX_STOPS} are allowed` });
  list.forEach((s: string, i) => {
    const at = typeof v === 'string' ? [] : [i];
    if (s.length === 0) ctx.addIssue({ code: 'custom', path: at, message: 'must not be empty' });
    if (s.length > MAX_STOP_CHARS) ctx.addIssue({ code: 'custom', path: at, message: `is ${s.length} characters long; at most ${MAX_STOP_CHARS} are allowed` });
  });
  return list;
}).optional();

/** The fields both routes share. */
const common = {
  model: z.string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string (a base model name or an adapter id, see GET /v1/models)') })
    .min(1, { error: 'must not be empty (a base model name or an adapter id, see GET /v1/models)' }),
  max_tokens: num('a positive integer', (v) => Number.isSafeInteger(v) && v >= 1),
  temperature: num('a number from 0 to 2', (v) => v >= 0 && v <= 2),
  top_p: num('a number greater than 0 and at most 1', (v) => v > 0 && v <= 1),
  top_k: num('an integer ≥ 0 (0 = off)', (v) => Number.isSafeInteger(v) && v >= 0),
  seed: num('an integer (a safe JavaScript integer)', (v) => Number.isSafeInteger(v)),
  presence_penalty: num('a number from -2 to 2', (v) => v >= -2 && v <= 2),
  frequency_penalty: num('a number from -2 to 2', (v) => v >= -2 && v <= 2),
  stop: Stop,
  n: z.unknown().refine((v) => v === undefined || v === null || v === 1, { error: (iss) => `must be 1 (got ${echo(iss.input, 40)}): one choice per request is supported; send several requests instead` }).optional(),
  stream: optBool,
  stream_options: z.strictObject({ include_usage: optBool }, { error: 'must be an object such as {"include_usage": true}' }).nullable().optional(),
  user: z.string({ error: 'must be a string' }).nullable().optional(),
  logit_bias: unsupported('logit biases are not applied', isEmptyObject),
};

/** `prompt`: one string (or an array of one string). */
const Prompt = z.unknown().transform((v, ctx): string => {
  let s: unknown = v;
  if (Array.isArray(v)) {
    if (v.length > 0 && v.every((p) => typeof p === 'number' || (Array.isArray(p) && p.every((q) => typeof q === 'number')))) {
      ctx.addIssue({ code: 'custom', message: 'as token ids is not supported: send the prompt as a string' });
      return z.NEVER;
    }
    if (v.length > 1 && v.every((p) => typeof p === 'string')) {
      ctx.addIssue({ code: 'custom', message: `holds ${v.length} prompts; one prompt per request is supported (send several requests)` });
      return z.NEVER;
    }
    s = v.length === 1 ? v[0] : v;
  }
  if (typeof s !== 'string') {
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'is required' : `must be a string (got ${echo(v, 40)})` });
    return z.NEVER;
  }
  if (s.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'must not be empty' });
    return z.NEVER;
  }
  return s;
});

const CompletionBody = z.strictObject({
  ...common,
  prompt: Prompt,
  logprobs: unsupported('log probabilities are not returned'),
  echo: unsupported('the prompt is not echoed back', (v) => v === false),
  suffix: unsupported('no insertion after a suffix', (v) => v === ''),
  best_of: unsupported('one candidate per request (best_of 1)', (v) => v === 1),
}, { error: 'must be a JSON object' });

/** Content: a string, or text parts (joined with "\n", as vLLM does). */
const Content = z.unknown().transform((v, ctx): string => {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) {
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'is required' : `must be a string or an array of text parts (got ${echo(v, 40)})` });
    return z.NEVER;
  }
  const texts: string[] = [];
  v.forEach((part: unknown, i) => {
    const p = part as { type?: unknown; text?: unknown } | null;
    if (p === null || typeof p !== 'object' || Array.isArray(p)) {
      ctx.addIssue({ code: 'custom', path: [i], message: 'must be an object such as {"type": "text", "text": "…"}' });
    } else if (p.type !== 'text') {
      ctx.addIssue({ code: 'custom', path: [i, 'type'], message: typeof p.type === 'string' ? `"${p.type.slice(0, 40)}" parts are not supported: only "text" parts` : 'must be "text"' });
    } else if (typeof p.text !== 'string') {
      ctx.addIssue({ code: 'custom', path: [i, 'text'], message: p.text === undefined ? 'is required' : 'must be a string' });
    } else {
      const extra = Object.keys(p).filter((k) => k !== 'type' && k !== 'text');
      if (extra.length) ctx.addIssue({ code: 'custom', path: [i, extra[0]!], message: 'is not a field of a text part' });
      else texts.push(p.text);
    }
  });
  return texts.join('\n');
});

const ROLES = ['system', 'user', 'assistant', 'developer'] as const;

const Message = z.strictObject({
  role: z.unknown().transform((v, ctx): ChatMessage['role'] => {
    if (typeof v === 'string' && (ROLES as readonly string[]).includes(v)) return v === 'developer' ? 'system' : v;
    const why = v === 'tool' || v === 'function' ? `; ${v} messages are not supported` : '';
    ctx.addIssue({ code: 'custom', message: v === undefined ? 'is required' : `must be "system", "user" or "assistant" (got ${echo(v, 40)}${why})` });
    return z.NEVER;
  }),
  content: Content,
  name: z.string({ error: 'must be a string' }).nullable().optional(),
  // What a client copies back from a response message: fine while it asks for nothing.
  refusal: unsupported('send the refusal text as content'),
  annotations: unsupported('message annotations are not read', isEmptyArray),
  tool_calls: unsupported('the server does not call tools', isEmptyArray),
  function_call: unsupported('the server does not call functions'),
  audio: unsupported('text only'),
  tool_call_id: unsupported('the server does not call tools'),
}, { error: 'must be an object such as {"role": "user", "content": "…"}' });

const ChatBody = z.strictObject({
  ...common,
  messages: z.array(Message, { error: (iss) => (iss.input === undefined ? 'is required' : 'must be an array of messages') })
    .min(1, { error: 'must hold at least one message' }),
  max_completion_tokens: num('a positive integer', (v) => Number.isSafeInteger(v) && v >= 1),
  logprobs: unsupported('log probabilities are not returned', (v) => v === false),
  top_logprobs: unsupported('log probabilities are not returned', (v) => v === 0),
  tools: unsupported('the server does not call tools', isEmptyArray),
  tool_choice: unsupported('the server does not call tools', (v) => v === 'none'),
  parallel_tool_calls: unsupported('the server does not call tools', (v) => typeof v === 'boolean'),
  functions: unsupported('the server does not call functions', isEmptyArray),
  function_call: unsupported('the server does not call functions', (v) => v === 'none'),
  response_format: unsupported('only plain text responses', (v) => isEmptyObject(v) || (typeof v === 'object' && (v as { type?: unknown }).type === 'text' && Object.keys(v as object).length === 1)),
  modalities: unsupported('only plain text responses', (v) => Array.isArray(v) && v.length === 1 && v[0] === 'text'),
  audio: unsupported('text only'),
  prediction: unsupported('no predicted outputs'),
  reasoning_effort: unsupported('the models do not reason'),
  web_search_options: unsupported('no web search'),
}, { error: 'must be a JSON object' });

/** `messages[1].content[0].type` from a zod path. */
function fieldName(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out;
}

/** Parses `body` with `schema`; on failure one BAD_REQUEST lists every problem, its param the first one's field. */
function parseOpenAi<S extends z.ZodType>(schema: S, body: unknown, what: string, extra: (b: Record<string, unknown>) => Array<[string, string]>): z.output<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new AppError('BAD_REQUEST', `${what}: the body must be a JSON object`);
  }
  const r = schema.safeParse(body);
  const problems: Array<[field: string, text: string]> = [];
  if (!r.success) {
    for (const i of r.error.issues) {
      if (i.code === 'unrecognized_keys') {
        const at = fieldName(i.path);
        for (const k of i.keys) {
          const field = `${at ? `${at}.` : ''}${k.slice(0, 40)}`;
          problems.push([field, `unknown field ${JSON.stringify(field)}`]);
        }
      } else {
        const field = fieldName(i.path);
        problems.push([field, `${field ? `"${field}"` : 'body'} ${i.message}`]);
      }
    }
  }
  problems.push(...extra(body as Record<string, unknown>));
  if (problems.length === 0) return r.data as z.output<S>;
  const texts = problems.map(([, t]) => t);
  const listed = texts.slice(0, MAX_LISTED_PROBLEMS).map((p, i) => `(${i + 1}) ${p}`);
  if (texts.length > MAX_LISTED_PROBLEMS) listed.push(`… and ${texts.length - MAX_LISTED_PROBLEMS} more`);
  const e = new AppError('BAD_REQUEST', `${what}: ${texts.length === 1 ? texts[0]! : listed.join('; ')}`, { problems: texts });
  throw problems[0]![0] ? withParam(e, problems[0]![0]) : e;
}

/** Problems no single field shows. */
function crossChecks(b: Record<string, unknown>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (b.stream_options !== undefined && b.stream_options !== null && b.stream !== true) {
    out.push(['stream_options', '"stream_options" is only allowed when "stream" is true']);
  }
  return out;
}

type CommonFields = { [K in keyof typeof common]?: z.output<(typeof common)[K]> };

function generation(b: CommonFields & { model: string }, maxTokens: number | null | undefined, defaults: Partial<SamplingParams>): GenerationRequest {
  const d = { ...OPENAI_SAMPLING_DEFAULTS, ...defaults };
  const stream = b.stream ?? false;
  return {
    model: b.model,
    maxTokens: maxTokens ?? null,
    sampling: {
      temperature: b.temperature ?? d.temperature,
      topP: b.top_p ?? d.topP,
      topK: b.top_k ?? d.topK,
      presencePenalty: b.presence_penalty ?? d.presencePenalty,
      frequencyPenalty: b.frequency_penalty ?? d.frequencyPenalty,
      seed: b.seed ?? d.seed,
    },
    stop: b.stop ?? [],
    stream,
    includeUsage: stream && (b.stream_options?.include_usage ?? false),
  };
}

/**
 * Validates a `POST /v1/completions` body.
 * @param defaults sampling values for fields the request leaves out (the base's
 *   generation_config, say); OpenAI's ({@link OPENAI_SAMPLING_DEFAULTS}) where not given
 * @throws AppError BAD_REQUEST listing every problem, its OpenAI `param` recorded ({@link withParam})
 */
export function parseCompletionRequest(body: unknown, defaults: Partial<SamplingParams> = {}): CompletionRequest {
  const b = parseOpenAi(CompletionBody, body, 'invalid completions request', crossChecks);
  return { ...generation(b, b.max_tokens, defaults), prompt: b.prompt };
}

/**
 * Validates a `POST /v1/chat/completions` body. `max_completion_tokens` wins over the older `max_tokens`.
 * @param defaults as for {@link parseCompletionRequest}
 * @throws AppError BAD_REQUEST listing every problem, its OpenAI `param` recorded ({@link withParam})
 */
export function parseChatRequest(body: unknown, defaults: Partial<SamplingParams> = {}): ChatRequest {
  const b = parseOpenAi(ChatBody, body, 'invalid chat completions request', crossChecks);
  return {
    ...generation(b, b.max_completion_tokens ?? b.max_tokens, defaults),
    messages: b.messages.map((m) => ({ role: m.role, content: m.content })),
  };
}
