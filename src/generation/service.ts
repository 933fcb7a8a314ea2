import { Tokenizer } from '@huggingface/tokenizers';
import { randomInt } from 'node:crypto';
import type { AdapterLease } from '../adapter/cache.js';
import type { AdapterRegistry } from '../adapter/registry.js';
import { AppError } from '../errors.js';
import type { ModelManifest } from '../model/manifest.js';
import { compileChatTemplate, renderChat, type ChatMessage } from './chat-template.js';
import { IncrementalDetokenizer } from './detokenizer.js';
import { Sampler, type SamplingParams } from './sampler.js';
import type { FinishReason, GenerationScheduler } from './scheduler.js';
import { StopMatcher } from './stop-matcher.js';

/** The abort reason a caller gives when it cancels a stream whose client stopped reading (reported as finish reason 'stalled'). */
export const STREAM_STALLED = 'stream-stalled';

/** What a finished request is reported as: the scheduler's reason, or 'stalled' (cancelled because its client stopped reading). */
export type ReportedFinish = FinishReason | 'stalled';

/** A generation request after parsing (either route). */
export interface GenerateInput {
  /** The base's name (no adapter) or an adapter id of this base. */
  model: string;
  /** `/v1/completions`: the raw prompt. */
  prompt?: string;
  /** `/v1/chat/completions`: rendered with the base's chat template. */
  messages?: ChatMessage[];
  maxTokens: number | null;
  sampling: SamplingParams;
  stop: string[];
}

/** What a caller hears while a sequence runs. */
export interface GenerateEvents {
  /** The first chunk is sent once the request is admitted and tokenized (before any token). */
  onStart?(info: { promptTokens: number }): void;
  /** New text (never half a character, never part of a stop string). */
  onText(delta: string): void;
  onDone(r: GenerateResult): void;
  onError(e: AppError): void;
  /** True while the consumer cannot take more text: the sequence sits out decode steps (keeping its
   * cache) until `scheduler.poke()`. */
  paused?(): boolean;
}

export interface GenerateResult {
  text: string;
  finishReason: 'stop' | 'length';
  promptTokens: number;
  completionTokens: number;
  /** Milliseconds from the request to its first token. */
  ttftMs: number;
}

export interface GenerationServiceDeps {
  manifest: ModelManifest;
  tokenizer: Tokenizer;
  scheduler: GenerationScheduler;
  registry: AdapterRegistry;
  /** The most characters one token of the vocabulary can stand for: a prompt longer than
   * maxPositions × this cannot fit, and is refused without being tokenized. */
  maxTokenChars: number;
  /** Hooks for metrics and logs. */
  onFinished?(r: { adapterId: string | null; result: GenerateResult | null; reason: ReportedFinish; totalMs: number }): void;
  onToken?(r: { adapterId: string | null; first: boolean; gapMs: number }): void;
}

/**
 * Generation for one decoder base: resolves the model (the base or one of its adapters, leased
 * from the shared cache for the sequence's life), renders the chat template, tokenizes, checks the
 * context, and runs the sequence on the base's scheduler; text flows out through a detokenizer and
 * a stop-string matcher.
 */
export class GenerationService {
  readonly name: string;

  constructor(private readonly d: GenerationServiceDeps) {
    if (!d.manifest.generation) throw new AppError('INVALID_MODEL', `${d.manifest.baseModel} is not a text-generation base`);
    this.name = d.manifest.baseModel;
    if (d.manifest.generation.chatTemplate) compileChatTemplate(d.manifest.generation.chatTemplate);
  }

  get manifest(): ModelManifest { return this.d.manifest; }
  get registry(): AdapterRegistry { return this.d.registry; }
  get scheduler(): GenerationScheduler { return this.d.scheduler; }

  /** True when `model` names this base (or an alias). */
  isBase(model: string): boolean {
    return model === this.d.manifest.baseModel || this.d.manifest.aliases.includes(model);
  }

  /** True when `model` is this base or one of its adapters. */
  serves(model: string): boolean {
    return this.isBase(model) || this.d.registry.has(model);
  }

  /** Prompt token ids for a request (chat template applied for messages). */
  promptIds(input: GenerateInput): number[] {
    const g = this.d.manifest.generation!;
    let text: string;
    if (input.messages) {
      if (!g.chatTemplate) throw new AppError('BAD_REQUEST', `model "${this.name}" has no chat template; use /v1/completions`);
      // Cheap bounds before the template runs (on the HTTP thread; tens of thousands of tiny
      // messages took a second): each message takes at least one token, its content at least
      // one per maxTokenChars characters.
      if (input.messages.length > g.maxPositions) {
        throw new AppError('INPUT_TOO_LONG', `the chat has ${input.messages.length} messages; the model's context is ${g.maxPositions} tokens (each message takes at least one)`);
      }
      const chars = input.messages.reduce((n, m) => n + m.content.length, 0);
      if (chars > g.maxPositions * this.d.maxTokenChars) {
        throw new AppError('INPUT_TOO_LONG', `the messages have ${chars} characters, more than the model's context of ${g.maxPositions} tokens can hold`);
      }
      text = renderChat(g.chatTemplate, input.messages, { bos_token: g.bosToken, eos_token: g.eosToken, add_generation_prompt: true });
    } else {
      text = input.prompt ?? '';
    }
    // Cheap bound first: no tokenizing (on the HTTP thread) of a prompt that cannot fit the context.
    if (text.length > g.maxPositions * this.d.maxTokenChars) {
      throw new AppError('INPUT_TOO_LONG', `the prompt has ${text.length} characters, more than the model's context of ${g.maxPositions} tokens can hold`);
    }
    const ids = this.d.tokenizer.encode(text, { add_special_tokens: false }).ids;
    return input.messages || g.bosId === null ? ids : [g.bosId, ...ids];
  }

  /** Runs one request; resolves when it ends (events carry the text). Throws for requests refused before they start. */
  async generate(input: GenerateInput, events: GenerateEvents, signal?: AbortSignal): Promise<void> {
    const t0 = performance.now();
    const g = this.d.manifest.generation!;
    const adapterId = this.isBase(input.model) ? null : input.model;
    if (adapterId !== null && !this.d.registry.has(adapterId)) throw new AppError('MODEL_NOT_FOUND', `model "${adapterId.slice(0, 80)}" does not exist (GET /v1/models lists them)`);
    const ids = this.promptIds(input);
    if (ids.length >= g.maxPositions) {
      throw new AppError('INPUT_TOO_LONG', `the prompt has ${ids.length} tokens; the model's context is ${g.maxPositions} tokens (prompt and completion together)`);
    }
    const room = g.maxPositions - ids.length;
    if (input.maxTokens !== null && input.maxTokens > room) {
      throw new AppError('BAD_REQUEST', `max_tokens is ${input.maxTokens} but the prompt has ${ids.length} tokens and the model's context is ${g.maxPositions}: at most ${room} can be generated`);
    }
    const maxTokens = input.maxTokens ?? room;
    let lease: AdapterLease | null = null;
    if (adapterId !== null) lease = await this.d.registry.acquire(adapterId);
    const detok = new IncrementalDetokenizer(this.d.tokenizer, { skipSpecial: true });
    const stops = new StopMatcher(input.stop);
    const eos = new Set(g.eosIds);
    let text = '';
    let generated = 0;
    let stoppedByString = false;
    let ttftMs = -1;
    let last = t0;
    const emit = (s: string) => { if (s) { text += s; events.onText(s); } };
    await new Promise<void>((resolve) => {
      const finish = (reason: FinishReason, error?: AppError) => {
        lease?.release();
        let result: GenerateResult | null = null;
        // Cut short by a shutdown: the text so far, reported as OpenAI's 'length' (the output was truncated).
        if (reason === 'stop' || reason === 'length' || reason === 'shutdown') {
          if (!stoppedByString) {
            const r = stops.push(detok.flush());
            emit(r.emit);
            if (!r.stopped) emit(stops.flush());
          }
          result = { text, finishReason: reason === 'shutdown' ? 'length' : reason, promptTokens: ids.length, completionTokens: generated, ttftMs: ttftMs < 0 ? performance.now() - t0 : ttftMs };
          events.onDone(result);
        } else if (reason === 'error') {
          events.onError(error ?? new AppError('INTERNAL', 'generation failed'));
        }
        const reported: ReportedFinish = reason === 'cancelled' && signal?.reason === STREAM_STALLED ? 'stalled' : reason;
        this.d.onFinished?.({ adapterId, result, reason: reported, totalMs: performance.now() - t0 });
        resolve();
      };
      try {
        this.d.scheduler.submit({
          promptIds: ids,
          adapter: lease?.weights ?? null,
          adapterId,
          maxTokens,
          picker: new Sampler(input.sampling, randomInt(2 ** 31)),
          signal,
          sink: {
            onToken: (tok) => {
              const now = performance.now();
              const first = ttftMs < 0;
              if (first) ttftMs = now - t0;
              this.d.onToken?.({ adapterId, first, gapMs: first ? ttftMs : now - last });
              last = now;
              generated++;
              if (eos.has(tok)) return false;
              const r = stops.push(detok.push(tok));
              emit(r.emit);
              if (r.stopped) stoppedByString = true;
              return r.stopped;
            },
            onFinish: finish,
            paused: () => events.paused?.() ?? false,
          },
        });
        events.onStart?.({ promptTokens: ids.length });
      } catch (e) {
        lease?.release();
        throw e;
      }
    });
  }
}
