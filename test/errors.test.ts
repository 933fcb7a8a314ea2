import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppError, clip, echo, ECHO_CHARS, MAX_LISTED_PROBLEMS, MAX_MESSAGE_CHARS, throwIfProblems } from '../src/errors.js';

test('clip and echo keep client input short', () => {
  assert.equal(clip('short'), 'short');
  assert.equal(clip('x'.repeat(1000)), `${'x'.repeat(ECHO_CHARS)}…`);
  assert.equal(echo('a"b'), '"a\\"b"');
  assert.equal(echo([1, 2, 3], 5), '[1,2,…');
  // Deeply nested values (JSON.stringify overflows the stack on them) never throw.
  let deep: unknown = [];
  for (let i = 0; i < 100_000; i++) deep = [deep];
  assert.equal(echo(deep), '(an array of 1)');
  assert.equal(echo(undefined), 'undefined');
});

test('an AppError message is capped whatever its caller put in it', () => {
  const e = new AppError('BAD_REQUEST', `shape ${'1,'.repeat(200_000)}`);
  assert.ok(e.message.length <= MAX_MESSAGE_CHARS + 40, `${e.message.length} characters`);
  assert.match(e.message, /… \(\d+ more characters\)$/);
  assert.equal(new AppError('BAD_REQUEST', 'fine').message, 'fine');
});

test('throwIfProblems lists the first problems and counts the rest', () => {
  const problems = Array.from({ length: 1000 }, (_, i) => `problem ${i}`);
  assert.throws(() => throwIfProblems('INVALID_UPLOAD', 'bad', problems), (e: unknown) => {
    assert.ok(e instanceof AppError);
    assert.match(e.message, new RegExp(`\\(${MAX_LISTED_PROBLEMS}\\) problem ${MAX_LISTED_PROBLEMS - 1}; … and ${1000 - MAX_LISTED_PROBLEMS} more$`));
    assert.doesNotMatch(e.message, new RegExp(`problem ${MAX_LISTED_PROBLEMS}\\b`));
    assert.equal(e.problems.length, 1000);
    return true;
  });
});
