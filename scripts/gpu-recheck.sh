#!/usr/bin/env bash
# scripts/gpu-recheck.sh: a short follow-up to scripts/gpu-check.sh for the rest of a GPU session (about 3
# minutes): kernel check, step benchmarks next to PyTorch, and longer trainings (thousands of steps, so that the
# NVML counter's 100 ms updates are resolved) with metering off / per-step / per-kernel for closure and
# overhead. Same carrying as gpu-check.sh ([".devbin"]); results in $OUT/results.tar.gz and $OUT/summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"; R="$OUT/r"; mkdir -p "$R"
BIN="${BIN:-.devbin/powertrain}"; [ -x "$BIN" ] || BIN=target/release/powertrain
S="$OUT/summary.txt"; : > "$S"
DEADLINE="${DEADLINE:-170}"
log() { echo "$*" | tee -a "$S"; }
step() {
  local name=$1 t=$2; shift 2
  if [ "$SECONDS" -ge "$DEADLINE" ]; then log "$name skipped (deadline)"; return 99; fi
  local left=$((DEADLINE + 20 - SECONDS)); [ "$t" -gt "$left" ] && t=$left
  local t0=$SECONDS; timeout "$t" "$@" > "$R/$name.txt" 2>&1; local rc=$?
  log "$(printf '%-24s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")"; return $rc
}
log "== gpu-recheck $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,driver_version,power.limit,pstate,temperature.gpu --format=csv,noheader | tee -a "$S"
# ONLY_ENERGY=1: just the metered trainings (closure and overhead), e.g. to confirm a meter change.
if [ -z "${ONLY_ENERGY:-}" ]; then
step check 60 "$BIN" check --device cuda; tail -n 1 "$R/check.txt" | tee -a "$S"
for mb in celeba:64 celeba:512 pamap2:512 pamap2:64; do
  m=${mb%:*}; b=${mb#*:}
  step "step_${m}_b$b" 30 "$BIN" bench step --model $m --batch-size $b --device cuda --json
  log "  ours $m b$b: $(grep -o '"median_ms":[0-9.]*' "$R/step_${m}_b$b.txt")"
done
step kernels_celeba_b256 40 "$BIN" bench kernels --model celeba --batch-size 256 --device cuda --json
step torch_celeba_b512 60 python3 scripts/torch_baseline.py --model celeba --batch-size 512 --device cuda --tf32 both --iters 30 --json
log "  torch celeba b512: $(grep -o '"mode": *"[a-z0-9-]*"\|"median_ms": *[0-9.]*' "$R/torch_celeba_b512.txt" | tr '\n' ' ')"
fi
ENERGY_TRAIN_TIMEOUT=40 CAL_KERNELS=gemm,conv2d_forward source scripts/gpu-energy.sh
rm -rf "$R/raw" "$R/pamap2"; tar czf "$OUT/results.tar.gz" -C "$OUT" r && rm -rf "$R"
log "== done $(date -u +%FT%TZ)"
