import { z } from 'zod';
import { AppError, echo } from '../errors.js';

/** Most unknown field names one message repeats. */
const MAX_NAMED_KEYS = 10;

/** An error message that says "is required" when the field is missing. */
const msg = (text: string) => ({ error: (iss: { input?: unknown }) => (iss.input === undefined ? 'is required' : text) });

/**
 * Request bodies. Every problem names the field as the client sent it (`inputs` for predict,
 * `input` for embeddings), an empty list included. Objects are strict: a field the server does
 * not know (a client-sent `url` or `path`, say) is a 400, never followed.
 */
export const PredictRequest = z.strictObject({
  adapter_id: z.string(msg('must be a string (an adapter id from GET /v1/adapters)')),
  inputs: z.union([z.string(), z.array(z.string()).min(1, 'must hold at least one text')], msg('must be a string or an array of strings')),
  truncate: z.boolean(msg('must be true or false')).optional(),
});
export type PredictRequest = z.output<typeof PredictRequest>;

/** OpenAI's embeddings request; `dimensions` is refused (the size is the model's). */
export const EmbeddingsRequest = z.strictObject({
  model: z.string(msg('must be a string (the base model name or an adapter id, see GET /v1/models)')),
  input: z.union([z.string(), z.array(z.string()).min(1, 'must hold at least one text')], msg('must be a string or an array of strings (token arrays are not accepted)')),
  encoding_format: z.enum(['float', 'base64'], msg('must be "float" or "base64"')).optional(),
  user: z.string(msg('must be a string')).optional(),
  dimensions: z.never({ error: 'is not supported: embeddings have the base model\'s hidden size' }).optional(),
});
export type EmbeddingsRequest = z.output<typeof EmbeddingsRequest>;

/** Validates `body`; on failure one BAD_REQUEST lists every problem. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown, what: string): z.output<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new AppError('BAD_REQUEST', `${what}: the body must be a JSON object`);
  }
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const problems = r.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') {
      // A body may hold thousands of unknown keys: name a few.
      const shown = i.keys.slice(0, MAX_NAMED_KEYS).map((k) => echo(k, 40)).join(', ');
      return `unknown field${i.keys.length > 1 ? 's' : ''} ${shown}${i.keys.length > MAX_NAMED_KEYS ? ` and ${i.keys.length - MAX_NAMED_KEYS} more` : ''}`;
    }
    const at = i.path.length ? `"${i.path.map(String).join('.')}"` : 'body';
    return `${at} ${i.message}`;
  });
  const list = problems.length === 1 ? problems[0]! : problems.map((p, i) => `(${i + 1}) ${p}`).join('; ');
  throw new AppError('BAD_REQUEST', `${what}: ${list}`, { problems });
}
