/**
 * A preload (`node --import <this file>`) for the SIGKILL-during-upload test: it holds one step
 * of the adapter store's atomic write for one adapter id forever and says so on stderr, so the
 * test kills the server exactly there instead of at a random moment.
 *
 * `ADAPTERHOST_TEST_GATE` (JSON) names the step:
 * - `{ "point": "write", "id": "x", "file": "adapter_model.safetensors" }`: writing that file
 *   into x's temp dir; half of the bytes reach the disk (fsync'd), the rest never do;
 * - `{ "point": "rename-in", "id": "x" }`: the rename of x's complete temp dir to `x` (for a
 *   replace, the live dir has already been renamed away to `.old-x-…`);
 * - `{ "point": "remove-old", "id": "x" }`: removing the previous version after a replace (the
 *   new one is already live; the upload is not yet answered).
 *
 * When the step is reached it writes `ADAPTERHOST-GATE {json}` on stderr and never returns;
 * with `"fail": "ENOSPC"` (any errno code) a `write` step instead fails as a full disk would:
 * half of the bytes written, then an error with that code.
 * Only the first matching step after the first upload began (a `.tmp-` mkdir) is held, so the
 * start-up repair of what an earlier kill left behind runs untouched. The store reaches the
 * disk through the `node:fs/promises` object, whose functions are wrapped here; nothing else
 * changes.
 */
import { writeSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';

export interface GateSpec {
  point: 'write' | 'rename-in' | 'remove-old';
  id: string;
  file?: string;
  /** An errno code (`ENOSPC`, `EDQUOT`, `EIO`): the write fails with it instead of hanging. */
  fail?: string;
}

export const GATE_ENV = 'ADAPTERHOST_TEST_GATE';
export const GATE_MARK = 'ADAPTERHOST-GATE ';

const raw = process.env[GATE_ENV];
if (raw) install(JSON.parse(raw) as GateSpec);

function install(spec: GateSpec): void {
  const esc = spec.id.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const tmpDir = new RegExp(`^\\.tmp-${esc}-[0-9a-f]+$`);
  const oldDir = new RegExp(`^\\.old-${esc}-[0-9a-f]+$`);
  let armed = false;
  let fired = false;
  const hold = (what: string, p: string): Promise<never> => {
    fired = true;
    writeSync(2, `${GATE_MARK}${JSON.stringify({ ...spec, what, path: p })}\n`);
    return new Promise<never>(() => undefined);
  };
  const str = (p: unknown): string => (typeof p === 'string' ? p : p instanceof URL ? p.pathname : String(p));
  const f = fs as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;

  const mkdir = f.mkdir!;
  f.mkdir = async (...a: unknown[]) => {
    if (path.basename(str(a[0])).startsWith('.tmp-')) armed = true;
    return mkdir.apply(fs, a);
  };

  const rename = f.rename!;
  f.rename = async (...a: unknown[]) => {
    const from = str(a[0]);
    if (armed && !fired && spec.point === 'rename-in' && tmpDir.test(path.basename(from))) return hold('rename-in', from);
    return rename.apply(fs, a);
  };

  const rm = f.rm!;
  f.rm = async (...a: unknown[]) => {
    const p = str(a[0]);
    if (armed && !fired && spec.point === 'remove-old' && oldDir.test(path.basename(path.dirname(p)))) return hold('remove-old', p);
    return rm.apply(fs, a);
  };

  const open = f.open!;
  f.open = async (...a: unknown[]) => {
    const fh = (await open.apply(fs, a)) as fs.FileHandle;
    const p = str(a[0]);
    if (armed && !fired && spec.point === 'write' && path.basename(p) === spec.file && tmpDir.test(path.basename(path.dirname(p)))) {
      fh.writeFile = (async (data: Buffer) => {
        await fh.write(data, 0, Math.floor(data.length / 2));
        await fh.sync();
        if (spec.fail) {
          fired = true;
          writeSync(2, `${GATE_MARK}${JSON.stringify({ ...spec, what: 'fail', path: p })}\n`);
          throw Object.assign(new Error(`${spec.fail}: injected by kill-gate, write '${p}'`), { code: spec.fail, syscall: 'write', path: p });
        }
        return hold('write', p);
      }) as fs.FileHandle['writeFile'];
    }
    return fh;
  };
}
