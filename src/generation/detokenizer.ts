import type { Tokenizer } from '@huggingface/tokenizers';

/** Options of {@link IncrementalDetokenizer}. */
export interface DetokenizerOptions {
  /** Leave special tokens (`<|eos|>`, `<|im_end|>` …) out of the text. Default true. */
  skipSpecial?: boolean;
}

/** What a decode of bytes that stop inside a UTF-8 character ends with. */
const REPLACEMENT = '\uFFFD';

/**
 * Turns a sequence's tokens into text as they arrive, never emitting half a character.
 *
 * A byte-level BPE token can hold part of a UTF-8 character (an Italian "è" is often two
 * tokens), and a decoder may change a token's text by what precedes it (Metaspace drops the
 * first space). So, as TGI and vLLM do, each push decodes two short windows that start at
 * `prefixOffset`: the tokens already emitted since then (`prefixOffset..readOffset`) and the
 * same plus the new ones. When the longer text has grown and does not end in U+FFFD, the
 * difference is emitted and the window moves up; otherwise the tokens wait for the next push.
 * Each push decodes only a few tokens, never the whole sequence.
 *
 * Every decode is done with `clean_up_tokenization_spaces: false` (the clean-up rewrites text
 * across token boundaries, which no stream can follow), so the pushes and the flush, joined,
 * equal `tok.decode(ids, { skip_special_tokens, clean_up_tokenization_spaces: false })`; use
 * {@link text} for a non-streamed answer so that it equals the streamed one.
 */
export class IncrementalDetokenizer {
  private readonly tok: Tokenizer;
  private readonly skipSpecial: boolean;
  /** Special tokens left out when `skipSpecial` (they never enter the window). */
  private readonly skipped: ReadonlySet<number>;
  /** Every token pushed, but the skipped ones. */
  private readonly ids: number[] = [];
  private pushed = 0;
  /** Start of the window: the first token of the text emitted last. */
  private prefixOffset = 0;
  /** End of what has been emitted: tokens from here on are pending. */
  private readOffset = 0;
  /** Text emitted so far, in pieces (joined on demand). */
  private readonly pieces: string[] = [];

  /**
   * @param tok the base's tokenizer
   * @param opts see {@link DetokenizerOptions}
   */
  constructor(tok: Tokenizer, opts: DetokenizerOptions = {}) {
    this.tok = tok;
    this.skipSpecial = opts.skipSpecial ?? true;
    this.skipped = this.skipSpecial ? skippedSpecialIds(tok) : new Set();
  }

  /** Tokens pushed so far. */
  get tokenCount(): number {
    return this.pushed;
  }

  /** All text emitted so far (by pushes and the flush). */
  get text(): string {
    if (this.pieces.length > 1) this.pieces.splice(0, this.pieces.length, this.pieces.join(''));
    return this.pieces[0] ?? '';
  }

  /**
   * Adds one token; returns the text it completes ("" while it, and any before it, are only
   * part of a character or decode to nothing).
   */
  push(tokenId: number): string {
    this.pushed++;
    // A skipped token decodes to nothing wherever it is: keeping it out of the window keeps a run
    // of them (a model repeating <|pad|>) from growing the window.
    if (this.skipped.has(tokenId)) return '';
    this.ids.push(tokenId);
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const full = this.decode(this.prefixOffset, this.ids.length);
    if (full.length <= prefix.length || full.endsWith(REPLACEMENT)) return '';
    const delta = full.slice(prefix.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.pieces.push(delta);
    return delta;
  }

  /**
   * The text of the tokens still pending (an incomplete character decodes as U+FFFD, as a
   * whole-sequence decode would); call it once at the end of the sequence.
   */
  flush(): string {
    if (this.readOffset === this.ids.length) return '';
    const prefix = this.decode(this.prefixOffset, this.readOffset);
    const full = this.decode(this.prefixOffset, this.ids.length);
    const delta = full.slice(prefix.length);
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    if (delta) this.pieces.push(delta);
    return delta;
  }

  private decode(from: number, to: number): string {
    if (to <= from) return '';
    return this.tok.decode(this.ids.slice(from, to), { skip_special_tokens: this.skipSpecial, clean_up_tokenization_spaces: false });
  }
}

/**
 * The ids `decode(…, { skip_special_tokens: true })` drops: the tokenizer's added tokens that
 * decode to text alone but to nothing when skipping.
 */
function skippedSpecialIds(tok: Tokenizer): Set<number> {
  const out = new Set<number>();
  for (const id of tok.get_added_tokens_decoder().keys()) {
    if (tok.decode([id], { skip_special_tokens: true, clean_up_tokenization_spaces: false }) === ''
      && tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false }) !== '') out.add(id);
  }
  return out;
}
