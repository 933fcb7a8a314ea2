import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { AppError } from '../src/errors.js';
import { compileChatTemplate, renderChat, type ChatMessage, type ChatTemplateVars } from '../src/generation/chat-template.js';
import { ROOT } from './helpers/demo.js';

const EXPORT = path.join(ROOT, 'test/fixtures/tiny-llama/export');
const config = JSON.parse(readFileSync(path.join(EXPORT, 'tokenizer_config.json'), 'utf8')) as { chat_template: string; bos_token: string; eos_token: string };
const DEMO = config.chat_template;
const vars: ChatTemplateVars = { bos_token: config.bos_token, eos_token: config.eos_token, add_generation_prompt: true };

/** A Llama-2-style template that insists on alternating roles, as many published ones do. */
const STRICT = "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] | trim + ' [/INST]' }}{% else %}{{ ' ' + message['content'] | trim + ' ' + eos_token }}{% endif %}{% endfor %}";

test('the demo template: one user message', () => {
  assert.equal(renderChat(DEMO, [{ role: 'user', content: 'Hello' }], vars), '<|bos|><|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
});

test('rendering rows', () => {
  const rows: Array<[string, string, ChatMessage[], Partial<ChatTemplateVars>, string]> = [
    ['system + user + assistant, no generation prompt', DEMO,
      [{ role: 'system', content: 'Traduci in italiano.' }, { role: 'user', content: 'Good morning' }, { role: 'assistant', content: 'Buongiorno' }],
      { add_generation_prompt: false },
      '<|bos|><|im_start|>system\nTraduci in italiano.<|im_end|>\n<|im_start|>user\nGood morning<|im_end|>\n<|im_start|>assistant\nBuongiorno<|im_end|>\n'],
    ['bos_token null renders as nothing', DEMO, [{ role: 'user', content: 'Hi' }], { bos_token: null }, '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'],
    ['no messages', DEMO, [], {}, '<|bos|><|im_start|>assistant\n'],
    ['unicode and newlines pass through', DEMO, [{ role: 'user', content: 'Perché è così?\n😀' }], {}, '<|bos|><|im_start|>user\nPerché è così?\n😀<|im_end|>\n<|im_start|>assistant\n'],
    ['message text is data, never template code', DEMO, [{ role: 'user', content: "{{ 7 * 7 }}{% raise_exception('x') %}" }], {}, "<|bos|><|im_start|>user\n{{ 7 * 7 }}{% raise_exception('x') %}<|im_end|>\n<|im_start|>assistant\n"],
    ['a strict template: alternating roles', STRICT, [{ role: 'user', content: ' Ciao ' }, { role: 'assistant', content: 'Salve' }, { role: 'user', content: 'Come va?' }], {},
      '<|bos|>[INST] Ciao [/INST] Salve <|eos|><|bos|>[INST] Come va? [/INST]'],
  ];
  for (const [name, tpl, messages, v, want] of rows) {
    assert.equal(renderChat(tpl, messages, { ...vars, ...v }), want, name);
  }
});

test('the rendered prompt tokenizes with the special tokens as single ids', () => {
  const tok = new Tokenizer(JSON.parse(readFileSync(path.join(EXPORT, 'tokenizer.json'), 'utf8')), config);
  const ids = tok.encode(renderChat(DEMO, [{ role: 'user', content: 'Hello' }], vars), { add_special_tokens: false }).ids;
  assert.deepEqual(ids.slice(0, 2), [1, 3]);
  assert.equal(ids.filter((i: number) => i === 3).length, 2);
  assert.equal(ids.filter((i: number) => i === 4).length, 1);
});

test("a template's raise_exception is a BAD_REQUEST carrying its message", () => {
  assert.throws(() => renderChat(STRICT, [{ role: 'assistant', content: 'first' }], vars), (e: unknown) => {
    assert.ok(e instanceof AppError);
    assert.equal(e.code, 'BAD_REQUEST');
    assert.equal(e.status, 400);
    assert.match(e.message, /Conversation roles must alternate/);
    return true;
  });
  assert.throws(() => renderChat('{{ messages[0].content.nope() }}', [{ role: 'user', content: 'x' }], vars), (e: unknown) => e instanceof AppError && e.code === 'BAD_REQUEST');
});

test('a template that does not parse is the model\'s fault (INVALID_MODEL), found at compile time', () => {
  for (const bad of ['{% if %}', '{% for m in messages %}', '{{ unclosed']) {
    assert.throws(() => compileChatTemplate(bad), (e: unknown) => e instanceof AppError && e.code === 'INVALID_MODEL' && /chat template does not parse/.test(e.message), bad);
    assert.throws(() => renderChat(bad, [], vars), (e: unknown) => e instanceof AppError && e.code === 'INVALID_MODEL', bad);
  }
  assert.equal(compileChatTemplate(DEMO), compileChatTemplate(DEMO), 'parsed once, then cached');
});
