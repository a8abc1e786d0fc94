# scripts/gpu-energy.sh: the energy issue's GPU checks, sourced by scripts/gpu-check.sh and scripts/gpu-recheck.sh
# (which define BIN, R, S, log and step). First the cost of the two kernel clocks alone (bench step
# --kernel-timing all) and of NVML metering as train runs it, interleaved with metering off in one process (bench
# step --energy). Then the same training (3360 steps of ~1 ms, long enough for the counter's ~100 ms updates)
# with metering off, per-step, per-kernel (events; launch stamps; events on every 10th step) and off again (the
# run-to-run spread): overhead side by side, closure of the windows on the counter's run total, counter vs
# integrated instant power (scripts/energy_summary.py). Then calibration of a few kernels (bench kernels
# --energy) against the per-kernel run's in-training attribution, and the meter's own GPU test when its binary
# was carried (.devbin/energy_gpu).
# Optional: ENERGY_TRAIN_TIMEOUT (s, default 60), CAL_KERNELS (default gemm,conv2d_forward,adam_step).
if [ -x .devbin/energy_gpu ]; then
  step energy_gpu_test 60 .devbin/energy_gpu --ignored --nocapture --test-threads 1
  grep -h "counter vs\|test result" "$R/energy_gpu_test.txt" | tee -a "$S"
fi
step synth 60 "$BIN" data synth pamap2 --out "$R/raw" --scale small --seed 0
step convert 60 "$BIN" data pamap2 --src "$R/raw/PAMAP2_Dataset" --out "$R/pamap2"
# The cost of per-kernel timing alone (no NVML), side by side with it off: events vs launch stamps; then of
# metering as train does it (NVML meter, per-step and per-kernel with each clock), interleaved with it off.
step timing_bench 60 "$BIN" bench step --device cuda --model pamap2 --batch-size 64 --kernel-timing all
tail -n 3 "$R/timing_bench.txt" | tee -a "$S"
step metering_bench 60 "$BIN" bench step --device cuda --model pamap2 --batch-size 64 --energy --energy-source nvml \
  --kernel-timing all
tail -n 4 "$R/metering_bench.txt" | tee -a "$S"
# none2: the unmetered run again, last, so that the summary shows the run-to-run spread beside the overheads.
for mode in none nvml nvml-kernel nvml-stamps nvml-kernel10 none2; do
  args=(--energy nvml); [ ${mode%2} = none ] && args=(--energy none); [ $mode = nvml-kernel ] && args=(--energy nvml --per-kernel)
  [ $mode = nvml-stamps ] && args=(--energy nvml --per-kernel --kernel-timing stamps)
  [ $mode = nvml-kernel10 ] && args=(--energy nvml --per-kernel --kernel-sample 10)
  step "train_$mode" "${ENERGY_TRAIN_TIMEOUT:-60}" "$BIN" train --model pamap2 --data "$R/pamap2" --device cuda \
    --batch-size 64 --lr 1e-3 --epochs 120 --seed 0 "${args[@]}" --out "$R/run_$mode"
done
python3 scripts/energy_summary.py "$R/run_none" "$R/run_nvml" "$R/run_nvml-kernel" "$R/run_nvml-stamps" \
  "$R/run_nvml-kernel10" "$R/run_none2" 2>&1 | tee -a "$S"
step calibrate 90 "$BIN" bench kernels --device cuda --energy --kernel "${CAL_KERNELS:-gemm,conv2d_forward,adam_step}" \
  --compare "$R/run_nvml-kernel" --windows 3 --window-s 1.0 --out "$R/calibrate.json"
tail -n 8 "$R/calibrate.txt" | tee -a "$S"
