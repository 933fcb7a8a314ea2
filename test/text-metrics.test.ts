import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bleu, chrF, firstSentence, rougeL, words } from '../bench/text-metrics.js';

describe('text metrics', () => {
  it('ROUGE-L F1 from the longest common subsequence of words', () => {
    assert.equal(rougeL('the cat sat on the mat', 'the cat sat on the mat'), 1);
    assert.equal(rougeL('', 'anything'), 0);
    assert.equal(rougeL('dog', 'cat'), 0);
    // LCS("police killed the gunman", "police kill the gunman") = 3 (police, the, gunman): P = R = 3/4
    assert.ok(Math.abs(rougeL('police killed the gunman', 'police kill the gunman') - 0.75) < 1e-12);
    // LCS = 2 of candidate 2 words and reference 4 words: P = 1, R = 0.5, F = 2/3
    assert.ok(Math.abs(rougeL('Library files', 'shared LIBRARY, development files') - 2 / 3) < 1e-12);
    assert.deepEqual(words('Città, più-già!'), ['città', 'più', 'già']);
  });

  it('chrF: 100 for identical text, 0 for disjoint characters, between for overlap', () => {
    assert.equal(chrF(['libreria condivisa'], ['libreria condivisa']), 100);
    assert.equal(chrF(['xyz'], ['abc']), 0);
    const partial = chrF(['shared library'], ['libreria condivisa']);
    assert.ok(partial > 0 && partial < 50, String(partial));
    assert.equal(chrF(['a b'], ['ab']), 100, 'spaces are ignored');
  });

  it('BLEU-4: 100 for identical text, 0 without a 4-gram match, brevity penalty for short output', () => {
    assert.ok(Math.abs(bleu(['the cat is on the mat'], ['the cat is on the mat']) - 100) < 1e-9);
    assert.equal(bleu(['a b c'], ['d e f']), 0);
    const short = bleu(['the cat is on'], ['the cat is on the mat']);
    assert.ok(Math.abs(short - 100 * Math.exp(1 - 6 / 4)) < 1e-9, String(short));
  });

  it('the trivial summary is the first sentence cut to 12 words', () => {
    assert.equal(firstSentence('Short one. Second sentence here.'), 'Short one.');
    assert.equal(firstSentence('one two three four five six seven eight nine ten eleven twelve thirteen.'), 'one two three four five six seven eight nine ten eleven twelve');
    assert.equal(firstSentence('First line\nsecond line'), 'First line');
  });
});
