/**
 * The one error catalog. Every failure the server reports has a code here, with its HTTP
 * status; `AppError` carries the code, a message naming the problem, and (for validation)
 * every problem found, so one response lists them all.
 */
export const ERROR_CATALOG = {
  BAD_REQUEST: 400,
  INVALID_JSON: 400,
  ADAPTER_REQUIRED: 400,
  INVALID_ADAPTER_ID: 400,
  TOO_MANY_INPUTS: 400,
  INPUT_TOO_LONG: 400,
  UNAUTHORIZED: 401,
  ADMIN_DISABLED: 403,
  FORBIDDEN: 403,
  ADAPTER_NOT_FOUND: 404,
  MODEL_NOT_FOUND: 404,
  ROUTE_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  INVALID_UPLOAD: 422,
  INVALID_SAFETENSORS: 422,
  INVALID_ADAPTER_CONFIG: 422,
  INCOMPATIBLE_ADAPTER: 422,
  ADAPTER_CORRUPT: 422,
  NO_CLASSIFICATION_HEAD: 422,
  ADAPTER_TOO_LARGE: 422,
  QUEUE_FULL: 429,
  TOO_MANY_UPLOADS: 429,
  INTERNAL: 500,
  ADAPTER_LOAD_FAILED: 500,
  NOT_READY: 503,
  SHUTTING_DOWN: 503,
  WORKER_RESTARTING: 503,
  INSUFFICIENT_STORAGE: 507,
  INVALID_MODEL: 1,
  INVALID_CONFIG: 1,
} as const;

/** Most characters of client input one message repeats ({@link clip}, {@link echo}). */
export const ECHO_CHARS = 80;
/** Longest message an AppError carries; past it the message is cut (a safety net behind {@link clip}). */
export const MAX_MESSAGE_CHARS = 4096;
/** Most problems {@link throwIfProblems} lists in a message; the rest are counted. */
export const MAX_LISTED_PROBLEMS = 40;

/** `s` cut to `max` characters, with `…` when something was cut. Use it on every piece of client input a message repeats. */
export function clip(s: string, max = ECHO_CHARS): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * A short, JSON-escaped rendering of an untrusted value for a message: at most `max`
 * characters of it, never a stack overflow on deeply nested values.
 */
export function echo(v: unknown, max = ECHO_CHARS): string {
  let s: string;
  try {
    // JSON has no Infinity or NaN (JSON.stringify writes null): say what was sent (1e999 parses as Infinity).
    s = typeof v === 'number' && !Number.isFinite(v) ? String(v) : JSON.stringify(v) ?? String(v);
  } catch {
    s = Array.isArray(v) ? `(an array of ${v.length})` : `(a ${typeof v})`;
  }
  return clip(s, max);
}

/** A code from the catalog. */
export type ErrorCode = keyof typeof ERROR_CATALOG;

/** A typed, expected failure: rendered as `{ error: { code, message } }`. */
export class AppError extends Error {
  readonly code: ErrorCode;
  /** Every individual problem, when validation found several. */
  readonly problems: readonly string[];
  /** Extra response headers (e.g. Retry-After for QUEUE_FULL). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(code: ErrorCode, message: string, opts: { problems?: readonly string[]; headers?: Record<string, string>; cause?: unknown } = {}) {
    // Messages can carry client input: whatever a caller forgot to clip, the response stays small.
    super(message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}… (${message.length - MAX_MESSAGE_CHARS} more characters)` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.problems = opts.problems ?? [];
    this.headers = opts.headers ?? {};
  }

  /** HTTP status for this error (500 for codes that never reach HTTP, such as INVALID_MODEL). */
  get status(): number {
    const s = ERROR_CATALOG[this.code];
    return s >= 400 ? s : 500;
  }
}

/** Throws one AppError listing every problem (the first {@link MAX_LISTED_PROBLEMS} in its message), when there are any. */
export function throwIfProblems(code: ErrorCode, what: string, problems: readonly string[]): void {
  if (problems.length === 0) return;
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS).map((p, i) => `(${i + 1}) ${p}`);
  if (problems.length > MAX_LISTED_PROBLEMS) listed.push(`… and ${problems.length - MAX_LISTED_PROBLEMS} more`);
  const list = problems.length === 1 ? problems[0] : listed.join('; ');
  throw new AppError(code, `${what}: ${list}`, { problems });
}

/** True when `e` is an AppError with the given code. */
export function isAppError(e: unknown, code?: ErrorCode): e is AppError {
  return e instanceof AppError && (code === undefined || e.code === code);
}
