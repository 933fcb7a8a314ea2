#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { AppError } from './errors.js';
import type { ModelTask } from './model/manifest.js';
import { prepareModel } from './model/prepare.js';

const USAGE = `usage:
  adapterhost serve   [--port 8080] [--host 127.0.0.1] [--model-dir models/demo] [--adapters-dir adapters] ... (see README "Configuration")
  adapterhost prepare --model export.onnx --tokenizer tokenizer.json --targets query,value [--heads classifier]
                      [--max-rank 16] --name <base model name> [--task sequence-classification|feature-extraction|text-generation]
                      [--max-length 512] --out models/<name>/
    (text-generation: an optimum text-generation-with-past export; --targets defaults to every
     q/k/v/o/gate/up/down projection; tokenizer_config.json / generation_config.json beside the tokenizer give eos/bos/pad)`;

async function prepare(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' }, tokenizer: { type: 'string' }, targets: { type: 'string' }, heads: { type: 'string', default: '' },
      'max-rank': { type: 'string', default: '16' }, name: { type: 'string' }, alias: { type: 'string', multiple: true },
      task: { type: 'string', default: 'sequence-classification' }, 'max-length': { type: 'string', default: '512' },
      out: { type: 'string' }, 'embedding-output': { type: 'string' },
    },
  });
  const problems: string[] = [];
  const tasks = ['sequence-classification', 'feature-extraction', 'text-generation'];
  for (const k of ['model', 'tokenizer', 'name', 'out'] as const) if (!values[k]) problems.push(`--${k} is required`);
  if (!values.targets && values.task !== 'text-generation') problems.push('--targets is required (it defaults to all projections only for --task text-generation)');
  if (!tasks.includes(values.task!)) problems.push(`--task must be one of ${tasks.join(', ')}`);
  if (problems.length) throw new AppError('INVALID_CONFIG', `prepare: ${problems.join('; ')}\n${USAGE}`, { problems });
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const manifest = await prepareModel({
    modelPath: values.model!, tokenizerPath: values.tokenizer!, targets: list(values.targets ?? ''), heads: list(values.heads ?? ''),
    maxRank: Number(values['max-rank']), baseModel: values.name!, aliases: values.alias ?? [],
    task: values.task as ModelTask, maxLength: Number(values['max-length']),
    outDir: values.out!, ...(values['embedding-output'] ? { embeddingOutput: values['embedding-output'] } : {}),
  });
  console.log(`prepared ${manifest.baseModel}: ${manifest.loraSlots.length} LoRA slots (${manifest.targets.join(', ')}), ${manifest.heads.length} head slot(s), max rank ${manifest.maxRank} → ${values.out}`);
}

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  if (cmd === 'prepare') return prepare(rest);
  if (cmd === 'serve' || cmd === undefined) {
    const { serveMain } = await import('./serve.js');
    return serveMain(rest);
  }
  console.error(USAGE);
  process.exitCode = 2;
}

main().catch((e: unknown) => {
  if (e instanceof AppError) console.error(`adapterhost: ${e.message}`);
  else console.error(e);
  process.exitCode = 1;
});
