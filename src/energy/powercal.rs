//! Per-kernel power from calibration: the file `bench kernels --energy` writes (and `train --per-kernel`
//! calibrates when none is stored), where it is kept, how a step's energy is split with it, and the
//! additivity check.
//!
//! ## The calibration file (JSON, `format: "powertrain-kernel-power/1"`)
//!
//! ```json
//! { "format": "powertrain-kernel-power/1",
//!   "device": "GPU-8f1c...",             // the NVML UUID, or "sim:<model hash>" for the sensor twin
//!   "device_name": "NVIDIA H100 80GB HBM3",
//!   "clock_mhz": null,                   // SM clock when known
//!   "source": "nvml-counter",            // what measured it ("sim" for the twin: never a measurement)
//!   "created_unix_s": 1764672000,
//!   "idle_w": 74.8, "idle_ci95_w": 0.4,  // idle power measured right before the kernels
//!   "gap_w": 74.8,                       // power charged to the time between kernels and steps
//!   "kernels": [ { "name": "gemm", "shape": "pamap2/b64", "power_w": 388.1, "ci95_w": 6.2,
//!                  "windows": 6, "window_s": 3.0, "launch_s": 4.1e-5 } ] }
//! ```
//!
//! `power_w` is the device's total power while the kernel runs back to back (idle included), the mean of
//! `windows` windows each spanning at least 2 counter updates x many, started at random phases; `ci95_w` is
//! the Student-t half-width over those windows (`crate::stats::t_interval`). The shape is the training step
//! the kernel belongs to (`model/bBATCH`): a kernel's power depends on its problem size. `gap_w` is the power
//! of the short gaps between kernels: on the twin, a calibrated kernel alternating with gaps as long as its
//! launches gives `2 x P(mix) - P(kernel)` (the device stays clocked up between kernels); `bench kernels
//! --energy` on a device sets it to the idle power for now (an underestimate, which the additivity check
//! shows).
//!
//! The cache folder is `$POWERTRAIN_CACHE/calibration/`, else `$XDG_CACHE_HOME/powertrain/calibration/`,
//! else `~/.cache/powertrain/calibration/`; one file per device, named after its id.
//!
//! ## The split
//! A step's measured energy `E` is split among its kernels in proportion to `power_w(kernel) x its time`,
//! the gaps between kernels and the host gap before the step at `gap_w x their time`, scaled so that the
//! shares sum to `E` (never more than the step's measurement). Without a calibration (`--calibration none`,
//! or none stored for a device that cannot calibrate in place) the split is by GPU time weighted by the power
//! timeline, which at a counter's ~100 ms update period is a time split: it is labelled `time-proportional`.
//!
//! ## The additivity check
//! Over the run, `sum(power_w x time) + gap_w x gaps` (the calibrated model's energy) against the counter's
//! energy of the same steps: `gap_rel = model / measured - 1`. A large gap says the calibration does not
//! describe this run (another clock, another temperature, other shapes).
use super::sensors::{Reading, Sensor};
use super::twin::{PowerModel, SensorModel, SimHandle};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "powertrain-kernel-power/1";

/// One kernel at one shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelPowerRow {
    pub name: String,
    /// The training step it was calibrated for (`model/bBATCH`), or a bench case's label.
    pub shape: String,
    /// Total device power while the kernel runs back to back (W).
    pub power_w: f64,
    /// Half-width of the 95 % Student-t interval over the windows (W).
    pub ci95_w: f64,
    pub windows: usize,
    pub window_s: f64,
    /// Median launch time (s).
    pub launch_s: f64,
}

/// A calibration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerCalibration {
    pub format: String,
    pub device: String,
    #[serde(default)]
    pub device_name: String,
    #[serde(default)]
    pub clock_mhz: Option<f64>,
    pub source: String,
    #[serde(default)]
    pub created_unix_s: u64,
    pub idle_w: f64,
    #[serde(default)]
    pub idle_ci95_w: f64,
    pub gap_w: f64,
    pub kernels: Vec<KernelPowerRow>,
}

impl PowerCalibration {
    pub fn new(device: &str, source: &str, idle_w: f64) -> PowerCalibration {
        PowerCalibration {
            format: FORMAT.into(),
            device: device.into(),
            device_name: String::new(),
            clock_mhz: None,
            source: source.into(),
            created_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            idle_w,
            idle_ci95_w: 0.0,
            gap_w: idle_w,
            kernels: Vec::new(),
        }
    }

    /// Read a calibration file; errors name the file (`what`: the flag or the cache) and say what to do.
    pub fn read(path: &Path, what: &str) -> Result<PowerCalibration> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("{what} {}: cannot read (a calibration file `bench kernels --energy` writes)", path.display())
        })?;
        let c: PowerCalibration = serde_json::from_str(&text).with_context(|| {
            format!("{what} {}: not a calibration file (format {FORMAT}, see energy/powercal.rs)", path.display())
        })?;
        if c.format != FORMAT {
            bail!("{what} {}: format '{}', expected {FORMAT}", path.display(), c.format);
        }
        let bad = |w: f64| !(w.is_finite() && (0.0..=20_000.0).contains(&w));
        if bad(c.idle_w) || bad(c.gap_w) || c.kernels.iter().any(|k| bad(k.power_w) || bad(k.ci95_w)) {
            bail!("{what} {}: a power is not a number of watts between 0 and 20000", path.display());
        }
        Ok(c)
    }

    /// Write (atomically), merging with the rows already in `path` (same device): a row of the same name and
    /// shape is replaced.
    pub fn store(&self, path: &Path) -> Result<()> {
        let mut out = match PowerCalibration::read(path, "calibration cache") {
            Ok(old) if old.device == self.device => old,
            _ => PowerCalibration { kernels: Vec::new(), ..self.clone() },
        };
        out.idle_w = self.idle_w;
        out.idle_ci95_w = self.idle_ci95_w;
        out.gap_w = self.gap_w;
        out.created_unix_s = self.created_unix_s;
        for k in &self.kernels {
            out.kernels.retain(|o| !(o.name == k.name && o.shape == k.shape));
            out.kernels.push(k.clone());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        crate::util::write_json(path, &out)
    }

    /// The powers for steps of `shape`: each kernel's row at that shape, else the mean over its shapes.
    pub fn powers(&self, shape: &str) -> KernelPowers {
        let mut by: BTreeMap<String, Vec<&KernelPowerRow>> = BTreeMap::new();
        for k in &self.kernels {
            by.entry(k.name.clone()).or_default().push(k);
        }
        let kernels = by
            .into_iter()
            .map(|(name, rows)| {
                let exact: Vec<&&KernelPowerRow> = rows.iter().filter(|r| r.shape == shape).collect();
                let pick: Vec<&KernelPowerRow> =
                    if exact.is_empty() { rows.clone() } else { exact.into_iter().copied().collect() };
                let n = pick.len() as f64;
                let p = pick.iter().map(|r| r.power_w).sum::<f64>() / n;
                let ci = pick.iter().map(|r| r.ci95_w).sum::<f64>() / n;
                (name, (p, ci))
            })
            .collect();
        KernelPowers { kernels, gap_w: self.gap_w, device: self.device.clone() }
    }

    /// True when every name in `names` has a row at `shape`.
    pub fn covers(&self, names: &[&str], shape: &str) -> bool {
        names.iter().all(|n| self.kernels.iter().any(|k| k.name == *n && k.shape == shape))
    }
}

/// Calibrated power by kernel name, as the split uses it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelPowers {
    /// name -> (power W, 95 % half-width W)
    pub kernels: BTreeMap<String, (f64, f64)>,
    pub gap_w: f64,
    pub device: String,
}

impl KernelPowers {
    /// Power of kernel `name` (W) and its relative 95 % half-width; the gap power with an unknown (100 %)
    /// half-width for a kernel the calibration does not hold.
    pub fn power(&self, name: &str) -> (f64, f64) {
        match self.kernels.get(name) {
            Some(&(p, ci)) if p > 0.0 => (p, ci / p),
            _ => (self.gap_w, 1.0),
        }
    }
}

/// `--calibration`: where the split's powers come from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum CalibrationChoice {
    /// The cache's file for this device, else calibrate in place (sim) or split by time.
    #[default]
    Auto,
    /// `--calibration none`: time-proportional.
    Off,
    /// `--calibration FILE`.
    File(PathBuf),
}

impl CalibrationChoice {
    pub fn parse(s: Option<&str>) -> CalibrationChoice {
        match s {
            None | Some("auto") => CalibrationChoice::Auto,
            Some("none") => CalibrationChoice::Off,
            Some(f) => CalibrationChoice::File(PathBuf::from(f)),
        }
    }
}

/// The cache folder of calibration files (see the module docs).
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let root = env("POWERTRAIN_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("powertrain")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("powertrain")))?;
    Some(root.join("calibration"))
}

/// The calibration's key of a training step: `model/bBATCH` (a kernel's power depends on its problem size).
pub fn shape_key(model: &str, batch_size: usize) -> String {
    format!("{model}/b{batch_size}")
}

/// The cache file of device `id`.
pub fn cache_file(id: &str) -> Option<PathBuf> {
    let safe: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    cache_dir().map(|d| d.join(format!("{safe}.json")))
}

/// The twin's device id: `sim:` and a hash of its power and sensor models (another model is another device).
pub fn sim_device_id(power: &PowerModel, sensor: &SensorModel) -> String {
    use sha2::Digest;
    let text = serde_json::to_string(&(power, sensor)).unwrap_or_default();
    let h = sha2::Sha256::digest(text.as_bytes());
    format!("sim:{}", h.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>())
}

/// What an in-place calibration cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCost {
    pub kernels: usize,
    /// Device seconds the calibration ran (simulated seconds on the twin).
    pub device_s: f64,
    /// Energy the device used meanwhile (J; simulated on the twin).
    pub energy_j: f64,
    /// Wall-clock seconds it took here.
    pub wall_s: f64,
}

/// Options of a calibration on the twin.
#[derive(Clone, Debug)]
pub struct SimCalOpts {
    /// Windows per kernel (>= 5).
    pub windows: usize,
    /// Counter updates per window.
    pub periods_per_window: f64,
    pub seed: u64,
}

impl Default for SimCalOpts {
    fn default() -> Self {
        SimCalOpts { windows: 6, periods_per_window: 20.0, seed: 0x5eed }
    }
}

/// Read the twin's counter at `t` through its `Sensor`.
fn counter_at(s: &mut dyn Sensor, t: f64) -> f64 {
    match s.read(t) {
        Ok(Reading::Counter { energy_j }) => energy_j,
        _ => f64::NAN,
    }
}

/// Energy between the first and the last counter update the reads see in (a, b], and the time between
/// them: reads every `dt` seconds, an update's time placed at the read that first shows it.
fn edge_to_edge(s: &mut dyn Sensor, a: f64, b: f64, dt: f64) -> Option<(f64, f64)> {
    let mut prev = counter_at(s, a);
    let (mut first, mut last): (Option<(f64, f64)>, Option<(f64, f64)>) = (None, None);
    let mut t = a;
    while t < b {
        t = (t + dt).min(b);
        let c = counter_at(s, t);
        if c > prev {
            if first.is_none() {
                first = Some((t, c));
            }
            last = Some((t, c));
        }
        prev = c;
    }
    let ((t0, c0), (t1, c1)) = (first?, last?);
    (t1 > t0).then(|| (c1 - c0, t1 - t0))
}

/// The windows of the gap measurement.
struct GapRun {
    win: f64,
    dt: f64,
    windows: usize,
    hold_s: f64,
}

/// The power of the short gaps between kernels (the device stays clocked up for a while after a kernel): a
/// calibrated kernel launched for 100 µs, then 100 µs of nothing, over whole windows; the gap's power is
/// `2 x P(mix) - P(kernel)`. Advances `t`.
fn gap_power(
    twin: &SimHandle,
    s: &mut dyn Sensor,
    t: &mut f64,
    k: &KernelPowerRow,
    g: &GapRun,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Option<f64> {
    use rand::Rng;
    let name: &'static str = crate::ops::KERNEL_NAMES.iter().find(|n| **n == k.name).copied()?;
    let d = 1e-4;
    let mut per = Vec::new();
    for _ in 0..g.windows {
        *t += rng.random_range(0.0..g.win / 10.0) + 2.0 * g.hold_s;
        let n = (g.win / (2.0 * d)) as usize;
        let ks: Vec<crate::ops::KernelTiming> =
            (0..n).map(|i| crate::ops::KernelTiming { name, start_s: *t + 2.0 * d * i as f64, dur_s: d }).collect();
        twin.begin(*t);
        twin.observe(&ks, *t + g.win);
        if let Some((e, dur)) = edge_to_edge(s, *t, *t + g.win, g.dt) {
            per.push(2.0 * e / dur - k.power_w);
        }
        *t += g.win;
        twin.trim_before(*t - g.win);
    }
    crate::stats::t_interval(&per, 0.95).map(|iv| iv.mean.max(0.0))
}

/// Calibrate `kernels` (name, shape, median launch time) on a twin of `power` observed by `sensor`, in
/// simulated time: idle first, then per kernel `windows` windows of back-to-back launches (fed as one busy
/// interval: the twin's power is constant while a kernel runs) at random phases, each window's power from
/// edge to edge of the counter (reads every millisecond, as a tight sampler would), idle between kernels.
/// The twin's sensor errors (gain, offset, noise, part-time sampling) bias it as they would a real one.
pub fn calibrate_on_twin(
    power: &PowerModel,
    sensor: &SensorModel,
    kernels: &[(String, String, f64)],
    opts: &SimCalOpts,
) -> Result<(PowerCalibration, CalibrationCost)> {
    use rand::{Rng, SeedableRng};
    let started = std::time::Instant::now();
    let sm = SensorModel { seed: sensor.seed ^ opts.seed, ..sensor.clone() };
    let period = sm.period_s;
    let twin = SimHandle::new(power.clone(), sm, 0.0);
    let mut s = twin.sensor();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let win = opts.periods_per_window.max(4.0) * period;
    let dt = (period / 100.0).clamp(1e-4, 1e-3);
    let mut t = 0.0;
    let idle_windows: Vec<f64> = (0..opts.windows.max(2))
        .filter_map(|_| {
            let r = edge_to_edge(&mut s, t, t + win, dt).map(|(e, d)| e / d);
            t += win;
            r
        })
        .collect();
    let idle =
        crate::stats::t_interval(&idle_windows, 0.95).context("calibration: the twin's counter never updated")?;
    let mut cal = PowerCalibration::new(&sim_device_id(power, sensor), "sim", idle.mean);
    cal.idle_ci95_w = idle.half_width.unwrap_or(0.0);
    cal.device_name = "sensor twin (sim)".into();
    for (name, shape, launch_s) in kernels {
        let mut per = Vec::new();
        for _ in 0..opts.windows.max(2) {
            t += rng.random_range(0.0..period) + power.hold_s * 2.0;
            let name_static: &'static str =
                crate::ops::KERNEL_NAMES.iter().find(|n| **n == name).copied().unwrap_or("");
            twin.begin(t);
            twin.observe(&[crate::ops::KernelTiming { name: name_static, start_s: t, dur_s: win }], t + win);
            if let Some((e, d)) = edge_to_edge(&mut s, t, t + win, dt) {
                per.push(e / d);
            }
            t += win;
            twin.trim_before(t - 2.0 * period);
        }
        let iv = crate::stats::t_interval(&per, 0.95)
            .with_context(|| format!("calibration of {name}: no counter update within a window"))?;
        cal.kernels.push(KernelPowerRow {
            name: name.clone(),
            shape: shape.clone(),
            power_w: iv.mean,
            ci95_w: iv.half_width.unwrap_or(iv.mean),
            windows: per.len(),
            window_s: win,
            launch_s: *launch_s,
        });
    }
    if let Some(first) = cal.kernels.first().cloned() {
        let gaps = GapRun { win, dt, windows: opts.windows.max(2), hold_s: power.hold_s };
        if let Some(g) = gap_power(&twin, &mut s, &mut t, &first, &gaps, &mut rng) {
            cal.gap_w = g;
        }
    }
    let energy_j = twin.true_energy(0.0, t);
    let cost =
        CalibrationCost { kernels: kernels.len(), device_s: t, energy_j, wall_s: started.elapsed().as_secs_f64() };
    Ok((cal, cost))
}

/// The additivity check: the calibrated model's energy against the measured energy of the same windows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Additivity {
    pub windows: u64,
    /// sum(power_w x time) + gap_w x gaps (J).
    pub model_j: f64,
    /// The counter's energy of the same windows (J).
    pub measured_j: f64,
    /// model / measured - 1.
    pub gap_rel: Option<f64>,
}

impl Additivity {
    pub fn new(windows: u64, model_j: f64, measured_j: f64) -> Additivity {
        let gap_rel = (measured_j > 0.0).then(|| model_j / measured_j - 1.0);
        Additivity { windows, model_j, measured_j, gap_rel }
    }
}

/// summary.json's `kernel_split`: how the per-kernel split was made.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// "calibrated" or "time-proportional".
    pub method: String,
    /// Where the powers came from (a file, the cache, an in-place calibration), or why there are none.
    pub calibration: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    pub shape: String,
    /// What an in-place calibration before the first step cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CalibrationCost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additivity: Option<Additivity>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_twin_calibration_recovers_each_kernels_power_within_its_interval() {
        let p = PowerModel::default();
        let s = SensorModel::default();
        let ks = vec![("gemm".to_string(), "x".to_string(), 1e-4), ("relu_forward".into(), "x".into(), 1e-4)];
        let (cal, cost) = calibrate_on_twin(&p, &s, &ks, &SimCalOpts::default()).unwrap();
        assert!((cal.idle_w - 75.0).abs() < 0.5, "{}", cal.idle_w);
        let want = |n: &str| p.idle_w + p.busy_w + p.dyn_w(n);
        for k in &cal.kernels {
            assert!((k.power_w - want(&k.name)).abs() <= k.ci95_w.max(0.01 * want(&k.name)), "{k:?}");
        }
        assert!(cost.device_s > 10.0 && cost.energy_j > 0.0);
        let pw = cal.powers("x");
        assert!((pw.power("gemm").0 - 415.0).abs() < 5.0);
        assert_eq!(pw.power("unknown"), (cal.gap_w, 1.0));
    }

    #[test]
    fn files_round_trip_merge_and_refuse_nonsense() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        let mut c = PowerCalibration::new("sim:abc", "sim", 70.0);
        let row = |n: &str, sh: &str, w: f64| KernelPowerRow {
            name: n.into(),
            shape: sh.into(),
            power_w: w,
            ci95_w: 1.0,
            windows: 5,
            window_s: 2.0,
            launch_s: 1e-4,
        };
        c.kernels = vec![row("gemm", "a/b64", 300.0), row("gemm", "a/b16", 200.0)];
        c.store(&f).unwrap();
        let mut d = PowerCalibration::new("sim:abc", "sim", 71.0);
        d.kernels = vec![row("gemm", "a/b64", 310.0), row("relu_forward", "a/b64", 150.0)];
        d.store(&f).unwrap();
        let back = PowerCalibration::read(&f, "--calibration").unwrap();
        assert_eq!(back.kernels.len(), 3);
        assert_eq!(back.powers("a/b64").power("gemm").0, 310.0);
        assert_eq!(back.powers("a/b32").power("gemm").0, 255.0, "no exact shape: the mean over shapes");
        assert!(back.covers(&["gemm", "relu_forward"], "a/b64") && !back.covers(&["relu_forward"], "a/b16"));
        std::fs::write(&f, "{\"format\": \"x\"}").unwrap();
        let e = PowerCalibration::read(&f, "--calibration").unwrap_err().to_string();
        assert!(e.contains("--calibration") && e.contains("c.json"), "{e}");
    }
}
