#!/usr/bin/env bash
# scripts/gpu-validate.sh: the one decisive GPU validation of the energy path (issue 18), in one shot of at most
# 8 minutes on an H100/H200. Decisive steps first; each appends one line to $OUT/summary.txt (name, rc, seconds,
# and its numbers), raw outputs go to $OUT/r/. A deadline guard skips what would not fit.
#
#   1 context      nvidia-smi -q, powertrain info --json
#   2 stamps       launch stamps vs CUDA events op by op (the energy_gpu test binary, .devbin/energy_gpu)
#   3 sensor       powertrain bench sensor: update period, continuous / part-time, window, lag, instant vs counter
#   4 train_*      long metered trainings (>= 20 s each): off / per-step / per-kernel events / per-kernel stamps,
#                  pamap2 b64 and celeba b256; overhead, closure (run) and closure per 2 s block; the first
#                  per-kernel run of a model calibrates its kernels in place before its first step (the cache
#                  under $OUT starts empty): its kernel_split line says what that cost
#   5 calibrate    bench kernels --energy for the kernels holding >= 5 % of the per-kernel run's energy, against
#                  the in-training attribution (additivity check)
#   6 bench_step   bench step --energy --kernel-timing all: metering cost interleaved with metering off
#
# Environment: OUT (default gpu-out), BIN (default .devbin/powertrain, else target/release/powertrain),
# DEADLINE (s, default 450), ONLY=sensor,train (rerun single steps: a comma list of the names above; train runs
# every train_*), DEVICE (cuda; cpu for the dry run), ENERGY (nvml; sim for the dry run), TRAIN_S (seconds per
# training, default 20), QUICK=1 (tiny sizes: the test fixtures, a few steps; the dry run in the test suite:
# `DEVICE=cpu ENERGY=sim QUICK=1 scripts/gpu-validate.sh`, tests/gpu_validate.rs).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-out}"; R="$OUT/r"; mkdir -p "$R"
BIN="${BIN:-.devbin/powertrain}"; [ -x "$BIN" ] || BIN=target/release/powertrain
DEVICE="${DEVICE:-cuda}"; ENERGY="${ENERGY:-nvml}"; QUICK="${QUICK:-}"; ONLY="${ONLY:-}"
DEADLINE="${DEADLINE:-450}"; TRAIN_S="${TRAIN_S:-20}"
S="$OUT/summary.txt"; touch "$S"
export POWERTRAIN_CACHE="${POWERTRAIN_CACHE:-$OUT/cache}"
log() { echo "$*" | tee -a "$S"; }
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]] || [[ "$1" == train_* && ",$ONLY," == *",train,"* ]]; }
# step NAME TIMEOUT CMD...: run CMD into $R/NAME.txt unless ONLY excludes it or the deadline passed.
step() {
  local name=$1 t=$2; shift 2
  want "$name" || return 98
  if [ "$SECONDS" -ge "$DEADLINE" ]; then log "$(printf '%-26s skipped (deadline %ss)' "$name" "$DEADLINE")"; return 99; fi
  local left=$((DEADLINE + 30 - SECONDS)); [ "$t" -gt "$left" ] && t=$left
  local t0=$SECONDS; timeout "$t" "$@" > "$R/$name.txt" 2>&1; local rc=$?
  log "$(printf '%-26s rc=%-3s %4ss' "$name" "$rc" "$((SECONDS - t0))")"; return $rc
}
skip() { want "$1" && log "$(printf '%-26s skipped (%s)' "$1" "$2")"; return 0; }
log "== gpu-validate $(date -u +%FT%TZ) DEVICE=$DEVICE ENERGY=$ENERGY QUICK=${QUICK:-0} ONLY=${ONLY:-all}"

# 1 context
if [ "$DEVICE" = cuda ]; then
  step context 30 nvidia-smi -q && grep -m3 -E "Product Name|Driver Version|CUDA Version" "$R/context.txt" | tee -a "$S"
else
  skip context "no nvidia-smi on $DEVICE"
fi
step info 30 "$BIN" info --json

# 2 stamps vs events, op by op (GPU only)
if [ "$DEVICE" = cuda ] && [ -x .devbin/energy_gpu ]; then
  step stamps 90 .devbin/energy_gpu --ignored --nocapture --test-threads 1
  grep -h "stamps\|counter vs\|test result" "$R/stamps.txt" | tail -n 8 | tee -a "$S"
else
  skip stamps "needs DEVICE=cuda and .devbin/energy_gpu (cargo test --release --test energy_gpu --no-run)"
fi

# 3 the sensor's character (stored in $POWERTRAIN_CACHE; every later run's summary.json shows it)
src=nvml; [ "$ENERGY" = sim ] && src=sim
step sensor 90 "$BIN" bench sensor --energy-source "$src" --device "$DEVICE" --out "$R/sensor.json" \
  && head -n 1 "$R/sensor.txt" | tee -a "$S"

# 4 long metered trainings
# The training's energy source: nvml on a GPU, the sensor twin (--energy sim) in the dry run.
TRAIN_ENERGY=(--energy "$ENERGY")
if [ -n "$QUICK" ]; then
  MODELS="${MODELS:-pamap2:8}"; LIMIT=(--epochs 2 --max-steps 40)
else
  MODELS="${MODELS:-pamap2:64 celeba:256}"; LIMIT=(--epochs 100000)
fi
data_for() { # data_for MODEL: sets DATA (a dataset directory or file) and VAL
  local m=$1
  if [ -n "$QUICK" ]; then DATA="tests/fixtures/${m}_data.safetensors"; VAL=(--val "$DATA"); return 0; fi
  DATA="$R/$m"; VAL=()
  [ -d "$DATA" ] && return 0
  step "synth_$m" 120 "$BIN" data synth "$m" --out "$R/raw_$m" --scale small --seed 0 || return 1
  if [ "$m" = pamap2 ]; then step "convert_$m" 120 "$BIN" data pamap2 --src "$R/raw_$m/PAMAP2_Dataset" --out "$DATA"
  else step "convert_$m" 180 "$BIN" data celeba --src "$R/raw_$m" --out "$DATA"; fi
}
modes="off step kernel-events"; [ "$DEVICE" = cuda ] && modes="$modes kernel-stamps"
for mb in $MODELS; do
  m=${mb%:*}; b=${mb#*:}
  want train || want "train_${m}_off" || continue
  data_for "$m" || { log "train_$m skipped (no data)"; continue; }
  runs=()
  for mode in $modes; do
    case $mode in
      off) args=(--energy none) ;;
      step) args=("${TRAIN_ENERGY[@]}") ;;
      kernel-events) args=("${TRAIN_ENERGY[@]}" --per-kernel --kernel-timing events) ;;
      kernel-stamps) args=("${TRAIN_ENERGY[@]}" --per-kernel --kernel-timing stamps) ;;
    esac
    # >= TRAIN_S seconds: a step budget from the model's rough steps per second on an H100 (pamap2 b64 ~1.1 ms
    # per step, celeba b256 a few ms); the step's timeout leaves a minute beyond it.
    sps=900; [ "$m" = celeba ] && sps=150
    budget=(); [ -z "$QUICK" ] && budget=(--max-steps $((TRAIN_S * sps)))
    run="$R/run_${m}_$mode"; rm -rf "$run"
    step "train_${m}_$mode" $((TRAIN_S * 3 + 60)) "$BIN" train --model "$m" --data "$DATA" "${VAL[@]}" \
      --device "$DEVICE" --batch-size "$b" --lr 1e-3 --seed 0 "${LIMIT[@]}" "${budget[@]}" "${args[@]}" --out "$run"
    [ -f "$run/summary.json" ] && runs+=("$run")
    if [ "$mode" != off ] && [ "$mode" != step ] && [ -f "$run/summary.json" ] && command -v python3 > /dev/null; then
      python3 -c 'import json,sys; k=json.load(open(sys.argv[1])).get("kernel_split") or {}; print("kernel_split:", k.get("method"), "|", k.get("calibration"), "| cost", json.dumps(k.get("cost")))' \
        "$run/summary.json" 2>&1 | sed "s/^/  $(basename "$run"): /" | tee -a "$S"
    fi
  done
  if [ ${#runs[@]} -ge 2 ] && command -v python3 > /dev/null; then
    python3 scripts/energy_summary.py "${runs[@]}" > "$R/summary_$m.txt" 2>&1
    tail -n 12 "$R/summary_$m.txt" | sed "s/^/  $m: /" | tee -a "$S"
    for run in "${runs[@]:1}"; do
      python3 scripts/closure_blocks.py "$run" 2.0 2>&1 | tail -n 1 | sed "s/^/  $(basename "$run"): /" | tee -a "$S"
    done
  fi
done

# 5 calibration of the kernels holding >= 5 % of the per-kernel run's energy, against its attribution
first=${MODELS%% *}; m=${first%:*}; run="$R/run_${m}_kernel-events"
if [ -f "$run/kernels.csv" ] && command -v python3 > /dev/null; then
  top=$(python3 scripts/closure_blocks.py --top-kernels "$run" 0.05)
  cal=(--energy-source "$src")
  [ -n "$QUICK" ] && cal+=(--windows 2 --window-s 0.2)
  step calibrate 150 "$BIN" bench kernels --device "$DEVICE" --energy "${cal[@]}" --kernel "$top" --compare "$run" \
    --out "$R/calibrate.json" && tail -n 6 "$R/calibrate.txt" | tee -a "$S"
  # The additivity check of the per-kernel run (calibrated power x time + gaps vs the counter, same steps).
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("additivity:", json.dumps((s.get("kernel_split") or {}).get("additivity")))' \
    "$run/summary.json" 2>&1 | tee -a "$S"
else
  skip calibrate "no per-kernel run of $m"
fi

# 6 what metering costs, interleaved with it off
it=(); [ -n "$QUICK" ] && it=(--iters 5)
bsrc=(--energy-source "$src")
step bench_step 120 "$BIN" bench step --device "$DEVICE" --model "$m" --batch-size "${first#*:}" --energy "${bsrc[@]}" \
  --kernel-timing all "${it[@]}" && tail -n 4 "$R/bench_step.txt" | tee -a "$S"

log "== done $(date -u +%FT%TZ) in ${SECONDS}s"
