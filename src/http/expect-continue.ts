import type { IncomingMessage, ServerResponse } from 'node:http';
import { validateAdapterId } from '../adapter/adapter-id.js';
import type { ServerState } from './admission.js';
import { adminCheck } from './auth.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * For `PUT`/`DELETE` anywhere under `/v1/adapters`: the id segment as Express will see it ('' when
 * there is not exactly one), so the admin check applies to every write there. Null otherwise.
 * The raw path is used, not a normalized one (a URL parser would turn `%2e%2e` into a dot
 * segment that Express does not see).
 */
function adminTarget(req: IncomingMessage): string | null {
  if (req.method !== 'PUT' && req.method !== 'DELETE') return null;
  let raw = req.url ?? '/';
  const scheme = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(raw); // absolute-form request target
  if (scheme) raw = raw.slice(scheme[0].length) || '/';
  const pathname = raw.split(/[?#]/, 1)[0]!;
  if (!/^\/v1\/adapters(\/|$)/i.test(pathname)) return null; // Express matches routes case-insensitively
  const m = /^\/v1\/adapters\/([^/]+)\/?$/i.exec(pathname);
  if (!m) return '';
  try {
    return decodeURIComponent(m[1]!);
  } catch {
    return ''; // a malformed escape: not a valid id
  }
}

/**
 * The server's `checkContinue` listener. Node answers `Expect: 100-continue` with `100
 * Continue` before the app sees the request, so a client would send a whole upload only to be
 * told it lacks the token. Here an admin write (`PUT`/`DELETE /v1/adapters/{id}`) gets `100`
 * only when its token is right, its id valid, and the server not draining; otherwise it goes to
 * the app without one, the app answers 401/403/400/503 as usual, and the connection closes
 * after that answer (the client may or may not send the body it was holding back; it is never
 * read). Every other request gets `100` as before.
 */
export function continueGate(opts: { adminToken: string; state: ServerState }, app: Handler): Handler {
  const check = adminCheck(opts.adminToken);
  return (req, res) => {
    const id = adminTarget(req);
    if (id !== null) {
      let ok = !opts.state.draining && check(req.headers.authorization) === null;
      if (ok) {
        try {
          validateAdapterId(id);
        } catch {
          ok = false;
        }
      }
      if (!ok) {
        res.setHeader('Connection', 'close');
        app(req, res);
        return;
      }
    }
    res.writeContinue();
    app(req, res);
  };
}
