//! `bench step`: the median training-step time of a model at a batch size, on random data of the protocol's
//! shapes (upload of the batch excluded, as in the PyTorch baseline, which keeps its batch on the device), the
//! same Adam/SGD step the training loop runs; and side by side with it, what per-kernel timing or metering
//! adds to a step.
use crate::energy::{EnergySource, Meter, MeterConfig, StepKernels};
use crate::model::{Arch, Layout, Model, Optimizer};
use crate::ops::{Backend, KernelClock};
use crate::rundir::StepRecord;
use anyhow::{bail, Context, Result};
use std::io::Write;

/// One mode of `bench step`'s side-by-side timing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BenchMode {
    /// Training steps only: nothing metered, no launch timed.
    Off,
    /// Per-kernel timing alone, without a meter (`--kernel-timing`): the clock's own cost.
    Timing(KernelClock),
    /// The meter as `train` runs it (`--energy`): per-step, or per-kernel with a clock; each step is begun,
    /// ended and written as a steps.jsonl record.
    Meter(Option<KernelClock>),
}

impl BenchMode {
    /// The kernel clock this mode times launches with (none: no launch is timed).
    pub fn clock(self) -> Option<KernelClock> {
        match self {
            BenchMode::Timing(c) | BenchMode::Meter(Some(c)) => Some(c),
            BenchMode::Off | BenchMode::Meter(None) => None,
        }
    }

    pub fn label(self) -> String {
        match self {
            BenchMode::Off => "off".into(),
            BenchMode::Timing(c) => c.name().into(),
            BenchMode::Meter(None) => "per-step".into(),
            BenchMode::Meter(Some(c)) => format!("per-kernel/{}", c.name()),
        }
    }
}

/// A model of `arch` at `batch` holding a random batch of the protocol's shapes, warmed up by three training
/// steps (the first launches load modules, fill caches and size scratch buffers); also the mean warm-up step
/// time (s), to size the timed loops.
fn bench_model<'b, B: Backend>(be: &'b B, arch: Arch, batch: usize, opt: &Optimizer) -> Result<(Model<'b, B>, f64)> {
    use rand::Rng;
    let mut model = Model::new(be, arch, batch, &Layout::new(arch).init(1))?;
    let mut rng = crate::util::rng(7);
    let [c, h, w] = arch.input_shape();
    let x: Vec<f32> = (0..batch * c * h * w).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let k = arch.outputs();
    let yc: Vec<i32> = (0..batch).map(|_| rng.random_range(0..k as i32)).collect();
    let yb: Vec<f32> = (0..batch * k).map(|_| rng.random_range(0..2) as f32).collect();
    model.load_batch(batch, &x, &yc, &yb)?;
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        model.train_step(batch, opt)?;
    }
    Ok((model, t0.elapsed().as_secs_f64() / 3.0))
}

/// Time training steps of `arch` at `batch` on `be`; returns the JSON record `bench step` prints.
pub fn bench_step_on<B: Backend>(
    be: &B,
    arch: Arch,
    batch: usize,
    opt: &Optimizer,
    iters: Option<usize>,
) -> Result<serde_json::Value> {
    let (mut model, per) = bench_model(be, arch, batch, opt)?;
    let k = arch.outputs();
    let n_iters = iters.unwrap_or_else(|| ((3.0 / per.max(1e-6)) as usize).clamp(5, 500));
    if n_iters == 0 {
        bail!("bench step: --iters 0: give at least 1 timed step");
    }
    let mut times = Vec::with_capacity(n_iters);
    let pb = super::progress(n_iters as u64, "bench step");
    pb.set_message(format!("{} batch {batch} steps", arch.name()));
    for _ in 0..n_iters {
        let t0 = std::time::Instant::now();
        let loss = model.train_step(batch, opt)?;
        times.push(t0.elapsed().as_secs_f64());
        pb.inc(1);
        if !loss.is_finite() {
            bail!("bench step: the loss became {loss}");
        }
    }
    pb.finish_and_clear();
    let sorted = crate::stats::sorted(&times);
    let q = |f: f64| crate::stats::quantile_sorted(&sorted, f);
    let med = crate::stats::median_sorted(&sorted);
    Ok(serde_json::json!({
        "bench": "step", "model": arch.name(), "outputs": k, "batch_size": batch,
        "device": be.kind().name(), "device_name": be.device_name(),
        "optimizer": match opt { Optimizer::Adam { .. } => "adam", Optimizer::Sgd { .. } => "sgd" },
        "iters": n_iters, "median_ms": med * 1e3, "p10_ms": q(0.1) * 1e3, "p90_ms": q(0.9) * 1e3,
        "samples_per_s": batch as f64 / med, "gflops": model.step_flops(batch) / med / 1e9,
        "threads": rayon::current_num_threads(),
    }))
}

/// One mode's steps across the rounds: its meter (metered modes), step times, ops timed per step and the
/// metered energy with the seconds its windows cover.
struct Lane {
    mode: BenchMode,
    meter: Option<Meter>,
    times: Vec<f64>,
    ops: usize,
    energy: (f64, f64),
}

impl Lane {
    /// A metered mode opens its meter (`source`, `watts`) once, characterised as in training, its sampler
    /// paused outside its own rounds.
    fn open<B: Backend>(be: &B, mode: BenchMode, source: &str, watts: Option<f64>) -> Result<Lane> {
        let meter = match mode {
            BenchMode::Meter(pk) => {
                let cfg = MeterConfig {
                    source: source.to_string(),
                    watts,
                    per_kernel: pk.is_some(),
                    device: be.kind(),
                    gpu_ordinal: 0,
                };
                let mut meter = Meter::open(cfg).context("bench step --energy")?;
                if meter.source() == EnergySource::None {
                    let ctx = meter.energy_context();
                    let why = ctx.auto_fallback.as_deref().unwrap_or("no energy source");
                    bail!(
                        "bench step --energy: {why}. Use --energy-source estimate --watts W to time the meter with \
                         a labelled estimate"
                    );
                }
                meter.pause_sampler();
                Some(meter)
            }
            _ => None,
        };
        Ok(Lane { mode, meter, times: Vec::new(), ops: 0, energy: (0.0, 0.0) })
    }

    /// True for a mode metered by the sensor twin.
    fn sim(&self) -> bool {
        self.meter.as_ref().is_some_and(|m| m.source() == EnergySource::Sim)
    }

    /// One round: switch the clock (and the meter) on, one untimed step, then `steps` steps each timed all in.
    fn round<B: Backend>(
        &mut self,
        model: &mut Model<'_, B>,
        (batch, opt): (usize, &Optimizer),
        steps: usize,
        records: &mut impl Write,
    ) -> Result<()> {
        let be = model.backend();
        let clock = self.mode.clock();
        be.set_kernel_clock(clock.unwrap_or(KernelClock::Events))?;
        // The twin (--energy-source sim) is driven by the launches' times: they are timed in every metered mode.
        be.set_kernel_timing(clock.is_some() || self.sim());
        if let Some(meter) = self.meter.as_mut() {
            meter.resume_sampler();
            meter.break_window();
        }
        // Let a resumed sampler take its first reads, so that step edges find a recent one. Every mode waits
        // alike, so that whatever an idle pause does to the clocks (GPU or CPU) hits all of them.
        std::thread::sleep(std::time::Duration::from_millis(30));
        // One untimed step per switch (metered like the others): the first timed step after a switch may
        // anchor the clock.
        for s in 0..=steps {
            let t = std::time::Instant::now();
            self.step(model, (batch, opt), records, s > 0)?;
            if s > 0 {
                self.times.push(t.elapsed().as_secs_f64());
            }
        }
        if let Some(meter) = self.meter.as_mut() {
            meter.pause_sampler();
        }
        Ok(())
    }

    /// One training step as this mode pays for it: the step, reading its kernel timings, and with a meter its
    /// begin and end and its record (`counted`: its energy goes into the mode's mean power).
    fn step<B: Backend>(
        &mut self,
        model: &mut Model<'_, B>,
        (batch, opt): (usize, &Optimizer),
        records: &mut impl Write,
        counted: bool,
    ) -> Result<()> {
        let be = model.backend();
        let timed = self.mode.clock().is_some();
        let Some(meter) = self.meter.as_mut() else {
            model.train_step(batch, opt)?;
            if timed {
                self.ops = be.take_kernel_timings()?.len();
            }
            return Ok(());
        };
        let t0 = be.clock_s();
        meter.begin_step(t0);
        let loss = model.train_step(batch, opt)?;
        let t1 = be.clock_s();
        let se = if timed {
            let timings = be.take_kernel_timings()?;
            self.ops = timings.len();
            meter.end_step_with(t1, StepKernels::Timed(&timings, None))
        } else if meter.source() == EnergySource::Sim {
            meter.end_step(t1, &be.take_kernel_timings()?)
        } else {
            meter.end_step(t1, &[])
        };
        StepRecord::new(0, 0, loss, batch, (t1 - t0, t1), meter.source(), &se)
            .write_line(records)
            .context("bench step: writing a record")?;
        if let (Some(e), true) = (se.energy_j, counted) {
            self.energy.0 += e;
            self.energy.1 += se.window_s;
        }
        Ok(())
    }
}

/// The cost of per-kernel timing or of metering: training steps with `BenchMode::Off` and with each of
/// `modes`, in interleaved rounds so that clock and thermal drift hit every mode alike. Each step is timed all
/// in, as the training loop pays for it: the step, reading its kernel timings, and with a meter its begin and
/// end and its record (written to a real file, as in training). A meter mode opens its meter (`source`,
/// `watts`) once, characterised as in training, and pauses its sampler thread outside its own rounds. Median
/// step time per mode and its overhead against off. `iters`: steps per mode and round (default: about 6 s in
/// all).
#[allow(clippy::too_many_arguments)]
pub fn bench_metering<B: Backend>(
    be: &B,
    arch: Arch,
    batch: usize,
    opt: &Optimizer,
    modes: &[BenchMode],
    source: &str,
    watts: Option<f64>,
    iters: Option<usize>,
) -> Result<serde_json::Value> {
    let (mut model, per) = bench_model(be, arch, batch, opt)?;
    // About 6 s in all: rounds x (1 + modes) x steps.
    let rounds = 5usize;
    let steps = iters
        .map(|n| n.max(1))
        .unwrap_or_else(|| ((6.0 / per.max(1e-6)) as usize / (rounds * (1 + modes.len()))).clamp(3, 400));
    let mut lanes = std::iter::once(BenchMode::Off)
        .chain(modes.iter().copied())
        .map(|m| Lane::open(be, m, source, watts))
        .collect::<Result<Vec<Lane>>>()?;
    let measured_by = lanes.iter().find_map(|l| l.meter.as_ref().map(|m| m.source()));
    let records = tempfile::tempfile().context("bench step: cannot create a temporary file for the records")?;
    let mut records = std::io::BufWriter::new(records);
    let pb = super::progress((rounds * lanes.len()) as u64, "bench step (metering)");
    for r in 0..rounds {
        for lane in lanes.iter_mut() {
            pb.set_message(format!("round {}/{rounds}: {}", r + 1, lane.mode.label()));
            lane.round(&mut model, (batch, opt), steps, &mut records)?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    be.set_kernel_timing(false);
    be.set_kernel_clock(KernelClock::Events)?;
    let off = crate::stats::median(&lanes[0].times);
    let rows: Vec<serde_json::Value> = lanes[1..]
        .iter()
        .map(|l| {
            let med = crate::stats::median(&l.times);
            let (e, w) = l.energy;
            serde_json::json!({
                "mode": l.mode.label(), "timing": l.mode.clock().map(KernelClock::name),
                "median_ms": med * 1e3, "overhead_pct": 100.0 * (med / off - 1.0), "ops_per_step": l.ops,
                "mean_power_w": (w > 0.0).then(|| e / w),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "rounds": rounds, "steps_per_round": steps, "off_ms": off * 1e3, "modes": rows,
        "energy_source": measured_by.map(|s| s.as_str()),
    }))
}
