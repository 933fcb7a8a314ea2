/**
 * The tokenizer thread: long inputs are tokenized here, so a request full of long texts never
 * holds the HTTP thread (health checks, metrics, other requests) for the time it takes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isAppError } from '../errors.js';
import { TextTokenizer, type TokenIds } from './tokenizer.js';

export interface TokenizerWorkerInit { tokenizerPath: string }
export type TokenizeRequest = { id: number; texts: string[]; maxTokens: number; truncate: boolean };
export type TokenizeResponse =
  | { id: number; ok: true; ids: TokenIds[]; chars: number }
  | { id: number; ok: false; code: string | null; message: string };

const init = workerData as TokenizerWorkerInit;
const port = parentPort!;

async function main(): Promise<void> {
  const tok = await TextTokenizer.load(init.tokenizerPath);
  port.on('message', ({ id, texts, maxTokens, truncate }: TokenizeRequest) => {
    try {
      const before = tok.charsTokenized;
      const ids = texts.map((t, i) => tok.encode(t, maxTokens, truncate, i));
      port.postMessage({ id, ok: true, ids, chars: tok.charsTokenized - before } satisfies TokenizeResponse);
    } catch (e) {
      port.postMessage({ id, ok: false, code: isAppError(e) ? e.code : null, message: (e as Error).message } satisfies TokenizeResponse);
    }
  });
  port.postMessage({ ready: true });
}

main().catch((e: unknown) => port.postMessage({ ready: false, message: (e as Error).message }));
