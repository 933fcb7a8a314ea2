import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router, type Response } from 'express';
import { AppError } from '../errors.js';

/**
 * Where `npm run build` writes the console (`scripts/build-console.mjs`): `dist/console/`,
 * found from this compiled file (`dist/src/http/routes-console.js`).
 */
export function defaultConsoleDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../console');
}

/**
 * The console's Content-Security-Policy: scripts and styles only from this server's own files
 * (no inline script, no inline `<style>`, no eval), requests only to this origin, no frames, no
 * form posts, and Trusted Types enforced so no code path can assign a string as HTML.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Every built asset but the page itself has a content hash in its name: cached for a year. */
const IMMUTABLE = 'public, max-age=31536000, immutable';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.map': 'application/json; charset=utf-8',
  '.png': 'image/png',
};

interface Asset { body: Buffer; type: string; etag: string }

/** The built files, read once: a flat folder, so a name is a map key and never a path. */
function readAssets(dir: string): Map<string, Asset> {
  const out = new Map<string, Asset>();
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const file = path.join(dir, name);
    const type = TYPES[path.extname(name)];
    if (!type || !statSync(file).isFile()) continue;
    const body = readFileSync(file);
    out.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return out;
}

function securityHeaders(res: Response): void {
  res.setHeader('Content-Security-Policy', CONSOLE_CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('X-Frame-Options', 'DENY');
}

/**
 * The web console: `GET /` is the page (revalidated on every load, `no-cache` + ETag), and
 * `GET /console/{file}` its hashed scripts, styles and icon (immutable). The page is a client
 * of the public routes only; it has no route of its own. Files are read from `dir` once, when
 * the app is built; a server started without a built console answers `/` with a 404 that says
 * how to build it.
 */
export function consoleRoutes(dir: string = defaultConsoleDir()): Router {
  const r = Router();
  const assets = readAssets(dir);
  const send = (res: Response, a: Asset, cache: string) => {
    securityHeaders(res);
    res.setHeader('Cache-Control', cache);
    res.setHeader('ETag', a.etag);
    res.type(a.type);
    res.send(a.body); // answers 304 when If-None-Match matches the ETag
  };

  r.get('/', (_req, res) => {
    const page = assets.get('index.html');
    if (!page) throw new AppError('ROUTE_NOT_FOUND', 'the web console is not built: `npm run build` writes it to dist/console/ (the API routes under /v1 work without it)');
    send(res, page, 'no-cache');
  });

  r.get('/console/:file', (req, res) => {
    const name = String(req.params.file);
    const a = name === 'index.html' ? undefined : assets.get(name);
    if (!a) throw new AppError('ROUTE_NOT_FOUND', `no console file "${name.slice(0, 80)}"`);
    send(res, a, IMMUTABLE);
  });
  return r;
}
