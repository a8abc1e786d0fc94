//! The meter the training loop talks to: a sensor side (`sampling.rs`), window edges (`window.rs`), the
//! per-kernel attribution (`attribution.rs`) and the books (`bookkeeping.rs`), with the energy context they
//! fill.
use super::attribution::{KernelAttribution, KernelTable};
use super::bookkeeping::{self, Books, Closing};
use super::context::{EnergyContext, EstimateNote, IdleBaseline};
use super::inplace::{InPlaceCalibrator, TwinCalibrator};
use super::powercal::{self, PowerCalibration, SplitReport};
use super::sampling::Sensing;
use super::truth::TruthBook;
use super::twin::SimHandle;
use super::uncertainty::{self, RunUncertainty};
use super::window::{self, Span, Windows};
use super::{
    nvml, rapl, EnergyOptions, EnergySource, MeterConfig, MeterOptions, RunEnergy, Sensor, StepEnergy, StepKernels,
};
use crate::ops::{DeviceKind, KernelTiming};
use crate::rundir::{KernelRow, KernelsCsv};
use anyhow::{bail, Result};
use std::time::{Duration, Instant};

pub struct Meter {
    cfg: MeterConfig,
    opts: MeterOptions,
    source: EnergySource,
    sensing: Sensing,
    windows: Windows,
    kernels: KernelAttribution,
    books: Books,
    context: EnergyContext,
    /// `--energy sim`: the twin the sensor reads, fed with every window's launches, and the truth kept.
    twin: Option<SimHandle>,
    truth: TruthBook,
    /// Launches of an untimed step (`--kernel-sample`) for the twin (`Meter::sim_launches`).
    twin_launches: Option<Vec<KernelTiming>>,
    opts_extra: EnergyOptions,
    split: SplitReport,
    /// No stored calibration for this shape: calibrate in place at the first timed step.
    calibrate_pending: bool,
}

impl Meter {
    /// Pick and open the source. An explicitly requested source that is unavailable is an error that says
    /// why; `auto` picks nvml-counter > nvml-power > none on a cuda run and rapl > none on a cpu run (never
    /// an estimate), and records why in the context.
    pub fn open(cfg: MeterConfig) -> Result<Meter> {
        Meter::open_with(cfg, &EnergyOptions::default())
    }

    /// `open` with the twin's models (`--energy sim`), `--calibration` and the step's shape.
    pub fn open_with(cfg: MeterConfig, extra: &EnergyOptions) -> Result<Meter> {
        let mut why: Option<String> = None;
        let mut twin = None;
        let sensor: Option<Box<dyn Sensor>> = match cfg.source.as_str() {
            "none" => None,
            "sim" => {
                let power = extra.sim_model.clone().unwrap_or_default();
                let t = SimHandle::new(power, extra.sim_sensor.clone().unwrap_or_default(), 0.0);
                let s = t.sensor();
                twin = Some(t);
                Some(Box::new(s))
            }
            "estimate" => match cfg.watts {
                Some(w) if w.is_finite() && w > 0.0 => None,
                Some(w) => bail!("--watts {w}: must be a positive number of watts"),
                None => bail!("--energy estimate needs --watts W (the power to assume while busy)"),
            },
            "nvml" => Some(Box::new(
                nvml::NvmlSensor::open(cfg.gpu_ordinal, nvml::Want::Best)
                    .map_err(|e| anyhow::anyhow!("--energy nvml: {e:#}"))?,
            )),
            "rapl" => Some(Box::new(rapl::RaplSensor::open().map_err(|e| anyhow::anyhow!("--energy rapl: {e:#}"))?)),
            "auto" => match cfg.device {
                DeviceKind::Cuda => match nvml::NvmlSensor::open(cfg.gpu_ordinal, nvml::Want::Best) {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        why = Some(format!("auto: no NVML ({e:#}); energy not measured"));
                        None
                    }
                },
                DeviceKind::Cpu => match rapl::RaplSensor::open() {
                    Ok(s) => Some(Box::new(s)),
                    Err(e) => {
                        why = Some(format!("auto: no RAPL ({e:#}); energy not measured"));
                        None
                    }
                },
            },
            other => bail!("unknown --energy '{other}': use auto, nvml, rapl, sim, estimate or none"),
        };
        let mut m = match sensor {
            Some(s) => Meter::with_sensor(cfg, s, MeterOptions::default()),
            None => Meter::without_sensor(cfg),
        };
        m.context.auto_fallback = why;
        m.twin = twin;
        m.setup_split(extra)?;
        Ok(m)
    }

    /// A meter on the twin `twin` (tests drive it with `MeterOptions` of their own), its split set up as
    /// `extra` says.
    pub fn with_twin(cfg: MeterConfig, twin: SimHandle, opts: MeterOptions, extra: &EnergyOptions) -> Result<Meter> {
        let mut m = Meter::with_sensor(cfg, Box::new(twin.sensor()), opts);
        m.twin = Some(twin);
        m.setup_split(extra)?;
        Ok(m)
    }

    /// The device's id for the calibration cache: the twin's model hash, or the GPU's UUID.
    pub fn device_id(&self) -> Option<String> {
        match &self.twin {
            Some(t) => Some(powercal::sim_device_id(t.power_model(), t.sensor_model())),
            None => self.context.sensor.get("gpu_uuid").and_then(|v| v.as_str()).map(str::to_string),
        }
    }

    /// Where the per-kernel split's powers come from (`--calibration`, the cache, in place): the decision is
    /// `inplace::plan`'s.
    pub fn setup_split(&mut self, extra: &EnergyOptions) -> Result<()> {
        use super::inplace::{plan, SplitPlan};
        self.opts_extra = extra.clone();
        self.split.shape = extra.shape.clone();
        self.split.device = self.device_id();
        self.calibrate_pending = false;
        if !self.cfg.per_kernel {
            return Ok(());
        }
        let cached = self.split.device.as_deref().and_then(powercal::cache_file).filter(|p| p.exists());
        // The twin calibrates at the first timed step (in simulated time); a sensor's device before the run,
        // when the training loop hands `calibrate_before_run` a calibrator (bench/inplace.rs).
        let can = self.twin.is_some() || self.source.is_measurement();
        let place = if self.twin.is_some() { "the twin" } else { "the device" };
        self.split.calibration = match plan(&extra.calibration, cached, can) {
            SplitPlan::TimeSplitAsked => "--calibration none: split by time".into(),
            SplitPlan::File(p) => {
                let c = PowerCalibration::read(&p, "--calibration")?;
                self.kernels.powers = Some(c.powers(&extra.shape));
                format!("--calibration {} ({}, {})", p.display(), c.device, c.source)
            }
            SplitPlan::Cache { path, calibrate_missing } => {
                let c = PowerCalibration::read(&path, "calibration cache")?;
                self.kernels.powers = Some(c.powers(&extra.shape));
                // Kernels of other shapes only: calibrate this shape in place when it can.
                self.calibrate_pending = calibrate_missing;
                format!("cache {}", path.display())
            }
            SplitPlan::Calibrate => {
                self.calibrate_pending = true;
                format!("in place on {place} before the first step's split")
            }
            SplitPlan::TimeSplit => "no calibration stored for this device: split by time (run `powertrain bench \
                                     kernels --energy` to calibrate)"
                .into(),
        };
        Ok(())
    }

    /// True when `--per-kernel` wants the device's kernels calibrated in place before the first step: a sensor
    /// (not the twin), and no stored calibration for this device and the step's shape.
    pub fn wants_calibration_before_run(&self) -> bool {
        self.calibrate_pending && self.twin.is_none() && self.windows.not_started()
    }

    /// The step's shape key (`model/bBATCH`) the split looks powers up by.
    pub fn split_shape(&self) -> &str {
        &self.opts_extra.shape
    }

    /// Calibrate `todo`'s kernels on the device before the first step (`cal`: bench/inplace.rs's, on the run's
    /// backend), store them in the cache and split with them (`inplace::run_todo`). Kernels the cache holds at
    /// this shape are kept. A failed calibration leaves the split by time and says why; the run goes on.
    pub fn calibrate_before_run(&mut self, cal: &mut dyn InPlaceCalibrator, todo: super::inplace::Todo) {
        if !self.wants_calibration_before_run() {
            return;
        }
        self.calibrate_pending = false;
        let cache = self.split.device.as_deref().and_then(powercal::cache_file);
        self.calibrate_with(cal, |cached| super::inplace::missing(todo, cached), cache);
    }

    /// Calibrate the step's kernels in place on a copy of the twin at the first timed step, store the result in
    /// the cache and use it (`inplace::run_in_place`). On a sensor this only says that no calibration ran
    /// before the run (`calibrate_before_run` was not called): the split stays by time.
    fn calibrate_in_place(&mut self, launches: &[KernelTiming]) {
        self.calibrate_pending = false;
        let Some(twin) = self.twin.clone() else {
            if self.kernels.powers.is_none() {
                self.split.calibration = "no calibration stored for this device and shape, and none ran before the \
                                          run: split by time (run `powertrain bench kernels --energy` to calibrate)"
                    .into();
            }
            return;
        };
        let shape = self.opts_extra.shape.clone();
        let cache = self.split.device.as_deref().and_then(powercal::cache_file);
        let mut cal = TwinCalibrator(twin);
        self.calibrate_with(&mut cal, |cached| super::inplace::todo(launches, &shape, cached), cache);
    }

    /// Run an in-place calibration of what `todo` lists (given the cache's calibration) and split with it.
    fn calibrate_with(
        &mut self,
        cal: &mut dyn InPlaceCalibrator,
        todo: impl FnOnce(Option<&PowerCalibration>) -> super::inplace::Todo,
        cache: Option<std::path::PathBuf>,
    ) {
        let shape = self.opts_extra.shape.clone();
        let place = cal.place();
        match super::inplace::run_todo(cal, todo, cache.as_deref()) {
            Ok(None) => {}
            Ok(Some(out)) => {
                if self.opts_extra.verbose {
                    eprintln!("{}", out.message);
                }
                self.kernels.powers = Some(out.calibration.powers(&shape));
                self.split.calibration = out.label;
                self.split.cost = Some(out.cost);
            }
            Err(e) => self.split.calibration = format!("in-place calibration on {place} failed ({e:#}): split by time"),
        }
    }

    /// With `--energy sim` and an untimed step (`--kernel-sample`): the step's launches, for the twin only
    /// (the split uses the profile); call before `end_step_with`.
    pub fn sim_launches(&mut self, launches: Vec<KernelTiming>) {
        self.twin_launches = Some(launches);
    }

    /// The twin, with `--energy sim`.
    pub fn twin(&self) -> Option<&SimHandle> {
        self.twin.as_ref()
    }

    /// A meter without a sensor: `estimate` (with `cfg.watts`) or `none`.
    pub fn without_sensor(cfg: MeterConfig) -> Meter {
        let source =
            if cfg.source == "estimate" && cfg.watts.is_some() { EnergySource::Estimate } else { EnergySource::None };
        let mut m = Meter::blank(cfg, MeterOptions::default(), source, None);
        if source == EnergySource::Estimate {
            m.context.estimate = Some(EstimateNote {
                watts: m.cfg.watts,
                note: "an estimate: --watts x the metered windows' time (steps, evaluations and the host time before \
                       each); not a measurement"
                    .into(),
            });
        }
        m
    }

    /// A meter on any sensor (tests feed scripted sensors here). Runs the characterisation and starts the
    /// sampler as `opts` says.
    pub fn with_sensor(cfg: MeterConfig, mut sensor: Box<dyn Sensor>, opts: MeterOptions) -> Meter {
        let source = sensor.source();
        if opts.characterise {
            let _ = sensor.characterise();
        }
        let mut m = Meter::blank(cfg, opts, source, Some(sensor));
        if m.opts.sampler {
            m.start_sampler();
        }
        if m.sensing.is_counter {
            m.context.edge_reads = Some(
                if m.sensing.nonblocking_edges() {
                    "the sampler's latest counter read (non-blocking)"
                } else {
                    "a counter read on the calling thread at each step edge"
                }
                .into(),
            );
        }
        m
    }

    fn blank(cfg: MeterConfig, opts: MeterOptions, source: EnergySource, sensor: Option<Box<dyn Sensor>>) -> Meter {
        let described = sensor.as_ref().map_or_else(|| serde_json::json!({}), |s| s.context());
        Meter {
            sensing: Sensing::new(sensor, source, &opts),
            windows: Windows::new(opts.contiguous),
            kernels: KernelAttribution::new(cfg.per_kernel),
            books: Books::default(),
            context: EnergyContext::new(source.as_str(), described),
            cfg,
            opts,
            source,
            twin: None,
            truth: TruthBook::default(),
            twin_launches: None,
            opts_extra: EnergyOptions::default(),
            split: SplitReport::default(),
            calibrate_pending: false,
        }
    }

    fn start_sampler(&mut self) {
        if !self.sensing.start_sampler() {
            self.context.sampler = Some("could not start the sampler thread: step-edge reads only".into());
        }
    }

    pub fn source(&self) -> EnergySource {
        self.source
    }

    /// The sensor context so far as JSON (GPU name, driver, update period, idle baseline, why auto fell
    /// back, ...).
    pub fn context(&self) -> serde_json::Value {
        self.context.to_json()
    }

    /// The sensor context so far.
    pub fn energy_context(&self) -> &EnergyContext {
        &self.context
    }

    /// An estimate's note and why `--energy auto` fell back to it (the device power model, `device_power.rs`).
    pub fn note_estimate(&mut self, note: String, why: Option<String>) {
        if let Some(e) = &mut self.context.estimate {
            e.note = note;
        }
        self.context.auto_fallback = why;
    }

    /// Set the clock origin to the backend's creation instant, so that the meter's clock equals
    /// `Backend::clock_s()`. Call it right after `open`, before `measure_idle`. Without it the first
    /// `begin_step(now_s)` aligns the clock to `now_s` (assuming `now_s` was read just before the call).
    pub fn set_clock(&mut self, origin: Instant) {
        self.sensing.set_clock(origin);
    }

    /// Seconds on the meter's clock now.
    pub fn now_s(&self) -> f64 {
        self.sensing.now_s()
    }

    /// Read the sensor once at `now_s` (the sampler does this in the background; tests call it to script
    /// the read times).
    pub fn poll(&mut self, now_s: f64) -> Result<Option<f64>> {
        self.sensing.poll(now_s)
    }

    /// Best current estimate of the sensor's update period (s).
    pub fn period_s(&self) -> Option<f64> {
        self.sensing.timeline().period_s()
    }

    /// Measure the idle baseline for about `secs` seconds (no-op where it cannot be measured).
    pub fn measure_idle(&mut self, secs: f64) -> Result<()> {
        if !self.sensing.has_sensor() || secs <= 0.0 {
            return Ok(());
        }
        let (power_w, window_s) = self.sensing.idle_power(secs);
        self.books.idle_power_w = power_w;
        let note = if power_w.is_some() { "measured before the run" } else { "idle power could not be measured" };
        self.context.idle = Some(IdleBaseline { power_w, window_s, note: note.into() });
        Ok(())
    }

    /// Measured idle power (W), once `measure_idle` ran.
    pub fn idle_power_w(&self) -> Option<f64> {
        self.books.idle_power_w
    }

    /// `now_s` on the backend's clock (`Backend::clock_s`). With contiguous windows (the default) the window
    /// starts where the previous one ended, and no sensor is read here.
    pub fn begin_step(&mut self, now_s: f64) {
        if !self.sensing.clock_set && self.windows.not_started() {
            // Align our clock with the caller's: origin = now - now_s.
            if let Some(origin) = Instant::now().checked_sub(Duration::from_secs_f64(now_s.max(0.0))) {
                self.set_clock(origin);
            }
        }
        if let Some(t) = &self.twin {
            t.begin(now_s);
        }
        self.windows.open(now_s, &mut self.sensing);
    }

    /// Stop the sampler thread (`bench step --energy` pauses a meter through the rounds of the other modes);
    /// `resume_sampler` starts it again. Call `break_window` before the next step: the paused time belongs to
    /// no window.
    pub fn pause_sampler(&mut self) {
        self.sensing.stop_sampler();
    }

    /// Restart the sampler `pause_sampler` stopped (if the meter runs one).
    pub fn resume_sampler(&mut self) {
        if !self.sensing.resume_sampler() {
            self.context.sampler = Some("could not start the sampler thread: step-edge reads only".into());
        }
    }

    /// Start the next window afresh at the next `begin_step` (the time until then belongs to no window), e.g.
    /// after a pause the run should not be charged for.
    pub fn break_window(&mut self) {
        self.windows.continue_from(None);
    }

    /// Called once the step's work has finished on the device; `kernels` are its timed launches (with
    /// --per-kernel).
    pub fn end_step(&mut self, now_s: f64, kernels: &[KernelTiming]) -> StepEnergy {
        self.end_step_with(now_s, StepKernels::Timed(kernels, None))
    }

    /// Timed steps seen so far of the kind `key` (see `StepKernels`).
    pub fn kernel_profile_samples(&self, key: u64) -> u32 {
        self.kernels.profile_samples(key)
    }

    /// `end_step`, with the step's kernels timed or stood in for by a profile.
    pub fn end_step_with(&mut self, now_s: f64, step_kernels: StepKernels<'_>) -> StepEnergy {
        let launches = self.feed_twin(now_s, step_kernels);
        if let (None, true, StepKernels::Timed(k, _)) = (&self.twin, self.calibrate_pending, step_kernels) {
            if self.cfg.per_kernel && !k.is_empty() {
                let k = k.to_vec();
                self.calibrate_in_place(&k);
            }
        }
        let span = self.windows.close(now_s);
        self.books.add_span(&span);
        let (energy, stat, method) = self.window_energy(&span);
        let energy = energy.filter(|e| e.is_finite() && *e >= 0.0);
        self.books.add_energy(energy);
        let sys = energy
            .zip(stat)
            .and_then(|(e, _)| uncertainty::window_sys(uncertainty::systematic(self.source), e, span.dt()));
        let unc = stat.map(|s| s + sys.unwrap_or(0.0));
        let (mut rows, models, gap_energy) = {
            let tl = self.sensing.timeline();
            let power_j = window::power_weight(&tl, self.source.is_measurement());
            let gap = energy.map(|e| window::gap_energy(&span, e, &power_j));
            let (rows, models) = self.kernels.split(step_kernels, (span.a, span.work, span.b), energy, unc, &power_j);
            (rows, models, gap)
        };
        let truth = self.twin.clone().map(|t| {
            let tr = self.truth.window(&t, (span.a, span.work, span.b), &launches, (energy, unc), &mut rows);
            t.trim_before(span.a);
            tr
        });
        self.kernels.commit(&rows, &models, matches!(step_kernels, StepKernels::Timed(..)));
        StepEnergy {
            energy_j: energy,
            window_s: span.dt(),
            gap_s: span.gap_s(),
            gap_energy_j: gap_energy,
            uncertainty_j: unc,
            uncertainty_stat_j: stat,
            uncertainty_sys_j: sys,
            true_energy_j: truth,
            method,
            kernels: rows,
            kernels_timed: self.kernels.per_kernel().then_some(matches!(step_kernels, StepKernels::Timed(..))),
        }
    }

    /// With a twin: feed it the step's launches up to `now_s` (before the counter is read at the window's
    /// end), calibrating in place at the first timed step when asked; returns the launches fed.
    fn feed_twin(&mut self, now_s: f64, step_kernels: StepKernels<'_>) -> Vec<KernelTiming> {
        let Some(twin) = self.twin.clone() else { return Vec::new() };
        let launches = match step_kernels {
            StepKernels::Timed(k, _) => k.to_vec(),
            StepKernels::Profiled(_) => self.twin_launches.take().unwrap_or_default(),
        };
        twin.observe(&launches, now_s);
        if self.calibrate_pending && self.cfg.per_kernel && !launches.is_empty() {
            self.calibrate_in_place(&launches);
        }
        launches
    }

    /// The closed window's energy by source: (joules, half-width, method); sets where the next window starts.
    fn window_energy(&mut self, span: &Span) -> (Option<f64>, Option<f64>, String) {
        match self.source {
            EnergySource::None => {
                self.windows.continue_from(Some((span.b, None)));
                (None, None, "none".to_string())
            }
            EnergySource::Estimate => {
                self.windows.continue_from(Some((span.b, None)));
                (Some(self.cfg.watts.unwrap_or(0.0) * span.dt()), None, "watts-x-time (estimate)".to_string())
            }
            _ => {
                let (counter_b, err) = self.sensing.edge_read(span.b);
                self.windows.continue_from(err.is_none().then_some((span.b, counter_b)));
                window::measured(&self.sensing, span, counter_b, err, self.opts.long_window_periods)
            }
        }
    }

    /// With --per-kernel: how the split was made, and the additivity check over the windows so far.
    pub fn split_report(&self) -> Option<SplitReport> {
        if !self.cfg.per_kernel {
            return None;
        }
        let k = &self.kernels;
        let additivity =
            k.powers.is_some().then(|| powercal::Additivity::new(k.model_windows, k.model_j, k.measured_j));
        Some(SplitReport { method: k.method().into(), additivity, ..self.split.clone() })
    }

    /// Add `flops` floating-point operations to kernel `name` (for J/GFLOP in kernels.csv).
    pub fn add_flops(&mut self, name: &str, flops: f64) {
        self.kernels.table.add_flops(name, flops);
    }

    /// Per-kernel totals so far (with --per-kernel).
    pub fn kernel_table(&self) -> &KernelTable {
        &self.kernels.table
    }

    /// kernels.csv's rows so far.
    pub fn kernel_rows(&self) -> Vec<KernelRow> {
        let have = self.source != EnergySource::None;
        let run = self.run_uncertainty();
        let share = super::attribution::RunShare {
            steps_j: self.books.steps_j,
            stat_j: run.as_ref().map_or(0.0, |r| r.stat_j),
            sys_j: run.as_ref().and_then(|r| r.sys_j),
            method: self.kernels.method().into(),
        };
        let measured = self.source.is_measurement() || self.source == EnergySource::Sim;
        self.kernels.table.csv_rows(have, measured.then_some(&share))
    }

    /// The run's statistical and systematic half-widths so far (counters and power sensors).
    fn run_uncertainty(&self) -> Option<RunUncertainty> {
        if !(self.source.is_measurement() || self.source == EnergySource::Sim) {
            return None;
        }
        let (a, b) = self.windows.run_span();
        let tl = self.sensing.timeline();
        let period = tl.period_s();
        let p = tl.recent_power_w().unwrap_or(0.0);
        let updates: Vec<f64> = tl
            .points()
            .into_iter()
            .filter(|(t, _)| *t > a && *t <= b)
            .map(|(_, w)| w * period.unwrap_or(0.0))
            .collect();
        Some(uncertainty::run(self.source, self.books.steps_j, b - a, (period, self.sensing.quantum_j, p), &updates))
    }

    /// kernels.csv content (columns: `KernelsCsv::COLUMNS`).
    pub fn kernels_csv(&self) -> String {
        KernelsCsv::render(&self.kernel_rows())
    }

    /// The power timeline (t on the meter clock, watts), oldest first.
    pub fn power_timeline(&self) -> Vec<(f64, f64)> {
        self.sensing.timeline().points()
    }

    /// Stop the sampler and report the run's totals. The total covers the first `begin_step` to the last
    /// `end_step`, including work between steps (evaluation).
    pub fn finish(mut self) -> RunEnergy {
        // Give a real counter/power sensor one more update so the last windows settle.
        if self.sensing.sampling() {
            let wait = self.period_s().unwrap_or(0.1).clamp(0.0, 0.3);
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        self.sensing.stop_sampler();
        let state_at_end = self.sensing.sensor_state();
        let span = self.windows.run_span();
        let wall = (span.1 - span.0).max(0.0);
        let mut tl = self.sensing.timeline();
        tl.settle();
        let residual_j = tl.residual_j;
        let (total, total_method) = bookkeeping::run_total(self.source, &self.sensing, &self.books, &tl, span);
        let (idle_j, active_j) = self.books.idle_split(total, wall);
        let closing = Closing {
            source: self.source,
            contiguous: self.opts.contiguous,
            total,
            total_method,
            residual_j,
            idle_j,
            span,
            state_at_end,
            tl: &tl,
        };
        let mut totals = bookkeeping::accounting(closing, &self.books, &self.sensing);
        drop(tl);
        totals.uncertainty = self.run_uncertainty();
        let kernel_split = self.split_report();
        let attribution_error = self.twin.as_ref().map(|_| {
            let rows = self.kernel_rows();
            let attributed = rows.iter().map(|r| (r.name.clone(), (r.energy_j.unwrap_or(0.0), r.energy_uncertainty_j)));
            self.truth.report(&attributed.collect(), total)
        });
        let mut context = self.context;
        context.totals = Some(totals);
        RunEnergy {
            attribution_error,
            kernel_split,
            source: self.source.as_str().into(),
            total_j: total,
            idle_j,
            active_j,
            idle_power_w: self.books.idle_power_w,
            wall_s: wall,
            context,
        }
    }
}
