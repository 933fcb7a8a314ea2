/**
 * Text-generation quality metrics, as the summarisation and translation literature computes them:
 * ROUGE-L F1 (longest common subsequence of lower-cased word tokens), chrF (character n-grams
 * 1–6, β = 2, spaces removed: sacreBLEU's default chrF), and corpus BLEU-4 with brevity penalty.
 */

/** Lower-cased word tokens (letters/digits runs; punctuation dropped), as rouge-score's default tokenizer. */
export function words(s: string): string[] {
  return s.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

function lcs(a: readonly string[], b: readonly string[]): number {
  const prev = new Array<number>(b.length + 1).fill(0);
  const cur = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    for (let j = 0; j <= b.length; j++) prev[j] = cur[j]!;
  }
  return prev[b.length]!;
}

/** ROUGE-L F1 of one candidate against one reference (0 when either is empty). */
export function rougeL(candidate: string, reference: string): number {
  const c = words(candidate);
  const r = words(reference);
  if (c.length === 0 || r.length === 0) return 0;
  const l = lcs(c, r);
  if (l === 0) return 0;
  const p = l / c.length;
  const rec = l / r.length;
  return (2 * p * rec) / (p + rec);
}

function charNgrams(s: string, n: number): Map<string, number> {
  const t = [...s.replace(/\s+/g, '')];
  const m = new Map<string, number>();
  for (let i = 0; i + n <= t.length; i++) {
    const g = t.slice(i, i + n).join('');
    m.set(g, (m.get(g) ?? 0) + 1);
  }
  return m;
}

/** Corpus chrF (β = 2, n = 1..6), 0–100: statistics summed over all sentences, then the F-score averaged over n. */
export function chrF(candidates: readonly string[], references: readonly string[], beta = 2, maxN = 6): number {
  let total = 0;
  let counted = 0;
  for (let n = 1; n <= maxN; n++) {
    let match = 0, hyp = 0, ref = 0;
    candidates.forEach((c, i) => {
      const hc = charNgrams(c, n);
      const rc = charNgrams(references[i]!, n);
      for (const [g, k] of hc) { hyp += k; match += Math.min(k, rc.get(g) ?? 0); }
      for (const k of rc.values()) ref += k;
    });
    if (hyp === 0 || ref === 0) continue;
    const p = match / hyp;
    const r = match / ref;
    total += p + r === 0 ? 0 : ((1 + beta * beta) * p * r) / (beta * beta * p + r);
    counted++;
  }
  return counted === 0 ? 0 : (100 * total) / counted; // averaged over the orders that occur (sacreBLEU's effective order)
}

function bleuTokens(s: string): string[] {
  return s.toLowerCase().replace(/([^\p{L}\p{N}\s])/gu, ' $1 ').split(/\s+/).filter(Boolean);
}

/** Corpus BLEU-4 (uniform weights, brevity penalty, no smoothing), 0–100, on lower-cased tokens with punctuation split off. */
export function bleu(candidates: readonly string[], references: readonly string[]): number {
  const match = [0, 0, 0, 0];
  const total = [0, 0, 0, 0];
  let cLen = 0, rLen = 0;
  candidates.forEach((c, i) => {
    const ct = bleuTokens(c);
    const rt = bleuTokens(references[i]!);
    cLen += ct.length; rLen += rt.length;
    for (let n = 1; n <= 4; n++) {
      const rc = new Map<string, number>();
      for (let k = 0; k + n <= rt.length; k++) { const g = rt.slice(k, k + n).join(' '); rc.set(g, (rc.get(g) ?? 0) + 1); }
      const cc = new Map<string, number>();
      for (let k = 0; k + n <= ct.length; k++) { const g = ct.slice(k, k + n).join(' '); cc.set(g, (cc.get(g) ?? 0) + 1); }
      for (const [g, k] of cc) match[n - 1] += Math.min(k, rc.get(g) ?? 0);
      total[n - 1] += Math.max(ct.length - n + 1, 0);
    }
  });
  if (match.some((m) => m === 0)) return 0;
  const logP = match.reduce((a, m, i) => a + Math.log(m / total[i]!), 0) / 4;
  const bp = cLen > rLen ? 1 : Math.exp(1 - rLen / Math.max(cLen, 1));
  return 100 * bp * Math.exp(logP);
}

/** The trivial summary: the first sentence of the text, cut to `maxWords` words. */
export function firstSentence(text: string, maxWords = 12): string {
  const first = text.split(/(?<=[.!?])\s+|\n/)[0] ?? text;
  return first.split(/\s+/).filter(Boolean).slice(0, maxWords).join(' ');
}
