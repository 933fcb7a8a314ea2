#!/usr/bin/env bash
# GPU check, for a machine with a GPU (a few minutes): lists the execution providers onnxruntime-node
# offers and the Vulkan devices it can see, runs the WebGPU fidelity tests (WebGPU against the
# CPU provider and PyTorch), measures the demo encoder and decoder on cpu and webgpu
# (scripts/gpu-measure.mjs), runs `npm run bench` with --execution-provider webgpu where the
# bench takes that flag, and writes everything to one results directory with a summary.md.
#
#   scripts/gpu-check.sh [results-dir]        (default: .gpu-check/<UTC time>)
#
# Needs: Node 20 and `npm ci` done; a Vulkan driver for the GPU (NVIDIA's proprietary driver ships
# one; Mesa's radv/anv for AMD/Intel), and vulkan-tools for the device list. On a machine with
# only Mesa's lavapipe (software Vulkan) it runs too, and says so: those numbers are not GPU
# numbers. Environment: GPU_CHECK_BENCH_ARGS (default "--quick") is passed to the bench;
# VK_ICD_FILENAMES picks a Vulkan driver when several are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.gpu-check/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
export ONNXRUNTIME_NODE_INSTALL=skip
log() { printf '[gpu-check] %s\n' "$*" >&2; }

log "machine → $out/machine.txt"
{
  echo "date: $(date -u +%FT%TZ)"; echo "kernel: $(uname -srm)"; echo "cpus: $(nproc)"
  echo "node: $(node --version)"; echo "onnxruntime-node: $(node -p "require('onnxruntime-node/package.json').version")"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
} > "$out/machine.txt" 2>&1

log "Vulkan devices → $out/vulkan.txt"
if command -v vulkaninfo >/dev/null; then
  vulkaninfo --summary > "$out/vulkan.txt" 2>&1 || true
else
  echo "vulkaninfo not installed (apt-get install vulkan-tools)" > "$out/vulkan.txt"
fi
software=no
grep -qiE 'llvmpipe|lavapipe|PHYSICAL_DEVICE_TYPE_CPU' "$out/vulkan.txt" && ! grep -qiE 'DISCRETE_GPU|INTEGRATED_GPU' "$out/vulkan.txt" && software=yes

log "build"
npm run build --silent > "$out/build.txt" 2>&1 || log "build reported errors (see build.txt); going on with what it emitted"

log "providers → $out/providers.json"
node --input-type=module -e "
  import ort from 'onnxruntime-node';
  const { probeWebGpu } = await import('./dist/src/runtime/device-io.js');
  console.log(JSON.stringify({ supported: ort.listSupportedBackends(), webgpu: await probeWebGpu() }, null, 2));
" > "$out/providers.json" 2> "$out/providers.stderr.txt" || true

log "WebGPU fidelity tests → $out/webgpu-tests.txt"
tests=pass
CI=true node --test --test-concurrency=1 dist/test/webgpu.test.js > "$out/webgpu-tests.txt" 2>&1 || tests=FAIL

log "encoder and decoder, cpu and webgpu → $out/measure.json"
node scripts/gpu-measure.mjs --providers cpu,webgpu > "$out/measure.json" 2> "$out/measure.stderr.txt" || log "gpu-measure failed (see measure.stderr.txt)"

bench_args="${GPU_CHECK_BENCH_ARGS:---quick}"
if node dist/bench/run.js --help 2>/dev/null | grep -q -- '--execution-provider'; then
  log "npm run bench -- $bench_args --execution-provider webgpu → $out/bench.txt"
  # shellcheck disable=SC2086
  npm run bench --silent -- $bench_args --execution-provider webgpu > "$out/bench.txt" 2>&1 || log "bench failed (see bench.txt)"
else
  echo "npm run bench has no --execution-provider flag yet: its figures run on the CPU provider only. scripts/gpu-measure.mjs (measure.json) holds the webgpu figures." > "$out/bench.txt"
fi

log "summary → $out/summary.md"
node --input-type=module -e "
  import { readFileSync, writeFileSync } from 'node:fs';
  const out = process.argv[1], software = process.argv[2] === 'yes', tests = process.argv[3];
  const read = (f) => { try { return readFileSync(out + '/' + f, 'utf8'); } catch { return ''; } };
  let m = {}; try { m = JSON.parse(read('measure.json')); } catch {}
  const dev = (read('vulkan.txt').match(/deviceName\s*=\s*(.*)/g) ?? []).map((l) => l.replace(/deviceName\s*=\s*/, '')).join('; ') || 'unknown';
  const f = (x, d = 1) => (typeof x === 'number' ? x.toLocaleString('en-US', { maximumFractionDigits: d }) : '—');
  const rows = Object.entries(m.providers ?? {}).map(([ep, r]) => r.error ? '| ' + ep + ' | error: ' + r.error + ' ||||||' :
    '| ' + ep + ' | ' + f(r.encoder.msPerBatchMedian) + ' | ' + f(r.encoder.hostToDeviceBytesPerBatch, 0) + ' / ' + f(r.encoder.deviceToHostBytesPerBatch, 0) +
    ' | ' + f(r.decoder.prefillMs) + ' | ' + f(r.decoder.msPerDecodeStepMedian) + ' | ' + f(r.decoder.decodeHostToDeviceBytesPerStep, 0) + ' / ' + f(r.decoder.decodeDeviceToHostBytesPerStep, 0) +
    ' | ' + r.decoder.decodeStepsKvOnDevice + '/' + r.decoder.decodeSteps + ' |');
  const enc = m.providers?.cpu?.encoder ?? m.providers?.webgpu?.encoder, decd = m.providers?.cpu?.decoder ?? m.providers?.webgpu?.decoder;
  writeFileSync(out + '/summary.md', [
    '# GPU check ' + (m.date ?? ''), '',
    'Vulkan device(s): ' + dev + (software ? ' — **software Vulkan: these times are not GPU times; no speed claim may come from them.**' : ''), '',
    'WebGPU fidelity tests (CI=true, so a missing device fails): **' + tests + '**', '',
    'Encoder: demo encoder, ' + (enc ? enc.rows + ' rows × ' + enc.seqLen + ' tokens, ' + enc.adapters + ' adapters mixed' : '—') +
    '; decoder: demo decoder, ' + (decd ? decd.rows + ' rows, ' + decd.promptTokens + '-token prompts, ' + decd.decodeSteps + ' greedy steps, ' + decd.adapters + ' adapters mixed' : '—') +
    '. Bytes are estimates from the sizes of host feeds and outputs (up / down).', '',
    '| provider | encoder ms/batch | encoder bytes up / down per batch | decoder prefill ms | decoder ms/step | decoder bytes up / down per step | steps with KV on device |',
    '|---|---:|---:|---:|---:|---:|---:|', ...rows, '',
    'Bench: ' + read('bench.txt').split('\n').slice(-3).join(' ').trim(), '',
  ].join('\n'));
" "$out" "$software" "$tests"
cat "$out/summary.md"
[ "$tests" = pass ]
