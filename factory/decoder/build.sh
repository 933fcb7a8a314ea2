#!/usr/bin/env bash
# Rebuild the demo decoder (adapterhost-demo-llama) and its three generative adapters from scratch.
# Pretraining (two phases, see pretrain.py) takes about 80 minutes on 2 idle cores; REUSE_BASE=1 keeps the committed base
# (models/demo-llm/model.onnx) and retrains the adapters only (~20 min).
# Needs: apt-get update -o Acquire::Languages=en,it   (fetches Translation-en / Translation-it)
#        apt-get install python3-torch python3-onnx python3-numpy python3-regex lz4
#        npm ci (for @huggingface/tokenizers), then npm run build
# Outputs (committed): models/demo-llm/ (slotted by `adapterhost prepare`), adapters-llm/{summarize,translate-it,riassumi}/,
# test/fixtures/{golden-llm.json,tokenizer-parity-llm.json,tiny-llama/}, docs/demo-llm.json (scores).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2} THREADS=${THREADS:-1}   # see pretrain.py: one OpenMP thread, BLAS on both cores
B=build/decoder
mkdir -p "$B"
start=$(date +%s)
$PY factory/decoder/data.py "$B"                                  # corpus + split by source package
if [ -z "${REUSE_BASE:-}" ]; then
  $PY factory/decoder/bpe.py train "$B/descriptions.jsonl" "$B/tokenizer.json" 8192
else
  cp models/demo-llm/tokenizer.json "$B/tokenizer.json"
fi
$PY factory/decoder/files.py "$B" 256                               # tokenizer_config.json (chat template), generation_config.json
node factory/decoder/tokenize.mjs "$B/tokenizer.json" "$B/descriptions.jsonl" "$B"
$PY factory/decoder/bpe.py encode "$B/tokenizer.json" factory/decoder/parity-texts.json test/fixtures/tokenizer-parity-llm.json
if [ -z "${REUSE_BASE:-}" ]; then
  $PY factory/decoder/pretrain.py "$B" 1                           # monolingual documents → base-phase1.pt
  $PY factory/decoder/pretrain.py "$B" 2                           # bilingual package documents → base.pt
  $PY - "$B" <<'PYEOF'
import os, sys, torch
sys.path.insert(0, "factory/decoder")
from llama import CFG, LlamaForCausalLM
from onnx_io import export_with_past
m = LlamaForCausalLM(CFG); m.load_state_dict(torch.load(os.path.join(sys.argv[1], "base.pt")))
os.makedirs(os.path.join(sys.argv[1], "export"), exist_ok=True)
export_with_past(m, os.path.join(sys.argv[1], "export", "model.onnx"))
PYEOF
  cp "$B"/tokenizer.json "$B"/tokenizer_config.json "$B"/generation_config.json "$B/export/"
  npm run build --silent
  node dist/src/cli.js prepare --model "$B/export/model.onnx" --tokenizer "$B/export/tokenizer.json" \
    --task text-generation --max-rank 16 --max-length 256 --name adapterhost-demo-llama --out models/demo-llm
fi
$PY factory/decoder/tiny.py "$B" test/fixtures/tiny-llama
node dist/src/cli.js prepare --model test/fixtures/tiny-llama/export/model.onnx --tokenizer test/fixtures/tiny-llama/export/tokenizer.json \
  --task text-generation --max-rank 16 --max-length 256 --name tiny-llama --out test/fixtures/tiny-llama/slotted
$PY factory/decoder/adapters.py "$B" "$PWD"                         # adapters-llm/*, test/fixtures/golden-llm.json
npm run build --silent
node dist/bench/eval-generation.js models/demo-llm adapters-llm "$B" docs/demo-llm.json 600
$PY factory/decoder/cards.py . "$B"                                 # adapters-llm/*/README.md, the README tables
echo "decoder factory finished in $(( $(date +%s) - start ))s"
