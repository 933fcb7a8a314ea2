import type { AppError, ErrorCode } from '../errors.js';

/** OpenAI's error object, the body of every error on the OpenAI routes (`/v1/completions`, `/v1/chat/completions`). */
export interface OpenAiErrorBody {
  error: {
    /** What went wrong, for a person (the AppError's message). */
    message: string;
    /** OpenAI's broad class: `invalid_request_error`, `authentication_error`, `permission_error`, `rate_limit_error`, `server_error`. */
    type: string;
    /** Machine-readable: OpenAI's name where one exists (`model_not_found`), else our catalog code lower-cased. */
    code: string;
    /** The request field at fault (`temperature`, `messages[1].content`), or null. */
    param: string | null;
  };
}

/** The request field each error is about, recorded by whoever raised it (see {@link withParam}). */
const params = new WeakMap<AppError, string>();

/**
 * Records the request field an error is about, so that {@link openAiErrorBody} can put it in
 * `param` (OpenAI's SDKs expose it as `error.param`). Returns the same error, for `throw withParam(…)`.
 */
export function withParam<E extends AppError>(e: E, param: string): E {
  params.set(e, param);
  return e;
}

/** The request field recorded for `e` by {@link withParam}, or null. */
export function paramOf(e: AppError): string | null {
  return params.get(e) ?? null;
}

/** Codes that OpenAI names differently. */
const OPENAI_CODES: Partial<Record<ErrorCode, string>> = {
  MODEL_NOT_FOUND: 'model_not_found',
  ADAPTER_NOT_FOUND: 'model_not_found',
};

/** OpenAI's error `type` for an HTTP status. */
export function openAiErrorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'server_error';
  return 'invalid_request_error';
}

/**
 * The OpenAI-shaped body for an error, sent with `e.status` (and `e.headers`, e.g. Retry-After
 * on a 429). The official SDKs read `error.message`, `code`, `type` and `param` from it and throw
 * their status's class (BadRequestError, NotFoundError, RateLimitError …).
 *
 * The message is sent as it is: render an unexpected error as a generic INTERNAL first, as the
 * server's error handler does, so that no internals leak.
 */
export function openAiErrorBody(e: AppError): OpenAiErrorBody {
  return {
    error: {
      message: e.message,
      type: openAiErrorType(e.status),
      code: OPENAI_CODES[e.code] ?? e.code.toLowerCase(),
      param: paramOf(e),
    },
  };
}
