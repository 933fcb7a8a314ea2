import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { Tokenizer } from '@huggingface/tokenizers';
import { IncrementalDetokenizer } from '../src/generation/detokenizer.js';
import { ROOT } from './helpers/demo.js';
import { propertyParams } from './helpers/property-seed.js';

/** The tiny decoder's byte-level BPE tokenizer (8192 tokens; <|pad|> 0 … <|im_end|> 4). */
const EXPORT = path.join(ROOT, 'test/fixtures/tiny-llama/export');
const tok = new Tokenizer(JSON.parse(readFileSync(path.join(EXPORT, 'tokenizer.json'), 'utf8')), {});
const [PAD, BOS, EOS, IM_START, IM_END] = [0, 1, 2, 3, 4];

const encode = (s: string) => tok.encode(s, { add_special_tokens: false }).ids;
const decodeAll = (ids: number[], skip: boolean) => (ids.length ? tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false }) : '');

/** Pushes every id; returns each push's text and the flush's. */
function stream(ids: number[], skipSpecial = true): { pushes: string[]; flushed: string; d: IncrementalDetokenizer } {
  const d = new IncrementalDetokenizer(tok, { skipSpecial });
  const pushes = ids.map((id: number) => d.push(id));
  return { pushes, flushed: d.flush(), d };
}

test('Italian accents split across byte tokens: no push ever holds half a character', () => {
  const text = 'Però è già là: perciò più caffè, Ù e À!';
  const ids = encode(text);
  // The fixture really does split some of these characters (else the test proves nothing).
  assert.ok(ids.some((id: number) => tok.decode([id]).includes('\uFFFD')), 'expected a token that is part of a character');
  const { pushes, flushed, d } = stream(ids);
  for (const p of pushes) assert.ok(!p.includes('\uFFFD'), `a push held a broken character: ${JSON.stringify(p)}`);
  assert.ok(pushes.some((p) => p === ''), 'some tokens must wait for the rest of their character');
  assert.equal(flushed, '');
  assert.equal(pushes.join(''), text);
  assert.equal(d.text, text);
  assert.equal(d.tokenCount, ids.length);
});

test('an emoji split over four byte tokens comes out whole, once', () => {
  const ids = encode('😀');
  assert.ok(ids.length > 1, `expected several tokens, got ${ids.length}`);
  const { pushes } = stream(ids);
  assert.deepEqual(pushes.filter((p) => p !== ''), ['😀']);
  assert.equal(pushes.at(-1), '😀');
});

test('flush gives what is still pending: an unfinished character decodes as U+FFFD, as a whole decode does', () => {
  const ids = encode(' à');
  assert.equal(ids.length, 2, 'the fixture splits " à" in two');
  const d = new IncrementalDetokenizer(tok);
  assert.equal(d.push(ids[0]!), '');
  const rest = d.flush();
  assert.equal(rest, decodeAll([ids[0]!], true));
  assert.match(rest, /\uFFFD$/);
  assert.equal(d.flush(), '', 'a second flush has nothing left');
  assert.equal(new IncrementalDetokenizer(tok).flush(), '', 'nothing pushed, nothing flushed');
});

test('special tokens: skipped by default, spelled out with skipSpecial false', () => {
  const ids = [BOS, IM_START, ...encode('user\nCiao'), IM_END, EOS, PAD, PAD];
  const rows: Array<[boolean, string]> = [
    [true, 'user\nCiao'],
    [false, '<|bos|><|im_start|>user\nCiao<|im_end|><|eos|><|pad|><|pad|>'],
  ];
  for (const [skip, want] of rows) {
    const { pushes, flushed, d } = stream(ids, skip);
    assert.equal(pushes.join('') + flushed, want, `skipSpecial ${skip}`);
    assert.equal(d.text, want);
    assert.equal(want, decodeAll(ids, skip));
  }
  assert.equal(new IncrementalDetokenizer(tok).push(EOS), '');
});

test('pushes + flush equal tok.decode of the whole sequence (random Italian / emoji text, special tokens mixed in)', (t) => {
  const pieces = ['a', 'e', 'i', 'o', 'u', 'à', 'è', 'é', 'ì', 'ò', 'ù', 'À', 'È', 'perché', ' così', ' ', '  ', '\n', ',', '.', "'", '’', '«', '»', '😀', '🇮🇹', '👨‍👩‍👧', 'ß', '€', '中', 'q', 'gli', ' già'];
  const text = fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((a) => a.join(''));
  fc.assert(fc.property(
    text,
    fc.array(fc.tuple(fc.nat(), fc.constantFrom(PAD, BOS, EOS, IM_START, IM_END)), { maxLength: 4 }),
    fc.boolean(),
    (s, specials, skip) => {
      const ids = encode(s);
      for (const [at, id] of specials) ids.splice(at % (ids.length + 1), 0, id);
      const { pushes, flushed, d } = stream(ids, skip);
      const want = decodeAll(ids, skip);
      assert.equal(pushes.join('') + flushed, want);
      assert.equal(d.text, want);
      // Valid text never streams a replacement character (a special token spelled out in the
      // middle of a character's bytes breaks it, in a whole decode too).
      if (skip || specials.length === 0) {
        for (const p of pushes) assert.ok(!p.includes('\uFFFD'), JSON.stringify(p));
        assert.equal(flushed, '');
      }
    },
  ), propertyParams(t, 20261128, 300));
});

test('each push decodes a short window, not the whole sequence (linear work)', () => {
  let decoded = 0;
  // The real tokenizer with its decode counted.
  const counting = Object.create(tok) as Tokenizer;
  counting.decode = (ids: number[] | bigint[], opts?: Parameters<Tokenizer['decode']>[1]) => { decoded += ids.length; return tok.decode(ids, opts); };
  const ids = encode('Nel mezzo del cammin di nostra vita mi ritrovai per una selva oscura, ché la diritta via era smarrita. '.repeat(20));
  const runOfSpecials = Array<number>(500).fill(PAD);
  const all = [...ids, ...runOfSpecials, ...encode(' Ahi quanto a dir qual era è cosa dura')];
  const d = new IncrementalDetokenizer(counting);
  const out = all.map((id) => d.push(id)).join('') + d.flush();
  assert.equal(out, decodeAll(all, true));
  assert.ok(decoded < 8 * all.length, `decoded ${decoded} tokens for ${all.length} pushed`);
});
