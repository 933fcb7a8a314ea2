"""Print the README's demo tables (accuracy per input form, storage) from docs/demo-model.json
and the committed files."""
import json, os, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
rep = json.load(open(os.path.join(root, "docs/demo-model.json")))
base = os.path.getsize(os.path.join(root, "models/demo/model.onnx"))
plain = os.path.getsize(os.path.join(root, "models/demo-export/model.onnx"))

TASK = {"spam": "is a message spam? (SpamAssassin mail)",
        "lang": "language of a text ({n} languages)",
        "topic": "which English fortunes file a quote is from (8)",
        "es-topic": "which Spanish fortunes file a quote is from (6)",
        "sentiment": "is a review positive or negative? (Amazon, IMDb, Yelp sentences)"}
FORM = {"snippet": "first sentence of a mail body", "subject": "subject line", "body": "whole body (first 64 tokens)",
        "fortune": "not mail: English fortunes (ham rate)", "phrase": "short phrase (3–8 words)",
        "whole": "whole text (first 64 tokens)", "sentence": "one review sentence"}

def pct(x):
    return f"{x * 100:.1f} %"

def recall(rec):
    return ", ".join(f"{k} {pct(v)}" for k, v in rec.items())

print("| adapter | task | labels | r (α) | input | test rows | LoRA + head | base only (frozen base + trained head) | majority class |")
print("|---|---|---:|---|---|---:|---:|---:|---:|")
for k, t in rep["tasks"].items():
    ra = f"{t['r']} ({t['alpha']}{', rsLoRA' if t['use_rslora'] else ''}{''.join(f', {m} r={r}' for m, r in t.get('rank_pattern', {}).items())})"
    for i, (f, s) in enumerate(t["forms"].items()):
        lead = f"| `{k}` | {TASK[k].format(n=len(t['labels']))} | {len(t['labels'])} | {ra} " if i == 0 else "| | | | "
        if f == "fortune":  # all ham: accuracy is the share not called spam
            print(f"{lead}| {FORM[f]} | {s['test']} | {pct(s['accuracy'])} | {pct(s['base_only_accuracy'])} | — |")
            continue
        acc = f"**{pct(s['accuracy'])}**" if i == 0 else pct(s["accuracy"])
        print(f"{lead}| {FORM[f]} | {s['test']} | {acc} | {pct(s['base_only_accuracy'])} | {pct(s['chance'])} |")
print()
if "spam" in rep["tasks"]:
    print("Recall per class (LoRA + head; base only in brackets):")
    print()
    print("| adapter | input | " + " | ".join(f"{l} recall" for l in rep["tasks"]["spam"]["labels"]) + " |")
    print("|---|---|" + "---:|" * len(rep["tasks"]["spam"]["labels"]))
    for k in ("spam", "sentiment"):
        t = rep["tasks"].get(k)
        if not t:
            continue
        for f, s in t["forms"].items():
            if f == "fortune":
                continue
            print(f"| `{k}` | {FORM[f]} | " + " | ".join(f"{pct(s['recall'][l])} ({pct(s['base_only_recall'][l])})" for l in t["labels"]) + " |")
    print()
print("| file | bytes | ÷ base model |")
print("|---|---:|---:|")
print(f"| base model `models/demo/model.onnx` (slotted) | {base:,} | 1 |")
tot = 0
for k in rep["tasks"]:
    d = os.path.join(root, "adapters", k)
    b = sum(os.path.getsize(os.path.join(d, f)) for f in ("adapter_config.json", "adapter_model.safetensors"))
    tot += b
    print(f"| adapter `{k}` ({rep['tasks'][k]['dtype']}) | {b:,} | {b/base:.4f} ({base/b:.0f}× smaller) |")
n = len(rep["tasks"])
print(f"| **{n} adapters + 1 base (adapterhost)** | {base + tot:,} | {(base+tot)/base:.3f} |")
print(f"| {n} merged fine-tuned copies (the naive way) | {n*plain:,} | {n*plain/base:.3f} |")
