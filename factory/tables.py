"""Print the README's demo tables (accuracy, storage) from docs/demo-model.json and the files."""
import json, os, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
rep = json.load(open(os.path.join(root, "docs/demo-model.json")))
base = os.path.getsize(os.path.join(root, "models/demo/model.onnx"))
plain = os.path.getsize(os.path.join(root, "models/demo-export/model.onnx"))
print("| adapter | task | labels | r (α) | held-out accuracy (LoRA + head) | base only (frozen base + trained head) | chance (majority class) | test rows |")
print("|---|---|---|---|---|---|---|---|")
desc = {"spam": "ham vs spam mail (SpamAssassin)", "lang": "language of a fortune (7 languages)",
        "topic": "English fortune category (8)", "es-topic": "Spanish fortune category (6)"}
for k, t in rep["tasks"].items():
    ra = f"{t['r']} ({t['alpha']}{', rsLoRA' if t['use_rslora'] else ''}{', value r=4' if k == 'es-topic' else ''})"
    print(f"| `{k}` | {desc[k]} | {len(t['labels'])} | {ra} | **{t['accuracy']*100:.1f} %** | {t['base_only_accuracy']*100:.1f} % | {t['chance']*100:.1f} % | {t['test']} |")
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
