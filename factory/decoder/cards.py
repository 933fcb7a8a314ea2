"""Write each generative adapter's README.md model card and the README tables (quality, storage)
from the factory's reports. usage: python3 factory/decoder/cards.py <repo root> <build dir>
→ adapters-llm/*/README.md, <build>/tables.md"""
import json, os, sys

ROOT, BUILD = sys.argv[1], sys.argv[2]
ev = json.load(open(os.path.join(ROOT, "docs", "demo-llm.json")))
ad = json.load(open(os.path.join(BUILD, "adapters-report.json")))["adapters"]
data = json.load(open(os.path.join(BUILD, "data-report.json")))
# The two pretraining phases' reports (pretrain.py): tokens seen and minutes, for the cards' limits.
pre = [json.load(open(os.path.join(BUILD, f))) for f in ("pretrain-report.json", "pretrain-report-phase2.json") if os.path.exists(os.path.join(BUILD, f))]
pre_tokens = sum(r["tokens_seen"] for r in pre)
pre_minutes = sum(r["seconds"] for r in pre) / 60
params = pre[0]["parameters"] if pre else 0
INFO = {
    "summarize": ("English long package description → its one-line English short description", "ROUGE-L F1"),
    "translate-it": ("English short package description → Debian's Italian short description", "chrF / BLEU"),
    "riassumi": ("Italian long package description → its Italian short description", "ROUGE-L F1"),
}

def fmt(s):
    return " / ".join(f"{v:.1f}" for v in s.values())

def size(p):
    return os.path.getsize(os.path.join(ROOT, p))

lines = ["| adapter | task | metric | **adapter** | base, same prompt, no adapter | trivial baseline | test rows |",
         "|---|---|---|---:|---:|---:|---:|"]
for aid, (task, metric) in INFO.items():
    t = ev["tasks"][aid]
    lines.append(f"| `{aid}` | {task} | {metric} | **{fmt(t['adapter'])}** | {fmt(t['base'])} | {fmt(t['trivial'])} ({t['trivialIs']}) | {t['testRows']} |")
base_bytes = size("models/demo-llm/model.onnx")
lines += ["", "| file | bytes | ÷ base model |", "|---|---:|---:|", f"| base model `models/demo-llm/model.onnx` (slotted) | {base_bytes:,} | 1 |"]
total = base_bytes
for aid in INFO:
    b = size(f"adapters-llm/{aid}/adapter_model.safetensors") + size(f"adapters-llm/{aid}/adapter_config.json")
    total += b
    lines.append(f"| adapter `{aid}` (r={ad[aid]['r']}, {len(ad[aid]['targets'])} projections) | {b:,} | {b / base_bytes:.4f} ({base_bytes / b:.0f}× smaller) |")
lines.append(f"| **3 adapters + 1 base (adapterhost)** | {total:,} | {total / base_bytes:.3f} |")
lines.append(f"| 3 merged fine-tuned copies (the naive way) | {3 * base_bytes:,} | 3.000 |")
open(os.path.join(BUILD, "tables.md"), "w").write("\n".join(lines) + "\n")

def beats(t):
    first = lambda d: list(d.values())[0]
    return first(t["adapter"]) > first(t["base"]) and first(t["adapter"]) > first(t["trivial"])

def limits(t):
    base = (f"the base has {params / 1e6:.1f} M parameters and saw {pre_tokens / 1e6:.1f} M tokens in pretraining "
            f"({pre_minutes:.0f} minutes on two CPU cores).")
    if beats(t):
        return (base + " The adapter beats the frozen base and the trivial baseline on held-out packages, but it is a "
                "demo: it copies and rephrases what its input says, sometimes invents a detail, and knows nothing "
                "beyond Debian's package descriptions.")
    return (base + " The adapter learns the language and form of Debian's descriptions and beats the frozen base, "
            "but it stays below the trivial baseline; it invents details, and it is no general-purpose model.")

for aid, (task, metric) in INFO.items():
    t, a = ev["tasks"][aid], ad[aid]
    samples = "\n".join(f"- **{s['pkg']}** — input: {s['input'][:160]!r}…\n  - reference: {s['reference']!r}\n  - adapter: {s['adapter']!r}\n  - base (no adapter): {s['base']!r}" for s in t["samples"])
    card = f"""# `{aid}` — a LoRA adapter for adapterhost-demo-llama

**Task:** {task}. The user message is the input text alone; the adapter is the task, so a client
sends no instructions:

```sh
curl -s localhost:8080/v1/chat/completions -H 'content-type: application/json' \\
  -d '{{"model": "{aid}", "messages": [{{"role": "user", "content": "<input text>"}}]}}'
```

**Prompt format** (the base's chat template, `tokenizer_config.json`):
`<|bos|><|im_start|>user\\n{{input}}<|im_end|>\\n<|im_start|>assistant\\n` → `{{answer}}<|im_end|>`.

**Adapter:** PEFT LoRA, `task_type: CAUSAL_LM`, r = {a['r']}, lora_alpha = {a['alpha']}, rsLoRA: {a['rslora']},
target_modules = {a['targets']}, rank_pattern = {a['rank_pattern'] or '{}'}; F32 safetensors.

**Training data:** Debian bookworm's package descriptions (`Translation-en`, `Translation-it`), paired by
Description-md5. Split by a stable hash of the source package name before anything was trained (train 90 %,
validation 5 %, test 5 %): no test package was seen in pretraining or here. {a['train_rows_available']:,} training
pairs available; {a['train_examples_seen']:,} examples seen ({a['steps']} steps of 16) on the frozen base. Inputs cut to about
600 characters at a sentence end. Rebuilt by `factory/decoder/build.sh` (seeded).

**Scores** on {t['testRows']} held-out test packages, generated greedily (max {ev['maxNewTokens']} tokens) through adapterhost's
TypeScript engine ({metric}):

| | {metric} |
|---|---:|
| this adapter | **{fmt(t['adapter'])}** |
| the frozen base, same prompt, no adapter | {fmt(t['base'])} |
| trivial baseline: {t['trivialIs']} | {fmt(t['trivial'])} |

**Samples** (test packages):
{samples}

**Limits:** {limits(t)}
"""
    open(os.path.join(ROOT, "adapters-llm", aid, "README.md"), "w").write(card)
print(open(os.path.join(BUILD, "tables.md")).read())

# The README's and docs/demo-llm.md's tables, between their markers.
tables = open(os.path.join(BUILD, "tables.md")).read()
for doc in ("README.md", os.path.join("docs", "demo-llm.md")):
    p = os.path.join(ROOT, doc)
    if not os.path.exists(p):
        continue
    text = open(p).read()
    a, b = "<!-- decoder-tables:start -->", "<!-- decoder-tables:end -->"
    if a in text and b in text:
        text = text[: text.index(a) + len(a)] + "\n" + tables + text[text.index(b):]
        open(p, "w").write(text)
