import { formatBytes, savingsSentence, type Savings } from '../format.js';

/**
 * The storage picture of one base: "one merged copy per adapter" against "the base once + its
 * adapters", as two bars on one scale, each labelled with its bytes, and the saving in words
 * (the bars are decoration: the numbers and the sentence carry it without colour or sight).
 */
export function SavingsPicture({ s }: { s: Savings }) {
  const max = Math.max(s.fullCopiesBytes, s.sharedBytes, 1);
  const pct = (b: number) => `${Math.max(0.4, (100 * b) / max).toFixed(2)}%`;
  const rows = [
    { name: s.count === 1 ? 'One merged fine-tuned copy' : `${s.count.toLocaleString('en-US')} merged fine-tuned copies`, bytes: s.fullCopiesBytes, cls: 'bar bar-full' },
    { name: `Base + ${s.count.toLocaleString('en-US')} adapter${s.count === 1 ? '' : 's'} (adapterhost)`, bytes: s.sharedBytes, cls: 'bar bar-shared' },
  ];
  return (
    <figure class="savings">
      <figcaption>{savingsSentence(s)}</figcaption>
      {s.count > 0 && (
        <div class="bars">
          {rows.map((r) => (
            <div class="bar-row" key={r.name}>
              <span class="bar-name">{r.name}</span>
              <span class="bar-track" aria-hidden="true"><span class={r.cls} style={{ width: pct(r.bytes) }} /></span>
              <span class="bar-value">{formatBytes(r.bytes)}</span>
            </div>
          ))}
        </div>
      )}
    </figure>
  );
}
