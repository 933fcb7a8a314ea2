import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { AppError, ERROR_CATALOG, type ErrorCode } from '../errors.js';

/** The fields body-parser puts on its errors. */
interface BodyParserError { type?: unknown; status?: unknown; expose?: unknown; limit?: unknown; length?: unknown; message: string }

const isBodyParserError = (e: unknown): e is BodyParserError =>
  e instanceof Error && typeof (e as BodyParserError).type === 'string' && typeof (e as BodyParserError).status === 'number';

/** Shown text that comes from the client stays short. */
const clip = (s: string, n = 200) => (s.length > n ? `${s.slice(0, n)}…` : s);

/** Maps body-parser's errors onto the catalog; other errors pass through unchanged. */
export function fromBodyParser(e: unknown): unknown {
  if (e instanceof AppError) return e;
  if (!isBodyParserError(e)) {
    // Client mistakes reported without a body-parser type: the router's "Failed to decode
    // param" (a malformed %-escape in the path), a corrupt gzip/deflate body.
    const st = (e as { status?: unknown; statusCode?: unknown } | null)?.status ?? (e as { statusCode?: unknown } | null)?.statusCode;
    if (e instanceof Error && typeof st === 'number' && st >= 400 && st < 500) return new AppError('BAD_REQUEST', clip(e.message));
    return e;
  }
  switch (e.type) {
    case 'entity.too.large': {
      const limit = typeof e.limit === 'number' ? e.limit : NaN;
      const size = typeof e.length === 'number' ? `${e.length} bytes` : 'larger';
      return new AppError('PAYLOAD_TOO_LARGE', `request body is ${size}; the limit is ${limit} bytes (${limit / 1024} KiB, --max-body-kb)`);
    }
    case 'entity.parse.failed':
      return new AppError('INVALID_JSON', `request body is not valid JSON: ${clip(e.message)}`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError('UNSUPPORTED_MEDIA_TYPE', clip(e.message));
    case 'request.aborted':
      return new AppError('BAD_REQUEST', 'the request was aborted before its body was read');
    default:
      return (e.status as number) < 500 && e.expose === true ? new AppError('BAD_REQUEST', clip(e.message)) : e;
  }
}

/** Most bytes of an unread request body thrown away to keep the connection; past it, the connection is cut. */
const DRAIN_BUDGET = 4 * 1024 * 1024;

/**
 * After an early error (413 on an upload, 401 before an upload is read), the rest of the body
 * is read and thrown away, never buffered, so the client gets its response and keeps the
 * connection. A body declared (or turning out) larger than DRAIN_BUDGET is not worth reading:
 * the connection closes instead.
 */
export function discardUnreadBody(req: Request, res: Response): void {
  if (req.complete || req.readableEnded) return;
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > DRAIN_BUDGET) {
    res.setHeader('Connection', 'close');
    return;
  }
  let discarded = 0;
  req.on('data', (c: Buffer) => {
    discarded += c.length;
    if (discarded > DRAIN_BUDGET) req.socket.destroy();
  });
  req.resume();
}

/** The 404 for every path no route serves. */
export function routeNotFound(): RequestHandler {
  return (req) => {
    throw new AppError('ROUTE_NOT_FOUND', `no route for ${req.method} ${clip(req.path, 120)}`);
  };
}

/**
 * 5xx outcomes that are part of normal operation, and the level they are logged at: start-up
 * and drain are info; a worker restart is warn (the crash itself is logged once, at error, by
 * the engine). Every other 5xx is a fault: error level, with the stack.
 */
const EXPECTED_5XX: Partial<Record<ErrorCode, 'info' | 'warn'>> = {
  NOT_READY: 'info',
  SHUTTING_DOWN: 'info',
  WORKER_RESTARTING: 'warn',
};

/**
 * The one error handler: every error becomes `{ error: { code, message } }` with the catalog's
 * status and the error's headers. Unexpected errors are a generic 500; their details go only
 * to the log.
 */
export function errorHandler(): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const mapped = fromBodyParser(err);
    let e: AppError;
    if (mapped instanceof AppError && mapped.code !== 'INTERNAL' && ERROR_CATALOG[mapped.code] >= 400) {
      e = mapped;
      const expected = EXPECTED_5XX[e.code];
      if (expected) {
        // Part of normal operation: no stack, no error-level line (the request line follows suit).
        res.locals.expectedOutcome = expected;
        req.log[expected]({ code: e.code, status: e.status }, e.message);
      } else if (e.status >= 500) {
        req.log.error({ err: mapped, code: e.code }, e.message);
      }
    } else {
      // INTERNAL (and start-up-only codes) can name server paths or runtime internals: they stay in the log.
      req.log.error({ err: mapped }, 'unexpected error');
      e = new AppError('INTERNAL', `internal error (request id ${req.id})`);
    }
    if (res.headersSent) {
      // Too late for a status: cut the response so the client sees it failed.
      res.destroy();
      return;
    }
    discardUnreadBody(req, res);
    res.status(e.status).set(e.headers).json({ error: { code: e.code, message: e.message } });
  };
}
