#!/usr/bin/env node
// Builds the web console (web/) into dist/console/: one script and one stylesheet bundled by
// esbuild from web/src/main.tsx (Preact + uPlot, minified, content-hashed names), the icon
// (hashed too) and index.html pointing at them. Everything comes from the repository and
// node_modules: no CDN, no fonts from elsewhere. Part of `npm run build`.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/console');
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const result = await build({
  absWorkingDir: root,
  entryPoints: ['web/src/main.tsx'],
  outdir: out,
  entryNames: '[name]-[hash]',
  bundle: true,
  minify: true,
  sourcemap: 'linked',
  format: 'esm',
  target: ['es2022', 'chrome109', 'firefox115', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning',
});

const built = Object.keys(result.metafile.outputs).map((f) => path.basename(f));
const js = built.find((f) => f.endsWith('.js'));
const css = built.find((f) => f.endsWith('.css'));
if (!js || !css) throw new Error(`esbuild wrote ${built.join(', ')}: expected one .js and one .css`);

const icon = await readFile(path.join(root, 'web/favicon.svg'));
const iconName = `favicon-${createHash('sha256').update(icon).digest('hex').slice(0, 8)}.svg`;
await writeFile(path.join(out, iconName), icon);

const html = (await readFile(path.join(root, 'web/index.html'), 'utf8'))
  .replace('%JS%', js).replace('%CSS%', css).replace('%ICON%', iconName);
if (html.includes('%')) throw new Error('web/index.html has a placeholder the build does not fill');
await writeFile(path.join(out, 'index.html'), html);

const bytes = async (f) => (await readFile(path.join(out, f))).length;
console.log(`console: dist/console/ ${js} ${(await bytes(js)) / 1000} kB, ${css} ${(await bytes(css)) / 1000} kB`);
