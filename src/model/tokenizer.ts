import { readFile } from 'node:fs/promises';
import { Tokenizer } from '@huggingface/tokenizers';
import { AppError } from '../errors.js';

/** Token ids of one input, with the model's special tokens ([CLS] … [SEP]). */
export type TokenIds = number[];

/**
 * Characters per token of the cap that the first bounded pass tokenizes (doubled on each
 * further pass). Natural text runs 3–5 characters a token, so one pass usually settles it.
 */
export const PREFIX_CHARS_PER_TOKEN = 6;

/** Pieces of a tokenizer.json this module looks at. */
interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string }>;
  normalizer?: Component | null;
  pre_tokenizer?: Component | null;
}
interface Component { type?: string; normalizers?: Component[]; pretokenizers?: Component[]; split?: boolean; use_regex?: boolean }

/** Normalizers that map each character on its own (nothing joins across a space). */
const LOCAL_NORMALIZERS = new Set(['BertNormalizer', 'Lowercase', 'NFC', 'NFD', 'NFKC', 'NFKD', 'StripAccents', 'Strip', 'Prepend']);
/** Pre-tokenizers that split at every U+0020 space. */
const SPACE_SPLITTERS = new Set(['BertPreTokenizer', 'Whitespace', 'WhitespaceSplit', 'Metaspace', 'ByteLevel']);
/** Pre-tokenizers that only split further (never join pieces). */
const FURTHER_SPLITTERS = new Set(['Punctuation', 'Digits']);

function normalizerIsLocal(n: Component | null | undefined): boolean {
  if (!n) return true;
  if (n.type === 'Sequence') return (n.normalizers ?? []).every(normalizerIsLocal);
  return LOCAL_NORMALIZERS.has(n.type ?? '');
}

function splitsAtSpaces(p: Component | null | undefined): boolean {
  if (!p) return false;
  const splitter = (c: Component) => SPACE_SPLITTERS.has(c.type ?? '') && !(c.type === 'Metaspace' && c.split === false) && !(c.type === 'ByteLevel' && c.use_regex === false);
  if (p.type === 'Sequence') {
    const parts = p.pretokenizers ?? [];
    return parts.some(splitter) && parts.every((c) => splitter(c) || FURTHER_SPLITTERS.has(c.type ?? ''));
  }
  return splitter(p);
}

/**
 * True when the tokens of `text.slice(0, i)`, for any `i` where `text[i]` is a U+0020 space,
 * are the leading tokens of `text` (before the closing special tokens): the normalizer maps
 * characters one by one, the pre-tokenizer splits at every space, no added token holds a space,
 * and the model works per pre-token (WordPiece, BPE, Unigram, WordLevel all do). Only then may
 * a prefix stand in for a long text. Anything else (a Precompiled or Replace normalizer, a
 * Split pre-tokenizer with an arbitrary pattern, none at all) is tokenized whole.
 */
export function prefixSafe(json: TokenizerJson): boolean {
  return normalizerIsLocal(json.normalizer) && splitsAtSpaces(json.pre_tokenizer)
    && !(json.added_tokens ?? []).some((t) => t.content.includes(' '));
}

/**
 * The base model's tokenizer (a Hugging Face tokenizer.json, run by @huggingface/tokenizers,
 * the same implementation transformers.js uses), with adapterhost's length policy.
 */
export class TextTokenizer {
  /** Characters run through the tokenizer since load (tests and the bench read it). */
  charsTokenized = 0;

  private constructor(private readonly tok: Tokenizer, readonly padId: number, readonly boundedPrefix: boolean) {}

  /** Loads tokenizer.json; the pad id is the `[PAD]`/`<pad>` added token, else 0. */
  static async load(file: string): Promise<TextTokenizer> {
    const json = JSON.parse(await readFile(file, 'utf8')) as TokenizerJson;
    const pad = json.added_tokens?.find((t) => t.content === '[PAD]' || t.content === '<pad>');
    const tok = new Tokenizer(json, {});
    return new TextTokenizer(tok, pad?.id ?? 0, prefixSafe(json) && closesWithSpecial(tok));
  }

  /**
   * Characters of `text` that a bounded encode with cap `maxTokens` tokenizes in its first
   * pass: all of it when prefixes are not safe for this tokenizer. (Cost estimate for callers
   * deciding where to tokenize.)
   */
  firstPassChars(text: string, maxTokens: number): number {
    return this.boundedPrefix ? Math.min(text.length, maxTokens * PREFIX_CHARS_PER_TOKEN) : text.length;
  }

  /**
   * Encodes one text. Longer than `maxTokens`: refused with INPUT_TOO_LONG naming the cap,
   * or, with `truncate`, cut to the first `maxTokens - 1` tokens plus the closing special token.
   *
   * A long text is not tokenized whole when a prefix settles the answer: when the tokens of a
   * prefix ending at a space already exceed `maxTokens`, so do the whole text's, and its first
   * `maxTokens - 1` are the prefix's (see {@link prefixSafe}). The first prefix is
   * `maxTokens × PREFIX_CHARS_PER_TOKEN` characters, doubled until it settles or covers the text;
   * an input that fits is always tokenized whole, so its ids never change.
   */
  encode(text: string, maxTokens: number, truncate: boolean, index = 0): TokenIds {
    const { ids, whole } = this.encodeBounded(text, maxTokens);
    if (ids.length <= maxTokens) return ids;
    if (!truncate) {
      const count = whole ? `${ids.length} tokens` : `more than ${maxTokens} tokens`;
      throw new AppError('INPUT_TOO_LONG', `input ${index} has ${count}; the limit is ${maxTokens} tokens per input (send "truncate": true to cut it)`);
    }
    return [...ids.slice(0, maxTokens - 1), ids[ids.length - 1]!];
  }

  /** The ids of `text`, or of a prefix of it whose ids already exceed `maxTokens` (`whole: false`). */
  private encodeBounded(text: string, maxTokens: number): { ids: TokenIds; whole: boolean } {
    if (this.boundedPrefix) {
      for (let chars = maxTokens * PREFIX_CHARS_PER_TOKEN; chars < text.length; chars *= 2) {
        const cut = text.lastIndexOf(' ', chars);
        if (cut <= 0) continue; // no space yet: one long word, try a longer prefix
        this.charsTokenized += cut;
        const ids = this.tok.encode(text.slice(0, cut)).ids;
        if (ids.length > maxTokens) return { ids, whole: false };
      }
    }
    this.charsTokenized += text.length;
    return { ids: this.tok.encode(text).ids, whole: true };
  }
}

/** True when every encoding ends with the same special token (the truncation keeps it last). */
function closesWithSpecial(tok: Tokenizer): boolean {
  const a = tok.encode('a').ids;
  const b = tok.encode('b c').ids;
  const last = a[a.length - 1];
  return last !== undefined && last === b[b.length - 1] && tok.get_added_tokens_decoder().get(last)?.special === true;
}
