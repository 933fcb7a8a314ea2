// Tokenize the decoder corpus with the tokenizer the server uses (@huggingface/tokenizers reading
// tokenizer.json), so training ids are serving ids.
// usage: node factory/decoder/tokenize.mjs <tokenizer.json> <descriptions.jsonl> <build dir>
//   → <build>/pretrain.ids.json  {train: [[ids]], validation: [[ids]]}  (phase 1: one document per language)
//   → <build>/pretrain2.ids.json (phase 2: one bilingual document per package, see packageDoc)
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

/** A stable 32-bit hash (FNV-1a) of a package name: picks each document's order reproducibly. */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
/** Phase 2: one document per package, the English part and then the Italian part when the package
 * has one, each part `short\nlong` or `long\nshort` (by the hash), long texts cut as task inputs are
 * (shorter in bilingual documents, so a document fits one 256-token window). The base sees names
 * carried from a long text to its short one and from English to Italian before any adapter does. */
function packageDoc(r) {
  const h = fnv1a(r.pkg);
  const max = r.it_short ? 320 : 600;
  const part = (short, long, bit) => {
    const cut = inputCut(long, max);
    return !cut ? short : (h >>> bit) & 1 ? `${cut}\n${short}` : `${short}\n${cut}`;
  };
  const en = part(r.en_short, r.en_long, 0);
  return r.it_short ? `${en}\n\n${part(r.it_short, r.it_long ?? '', 1)}` : en;
}
const docs2 = { train: [], validation: [] };
for (const r of rows) if (r.split in docs2) docs2[r.split].push(enc(packageDoc(r)));
writeFileSync(`${out}/pretrain2.ids.json`, JSON.stringify(docs2));
const lens = docs2.train.map((d) => d.length + 2).sort((a, b) => a - b);
console.log('phase 2 train docs', lens.length, 'tokens', lens.reduce((a, b) => a + b, 0),
  'median', lens[lens.length >> 1], 'p95', lens[Math.floor(lens.length * 0.95)], 'over 257', lens.filter((n) => n > 257).length);
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
