#!/usr/bin/env bash
# Runs the README's curl examples against a fresh server and prints request → response.
# usage: scripts/transcript.sh   (builds, starts the server on :8080 with a temp copy of adapters/)
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build --silent
TMP=$(mktemp -d); cp -r adapters "$TMP/adapters"
TOKEN=transcript-admin-token-0123456789
ADAPTERHOST_ADMIN_TOKEN=$TOKEN node dist/src/cli.js serve --adapters-dir "$TMP/adapters" --log-level warn &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 100); do curl -sf localhost:8080/readyz >/dev/null && break; sleep 0.2; done
run() { echo "\$ $*"; eval "$@"; echo; echo; }
run "curl -s localhost:8080/v1/predict -H 'content-type: application/json' -d '{\"adapter_id\": \"lang\", \"inputs\": [\"Das Leben ist schön.\", \"La vida es bella.\"]}'"
run "curl -s localhost:8080/v1/predict -H 'content-type: application/json' -d '{\"adapter_id\": \"spam\", \"inputs\": \"FREE!!! Click here to claim your prize money now\"}'"
run "curl -s localhost:8080/v1/embeddings -H 'content-type: application/json' -d '{\"model\": \"adapterhost-demo-bert\", \"input\": \"hello world\"}' | cut -c1-160"
run "curl -s localhost:8080/v1/models | cut -c1-300"
run "curl -s localhost:8080/v1/adapters/spam"
run "curl -s localhost:8080/healthz"
run "curl -s localhost:8080/readyz"
run "curl -s -X PUT localhost:8080/v1/adapters/my-lang -H 'authorization: Bearer $TOKEN' -F adapter_config=@adapters/lang/adapter_config.json -F adapter_model=@adapters/lang/adapter_model.safetensors -w ' HTTP %{http_code}' | cut -c1-200"
run "curl -s localhost:8080/v1/predict -H 'content-type: application/json' -d '{\"adapter_id\": \"my-lang\", \"inputs\": \"To jest piękny dzień.\"}'"
run "curl -s -X DELETE localhost:8080/v1/adapters/my-lang -H 'authorization: Bearer $TOKEN' -w 'HTTP %{http_code}'"
run "curl -s localhost:8080/v1/predict -H 'content-type: application/json' -d '{\"adapter_id\": \"my-lang\", \"inputs\": \"x\"}' -w ' HTTP %{http_code}'"
run "curl -s localhost:8080/v1/predict -H 'content-type: application/json' -d '{\"adapter_id\": \"spam\", \"inputs\": \"x\", \"url\": \"http://evil\"}' -w ' HTTP %{http_code}'"
run "curl -s -X DELETE localhost:8080/v1/adapters/spam -w ' HTTP %{http_code}'"
run "curl -s localhost:8080/metrics | grep -E '^adapterhost_(http_requests_total|adapter_cache_(hits|misses|evictions)_total|adapter_cache_bytes|adapters_on_disk|base_model_bytes|adapter_bytes_total|full_finetune_equivalent_bytes|storage_saving_ratio|batch_rows_(sum|count))'"
