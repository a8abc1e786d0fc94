#!/usr/bin/env bash
# The main job on the built-in synthetic data, start to finish on a fresh machine:
# synthesise raw PAMAP2 files -> convert them to a dataset -> a quick batch-size x learning-rate sweep with
# per-step energy -> report. Prints where the report is. Usage: bash scripts/quickstart.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-quickstart}"
cargo build --release --quiet
bin=target/release/powertrain
mkdir -p "$work"
if [ ! -d "$work/pamap2-raw" ]; then
  "$bin" data synth pamap2 --out "$work/pamap2-raw" --seed 0 --scale small
fi
if [ ! -d "$work/pamap2" ]; then
  "$bin" data pamap2 --src "$work/pamap2-raw/PAMAP2_Dataset" --out "$work/pamap2"
fi
# --energy auto: NVML on a GPU, RAPL where readable, else a labelled estimate from the device power model
# ("estimate (no sensor)", src/energy/device_power.rs); ENERGY=estimate WATTS=30 states the watts by hand,
# ENERGY=sim shows what a GPU counter would have reported, ENERGY=none plots time only.
energy_args=(--energy "${ENERGY:-auto}")
if [ -n "${WATTS:-}" ]; then energy_args+=(--watts "$WATTS"); fi
"$bin" sweep --model pamap2 --data "$work/pamap2" --quick "${energy_args[@]}" --out "$work/sweep"
"$bin" report "$work/sweep"
echo "report: $work/sweep/report.html (and report.md; open it in a browser, it works offline)"
