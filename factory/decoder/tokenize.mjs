// Tokenize the decoder corpus with the tokenizer the server uses (@huggingface/tokenizers reading
// tokenizer.json), so training ids are serving ids.
// usage: node factory/decoder/tokenize.mjs <tokenizer.json> <descriptions.jsonl> <build dir>
//   → <build>/pretrain.ids.json  {train: [[ids]], validation: [[ids]]}  (plain text documents)
//   → <build>/task-<id>.json     [{split, pkg, input, target, prompt_ids, answer_ids}]  (chat format)
import { readFileSync, writeFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import { TASKS, chatPrompt, inputCut } from './tasks.mjs';

const [tokPath, src, out] = process.argv.slice(2);
const tok = new Tokenizer(JSON.parse(readFileSync(tokPath, 'utf8')), {});
const rows = readFileSync(src, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const enc = (t) => tok.encode(t, { add_special_tokens: false }).ids;
const docs = { train: [], validation: [] };
for (const r of rows) {
  if (!(r.split in docs)) continue;
  docs[r.split].push(enc(`${r.en_short}\n${r.en_long}`));
  if (r.it_short) docs[r.split].push(enc(`${r.it_short}\n${r.it_long}`));
}
writeFileSync(`${out}/pretrain.ids.json`, JSON.stringify(docs));
console.log('train docs', docs.train.length, 'validation docs', docs.validation.length,
  'train tokens', docs.train.reduce((a, d) => a + d.length + 2, 0));
for (const t of TASKS) {
  const ex = [];
  for (const r of rows) {
    const input = r[t.input], target = r[t.target];
    if (!input || !target) continue;
    const cut = inputCut(input);
    const prompt_ids = enc(chatPrompt(cut));
    const answer_ids = enc(`${target}<|im_end|>`);
    if (prompt_ids.length + answer_ids.length > 256) continue;
    ex.push({ split: r.split, pkg: r.pkg, input: cut, target, prompt_ids, answer_ids });
  }
  writeFileSync(`${out}/task-${t.id}.json`, JSON.stringify(ex));
  console.log(t.id, Object.fromEntries(['train', 'validation', 'test'].map((s) => [s, ex.filter((e) => e.split === s).length])));
}
