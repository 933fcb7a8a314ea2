/** Number formatting for the console (pure). */

/** Bytes in SI units, as the docs' tables count them: 945,287 → "945 kB", 35,885,839 → "35.9 MB". */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  const digits = u === 0 || v >= 100 ? 0 : 1;
  return `${v.toFixed(digits)} ${units[u]}`;
}

/** A ratio below 1 as "0.0263 (38× smaller)". */
export function formatRatio(r: number): string {
  if (!(r > 0) || !Number.isFinite(r)) return '–';
  const shown = r >= 0.1 ? r.toFixed(2) : r.toPrecision(3);
  return r < 1 ? `${shown} (${Math.round(1 / r)}× smaller)` : shown;
}

/** "1.2", "34", "1,234"; null as a dash. */
export function formatNumber(n: number | null, digits = 1): string {
  if (n === null || !Number.isFinite(n)) return '–';
  return n.toLocaleString('en-US', { maximumFractionDigits: Math.abs(n) >= 100 ? 0 : digits });
}

/** What serving `count` adapters on one base saves against one merged copy per adapter. */
export interface Savings {
  count: number;
  /** One fine-tuned (merged) copy of the base per adapter. */
  fullCopiesBytes: number;
  /** The base once, plus every adapter. */
  sharedBytes: number;
  /** fullCopiesBytes ÷ sharedBytes (0 with no adapters). */
  ratio: number;
}

export function savings(baseBytes: number, adapterBytes: readonly number[]): Savings {
  const count = adapterBytes.length;
  const fullCopiesBytes = baseBytes * count;
  const sharedBytes = baseBytes + adapterBytes.reduce((a, b) => a + b, 0);
  return { count, fullCopiesBytes, sharedBytes, ratio: count > 0 && sharedBytes > 0 ? fullCopiesBytes / sharedBytes : 0 };
}

/** The saving in words: "5 adapters: 40.1 MB instead of 171 MB for 5 merged copies, 4.3× less storage (77 % saved)." */
export function savingsSentence(s: Savings): string {
  if (s.count === 0) return 'No adapters yet: the base alone.';
  const noun = s.count === 1 ? 'adapter' : 'adapters';
  const copies = s.count === 1 ? 'one merged copy' : `${s.count.toLocaleString('en-US')} merged copies`;
  const pct = s.fullCopiesBytes > 0 ? 100 * (1 - s.sharedBytes / s.fullCopiesBytes) : 0;
  const saved = pct >= 99 ? pct.toFixed(1) : String(Math.round(pct));
  if (s.ratio <= 1) return `${s.count} ${noun}: ${formatBytes(s.sharedBytes)} for the base and its ${noun}, ${formatBytes(s.fullCopiesBytes)} for ${copies}: no saving with a single adapter.`;
  return `${s.count.toLocaleString('en-US')} ${noun}: ${formatBytes(s.sharedBytes)} instead of ${formatBytes(s.fullCopiesBytes)} for ${copies}, ${s.ratio >= 10 ? Math.round(s.ratio) : s.ratio.toFixed(1)}× less storage (${saved} % saved).`;
}
