import express, { type RequestHandler } from 'express';
import { AppError } from '../errors.js';

/**
 * The JSON body for POST routes: `Content-Type: application/json` or 415, then parsed with
 * a byte cap of `maxBodyKb` KiB (413 past it, checked against Content-Length before reading).
 */
export function jsonBody(maxBodyKb: number): RequestHandler[] {
  const requireJson: RequestHandler = (req, _res, next) => {
    if (req.is('application/json') === false || (req.headers['content-type'] ?? '') === '') {
      throw new AppError('UNSUPPORTED_MEDIA_TYPE', `${req.method} ${req.path} takes a JSON body: send Content-Type: application/json`);
    }
    next();
  };
  return [requireJson, express.json({ limit: maxBodyKb * 1024, strict: true, type: 'application/json' })];
}
