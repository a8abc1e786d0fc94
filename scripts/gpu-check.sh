#!/usr/bin/env bash
# scripts/gpu-check.sh: the one prepared script for a lent GPU (15 minutes per session in all).
#
# Build here first (the binary is carried; it needs only the driver's libcuda and libnvidia-ml there):
#   LD_LIBRARY_PATH=<nvrtc wheel>/nvidia/cu13/lib POWERTRAIN_REQUIRE_NVRTC=1 cargo build --release
#   mkdir -p .devbin && cp target/release/powertrain .devbin/
#   cp "$(cargo test --release --test energy_gpu --no-run --message-format=json | python3 -c 'import json,sys; \
#     print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable")][-1])')" .devbin/energy_gpu
# then run on the device with carry [".devbin"]:  bash scripts/gpu-check.sh
# Everything lands under $OUT (default ./gpu-out): results.tar.gz (all logs and JSON) and summary.txt.
# Steps: info, check, CUDA parity runs of both models vs the PyTorch fixtures, bench kernels, bench step for
# both models at batch 64 and 512 next to scripts/torch_baseline.py --device cuda (FP32 and TF32 defaults),
# metered trainings (overhead, closure, power gap) and kernel energy calibration first, then the rest, and a quick
# pamap2 sweep.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"
R="$OUT/r"
mkdir -p "$R"
BIN="${BIN:-.devbin/powertrain}"
[ -x "$BIN" ] || BIN=target/release/powertrain
S="$OUT/summary.txt"
: > "$S"
log() { echo "$*" | tee -a "$S"; }
# The whole script must fit one device call: steps are skipped once DEADLINE seconds have passed, so that the
# results are always packed and returned.
DEADLINE="${DEADLINE:-400}"
step() { # step NAME TIMEOUT CMD...: run with a time limit, output to $R/NAME.txt, status into the summary
  local name=$1 t=$2; shift 2
  if [ "$SECONDS" -ge "$DEADLINE" ]; then log "$(printf '%-28s skipped (deadline %ss)' "$name" "$DEADLINE")"; return 99; fi
  local left=$((DEADLINE + 30 - SECONDS)); [ "$t" -gt "$left" ] && t=$left
  local t0=$(date +%s.%N)
  timeout "$t" "$@" > "$R/$name.txt" 2>&1
  local rc=$?
  log "$(printf '%-28s rc=%-3s %6.1fs' "$name" "$rc" "$(echo "$(date +%s.%N) - $t0" | bc)")"
  return $rc
}

log "== gpu-check $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit,clocks.max.sm,pstate,temperature.gpu --format=csv | tee -a "$S"
nvidia-smi -q > "$R/nvidia-smi-q.txt" 2>&1
step info 60 "$BIN" info --json
step check 180 "$BIN" check --device cuda
tail -n 5 "$R/check.txt" | tee -a "$S"

# Energy checks first (overhead, closure, power gap, calibration): see scripts/gpu-energy.sh.
source scripts/gpu-energy.sh

# Parity: the engine issue's 4-step runs of both models on the GPU vs PyTorch (rel. L2 < 1e-3).
F=tests/fixtures
step parity_pamap2_cuda 120 "$BIN" train --model pamap2 --data $F/pamap2_data.safetensors --init $F/pamap2_init.safetensors \
  --optimizer sgd --lr 0.05 --momentum 0.9 --batch-size 16 --epochs 1 --no-shuffle --device cuda --energy none \
  --save "$R/pamap2_cuda.safetensors" --out "$R/parity_pamap2_run"
step parity_celeba_cuda 120 "$BIN" train --model celeba --data $F/celeba_data.safetensors --init $F/celeba_init.safetensors \
  --optimizer adam --lr 0.001 --batch-size 16 --epochs 1 --no-shuffle --device cuda --energy none \
  --save "$R/celeba_cuda.safetensors" --out "$R/parity_celeba_run"
step cmp_pamap2 60 python3 scripts/compare_weights.py "$R/pamap2_cuda.safetensors" $F/pamap2_sgd_final.safetensors
tail -n 1 "$R/cmp_pamap2.txt" | tee -a "$S"
step cmp_celeba 60 python3 scripts/compare_weights.py "$R/celeba_cuda.safetensors" $F/celeba_adam_final.safetensors --tol 1e-2
tail -n 1 "$R/cmp_celeba.txt" | tee -a "$S"


# Whole training steps vs PyTorch eager (cuDNN), same GPU, same run.
for m in pamap2 celeba; do
  for b in 64 512; do
    step "step_${m}_b${b}" 90 "$BIN" bench step --model $m --batch-size $b --device cuda --json
    step "torch_${m}_b${b}" 120 python3 scripts/torch_baseline.py --model $m --batch-size $b --device cuda --tf32 both --iters 30 --json
    log "  ours:  $(cat "$R/step_${m}_b${b}.txt" | grep -o '"median_ms":[0-9.]*' | head -1)"
    log "  torch: $(grep -o '"mode": *"[a-z0-9-]*"\|"median_ms": *[0-9.]*' "$R/torch_${m}_b${b}.txt" | tr '\n' ' ')"
  done
done

# Kernels: time, GFLOP/s, GB/s, fraction of the measured ceilings.
step bench_kernels 150 "$BIN" bench kernels --device cuda --json
step sweep 200 "$BIN" sweep --model pamap2 --data "$R/pamap2" --device cuda --energy nvml --batch-sizes 32,128,512 \
  --lrs 1e-3,1e-2 --epochs 4 --target-acc 0.8 --out "$R/sweep"
step report 60 "$BIN" report "$R/sweep"
tail -n 20 "$R/sweep.txt" | tee -a "$S"
rm -rf "$R/raw" "$R/pamap2"
tar czf "$OUT/results.tar.gz" -C "$OUT" r && rm -rf "$R"
log "== done $(date -u +%FT%TZ)"
