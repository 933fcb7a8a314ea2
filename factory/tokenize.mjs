// Tokenize the factory's JSONL files with the same tokenizer the server uses
// (@huggingface/tokenizers reading tokenizer.json), so training ids == serving ids.
// usage: node factory/tokenize.mjs <tokenizer.json> <maxLen> <in.jsonl> <out.json> [...]
import { readFileSync, writeFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';

const [tokPath, maxLenArg, ...files] = process.argv.slice(2);
const maxLen = Number(maxLenArg);
const tok = new Tokenizer(JSON.parse(readFileSync(tokPath, 'utf8')), {});
for (let i = 0; i < files.length; i += 2) {
  const rows = readFileSync(files[i], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ids = rows.map((r) => {
    const e = tok.encode(r.text).ids;
    return e.length <= maxLen ? e : [...e.slice(0, maxLen - 1), e[e.length - 1]];
  });
  writeFileSync(files[i + 1], JSON.stringify(ids));
  console.log(files[i], rows.length, 'rows');
}
