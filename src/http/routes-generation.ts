import { randomUUID } from 'node:crypto';
import { Router, type NextFunction, type Request, type Response } from 'express';
import { AppError, isAppError } from '../errors.js';
import { STREAM_STALLED, type GenerateInput, type GenerateResult, type GenerationService } from '../generation/service.js';
import { acceptingWork, type ServerState } from './admission.js';
import { discardUnreadBody, fromBodyParser } from './errors.js';
import { jsonBody } from './json-body.js';
import { openAiErrorBody } from './openai-errors.js';
import { parseChatRequest, parseCompletionRequest, type GenerationRequest } from './openai-schemas.js';
import { SseStream } from './sse.js';

/** Where generation requests go, and what to say about models that cannot generate. */
export interface GenerationRouting {
  /** The decoder bases, each with its adapters. */
  bases: readonly GenerationService[];
  /** Why `model` cannot generate when it names a non-generative base or adapter (e.g. a classifier), else null. */
  notGenerative(model: string): string | null;
}

function resolve(routing: GenerationRouting, model: string): GenerationService {
  const svc = routing.bases.find((b) => b.serves(model));
  if (svc) return svc;
  const why = routing.notGenerative(model);
  if (why) throw new AppError('BAD_REQUEST', why);
  const names = routing.bases.map((b) => b.name).join(', ') || 'none is loaded';
  throw new AppError('MODEL_NOT_FOUND', `model "${model.slice(0, 80)}" does not exist: name a text-generation base (${names}) or one of its adapters (GET /v1/models lists them)`);
}

const usage = (r: GenerateResult) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens });

/**
 * `POST /v1/completions` and `POST /v1/chat/completions` in OpenAI's shapes, streamed (SSE)
 * or not. A client that disconnects cancels its sequence (it stops within a step and its KV
 * cache is freed). Errors use OpenAI's error object so SDKs surface them.
 */
/** Bytes a stream may have waiting in Node's buffer before its sequence pauses (the kernel's socket buffer comes first). */
export const STREAM_PAUSE_BYTES = 64 * 1024;

export function generationRoutes(maxBodyKb: number, routing: GenerationRouting, state: ServerState, streamStallMs: number): Router {
  const r = Router();
  const handle = (kind: 'completion' | 'chat') => async (req: Request, res: Response) => {
    // The model first (its base's sampling defaults apply), then the whole body; a body without a
    // string model is parsed as is, for the schema's own message.
    const named: unknown = (req.body as { model?: unknown } | null)?.model;
    const svcOf = typeof named === 'string' ? resolve(routing, named) : null;
    const t = svcOf?.manifest.generation?.defaultTemperature;
    const defaults = t === null || t === undefined ? {} : { temperature: t };
    const q: GenerationRequest & { prompt?: string; messages?: GenerateInput['messages'] } = kind === 'chat' ? parseChatRequest(req.body, defaults) : parseCompletionRequest(req.body, defaults);
    const svc = svcOf ?? resolve(routing, q.model);
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
    const created = Math.floor(Date.now() / 1000);
    const base = { id, created, model: q.model, system_fingerprint: null };
    const ac = new AbortController();
    res.on('close', () => { if (!res.writableFinished) ac.abort(); });
    state.generations?.add(res);
    res.on('close', () => state.generations?.delete(res));
    const input: GenerateInput = { model: q.model, maxTokens: q.maxTokens, sampling: q.sampling, stop: q.stop, ...(q.messages ? { messages: q.messages } : { prompt: q.prompt ?? '' }) };
    if (!q.stream) {
      let result: GenerateResult | null = null;
      let failure: AppError | null = null;
      await svc.generate(input, { onText: () => undefined, onDone: (x) => { result = x; }, onError: (e) => { failure = e; } }, ac.signal);
      if (failure) throw failure;
      if (!result) return; // the client went away
      const out = result as GenerateResult;
      res.json(kind === 'chat'
        ? { ...base, object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: out.text }, logprobs: null, finish_reason: out.finishReason }], usage: usage(out) }
        : { ...base, object: 'text_completion', choices: [{ index: 0, text: out.text, logprobs: null, finish_reason: out.finishReason }], usage: usage(out) });
      return;
    }
    const sse = new SseStream(res);
    let early: AppError | null = null;
    // Backpressure: a client that reads slower than we write pauses its sequence (it keeps its KV
    // cache but sits out decode steps); one that stays stalled for streamStallMs is cancelled.
    let stall: NodeJS.Timeout | null = null;
    const paused = () => res.writableLength > STREAM_PAUSE_BYTES;
    res.on('drain', () => {
      if (stall) { clearTimeout(stall); stall = null; }
      svc.scheduler.poke();
    });
    res.on('close', () => { if (stall) clearTimeout(stall); });
    const sent = () => {
      if (paused() && !stall) stall = setTimeout(() => { ac.abort(STREAM_STALLED); res.destroy(); }, streamStallMs);
    };
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (delta: string | null, finish: string | null, role = false) => (kind === 'chat'
      ? { ...base, object, choices: [{ index: 0, delta: finish ? {} : { ...(role ? { role: 'assistant' } : {}), content: delta ?? '' }, logprobs: null, finish_reason: finish }] }
      : { ...base, object, choices: [{ index: 0, text: delta ?? '', logprobs: null, finish_reason: finish }] });
    await svc.generate(input, {
      onStart: () => { if (kind === 'chat') sse.send(chunk('', null, true)); },
      onText: (t) => { sse.send(chunk(t, null)); sent(); },
      paused,
      onDone: (x) => {
        sse.send(chunk(null, x.finishReason));
        if (q.includeUsage) sse.send({ ...base, object, choices: [], usage: usage(x) });
        sse.done();
      },
      onError: (e) => {
        if (!sse.isStarted) { early = e; return; } // nothing sent yet: a plain error response with its status
        // Headers are gone: the error travels in the stream, as OpenAI does, then the stream ends.
        sse.send(openAiErrorBody(e));
        sse.done();
      },
    }, ac.signal);
    if (early) throw early;
  };
  const wrap = (fn: (req: Request, res: Response) => Promise<void>) => (req: Request, res: Response, next: NextFunction) => { fn(req, res).catch(next); };
  r.post('/v1/completions', acceptingWork(state), ...jsonBody(maxBodyKb), wrap(handle('completion')));
  r.post('/v1/chat/completions', acceptingWork(state), ...jsonBody(maxBodyKb), wrap(handle('chat')));
  // OpenAI's error object on these routes (the SDKs read message, type, code, param), body-parser's
  // errors (invalid JSON, a body over the cap) included.
  r.use(['/v1/completions', '/v1/chat/completions'], (err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(err);
    const mapped = fromBodyParser(err);
    let e: AppError;
    if (isAppError(mapped) && mapped.code !== 'INTERNAL') {
      e = mapped;
    } else {
      // Unexpected: the details go only to the log, as the server's error handler does.
      req.log.error({ err: mapped }, 'unexpected error');
      e = new AppError('INTERNAL', `internal error (request id ${String(req.id)})`);
    }
    discardUnreadBody(req, res);
    for (const [k, v] of Object.entries(e.headers)) res.setHeader(k, v);
    res.status(e.status).json(openAiErrorBody(e));
  });
  return r;
}
