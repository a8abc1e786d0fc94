//! `powertrain bench kernels`: per-kernel timing at the protocol's layer shapes (both models, batch sizes 16, 64,
//! 256, 1024 unless given), in the style of llm.c's dev/cuda: validate, then time.
//!
//! Per case: check against the CPU backend first (on CUDA; a kernel that fails is printed as refused and not
//! timed), warm up, then the median of repeated calls timed by the backend's own kernel timing (CUDA events on
//! the GPU, the wall clock on the CPU). Reported: ms, GFLOP/s (conv and gemm), GB/s (every buffer read or
//! written once), and the fraction of the device's measured ceilings. On CUDA: a large device-to-device copy
//! (GB/s, read + write) and a large FP32 GEMM through our own gemm kernel (GFLOP/s); on the CPU: the STREAM
//! triad and an FP32 FMA loop on all threads (`bench::ceilings`).
//!
//! With `--energy` (calibration mode): after timing, each case is run back to back over `--windows` windows of
//! `--window-s` seconds, each started at a random phase of the sensor's update period, and the window's energy
//! (NVML counter on the GPU, RAPL on the CPU, or a labelled estimate) divided by the launches in it gives joules
//! per launch with a 95 % interval (`energy::calibrate_per_launch`). With `--compare RUN_DIR` (a run trained
//! with `--per-kernel`) the calibration runs at that run's model and batch size, and the kernels a training
//! step launches are set beside the run's in-training attribution (kernels.csv).
//!
//! Every calibration also becomes a power per kernel and training shape (`model/bBATCH`), stored in the
//! calibration cache of the device (`energy::powercal`), which `train --per-kernel` splits steps with. With
//! `--energy-source sim` the cases are calibrated on the sensor twin in simulated time, driven by their
//! measured launch times (labelled sim: never a measurement).

use crate::energy::{calibrate_per_launch, CalibrateOpts, Calibration, Meter, MeterConfig};
use crate::model::Arch;
use crate::ops::check::{compare, host_data, prepare, Case, StepCases};
use crate::ops::cpu::CpuBackend;
use crate::ops::cuda::CudaBackend;
use crate::ops::prelude::*;
use crate::ops::{GemmCall, GemmParams, Op, KERNEL_NAMES};
use crate::util::{fmt_fixed, fmt_sci};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// CPU work (flops, or bytes for the other ops) above which the check against the CPU backend runs at a smaller
/// batch of the same layer (the GPU is still timed at the requested batch).
const CHECK_BUDGET: f64 = 4e9;

/// What `bench kernels` runs (src/cmd/bench_kernels.rs fills it from the command line).
#[derive(Clone, Debug)]
pub struct KernelBenchOptions {
    /// pamap2 or celeba; None: both (or the compared run's).
    pub model: Option<String>,
    /// None: 16, 64, 256 and 1024 (64 with --energy; the compared run's with --compare).
    pub batch_size: Option<usize>,
    /// The device, resolved by the command.
    pub device: DeviceKind,
    /// Timed repetitions (None: adaptive).
    pub iters: Option<usize>,
    /// Only these kernels (comma-separated names).
    pub kernel: Option<String>,
    /// Calibration mode: repeat-and-divide energy per launch.
    pub energy: bool,
    /// auto, nvml, rapl or estimate.
    pub energy_source: String,
    pub watts: Option<f64>,
    pub windows: Option<usize>,
    pub window_s: Option<f64>,
    /// A run directory trained with --per-kernel to compare with.
    pub compare: Option<String>,
    /// Write the JSON result here too (atomically).
    pub out: Option<String>,
    pub json: bool,
}

/// One timed (or refused) case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchRow {
    pub model: String,
    pub layer: String,
    pub kernel: &'static str,
    pub batch: usize,
    pub shape: String,
    /// "ok", "refused" (failed its check) or "error".
    pub status: String,
    /// Batch the correctness check ran at (None on the CPU, which is the reference).
    pub checked_at_batch: Option<usize>,
    pub max_rel_err: Option<f64>,
    pub iters: usize,
    pub median_ms: Option<f64>,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    /// GFLOP/s over the GEMM ceiling (CUDA) or the FMA loop's (CPU).
    pub frac_peak_flops: Option<f64>,
    /// GB/s over the copy ceiling (CUDA) or the STREAM triad's (CPU).
    pub frac_peak_bw: Option<f64>,
    /// With --energy: joules per launch (repeat-and-divide).
    pub energy: Option<Calibration>,
    pub note: String,
}

/// Measured ceilings of the device.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Ceilings {
    pub copy_gbps: f64,
    pub gemm_gflops: f64,
    pub gemm_mnk: usize,
    /// How the two figures were measured: "cuda: device copy, our FP32 gemm" or "cpu: STREAM triad, FMA loop"
    /// (`bench::ceilings`).
    pub what: &'static str,
}

/// What the CPU ceilings are (their `Ceilings::what`).
pub const CPU_CEILINGS: &str =
    "cpu: GB/s of the STREAM triad on all threads, GFLOP/s of an FP32 FMA loop on all threads (bench::ceilings)";

/// `powertrain bench kernels`: check, time (and calibrate) the cases, print or write the result.
pub fn run(o: &KernelBenchOptions) -> Result<()> {
    check_flags(o)?;
    let run = o.compare.as_deref().map(|d| CompareRun::load(Path::new(d))).transpose()?;
    let cases = select_cases(o, run.as_ref())?;
    if let Some(r) = &run {
        if r.device != o.device.name() {
            bail!(
                "bench kernels --compare {}: that run trained on {}, this calibration would run on {}: use --device {}",
                r.dir.display(),
                r.device,
                o.device.name(),
                r.device
            );
        }
    }
    let seed = 0x5eed;
    // The calibrator opens after the backend, so that a missing GPU is reported as such, not as a missing sensor.
    let open_cal = || o.energy.then(|| Calibrator::open(o)).transpose();
    let (name, ceilings, rows, cal) = match o.device {
        DeviceKind::Cpu => {
            let cpu = CpuBackend::new();
            let mut cal = open_cal()?;
            let c = super::ceilings::measure();
            if !o.json {
                println!(
                    "{}: ceilings {:.1} GB/s (STREAM triad), {:.1} GFLOP/s (FP32 {} loop, {} threads)",
                    cpu.device_name(),
                    c.triad_gbps,
                    c.fma_gflops,
                    if c.fused { "FMA" } else { "multiply+add" },
                    c.threads
                );
            }
            let ceil = Ceilings { copy_gbps: c.triad_gbps, gemm_gflops: c.fma_gflops, gemm_mnk: 0, what: CPU_CEILINGS };
            let rows = bench_all(&cpu, None, &cases, o, seed, Some(ceil), cal.as_mut())?;
            (cpu.device_name(), Some(ceil), rows, cal)
        }
        DeviceKind::Cuda => {
            let gpu = CudaBackend::new(0)?;
            let mut cal = open_cal()?;
            let cpu = CpuBackend::new();
            let ceil = ceilings(&gpu)?;
            if !o.json {
                println!(
                    "{} ({}): ceilings {:.0} GB/s (device copy, read+write), {:.0} GFLOP/s (our FP32 gemm {n}x{n}x{n})",
                    gpu.device_name(),
                    gpu.image_summary(),
                    ceil.copy_gbps,
                    ceil.gemm_gflops,
                    n = ceil.gemm_mnk
                );
            }
            let rows = bench_all(&gpu, Some(&cpu), &cases, o, seed, Some(ceil), cal.as_mut())?;
            (gpu.device_name(), Some(ceil), rows, cal)
        }
    };
    if let Some(path) = cal.as_ref().map(Calibrator::store).transpose()?.flatten() {
        eprintln!("calibration stored in {} (train --per-kernel splits steps with it)", path.display());
    }
    report(o, run.as_ref(), &name, ceilings, &rows, cal.as_ref())
}

/// The calibration flags need --energy.
fn check_flags(o: &KernelBenchOptions) -> Result<()> {
    if o.energy {
        return Ok(());
    }
    let given = [
        (o.compare.is_some(), "--compare"),
        (o.windows.is_some() || o.window_s.is_some(), "--windows/--window-s"),
        (o.watts.is_some() || o.energy_source != "auto", "--energy-source/--watts"),
    ];
    if let Some((_, flag)) = given.iter().find(|(set, _)| *set) {
        bail!("bench kernels: {flag} needs --energy (calibration mode)");
    }
    Ok(())
}

/// The models' step cases at the chosen batch sizes, narrowed to `--kernel` and (with --compare) to what a
/// training step of the compared run launches.
fn select_cases(o: &KernelBenchOptions, run: Option<&CompareRun>) -> Result<Vec<Case>> {
    let model_arg = match (run, o.model.as_deref()) {
        (Some(r), Some(m)) if m != r.model => {
            bail!("bench kernels --compare {}: that run trained {}, not --model {m}", r.dir.display(), r.model)
        }
        (Some(r), _) => Some(r.model.clone()),
        (None, m) => m.map(str::to_string),
    };
    let models: Vec<Arch> = match model_arg.as_deref() {
        None => vec![Arch::Pamap2, Arch::Celeba { k: crate::model::CELEBA_K }],
        Some("pamap2") => vec![Arch::Pamap2],
        Some("celeba") => vec![Arch::Celeba { k: crate::model::CELEBA_K }],
        Some(other) => bail!("bench kernels --model {other}: use pamap2 or celeba (or leave it out for both)"),
    };
    let batches: Vec<usize> = match (o.batch_size, run) {
        (Some(0), _) => bail!("bench kernels --batch-size 0: give a positive batch size"),
        (Some(b), Some(r)) if b != r.batch_size => bail!(
            "bench kernels --compare {}: that run used batch size {}, not --batch-size {b}",
            r.dir.display(),
            r.batch_size
        ),
        (Some(b), _) => vec![b],
        (None, Some(r)) => vec![r.batch_size],
        // Calibration takes seconds per case: one batch size unless asked.
        (None, None) if o.energy => vec![64],
        (None, None) => vec![16, 64, 256, 1024],
    };
    let mut cases = Vec::new();
    for m in &models {
        for (i, &b) in batches.iter().enumerate() {
            cases.extend(m.step_cases(b, i == 0));
        }
    }
    if let Some(list) = &o.kernel {
        let want: Vec<&str> = list.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
        if let Some(bad) = want.iter().find(|k| !KERNEL_NAMES.contains(k)) {
            bail!("bench kernels --kernel {bad}: not a kernel; the kernels are {}", KERNEL_NAMES.join(", "));
        }
        cases.retain(|c| want.contains(&c.op.kernel()));
    }
    if let Some(r) = run {
        // Only what a training step of that run launches.
        cases.retain(|c| r.step_runs(c));
    }
    if cases.is_empty() {
        bail!("bench kernels: no case left to run (check --kernel)");
    }
    Ok(cases)
}

/// The JSON document (to --out and, with --json, stdout) or the tables.
fn report(
    o: &KernelBenchOptions,
    run: Option<&CompareRun>,
    name: &str,
    ceilings: Option<Ceilings>,
    rows: &[BenchRow],
    cal: Option<&Calibrator>,
) -> Result<()> {
    let comparison = run.map(|r| r.compare(rows));
    let doc = serde_json::json!({
        "device": name,
        "kind": o.device.name(),
        "protocol": crate::PROTOCOL_VERSION,
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "ceilings": ceilings,
        "energy": cal.map(|c| c.context()),
        "rows": rows,
        "comparison": comparison,
    });
    if let Some(p) = &o.out {
        crate::util::write_json(Path::new(p), &doc)?;
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if let Some(c) = cal {
            println!("{}", c.header());
        }
        print!("{}", table(rows));
        if let (Some(r), Some(c)) = (run, &comparison) {
            print!("{}", r.table(c));
        }
    }
    let refused = rows.iter().filter(|r| r.status != "ok").count();
    if refused > 0 {
        eprintln!("bench kernels: {refused} case(s) refused or failed; see the status column");
    }
    Ok(())
}

/// Check, time and (with a calibrator) measure the energy of every case.
fn bench_all<B: Backend>(
    b: &B,
    reference: Option<&CpuBackend>,
    cases: &[Case],
    o: &KernelBenchOptions,
    seed: u64,
    ceil: Option<Ceilings>,
    mut cal: Option<&mut Calibrator>,
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::with_capacity(cases.len());
    let pb = super::progress(cases.len() as u64, "bench kernels");
    for (i, c) in cases.iter().enumerate() {
        pb.set_message(format!("{} {}", c.label, c.op.kernel()));
        let mut row = bench_case(b, reference, c, o.iters, seed, ceil);
        if let (Some(cal), Some(ms)) = (cal.as_deref_mut(), row.median_ms) {
            if !o.json && pb.is_hidden() {
                eprintln!("[{}/{}] energy of {} {} ...", i + 1, cases.len(), c.label, c.op.kernel());
            }
            match cal.measure(b, c, ms / 1e3, seed) {
                Ok(e) => row.energy = Some(e),
                Err(e) => {
                    // A sensor that stops mid-run ends the calibration: no made-up numbers for the rest.
                    return Err(e.context(format!("bench kernels --energy: {} {}", c.label, c.op.kernel())));
                }
            }
        }
        rows.push(row);
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(rows)
}

/// The training shape a case belongs to (`model/bBATCH`), the calibration cache's key.
fn case_shape(case: &Case) -> String {
    let model = case.label.split_once(' ').map_or(case.label.as_str(), |(m, _)| m);
    crate::energy::powercal::shape_key(model, case.batch)
}

/// The meter and the repeat-and-divide options of `bench kernels --energy`.
pub struct Calibrator {
    meter: Meter,
    opts: CalibrateOpts,
    /// Power per kernel and shape, for the calibration cache.
    powers: Vec<crate::energy::powercal::KernelPowerRow>,
    /// The twin's idle and gap power (sim).
    sim_idle_w: Option<(f64, f64)>,
}

impl Calibrator {
    pub fn open(o: &KernelBenchOptions) -> Result<Calibrator> {
        let windows = o.windows.unwrap_or(3);
        let window_s = o.window_s.unwrap_or(1.0);
        if windows < 2 {
            bail!("bench kernels --windows {windows}: give at least 2 windows (an interval needs two)");
        }
        if !(window_s.is_finite() && window_s > 0.0) {
            bail!("bench kernels --window-s {window_s}: give a positive number of seconds");
        }
        if o.watts.is_some() && o.energy_source != "estimate" {
            bail!("bench kernels --watts is for --energy-source estimate");
        }
        let source = o.energy_source.as_str();
        if !matches!(source, "auto" | "nvml" | "rapl" | "sim" | "estimate") {
            bail!("bench kernels --energy-source {source}: use auto, nvml, rapl, sim or estimate");
        }
        let mut meter = Meter::open(MeterConfig {
            source: source.into(),
            watts: o.watts,
            per_kernel: false,
            device: o.device,
            gpu_ordinal: 0,
        })?;
        if meter.source() == crate::energy::EnergySource::None {
            let why = meter.context()["auto_fallback"].as_str().unwrap_or("no energy sensor found").to_string();
            bail!(
                "bench kernels --energy: {why}. Run `powertrain info` to see the sensors, or use \
                 --energy-source estimate --watts W for a labelled estimate"
            );
        }
        if meter.source().is_measurement() {
            meter.measure_idle(1.0)?;
        }
        if window_s < 1.0 && meter.source().is_measurement() {
            eprintln!(
                "note: --window-s {window_s}: windows under 1 s hold few counter updates (about 100 ms apart on recent \
                 GPUs); the interval says how much that costs"
            );
        }
        let seed = 0xca11b;
        let opts = CalibrateOpts { window_s, windows, seed };
        Ok(Calibrator { meter, opts, powers: Vec::new(), sim_idle_w: None })
    }

    /// On the twin: the case's power from back-to-back launches in simulated time (`energy::powercal`).
    fn measure_sim(&mut self, case: &Case, launch_s: f64) -> Result<Calibration> {
        use crate::energy::powercal::{calibrate_on_twin, SimCalOpts};
        let twin = self.meter.twin().context("bench kernels: sim without a twin")?;
        let shape = case_shape(case);
        let todo = [(case.op.kernel().to_string(), shape, launch_s)];
        let opts = SimCalOpts { windows: self.opts.windows.max(5), seed: self.opts.seed, ..SimCalOpts::default() };
        let (cal, cost) = calibrate_on_twin(twin.power_model(), twin.sensor_model(), &todo, &opts)?;
        let row = cal.kernels[0].clone();
        self.sim_idle_w = Some((cal.idle_w, cal.gap_w));
        self.powers.push(row.clone());
        Ok(Calibration {
            j_per_launch: row.power_w * launch_s,
            ci95_j: row.ci95_w * launch_s,
            dynamic_j_per_launch: Some((row.power_w - cal.idle_w).max(0.0) * launch_s),
            windows: row.windows,
            launches: (row.window_s * row.windows as f64 / launch_s.max(1e-9)) as u64,
            seconds: cost.device_s,
            source: "sim".into(),
            method: "sim: the twin's counter over back-to-back launches in simulated time, edge to edge".into(),
        })
    }

    /// The calibration's device id: the GPU's UUID (or the twin's model hash); `SOURCE-HOST` for a sensor
    /// without one (RAPL); None for an estimate, which is never stored.
    fn stored_id(&self) -> Option<String> {
        self.meter.device_id().or_else(|| {
            self.meter
                .source()
                .is_measurement()
                .then(|| format!("{}-{}", self.meter.source().as_str(), crate::util::hostname()))
        })
    }

    /// The device id for a calibration file (`stored_id`, else `estimate-HOST`).
    pub fn device_id(&self) -> String {
        self.stored_id().unwrap_or_else(|| format!("{}-{}", self.meter.source().as_str(), crate::util::hostname()))
    }

    /// The energy source's name ("nvml-counter", "rapl", "estimate", ...).
    pub fn source_name(&self) -> String {
        self.meter.source().as_str().to_string()
    }

    /// The idle power measured when the calibrator opened (a sensor only).
    pub fn idle_w(&self) -> Option<f64> {
        self.meter.idle_power_w()
    }

    /// Store the powers measured so far in the device's calibration cache; returns the file.
    pub fn store(&self) -> Result<Option<PathBuf>> {
        use crate::energy::powercal::{cache_file, KernelPowerRow, PowerCalibration};
        let Some(id) = self.stored_id() else {
            return Ok(None);
        };
        let Some(path) = cache_file(&id) else { return Ok(None) };
        let idle = self.sim_idle_w.map(|s| s.0).or(self.meter.idle_power_w()).unwrap_or(0.0);
        let mut cal = PowerCalibration::new(&id, self.meter.source().as_str(), idle);
        // On a device the gaps are charged at idle power for now (see energy/powercal.rs).
        cal.gap_w = self.sim_idle_w.map_or(idle, |s| s.1);
        // Several layer cases of one kernel at one shape: their powers weighted by launch time.
        for r in &self.powers {
            let same: Vec<&KernelPowerRow> =
                self.powers.iter().filter(|o| o.name == r.name && o.shape == r.shape).collect();
            if cal.kernels.iter().any(|k| k.name == r.name && k.shape == r.shape) {
                continue;
            }
            let w: f64 = same.iter().map(|o| o.launch_s).sum::<f64>().max(1e-12);
            let avg = |f: &dyn Fn(&KernelPowerRow) -> f64| same.iter().map(|o| f(o) * o.launch_s).sum::<f64>() / w;
            cal.kernels.push(KernelPowerRow {
                power_w: avg(&|o| o.power_w),
                ci95_w: avg(&|o| o.ci95_w),
                launch_s: avg(&|o| o.launch_s),
                ..r.clone()
            });
        }
        cal.store(&path)?;
        Ok(Some(path))
    }

    /// Joules per launch of `case`, whose median launch takes `launch_s` seconds.
    pub(super) fn measure<B: Backend>(&mut self, b: &B, case: &Case, launch_s: f64, seed: u64) -> Result<Calibration> {
        if self.meter.source() == crate::energy::EnergySource::Sim {
            return self.measure_sim(case, launch_s);
        }
        let c = self.measure_device(b, case, launch_s, seed)?;
        if c.source != "estimate" && launch_s > 0.0 {
            self.powers.push(crate::energy::powercal::KernelPowerRow {
                name: case.op.kernel().to_string(),
                shape: case_shape(case),
                power_w: c.j_per_launch / launch_s,
                ci95_w: c.ci95_j / launch_s,
                windows: c.windows,
                window_s: c.seconds / c.windows.max(1) as f64,
                launch_s,
            });
        }
        Ok(c)
    }

    /// Repeat-and-divide on the device.
    fn measure_device<B: Backend>(&mut self, b: &B, case: &Case, launch_s: f64, seed: u64) -> Result<Calibration> {
        let h = host_data(&case.op, seed);
        let mut p = prepare(b, &h)?;
        // Batches of about 20 ms between clock checks, so that window ends overshoot by little.
        let per_batch = ((0.02 / launch_s.max(1e-7)).ceil() as u64).clamp(1, 100_000);
        self.opts.seed = self.opts.seed.wrapping_add(1);
        let opts = self.opts.clone();
        calibrate_per_launch(&mut self.meter, &opts, || {
            for _ in 0..per_batch {
                case.op.run(b, &mut p.f, &mut p.i)?;
            }
            b.synchronize()?;
            Ok(per_batch)
        })
    }

    /// The sensor context for the JSON output.
    pub fn context(&self) -> serde_json::Value {
        let mut c = self.meter.context().clone();
        c["source"] = serde_json::json!(self.meter.source().as_str());
        c["windows"] = serde_json::json!(self.opts.windows);
        c["window_s"] = serde_json::json!(self.opts.window_s);
        c["idle_power_w"] = serde_json::json!(self.meter.idle_power_w());
        c["method"] = serde_json::json!(
            "repeat-and-divide: each case back to back for windows of window_s seconds, each after a random pause \
             within the sensor's update period; J/launch = window energy / launches; interval: Student t over the \
             windows plus the sensor's per-window uncertainty"
        );
        c
    }

    fn meter_watts(&self) -> String {
        self.meter.context()["estimate"]["watts"].as_f64().map(|w| format!("{w}")).unwrap_or_else(|| "?".into())
    }

    /// One line above the table.
    pub fn header(&self) -> String {
        let src = self.meter.source();
        let idle = self.meter.idle_power_w().map(|w| format!(", idle {w:.1} W")).unwrap_or_default();
        let what = if src == crate::energy::EnergySource::Sim {
            "SIMULATED on the sensor twin (sim: a model driven by the measured launch times, never a measurement)"
                .to_string()
        } else if src.is_measurement() {
            format!("measured with {}", src.as_str())
        } else {
            format!("ESTIMATE: --watts {} x wall time, not a measurement", self.meter_watts())
        };
        format!(
            "energy per launch {what}{idle}; {} windows of {:.2} s per case, random phase",
            self.opts.windows, self.opts.window_s
        )
    }
}

/// A run directory trained with `--per-kernel`, for `bench kernels --energy --compare`.
pub struct CompareRun {
    pub dir: PathBuf,
    pub model: String,
    pub batch_size: usize,
    pub optimizer: String,
    pub freeze_encoder: bool,
    pub energy_source: String,
    /// "cpu" or "cuda".
    pub device: String,
    /// kernel name -> (launches, J per launch), from kernels.csv.
    pub kernels: std::collections::BTreeMap<String, (u64, Option<f64>)>,
}

/// One kernel of the comparison.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CompareRow {
    pub kernel: String,
    /// Cases (layers) of this kernel that one training step launches.
    pub cases: usize,
    /// Calibrated J per launch, averaged over those cases (each launches once per step).
    pub calibrated_j: Option<f64>,
    pub calibrated_ci95_j: Option<f64>,
    /// The run's in-training attribution (kernels.csv J per launch).
    pub attributed_j: Option<f64>,
    /// attributed / calibrated.
    pub ratio: Option<f64>,
}

impl CompareRun {
    pub fn load(dir: &Path) -> Result<CompareRun> {
        let run = crate::rundir::RunDir::new(dir);
        let cfg = run.config().context("bench kernels --compare")?;
        let csv_path = dir.join("kernels.csv");
        let Some(csv) = run.kernels().context("bench kernels --compare")? else {
            bail!(
                "bench kernels --compare: {} is missing: train the run with --per-kernel (and an energy source) to \
                 get its in-training attribution",
                csv_path.display()
            );
        };
        if !(csv.has("launches") && csv.has("j_per_launch")) {
            bail!(
                "bench kernels --compare: {} does not have kernels.csv's header (name,launches,...,j_per_launch,...)",
                csv_path.display()
            );
        }
        let (model, batch_size, optimizer) = (cfg.model, cfg.batch_size, cfg.optimizer);
        let (freeze_encoder, energy_source, device) = (cfg.freeze_encoder, cfg.energy_source, cfg.device);
        let mut kernels = std::collections::BTreeMap::new();
        for r in csv.rows {
            let Some(launches) = r.launches else {
                bail!("bench kernels --compare: {}: kernel {} has no launch count", csv_path.display(), r.name);
            };
            kernels.insert(r.name, (launches, r.j_per_launch));
        }
        if energy_source == "none" {
            bail!("bench kernels --compare: {} was trained with --energy none: nothing to compare", dir.display());
        }
        Ok(CompareRun {
            dir: dir.to_path_buf(),
            model,
            batch_size,
            optimizer,
            freeze_encoder,
            energy_source,
            device,
            kernels,
        })
    }

    /// True when a training step of this run launches `case` (conv1's backward-data is never computed, the
    /// models pool with max, accuracy runs only in evaluation, the optimiser is the run's, a frozen encoder
    /// runs no convolution backward).
    pub fn step_runs(&self, case: &Case) -> bool {
        let layer = case.label.split_once(' ').map(|x| x.1).unwrap_or("");
        let is_conv_layer = layer.starts_with("conv") || layer.starts_with("pool");
        match case.op.kernel() {
            "avgpool2d_forward" | "avgpool2d_backward" | "accuracy_binary" | "accuracy_classes" => false,
            "fill" => false,
            "sgd_step" => self.optimizer == "sgd",
            "adam_step" => self.optimizer == "adam",
            "conv2d_backward_data" if layer == "conv1" => false,
            "conv2d_backward_data" | "conv2d_backward_filter" | "maxpool2d_backward" if self.freeze_encoder => false,
            "bias_backward" | "relu_backward" if self.freeze_encoder && is_conv_layer => false,
            _ => true,
        }
    }

    pub fn compare(&self, rows: &[BenchRow]) -> Vec<CompareRow> {
        let mut names: Vec<&'static str> = Vec::new();
        for r in rows {
            if !names.contains(&r.kernel) {
                names.push(r.kernel);
            }
        }
        names
            .into_iter()
            .map(|k| {
                let cal: Vec<&Calibration> =
                    rows.iter().filter(|r| r.kernel == k).filter_map(|r| r.energy.as_ref()).collect();
                let n = cal.len();
                let calibrated = (n > 0).then(|| cal.iter().map(|c| c.j_per_launch).sum::<f64>() / n as f64);
                // Independent cases: the mean's half-width is the root-sum-square over n.
                let ci = (n > 0).then(|| cal.iter().map(|c| c.ci95_j * c.ci95_j).sum::<f64>().sqrt() / n as f64);
                let attributed = self.kernels.get(k).and_then(|x| x.1);
                let ratio = match (attributed, calibrated) {
                    (Some(a), Some(c)) if c > 0.0 => Some(a / c),
                    _ => None,
                };
                CompareRow {
                    kernel: k.to_string(),
                    cases: rows.iter().filter(|r| r.kernel == k).count(),
                    calibrated_j: calibrated,
                    calibrated_ci95_j: ci,
                    attributed_j: attributed,
                    ratio,
                }
            })
            .collect()
    }

    pub fn table(&self, rows: &[CompareRow]) -> String {
        let mut s = format!(
            "\ncalibrated (this run of bench) vs in-training attribution ({}/kernels.csv, {}, {} batch {}):\n",
            self.dir.display(),
            self.energy_source,
            self.model,
            self.batch_size
        );
        s.push_str(&format!(
            "{:<23} {:>5} {:>14} {:>12} {:>14} {:>8}\n",
            "kernel", "cases", "calibrated J", "+-95%", "attributed J", "ratio"
        ));
        for r in rows {
            s.push_str(&format!(
                "{:<23} {:>5} {:>14} {:>12} {:>14} {:>8}\n",
                r.kernel,
                r.cases,
                fmt_sci(r.calibrated_j, 4),
                fmt_sci(r.calibrated_ci95_j, 2),
                fmt_sci(r.attributed_j, 4),
                fmt_fixed(r.ratio, 3),
            ));
        }
        s.push_str(
            "(calibrated: mean J per launch over the layer cases a training step launches, each run back to back; \
             attributed: the run's share of each step's energy by power-weighted GPU time, evaluation launches \
             included. Both include the device's static power.)\n",
        );
        s
    }
}

/// The device's ceilings: a 1 GiB device-to-device copy and a 4096^3 FP32 GEMM through our gemm kernel.
pub fn ceilings(gpu: &CudaBackend) -> Result<Ceilings> {
    let copy_gbps = gpu.measure_copy_gbps(1 << 30, 10)?;
    let n = 4096;
    let op = Op::from(GemmCall(GemmParams::new(n, n, n, false, false)));
    let h = host_data(&op, 1);
    let mut p = prepare(gpu, &h)?;
    let (ms, _) = time_op(gpu, &op, &mut p.f, &mut p.i, Some(5))?;
    Ok(Ceilings {
        copy_gbps,
        gemm_gflops: op.flops().unwrap_or(0.0) / (ms / 1e3) / 1e9,
        gemm_mnk: n,
        what: "cuda: GB/s of a 1 GiB device-to-device copy (read+write), GFLOP/s of our FP32 gemm 4096^3",
    })
}

/// Median milliseconds of `iters` calls (adaptive when None: about 0.3 s of calls, 3 to 200) after warm-up, timed
/// by the backend's kernel timing. Returns (median ms, iterations).
pub(super) fn time_op<B: Backend>(
    b: &B,
    op: &Op,
    f: &mut [B::Buf],
    i: &mut [B::IBuf],
    iters: Option<usize>,
) -> Result<(f64, usize)> {
    let t0 = std::time::Instant::now();
    op.run(b, f, i)?;
    b.synchronize()?;
    let first = t0.elapsed().as_secs_f64();
    for _ in 0..2 {
        op.run(b, f, i)?;
    }
    b.synchronize()?;
    let warm = (t0.elapsed().as_secs_f64() - first) / 2.0;
    let n = iters.unwrap_or_else(|| ((0.3 / warm.max(1e-6)) as usize).clamp(3, 200)).max(1);
    b.set_kernel_timing(true);
    let res = (|| {
        b.take_kernel_timings()?;
        for _ in 0..n {
            op.run(b, f, i)?;
        }
        b.take_kernel_timings()
    })();
    b.set_kernel_timing(false);
    let d: Vec<f64> = res?.into_iter().filter(|t| t.name == op.kernel()).map(|t| t.dur_s * 1e3).collect();
    if d.len() != n {
        bail!("{}: expected {n} kernel timings, the backend recorded {}", op.kernel(), d.len());
    }
    Ok((crate::stats::median(&d), n))
}

/// Check (when a reference is given) and time one case.
fn bench_case<B: Backend>(
    b: &B,
    reference: Option<&CpuBackend>,
    case: &Case,
    iters: Option<usize>,
    seed: u64,
    ceil: Option<Ceilings>,
) -> BenchRow {
    let (model, layer) = case.label.split_once(' ').unwrap_or((&case.label, ""));
    let mut row = BenchRow {
        model: model.to_string(),
        layer: layer.to_string(),
        kernel: case.op.kernel(),
        batch: case.batch,
        shape: case.op.shape(),
        status: "ok".into(),
        checked_at_batch: None,
        max_rel_err: None,
        iters: 0,
        median_ms: None,
        gflops: None,
        gbps: None,
        frac_peak_flops: None,
        frac_peak_bw: None,
        energy: None,
        note: String::new(),
    };
    if let Some(cpu) = reference {
        let check = check_case(model, case);
        let r = compare(b, cpu, &check, seed);
        row.checked_at_batch = Some(check.batch);
        row.max_rel_err = Some(r.max_rel_err);
        if !r.pass {
            row.status = "refused".into();
            row.note = format!(
                "failed its check against the CPU backend: max rel err {:.2e} > {:.0e} {}",
                r.max_rel_err, r.tolerance, r.note
            );
            return row;
        }
    }
    let res = (|| {
        let h = host_data(&case.op, seed);
        let mut p = prepare(b, &h)?;
        time_op(b, &case.op, &mut p.f, &mut p.i, iters)
    })();
    match res {
        Ok((ms, n)) => {
            let s = ms / 1e3;
            row.iters = n;
            row.median_ms = Some(ms);
            row.gflops = case.op.flops().map(|f| f / s / 1e9);
            row.gbps = Some(case.op.bytes() / s / 1e9);
            if let Some(c) = ceil {
                row.frac_peak_flops = super::ceilings::fraction(row.gflops, c.gemm_gflops);
                row.frac_peak_bw = super::ceilings::fraction(row.gbps, c.copy_gbps);
            }
        }
        Err(e) => {
            row.status = "error".into();
            row.note = format!("{e:#}");
        }
    }
    row
}

/// The case to check `case` with: the same layer at the largest batch (of the requested one, 256, 64, 16, 7, 1)
/// whose CPU work stays under `CHECK_BUDGET`. The batch-independent cases are checked as they are.
fn check_case(model: &str, case: &Case) -> Case {
    let cost = |c: &Case| c.op.flops().unwrap_or_else(|| c.op.bytes());
    if cost(case) <= CHECK_BUDGET {
        return case.clone();
    }
    let Ok(model) = Arch::parse(model, crate::model::CELEBA_K) else { return case.clone() };
    for nb in [256usize, 64, 16, 7, 1] {
        if nb >= case.batch {
            continue;
        }
        let cases = model.step_cases(nb, false);
        // The same layer and kernel, in the same position among that layer's cases of this kernel.
        let same = |c: &&Case| c.label == case.label && c.op.kernel() == case.op.kernel();
        let pos = model.step_cases(case.batch, false).iter().filter(same).position(|c| c.op == case.op);
        if let Some(c) = pos.and_then(|k| cases.iter().filter(same).nth(k)) {
            if cost(c) <= CHECK_BUDGET {
                return c.clone();
            }
        }
    }
    case.clone()
}

/// The rows as a fixed-width table (with J per launch and its interval when calibrated).
pub fn table(rows: &[BenchRow]) -> String {
    let energy = rows.iter().any(|r| r.energy.is_some());
    let mut s = format!(
        "{:<7} {:<7} {:<23} {:>5} {:<40} {:>10} {:>9} {:>8} {:>6} {:>6}",
        "model", "layer", "kernel", "batch", "shape", "ms", "GFLOP/s", "GB/s", "%flop", "%bw"
    );
    let dynamic = rows.iter().any(|r| r.energy.as_ref().is_some_and(|e| e.dynamic_j_per_launch.is_some()));
    if energy {
        s.push_str(&format!(" {:>11} {:>9} {:>9}", "J/launch", "+-95%", "J/GFLOP"));
        if dynamic {
            s.push_str(&format!(" {:>11}", "above idle"));
        }
    }
    s.push_str("  status\n");
    for r in rows {
        let pct = |v: Option<f64>| fmt_fixed(v.map(|x| 100.0 * x), 1);
        s.push_str(&format!(
            "{:<7} {:<7} {:<23} {:>5} {:<40} {:>10} {:>9} {:>8} {:>6} {:>6}",
            r.model,
            r.layer,
            r.kernel,
            r.batch,
            r.shape,
            fmt_fixed(r.median_ms, 4),
            fmt_fixed(r.gflops, 1),
            fmt_fixed(r.gbps, 1),
            pct(r.frac_peak_flops),
            pct(r.frac_peak_bw),
        ));
        if energy {
            let e = r.energy.as_ref();
            let sci = |v: Option<f64>| fmt_sci(v, 3);
            let jpg = match (e, r.gflops, r.median_ms) {
                (Some(e), Some(g), Some(ms)) if g > 0.0 => Some(e.j_per_launch / (g * ms / 1e3)),
                _ => None,
            };
            s.push_str(&format!(
                " {:>11} {:>9} {:>9}",
                sci(e.map(|e| e.j_per_launch)),
                sci(e.map(|e| e.ci95_j)),
                sci(jpg)
            ));
            if dynamic {
                s.push_str(&format!(" {:>11}", sci(e.and_then(|e| e.dynamic_j_per_launch))));
            }
        }
        s.push_str(&format!(
            "  {}{}\n",
            r.status,
            if r.note.is_empty() { String::new() } else { format!(" ({})", r.note) }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Conv2dCall, GemmCall};

    #[test]
    fn large_cases_are_checked_at_a_smaller_batch_of_the_same_layer() {
        let celeba = Arch::Celeba { k: crate::model::CELEBA_K };
        let big = celeba.step_cases(1024, false);
        let conv2 = big.iter().find(|c| c.label == "celeba conv2" && c.op.kernel() == "conv2d_forward").unwrap();
        let chk = check_case("celeba", conv2);
        assert!(chk.batch < 1024, "checked at {}", chk.batch);
        assert_eq!(chk.label, "celeba conv2");
        match (chk.op, conv2.op) {
            (Op::Conv2d(Conv2dCall::Forward(a)), Op::Conv2d(Conv2dCall::Forward(b))) => {
                assert_eq!((a.c_in, a.h, a.c_out, a.n), (b.c_in, b.h, b.c_out, chk.batch as i32))
            }
            other => panic!("{other:?}"),
        }
        // The second fc1 gemm (backward data) maps to the second fc1 gemm at the smaller batch.
        let gemms: Vec<&Case> = big.iter().filter(|c| c.label == "celeba fc1" && c.op.kernel() == "gemm").collect();
        let c = check_case("celeba", gemms[1]);
        assert_eq!(c.op, Op::from(GemmCall(GemmParams::new(c.batch, 8192, 256, false, false))));
        // Small cases are checked as they are.
        let small = Arch::Pamap2.step_cases(16, false);
        assert_eq!(check_case("pamap2", &small[0]).batch, 16);
    }
}
