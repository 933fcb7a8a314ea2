/** What one {@link StopMatcher.push} releases. */
export interface StopResult {
  /** Text that is safe to send: it cannot be part of a stop string. */
  emit: string;
  /** True once a stop string has completed: the sequence is finished, nothing more is emitted. */
  stopped: boolean;
}

/**
 * Finds stop strings in streamed text that may straddle any number of pushes, holding back only
 * the tail that could still begin one.
 *
 * Each stop string keeps a Knuth–Morris–Pratt state (the longest prefix of it that the text seen
 * so far ends with), so each character is looked at once per stop whatever the stops' lengths,
 * and the held-back tail is exactly the longest of those prefixes. The stop that completes first
 * in the text wins (generation would have ended there); of stops completing on the same
 * character, the longest (it starts earliest). The text before it is emitted, the stop itself
 * never. The outcome does not depend on how the text was split into pushes.
 *
 * Strings are compared by UTF-16 code unit, exactly (no normalisation).
 */
export class StopMatcher {
  private readonly stops: readonly string[];
  /** Per stop, the KMP failure function: fail[i] = longest proper border of stop[0..i]. */
  private readonly fail: readonly Int32Array[];
  /** Per stop, how many of its leading characters the text seen so far ends with. */
  private readonly state: Int32Array; // [stops]
  /** Text seen but not yet emitted (it may begin a stop string). */
  private held = '';
  private done = false;
  private hit: string | null = null;

  /**
   * @param stops the stop strings (OpenAI's `stop`); each non-empty (a RangeError otherwise). Duplicates are fine.
   */
  constructor(stops: readonly string[]) {
    for (const s of stops) if (typeof s !== 'string' || s.length === 0) throw new RangeError('StopMatcher: stop strings must be non-empty strings');
    this.stops = [...stops];
    this.fail = this.stops.map(failure);
    this.state = new Int32Array(this.stops.length);
  }

  /** True once a stop string has completed. */
  get stopped(): boolean {
    return this.done;
  }

  /** The stop string that ended the text, or null. */
  get matched(): string | null {
    return this.hit;
  }

  /**
   * Adds newly generated text. Returns what may be sent now: everything except a tail that
   * could still begin a stop string; when a stop completes, the text before it and `stopped`.
   * After a stop, every push returns nothing.
   */
  push(text: string): StopResult {
    if (this.done) return { emit: '', stopped: true };
    const base = this.held.length;
    const buf = this.held + text;
    const n = this.stops.length;
    for (let j = 0; j < text.length; j++) {
      const c = text.charCodeAt(j);
      let start = -1;
      let which = -1;
      for (let k = 0; k < n; k++) {
        const stop = this.stops[k]!;
        const f = this.fail[k]!;
        let q = this.state[k]!;
        while (q > 0 && stop.charCodeAt(q) !== c) q = f[q - 1]!;
        if (stop.charCodeAt(q) === c) q++;
        if (q === stop.length) {
          const s = base + j + 1 - stop.length;
          if (start < 0 || s < start) { start = s; which = k; }
          q = f[q - 1]!;
        }
        this.state[k] = q;
      }
      if (which >= 0) {
        this.done = true;
        this.hit = this.stops[which]!;
        this.held = '';
        return { emit: buf.slice(0, start), stopped: true };
      }
    }
    let hold = 0;
    for (let k = 0; k < n; k++) hold = Math.max(hold, this.state[k]!);
    this.held = buf.slice(buf.length - hold);
    return { emit: buf.slice(0, buf.length - hold), stopped: false };
  }

  /** At the end of the text (no stop came): the held-back tail. Nothing after a stop. */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    this.state.fill(0);
    return out;
  }
}

/** The KMP prefix function of `s`. */
function failure(s: string): Int32Array {
  const f = new Int32Array(s.length);
  let q = 0;
  for (let i = 1; i < s.length; i++) {
    while (q > 0 && s.charCodeAt(i) !== s.charCodeAt(q)) q = f[q - 1]!;
    if (s.charCodeAt(i) === s.charCodeAt(q)) q++;
    f[i] = q;
  }
  return f;
}
