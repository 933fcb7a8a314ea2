/**
 * The bounded tokenizer: a long input is tokenized only as far as the token cap needs, and the
 * ids (or the refusal) are always exactly what tokenizing the whole text gives.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Tokenizer } from '@huggingface/tokenizers';
import fc from 'fast-check';
import { AsyncTokenizer } from '../src/model/async-tokenizer.js';
import { PREFIX_CHARS_PER_TOKEN, prefixSafe, TextTokenizer } from '../src/model/tokenizer.js';
import { isAppError } from '../src/errors.js';
import { DEMO_MODEL_DIR } from './helpers/demo.js';
import { propertyParams } from './helpers/property-seed.js';

const DEMO_TOKENIZER = path.join(DEMO_MODEL_DIR, 'tokenizer.json');
const SEED = 20261128;

/** What encode() must return: the whole text tokenized, then the length policy. */
function reference(tok: Tokenizer, text: string, maxTokens: number, truncate: boolean): number[] | 'INPUT_TOO_LONG' {
  const ids = tok.encode(text).ids;
  if (ids.length <= maxTokens) return ids;
  if (!truncate) return 'INPUT_TOO_LONG';
  return [...ids.slice(0, maxTokens - 1), ids[ids.length - 1]!];
}

function bounded(tok: TextTokenizer, text: string, maxTokens: number, truncate: boolean): number[] | 'INPUT_TOO_LONG' {
  try {
    return tok.encode(text, maxTokens, truncate);
  } catch (e) {
    if (isAppError(e, 'INPUT_TOO_LONG')) return 'INPUT_TOO_LONG';
    throw e;
  }
}

/** Pieces that stress the cut: long words, space runs, other whitespace, combining marks, final sigma, CJK, added tokens. */
const FRAGMENTS = [
  'the', 'The', 'committee', 'budget', 'Das', 'schöner', 'ΣΟΦΟΣ', 'σοφος', 'naïve', 'e\u0301', 'n\u0303', '東京', '日本語', 'ü', '😀',
  ' ', ' ', ' ', '  ', '      ', '\t', '\n', '\r\n', '\u00a0', '\ufeff', '\u200b', '\u3000', '\u0301', '\u0000', '\u0007',
  '[MASK]', '[CLS]', '[SEP]', '[UNK]', '##ing', 'x'.repeat(120), 'y'.repeat(40), '...', "don't", '12345', '3.14', '-', ',', '!', '"', '(',
];
const text = fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 600 }).map((a) => a.join(''));

/** A tiny GPT-2-style byte-level BPE tokenizer.json (256 byte symbols and a few merges) with <s> … </s> around each text. */
function byteLevelJson(): unknown {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) if (!bs.includes(b)) { bs.push(b); cs.push(256 + n++); }
  const vocab: Record<string, number> = { '<s>': 0, '</s>': 1, '<pad>': 2 };
  for (const c of cs) vocab[String.fromCodePoint(c)] = Object.keys(vocab).length;
  const merges = ['Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ a', 'e r', 'Ġ s', 'o n', 'ĠĠ ĠĠ'];
  for (const m of merges) vocab[m.replace(' ', '')] = Object.keys(vocab).length;
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [special(0, '<s>'), special(1, '</s>'), special(2, '<pad>')],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 1], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

describe('bounded tokenizing', () => {
  let dir: string;
  const cases: Array<{ name: string; json: unknown; tok?: TextTokenizer; raw?: Tokenizer }> = [];
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adapterhost-tok-'));
    cases.push({ name: 'demo WordPiece (BertNormalizer, BertPreTokenizer)', json: JSON.parse(await readFile(DEMO_TOKENIZER, 'utf8')) });
    cases.push({ name: 'byte-level BPE (GPT-2 pre-tokenizer)', json: byteLevelJson() });
    for (const [i, c] of cases.entries()) {
      const file = path.join(dir, `tokenizer-${i}.json`);
      await writeFile(file, JSON.stringify(c.json));
      c.tok = await TextTokenizer.load(file);
      c.raw = new Tokenizer(c.json as object, {});
    }
  });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  test('both test tokenizers take the bounded path', () => {
    for (const c of cases) assert.equal(c.tok!.boundedPrefix, true, c.name);
  });

  test('property: ids (or the refusal) equal tokenizing the whole text, for every cap and both policies', (ctx) => {
    const params = propertyParams(ctx, SEED, 300);
    for (const c of cases) {
      fc.assert(fc.property(text, fc.integer({ min: 3, max: 48 }), fc.boolean(), (t, maxTokens, truncate) => {
        assert.deepEqual(bounded(c.tok!, t, maxTokens, truncate), reference(c.raw!, t, maxTokens, truncate), `${c.name}: ${JSON.stringify(t.slice(0, 200))}`);
      }), params);
    }
  });

  test('a long natural text is tokenized only as far as the cap needs', () => {
    const tok = cases[0]!.tok!;
    const sentence = 'The committee will vote on the new budget tomorrow and everyone is invited. ';
    const long = sentence.repeat(220); // ~17,000 characters, thousands of tokens
    const before = tok.charsTokenized;
    const ids = tok.encode(long, 128, true);
    assert.equal(ids.length, 128);
    assert.deepEqual(ids, reference(cases[0]!.raw!, long, 128, true));
    const used = tok.charsTokenized - before;
    assert.ok(used <= 128 * PREFIX_CHARS_PER_TOKEN, `tokenized ${used} of ${long.length} characters`);
    // Refused without truncate, naming the cap rather than a count it never computed.
    assert.throws(() => tok.encode(long, 128, false, 3), (e: unknown) => isAppError(e, 'INPUT_TOO_LONG') && /input 3 has more than 128 tokens/.test(e.message));
  });

  test('an input that fits is tokenized whole, however long (ids unchanged)', () => {
    const tok = cases[0]!.tok!;
    const padded = `Roses are red. ${' '.repeat(15_000)}Violets are blue.`;
    assert.deepEqual(tok.encode(padded, 128, false), reference(cases[0]!.raw!, padded, 128, false));
  });

  test('prefixSafe: only tokenizers whose prefixes at a space are safe', () => {
    const bert = { normalizer: { type: 'BertNormalizer' }, pre_tokenizer: { type: 'BertPreTokenizer' }, added_tokens: [{ id: 0, content: '[PAD]' }] };
    const rows: Array<[string, unknown, boolean]> = [
      ['BERT', bert, true],
      ['no normalizer, Whitespace', { normalizer: null, pre_tokenizer: { type: 'Whitespace' } }, true],
      ['Sequence of local normalizers', { ...bert, normalizer: { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'Lowercase' }, { type: 'StripAccents' }] } }, true],
      ['Metaspace', { ...bert, pre_tokenizer: { type: 'Metaspace', replacement: '▁' } }, true],
      ['Metaspace without split', { ...bert, pre_tokenizer: { type: 'Metaspace', split: false } }, false],
      ['ByteLevel without its regex', { ...bert, pre_tokenizer: { type: 'ByteLevel', use_regex: false } }, false],
      ['Sequence [Split, ByteLevel]', { ...bert, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split' }, { type: 'ByteLevel' }] } }, false],
      ['Sequence [WhitespaceSplit, Punctuation, Digits]', { ...bert, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Punctuation' }, { type: 'Digits' }] } }, true],
      ['no pre-tokenizer', { ...bert, pre_tokenizer: null }, false],
      ['Precompiled normalizer', { ...bert, normalizer: { type: 'Precompiled' } }, false],
      ['Replace normalizer', { ...bert, normalizer: { type: 'Sequence', normalizers: [{ type: 'Replace' }] } }, false],
      ['an added token with a space', { ...bert, added_tokens: [{ id: 9, content: 'new york' }] }, false],
    ];
    for (const [name, json, want] of rows) assert.equal(prefixSafe(json as Parameters<typeof prefixSafe>[0]), want, name);
  });
});

describe('AsyncTokenizer', () => {
  let tok: TextTokenizer;
  let enc: AsyncTokenizer;
  before(async () => {
    tok = await TextTokenizer.load(DEMO_TOKENIZER);
    enc = await new AsyncTokenizer({ tokenizer: tok, tokenizerPath: DEMO_TOKENIZER }).start();
  });
  after(async () => { await enc.close(); });

  test('small requests stay inline, long ones go to the thread; same ids either way', async () => {
    const short = ['hello world', 'Das Leben ist schön.'];
    const long = Array.from({ length: 8 }, (_, i) => `text ${i} ${'The committee will vote on the budget. '.repeat(60)}`);
    const c0 = { ...enc.counters };
    assert.deepEqual(await enc.encodeAll(short, 128, false), short.map((t) => tok.encode(t, 128, false)));
    assert.equal(enc.counters.inline, c0.inline + 1);
    assert.deepEqual(await enc.encodeAll(long, 128, true), long.map((t) => tok.encode(t, 128, true)));
    assert.equal(enc.counters.thread, c0.thread + 1);
  });

  test('errors from the thread keep their code and the input index', async () => {
    const texts = ['fine', 'The committee will vote on the budget. '.repeat(60)];
    await assert.rejects(enc.encodeAll(texts, 128, false), (e: unknown) => isAppError(e, 'INPUT_TOO_LONG') && /input 1 has more than 128 tokens/.test(e.message));
  });

  test('a tokenizer thread that dies fails its requests with 503 WORKER_RESTARTING; the next request starts a new one', async () => {
    // Inputs that fit in the cap but are long: tokenized whole, so the thread is busy for a while.
    const long = Array.from({ length: 32 }, (_, i) => `input ${i}${' '.repeat(16_000)}end`);
    const starts = enc.counters.threadStarts;
    const worker = await (enc as unknown as { worker: Promise<import('node:worker_threads').Worker> }).worker;
    const inFlight = enc.encodeAll(long, 128, true);
    await worker.terminate();
    await assert.rejects(inFlight, (e: unknown) => isAppError(e, 'WORKER_RESTARTING') && e.status === 503 && e.headers['Retry-After'] === '1');
    assert.deepEqual(await enc.encodeAll(long, 128, true), long.map((t) => tok.encode(t, 128, true)));
    assert.equal(enc.counters.threadStarts, starts + 1);
  });
});
