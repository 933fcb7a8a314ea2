/**
 * A reader of Prometheus' text exposition format (what `GET /metrics` answers), enough for the
 * console: samples with their labels and values; comments, HELP/TYPE lines and timestamps skipped.
 * Pure, no DOM: the node tests import it too.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Label values escape `\\`, `"` and newlines as `\\\\`, `\\"`, `\\n`. */
function readLabels(s: string, at: number, out: Record<string, string>): number {
  let i = at;
  while (i < s.length && s[i] !== '}') {
    while (s[i] === ',' || s[i] === ' ') i++;
    if (s[i] === '}') break;
    const eq = s.indexOf('=', i);
    if (eq < 0) throw new Error('label without "="');
    const key = s.slice(i, eq).trim();
    if (s[eq + 1] !== '"') throw new Error('label value without quotes');
    let v = '';
    let j = eq + 2;
    for (; j < s.length && s[j] !== '"'; j++) {
      if (s[j] === '\\' && j + 1 < s.length) {
        j++;
        v += s[j] === 'n' ? '\n' : s[j];
      } else {
        v += s[j];
      }
    }
    if (j >= s.length) throw new Error('unterminated label value');
    out[key] = v;
    i = j + 1;
  }
  return i + 1;
}

/** Parses one line; null for blank lines, comments and anything unreadable. */
export function parseLine(line: string): Sample | null {
  const s = line.trim();
  if (s === '' || s.startsWith('#')) return null;
  try {
    const brace = s.indexOf('{');
    const space = s.indexOf(' ');
    const labels: Record<string, string> = {};
    let name: string;
    let rest: string;
    if (brace >= 0 && (space < 0 || brace < space)) {
      name = s.slice(0, brace);
      rest = s.slice(readLabels(s, brace + 1, labels));
    } else {
      if (space < 0) return null;
      name = s.slice(0, space);
      rest = s.slice(space);
    }
    const field = rest.trim().split(/\s+/)[0] ?? '';
    const value = field === '+Inf' ? Infinity : field === '-Inf' ? -Infinity : Number(field);
    if (field === '' || (Number.isNaN(value) && field !== 'NaN')) return null;
    return { name, labels, value };
  } catch {
    return null;
  }
}

/** All samples of an exposition text, in order. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const s = parseLine(line);
    if (s) out.push(s);
  }
  return out;
}

/** Sum of the samples named `name` whose labels pass `where` (0 when there are none). */
export function sum(samples: readonly Sample[], name: string, where: (l: Record<string, string>) => boolean = () => true): number {
  let t = 0;
  for (const s of samples) if (s.name === name && where(s.labels)) t += s.value;
  return t;
}

/** Whether any sample is named `name` (a family that is not exposed reads as "not available", not 0). */
export function has(samples: readonly Sample[], name: string): boolean {
  return samples.some((s) => s.name === name);
}
