"""The README's and docs/demo-model.md's demo tables (accuracy per input form, recall, storage)
from docs/demo-model.json and the committed files.

usage: python3 factory/tables.py <repo root> [--write]
Prints them; with --write also replaces what stands between the `<!-- tables:NAME -->` and
`<!-- /tables:NAME -->` markers of README.md and docs/demo-model.md (NAME: accuracy, storage)."""
import contextlib, io, json, os, sys
root = sys.argv[1] if len(sys.argv) > 1 else "."
rep = json.load(open(os.path.join(root, "docs/demo-model.json")))
base = os.path.getsize(os.path.join(root, "models/demo/model.onnx"))
plain = os.path.getsize(os.path.join(root, "models/demo-export/model.onnx"))

TASK = {"spam": "is a message spam? (SpamAssassin mail)",
        "lang": "language of a text ({n} languages)",
        "topic": "which English fortunes file a quote is from (8)",
        "es-topic": "which Spanish fortunes file a quote is from (6)",
        "sentiment": "is a review positive or negative? (Amazon, IMDb, Yelp sentences)"}
FORM = {"snippet": "first sentence of a mail body", ("spam", "sentence"): "another sentence of a mail body", "subject": "subject line", "body": "whole body (first 64 tokens)",
        "fortune": "not mail: English fortunes (share called ham)",
        "everyday": "not mail: WordNet usage examples (share called ham)",
        "phrasebook": "not mail: Ding dictionary example sentences (share called ham)", "phrase": "short phrase (3–8 words)",
        "whole": "whole text (first 64 tokens)", "sentence": "one review sentence"}

HAM_ONLY = ("fortune", "everyday", "phrasebook")   # `spam`'s forms that are not mail: all ham

def pct(x):
    return f"{x * 100:.1f} %"

def accuracy():
    print("| adapter | task | labels | r (α) | input | test rows | LoRA + head | base only (frozen base + trained head) | majority class |")
    print("|---|---|---:|---|---|---:|---:|---:|---:|")
    for k, t in rep["tasks"].items():
        ra = f"{t['r']} ({t['alpha']}{', rsLoRA' if t['use_rslora'] else ''}{''.join(f', {m} r={r}' for m, r in t.get('rank_pattern', {}).items())})"
        for i, (f, s) in enumerate(t["forms"].items()):
            lead = f"| `{k}` | {TASK[k].format(n=len(t['labels']))} | {len(t['labels'])} | {ra} " if i == 0 else "| | | | "
            if f in HAM_ONLY:  # all ham: accuracy is the share not called spam
                print(f"{lead}| {FORM.get((k, f), FORM[f])} | {s['test']} | {pct(s['accuracy'])} | {pct(s['base_only_accuracy'])} | — |")
                continue
            acc = f"**{pct(s['accuracy'])}**" if i == 0 else pct(s["accuracy"])
            print(f"{lead}| {FORM.get((k, f), FORM[f])} | {s['test']} | {acc} | {pct(s['base_only_accuracy'])} | {pct(s['chance'])} |")
    print()
    print("Recall per class, LoRA + head (base only in brackets):")
    print()
    print("| adapter | input | recall per class |")
    print("|---|---|---|")
    for k in ("spam", "sentiment"):
        t = rep["tasks"].get(k)
        for f, s in (t or {}).get("forms", {}).items():
            if f not in HAM_ONLY:
                print(f"| `{k}` | {FORM.get((k, f), FORM[f])} | " + ", ".join(f"{l} {pct(s['recall'][l])} ({pct(s['base_only_recall'][l])})" for l in t["labels"]) + " |")

def storage():
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


SECTIONS = {"accuracy": accuracy, "storage": storage}

def render(name):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        SECTIONS[name]()
    return buf.getvalue().rstrip("\n")

for name in SECTIONS:
    print(render(name)); print()
if "--write" in sys.argv:
    for doc in ("README.md", "docs/demo-model.md"):
        path = os.path.join(root, doc); text = open(path, encoding="utf-8").read()
        for name in SECTIONS:
            a, b = f"<!-- tables:{name} -->", f"<!-- /tables:{name} -->"
            if a in text:
                i, j = text.index(a) + len(a), text.index(b)
                text = text[:i] + "\n" + render(name) + "\n" + text[j:]
        open(path, "w", encoding="utf-8").write(text)
