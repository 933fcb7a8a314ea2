import { Router } from 'express';
import type { Services } from '../services.js';
import { acceptingWork, type ServerState } from './admission.js';
import { jsonBody } from './json-body.js';
import { EmbeddingsRequest, parseBody } from './schemas.js';

/** Float32 little-endian bytes, base64: OpenAI's `encoding_format: "base64"`. */
export function float32Base64(v: Float32Array): string {
  const b = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) b.writeFloatLE(v[i]!, i * 4);
  return b.toString('base64');
}

/**
 * OpenAI's `POST /v1/embeddings`; `model` is the base model's name or an adapter id.
 * `onServed` hears of each answered request (the per-adapter request counter).
 */
export function embeddingsRoutes(maxBodyKb: number, services: Pick<Services, 'inference'>, state: ServerState, onServed: (model: string) => void = () => undefined): Router {
  const r = Router();
  r.post('/v1/embeddings', acceptingWork(state), ...jsonBody(maxBodyKb), async (req, res) => {
    const q = parseBody(EmbeddingsRequest, req.body, 'invalid embeddings request');
    const inputs = typeof q.input === 'string' ? [q.input] : q.input;
    const { embeddings, promptTokens } = await services.inference.embed(q.model, inputs);
    onServed(q.model);
    const base64 = q.encoding_format === 'base64';
    res.json({
      object: 'list',
      data: embeddings.map((e, index) => ({ object: 'embedding', index, embedding: base64 ? float32Base64(e) : Array.from(e) })),
      model: q.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  });
  return r;
}
