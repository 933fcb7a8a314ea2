import type { Express, RequestHandler } from 'express';
import { AppError, clip } from '../errors.js';

/** The parts of the router's layers (router v2, Express 5) this module reads. */
interface RouterLayer {
  /** Pure: the match for `path`, or false (throws on a malformed %-escape). */
  match(path: string): unknown;
  route?: { path: string; methods: Record<string, boolean | undefined> };
  handle: { stack?: RouterLayer[] };
}

interface KnownRoute { layer: RouterLayer; pattern: string; methods: string[] }

/** The order `Allow` lists methods in. */
const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** Every route of `stack` and of routers mounted in it (all of this app's routers are mounted at the root). */
function collect(stack: RouterLayer[], out: KnownRoute[] = []): KnownRoute[] {
  for (const layer of stack) {
    if (layer.route) {
      const methods = Object.keys(layer.route.methods).filter((m) => m !== '_all').map((m) => m.toUpperCase());
      if (methods.includes('GET')) methods.push('HEAD'); // Express answers HEAD with the GET handler
      out.push({ layer, pattern: layer.route.path, methods });
    } else if (Array.isArray(layer.handle.stack)) {
      collect(layer.handle.stack, out);
    }
  }
  return out;
}

/** `Allow` for a set of methods: the known ones in a fixed order, always with OPTIONS. */
export function allowHeader(methods: Iterable<string>): string {
  const set = new Set(methods);
  set.add('OPTIONS');
  return [...set].sort((a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99)).join(', ');
}

/**
 * Mounted before the routes: a path some route serves, asked with a method no route takes for
 * it, is `405 METHOD_NOT_ALLOWED` with `Allow` (in the JSON error shape), and `OPTIONS` on it
 * is `204` with `Allow` and no body (no CORS headers: the API is not meant for browsers on
 * other origins). HEAD works wherever GET does (Express runs the GET handler; Node sends no
 * body). Requests a route takes, and paths no route serves (→ ROUTE_NOT_FOUND), pass on.
 *
 * The routes are read from the app's router once, at the first request (all are mounted by
 * then). It runs before the routers because each Express router answers OPTIONS itself, in
 * plain text, when nothing else does.
 */
export function methodGuard(app: Express): RequestHandler {
  let routes: KnownRoute[] | null = null;
  return (req, res, next) => {
    routes ??= collect((app as unknown as { router: { stack: RouterLayer[] } }).router.stack);
    const allowed = new Set<string>();
    let pattern: string | null = null;
    for (const r of routes) {
      let m: unknown = false;
      try {
        m = r.layer.match(req.path);
      } catch {
        // A malformed %-escape: no route can match it, ROUTE_NOT_FOUND handles it.
      }
      if (!m) continue;
      pattern ??= r.pattern;
      for (const x of r.methods) allowed.add(x);
    }
    if (pattern === null || (req.method !== 'OPTIONS' && allowed.has(req.method))) {
      next();
      return;
    }
    const allow = allowHeader(allowed);
    res.locals.routePattern = pattern;
    if (req.method === 'OPTIONS') {
      res.setHeader('Allow', allow);
      res.status(204).end();
      return;
    }
    throw new AppError('METHOD_NOT_ALLOWED', `${clip(req.method, 20)} is not allowed on ${clip(req.path, 120)}; allowed: ${allow}`, { headers: { Allow: allow } });
  };
}
