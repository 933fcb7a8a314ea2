import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { AppError } from '../errors.js';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/**
 * The admin check, for one `Authorization` header value: null when it carries the admin token,
 * else the error to answer with. With no token configured the routes are off (403
 * ADMIN_DISABLED), whatever the request carries. Tokens are compared as SHA-256 digests with
 * `timingSafeEqual`, so neither their content nor their length shows in the timing.
 *
 * A missing or malformed header and a wrong token are all 401 UNAUTHORIZED with a
 * `WWW-Authenticate: Bearer` challenge (RFC 6750: a bad token is `invalid_token`, a 401);
 * 403 is kept for "admin routes are disabled".
 */
export function adminCheck(adminToken: string): (header: string | undefined) => AppError | null {
  const expected = adminToken === '' ? null : digest(adminToken);
  return (header) => {
    if (expected === null) {
      return new AppError('ADMIN_DISABLED', 'admin routes are disabled; set ADAPTERHOST_ADMIN_TOKEN or --admin-token to enable them');
    }
    if (header === undefined || header.trim() === '') {
      return new AppError('UNAUTHORIZED', 'this route needs "Authorization: Bearer <admin token>"', { headers: { 'WWW-Authenticate': 'Bearer realm="adapterhost"' } });
    }
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (!m) {
      return new AppError('UNAUTHORIZED', 'the Authorization header must be "Bearer <admin token>"', { headers: { 'WWW-Authenticate': 'Bearer realm="adapterhost", error="invalid_request"' } });
    }
    if (!timingSafeEqual(digest(m[1]!), expected)) {
      return new AppError('UNAUTHORIZED', 'the admin token is not valid', { headers: { 'WWW-Authenticate': 'Bearer realm="adapterhost", error="invalid_token"' } });
    }
    return null;
  };
}

/** Bearer auth for the admin routes ({@link adminCheck}) as middleware. */
export function requireAdmin(adminToken: string): RequestHandler {
  const check = adminCheck(adminToken);
  return (req, _res, next) => {
    const refused = check(req.get('authorization'));
    if (refused) throw refused;
    next();
  };
}
