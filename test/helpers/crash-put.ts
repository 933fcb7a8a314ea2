/**
 * Child process for the store's crash test: puts ever newer versions of one adapter in a loop
 * until it is killed. Prints `ready` after init() and `done <version>` after each put resolves.
 *
 * Usage: node dist/test/helpers/crash-put.js <storeDir> <id> <firstVersion>
 */
import { fileURLToPath } from 'node:url';
import { AdapterStore } from '../../src/adapter/store.js';

/** Files of `version`: the config names the version and model size; every uint32 of the model is the version. */
export function versionFiles(version: number): { config: Buffer; model: Buffer } {
  const modelBytes = 2 * 1024 * 1024 + (version % 8) * 256 * 1024; // 2–3.75 MiB
  const model = Buffer.alloc(modelBytes);
  for (let i = 0; i < modelBytes; i += 4) model.writeUInt32LE(version >>> 0, i);
  const config = Buffer.from(JSON.stringify({ peft_type: 'LORA', version, modelBytes }));
  return { config, model };
}

/** The version `files` belong to, or a reason they are not one whole version. */
export function checkVersionFiles(files: { config: Buffer; model: Buffer }): { version: number } | { problem: string } {
  let cfg: { version?: unknown; modelBytes?: unknown };
  try {
    cfg = JSON.parse(files.config.toString('utf8')) as typeof cfg;
  } catch {
    return { problem: 'config is not JSON' };
  }
  if (typeof cfg.version !== 'number' || cfg.modelBytes !== files.model.length) return { problem: `config ${files.config.toString()} does not describe a ${files.model.length}-byte model` };
  for (let i = 0; i < files.model.length; i += 4) {
    if (files.model.readUInt32LE(i) !== cfg.version) return { problem: `model word at ${i} is ${files.model.readUInt32LE(i)}, config says version ${cfg.version}` };
  }
  return { version: cfg.version };
}

async function main(): Promise<void> {
  const [dir, id, first] = process.argv.slice(2);
  const store = new AdapterStore({ dir, log: { warn: () => undefined } });
  await store.init();
  process.stdout.write('ready\n');
  for (let v = Number(first); ; v++) {
    await store.put(id, versionFiles(v), () => undefined);
    process.stdout.write(`done ${v}\n`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`crash-put: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
}
