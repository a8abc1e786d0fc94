//! The meter the training loop talks to: a sensor side (`sampling.rs`), window edges (`window.rs`), the
//! per-kernel attribution (`attribution.rs`) and the books (`bookkeeping.rs`), with the energy context they
//! fill.
use super::attribution::{KernelAttribution, KernelTable};
use super::bookkeeping::{self, Books, Closing};
use super::context::{EnergyContext, EstimateNote, IdleBaseline};
use super::sampling::Sensing;
use super::window::{self, Span, Windows};
use super::{nvml, rapl, EnergySource, MeterConfig, MeterOptions, RunEnergy, Sensor, StepEnergy, StepKernels};
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
}

impl Meter {
    /// Pick and open the source. An explicitly requested source that is unavailable is an error that says
    /// why; `auto` picks nvml-counter > nvml-power > none on a cuda run and rapl > none on a cpu run (never
    /// an estimate), and records why in the context.
    pub fn open(cfg: MeterConfig) -> Result<Meter> {
        let mut why: Option<String> = None;
        let sensor: Option<Box<dyn Sensor>> = match cfg.source.as_str() {
            "none" => None,
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
            other => bail!("unknown --energy '{other}': use auto, nvml, rapl, estimate or none"),
        };
        let mut m = match sensor {
            Some(s) => Meter::with_sensor(cfg, s, MeterOptions::default()),
            None => Meter::without_sensor(cfg),
        };
        m.context.auto_fallback = why;
        Ok(m)
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
        let span = self.windows.close(now_s);
        self.books.add_span(&span);
        let (energy, unc, method) = self.window_energy(&span);
        let energy = energy.filter(|e| e.is_finite() && *e >= 0.0);
        self.books.add_energy(energy);
        let (rows, gap_energy) = {
            let tl = self.sensing.timeline();
            let power_j = window::power_weight(&tl, self.source.is_measurement());
            let gap = energy.map(|e| window::gap_energy(&span, e, &power_j));
            (self.kernels.split(step_kernels, (span.a, span.work, span.b), energy, unc, &power_j), gap)
        };
        StepEnergy {
            energy_j: energy,
            window_s: span.dt(),
            gap_s: span.gap_s(),
            gap_energy_j: gap_energy,
            uncertainty_j: unc,
            method,
            kernels: rows,
            kernels_timed: self.kernels.per_kernel().then_some(matches!(step_kernels, StepKernels::Timed(..))),
        }
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
        self.kernels.table.csv_rows(self.source != EnergySource::None)
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
        let totals = bookkeeping::accounting(closing, &self.books, &self.sensing);
        drop(tl);
        let mut context = self.context;
        context.totals = Some(totals);
        RunEnergy {
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
