//! `cargo bench --bench meter`: the host-side cost of metering one training step, per mode, on a scripted
//! counter (no GPU needed): what `Meter::begin_step`/`end_step` add per step, and with `--per-kernel` the
//! split of a step into 30 kernel launches plus the steps.jsonl record the training loop writes
//! (`rundir::StepRecord`). The CUDA events themselves (two records per launch, two elapsed reads) are not in
//! this number: they need a GPU (`scripts/gpu-check.sh` measures whole-step overhead side by side with
//! metering off).
//!
//! Checked before it is timed: the per-kernel rows of a step sum to its energy.
use powertrain::energy::{EnergySource, Meter, MeterConfig, MeterOptions, Reading, Sensor};
use powertrain::ops::{DeviceKind, KernelTiming};
use powertrain::rundir::StepRecord;
use std::time::Instant;

/// A counter at 300 W updating every 100 ms (like an H100's), on the scripted clock.
struct Counter;
impl Sensor for Counter {
    fn source(&self) -> EnergySource {
        EnergySource::NvmlCounter
    }
    fn read(&mut self, now_s: f64) -> anyhow::Result<Reading> {
        Ok(Reading::Counter { energy_j: 300.0 * (now_s / 0.1).floor() * 0.1 })
    }
    fn quantum_j(&self) -> f64 {
        1e-3
    }
    fn nominal_period_s(&self) -> Option<f64> {
        Some(0.1)
    }
}

const NAMES: [&str; 10] = [
    "conv2d_forward",
    "bias_forward",
    "relu_forward",
    "maxpool2d_forward",
    "gemm",
    "softmax_xent",
    "conv2d_backward_filter",
    "conv2d_backward_data",
    "maxpool2d_backward",
    "adam_step",
];

fn meter(per_kernel: bool) -> Meter {
    let cfg = MeterConfig { source: "nvml".into(), watts: None, per_kernel, device: DeviceKind::Cuda, gpu_ordinal: 0 };
    let opts = MeterOptions { sampler: false, characterise: false, ..MeterOptions::default() };
    let mut m = Meter::with_sensor(cfg, Box::new(Counter), opts);
    m.set_clock(Instant::now());
    m
}

/// `steps` metered steps of 1 ms (30 launches of 25 µs each with `per_kernel`), the sensor read every 5 ms as
/// the sampler would; returns the host seconds per step spent in the meter and the record.
fn run(per_kernel: bool, steps: usize) -> f64 {
    let mut m = meter(per_kernel);
    let dt = 1e-3;
    let mut sink = std::io::sink();
    let mut spent = 0.0;
    for i in 0..steps {
        let a = i as f64 * dt;
        if i % 5 == 0 {
            let _ = m.poll(a);
        }
        let kernels: Vec<KernelTiming> = if per_kernel {
            (0..30).map(|k| KernelTiming { name: NAMES[k % 10], start_s: a + k as f64 * 3e-5, dur_s: 2.5e-5 }).collect()
        } else {
            Vec::new()
        };
        let t = Instant::now();
        m.begin_step(a);
        let se = m.end_step(a + dt, &kernels);
        let rec = StepRecord::new(i as u64, 1, 0.5, 64, (dt, a), EnergySource::NvmlCounter, &se);
        rec.write_line(&mut sink).unwrap();
        spent += t.elapsed().as_secs_f64();
        if let (Some(e), true) = (se.energy_j, per_kernel) {
            let parts: f64 = se.kernels.iter().filter_map(|k| k.energy_j).sum();
            assert!((parts - e).abs() <= 1e-9 * e.max(1.0), "kernel rows {parts} != step {e}");
        }
    }
    spent / steps as f64
}

fn main() {
    run(true, 2000); // warm up
    let mut rows = Vec::new();
    for (name, pk) in [("per-step", false), ("per-kernel (30 launches)", true)] {
        let v: Vec<f64> = (0..5).map(|_| run(pk, 20_000)).collect();
        rows.push((name, powertrain::stats::median(&v)));
    }
    println!("host cost of metering one step (median of 5 runs of 20000 steps, scripted counter):");
    for (name, s) in &rows {
        println!(
            "  {name:<26} {:>7.2} us/step  = {:>5.2} % of a 1.087 ms step (pamap2 b64 on the H100)",
            s * 1e6,
            100.0 * s / 1.087e-3
        );
    }
    println!("  ratio per-kernel / per-step: {:.1}x", rows[1].1 / rows[0].1);
}
