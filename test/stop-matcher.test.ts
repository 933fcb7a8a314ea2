import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StopMatcher } from '../src/generation/stop-matcher.js';
import { propertyParams } from './helpers/property-seed.js';

interface Row {
  name: string;
  stops: string[];
  pushes: string[];
  /** Each push's emit. */
  emits: string[];
  /** The push that stops (index), or -1. */
  stopsAt: number;
  /** What flush returns after the pushes. */
  flushed: string;
  matched?: string;
}

const rows: Row[] = [
  { name: 'no stops: everything passes at once', stops: [], pushes: ['a', 'bc'], emits: ['a', 'bc'], stopsAt: -1, flushed: '' },
  { name: 'no match: text passes, no hold', stops: ['STOP'], pushes: ['hello ', 'world'], emits: ['hello ', 'world'], stopsAt: -1, flushed: '' },
  { name: 'stop inside one push', stops: ['\n\n'], pushes: ['one\n\ntwo'], emits: ['one'], stopsAt: 0, flushed: '', matched: '\n\n' },
  { name: 'stop at the very start', stops: ['x'], pushes: ['xyz'], emits: [''], stopsAt: 0, flushed: '' },
  { name: 'holds only the tail that begins a stop', stops: ['abc'], pushes: ['xxab', 'd'], emits: ['xx', 'abd'], stopsAt: -1, flushed: '' },
  { name: 'stop straddling four pushes', stops: ['<|im_end|>'], pushes: ['Ciao<', '|im', '_en', 'd|>dopo'], emits: ['Ciao', '', '', ''], stopsAt: 3, flushed: '', matched: '<|im_end|>' },
  { name: 'false start then the real stop', stops: ['abc'], pushes: ['ab', 'ab', 'c'], emits: ['', 'ab', ''], stopsAt: 2, flushed: '' },
  { name: 'self-overlapping stop (KMP border)', stops: ['aab'], pushes: ['a', 'a', 'a', 'b'], emits: ['', '', 'a', ''], stopsAt: 3, flushed: '' },
  { name: 'held tail released by flush when the text ends', stops: ['END'], pushes: ['the E', 'N'], emits: ['the ', ''], stopsAt: -1, flushed: 'EN' },
  { name: 'several stops: the first to complete wins', stops: ['abcd', 'bc'], pushes: ['xabcd'], emits: ['xa'], stopsAt: 0, flushed: '', matched: 'bc' },
  { name: 'several stops ending together: the longest wins', stops: ['cd', 'bcd'], pushes: ['ab', 'cd'], emits: ['a', ''], stopsAt: 1, flushed: '', matched: 'bcd' },
  { name: 'several stops: the hold is the longest possible beginning', stops: ['xyz', 'yq'], pushes: ['axy'], emits: ['a'], stopsAt: -1, flushed: 'xy' },
  { name: 'pushes after the stop give nothing', stops: ['.'], pushes: ['Fine.', ' More', 'text'], emits: ['Fine', '', ''], stopsAt: 0, flushed: '' },
  { name: 'unicode: accented stop split across pushes', stops: ['è finito'], pushes: ['Il film è', ' fin', 'ito!'], emits: ['Il film ', '', ''], stopsAt: 2, flushed: '' },
  { name: 'unicode: emoji stop', stops: ['🛑'], pushes: ['va bene 😀', ' 🛑 no'], emits: ['va bene 😀', ' '], stopsAt: 1, flushed: '' },
  { name: 'duplicate stops are fine', stops: ['z', 'z'], pushes: ['az'], emits: ['a'], stopsAt: 0, flushed: '' },
  { name: 'empty pushes', stops: ['ab'], pushes: ['', 'a', '', 'b'], emits: ['', '', '', ''], stopsAt: 3, flushed: '' },
];

test('stop matcher rows', () => {
  for (const r of rows) {
    const m = new StopMatcher(r.stops);
    const got = r.pushes.map((p) => m.push(p));
    assert.deepEqual(got.map((g) => g.emit), r.emits, `${r.name}: emits`);
    assert.deepEqual(got.map((g) => g.stopped), r.pushes.map((_, i) => r.stopsAt >= 0 && i >= r.stopsAt), `${r.name}: stopped`);
    assert.equal(m.stopped, r.stopsAt >= 0, r.name);
    if (r.matched !== undefined) assert.equal(m.matched, r.matched, `${r.name}: matched`);
    if (r.stopsAt < 0) assert.equal(m.matched, null);
    assert.equal(m.flush(), r.flushed, `${r.name}: flush`);
    assert.equal(m.flush(), '', `${r.name}: second flush`);
  }
});

test('an empty stop string is a RangeError', () => {
  assert.throws(() => new StopMatcher(['ok', '']), RangeError);
});

/** The answer by brute force: the text up to the first completed stop (the longest among those ending there). */
function reference(text: string, stops: string[]): { out: string; stopped: boolean } {
  for (let e = 1; e <= text.length; e++) {
    const seen = text.slice(0, e);
    const ending = stops.filter((s) => seen.endsWith(s));
    if (ending.length) return { out: text.slice(0, e - Math.max(...ending.map((s) => s.length))), stopped: true };
  }
  return { out: text, stopped: false };
}

/** The longest tail of `seen` that is a proper beginning of some stop. */
function longestHold(seen: string, stops: string[]): number {
  for (let k = Math.min(seen.length, Math.max(0, ...stops.map((s) => s.length - 1))); k > 0; k--) {
    const tail = seen.slice(seen.length - k);
    if (stops.some((s) => s.length > k && s.startsWith(tail))) return k;
  }
  return 0;
}

test('any split of the text gives the brute-force answer, holding back no more than needed', (t) => {
  const alphabet = fc.constantFrom('a', 'b', 'c', 'à', '😀', ' ');
  const str = (min: number, max: number) => fc.array(alphabet, { minLength: min, maxLength: max }).map((a) => a.join(''));
  fc.assert(fc.property(
    str(0, 40),
    fc.array(str(1, 5), { minLength: 1, maxLength: 4 }),
    fc.array(fc.nat(), { maxLength: 10 }),
    (text, stops, cuts) => {
      const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b);
      const pieces: string[] = [];
      let prev = 0;
      for (const p of [...points, text.length]) { pieces.push(text.slice(prev, p)); prev = p; }
      const m = new StopMatcher(stops);
      let out = '';
      let seen = '';
      let stopped = false;
      for (const piece of pieces) {
        const r = m.push(piece);
        out += r.emit;
        seen += piece;
        if (r.stopped) { stopped = true; break; }
        // Everything but the longest tail that could begin a stop has been released.
        assert.equal(out.length, seen.length - longestHold(seen, stops), `after ${JSON.stringify(seen)}`);
      }
      out += m.flush();
      const want = reference(text, stops);
      assert.equal(stopped, want.stopped);
      assert.equal(out, want.out);
    },
  ), propertyParams(t, 20261128, 500));
});
