import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';
import { AppError } from '../errors.js';

/** Token ids of one input, with the model's special tokens ([CLS] … [SEP]). */
export type TokenIds = number[];

/**
 * The base model's tokenizer (a Hugging Face tokenizer.json, run by @huggingface/tokenizers,
 * the same implementation transformers.js uses), with adapterhost's length policy.
 */
export class TextTokenizer {
  private constructor(private readonly tok: Tokenizer, readonly padId: number) {}

  /** Loads tokenizer.json; the pad id is the `[PAD]`/`<pad>` added token, else 0. */
  static async load(file: string): Promise<TextTokenizer> {
    const json = JSON.parse(await readFile(file, 'utf8')) as { added_tokens?: Array<{ id: number; content: string }> };
    const pad = json.added_tokens?.find((t) => t.content === '[PAD]' || t.content === '<pad>');
    return new TextTokenizer(new Tokenizer(json, {}), pad?.id ?? 0);
  }

  /**
   * Encodes one text. Longer than `maxTokens`: refused with INPUT_TOO_LONG naming the cap,
   * or, with `truncate`, cut to the first `maxTokens - 1` tokens plus the closing special token.
   */
  encode(text: string, maxTokens: number, truncate: boolean, index = 0): TokenIds {
    const ids = this.tok.encode(text).ids;
    if (ids.length <= maxTokens) return ids;
    if (!truncate) {
      throw new AppError('INPUT_TOO_LONG', `input ${index} has ${ids.length} tokens; the limit is ${maxTokens} tokens per input (send "truncate": true to cut it)`);
    }
    return [...ids.slice(0, maxTokens - 1), ids[ids.length - 1]!];
  }
}
