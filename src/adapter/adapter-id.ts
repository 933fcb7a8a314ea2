import { AppError } from '../errors.js';

/**
 * What an adapter id may look like: lowercase letters, digits, `.`, `_`, `-`; 1–64 characters;
 * starting with a letter or digit (so never a hidden name such as `.tmp-*`), and (checked
 * separately by {@link validateAdapterId}) never containing `..`. Ids become directory names
 * in the store, so this pattern is the first guard against path traversal.
 */
export const ADAPTER_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * Names other file systems cannot hold as a directory (checked by {@link validateAdapterId}):
 * Windows' reserved device names, alone or with any extension (`con`, `nul.json`, `com1`,
 * `lpt9.x`), and a trailing dot (Windows strips it, so `lang.` would be the directory `lang`).
 * Harmless on Linux, but a store must be copyable to any machine Node runs on. (Trailing spaces
 * and upper case are already outside {@link ADAPTER_ID_PATTERN}.)
 */
export const NON_PORTABLE_ID = /^(?:con|prn|aux|nul|com[0-9]|lpt[0-9])(?:\..*)?$|\.$/;

/** How much of a rejected id the error message repeats (it comes from an untrusted client). */
const SHOWN_CHARS = 80;

/**
 * Returns `id` when it is a valid adapter id (matches {@link ADAPTER_ID_PATTERN}, no `..`, not
 * {@link NON_PORTABLE_ID}); otherwise throws `AppError('INVALID_ADAPTER_ID')` naming the id
 * (JSON-escaped, truncated) and the rules.
 */
export function validateAdapterId(id: unknown): string {
  if (typeof id === 'string' && ADAPTER_ID_PATTERN.test(id) && !id.includes('..') && !NON_PORTABLE_ID.test(id)) return id;
  const shown =
    typeof id === 'string'
      ? JSON.stringify(id.length > SHOWN_CHARS ? id.slice(0, SHOWN_CHARS) : id) + (id.length > SHOWN_CHARS ? '…' : '')
      : `(a ${id === null ? 'null' : typeof id}, not a string)`;
  throw new AppError(
    'INVALID_ADAPTER_ID',
    `invalid adapter id ${shown}: an id must match ${ADAPTER_ID_PATTERN.source} ` +
      '(1-64 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit), must not contain "..", ' +
      'end with "." or be a name Windows reserves (con, prn, aux, nul, com0-9, lpt0-9, also with an extension)',
  );
}
