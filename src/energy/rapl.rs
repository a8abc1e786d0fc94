//! RAPL through the Linux powercap interface: `/sys/class/powercap/intel-rapl:<i>` (package) and its
//! `intel-rapl:<i>:<j>` children named `dram`. Counters are in µJ and wrap at `max_energy_range_uj`.
//! The root is configurable (`RaplSensor::open_at`) so tests run on a fake sysfs directory.

use super::sensors::{Reading, Sensor};
use super::EnergySource;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

/// The message for an unreadable `energy_uj` (root-only since CVE-2020-8694).
pub fn permission_hint(path: &Path) -> String {
    format!(
        "RAPL needs read access to {} (root since CVE-2020-8694): run as root or chmod, or use --energy \
         estimate --watts W",
        path.display()
    )
}

/// One RAPL domain (a package or its DRAM) with wraparound tracking.
#[derive(Debug)]
pub struct Domain {
    pub name: String,
    pub path: PathBuf,
    pub max_range_uj: u64,
    last_raw: Option<u64>,
    /// Accumulated µJ since open, wrap-corrected.
    acc_uj: u128,
}

/// Difference of two raw readings of a counter that wraps at `max_range_uj` (the counter runs 0..=max).
/// A reading below the previous one is a wrap; one wrap per read interval is assumed (RAPL wraps after
/// minutes at package power, the sampler reads every few ms).
pub fn wrap_delta(prev: u64, now: u64, max_range_uj: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        max_range_uj.saturating_sub(prev) + now + 1
    }
}

fn read_u64(p: &Path) -> std::io::Result<u64> {
    let s = std::fs::read_to_string(p)?;
    s.trim().parse::<u64>().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn read_energy(p: &Path) -> Result<u64> {
    match read_u64(p) {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => bail!("{}", permission_hint(p)),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// The RAPL sensor: package + DRAM energy of every package, summed.
#[derive(Debug)]
pub struct RaplSensor {
    pub root: PathBuf,
    pub domains: Vec<Domain>,
}

/// Zones under `root`: (name, dir) for top-level packages (`intel-rapl:N`) and their `dram` children.
fn find_zones(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = std::fs::read_dir(root)
        .with_context(|| format!("no powercap at {} (no RAPL on this machine or in this container)", root.display()))?;
    let mut tops: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with("intel-rapl:") && n.matches(':').count() == 1
        })
        .collect();
    tops.sort();
    let mut out = Vec::new();
    for top in tops {
        let name = std::fs::read_to_string(top.join("name")).unwrap_or_default().trim().to_string();
        // Only packages (psys would double count the package).
        if !name.starts_with("package") {
            continue;
        }
        out.push((name.clone(), top.clone()));
        if let Ok(rd) = std::fs::read_dir(&top) {
            let mut subs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            subs.sort();
            for sub in subs {
                let sn = std::fs::read_to_string(sub.join("name")).unwrap_or_default().trim().to_string();
                if sn == "dram" {
                    out.push((format!("{name}/dram"), sub));
                }
            }
        }
    }
    if out.is_empty() {
        bail!("no RAPL package zones under {} (intel-rapl:N with name package-N)", root.display());
    }
    Ok(out)
}

impl RaplSensor {
    pub fn open() -> Result<RaplSensor> {
        Self::open_at(Path::new(POWERCAP_ROOT))
    }

    /// Open every package (and DRAM) zone under `root`; errors say why RAPL is unusable.
    pub fn open_at(root: &Path) -> Result<RaplSensor> {
        let mut domains = Vec::new();
        for (name, dir) in find_zones(root)? {
            let path = dir.join("energy_uj");
            let max = read_u64(&dir.join("max_energy_range_uj"))
                .with_context(|| format!("reading {}", dir.join("max_energy_range_uj").display()))?;
            let first = read_energy(&path)?;
            domains.push(Domain { name, path, max_range_uj: max, last_raw: Some(first), acc_uj: 0 });
        }
        Ok(RaplSensor { root: root.to_path_buf(), domains })
    }

    /// Read every domain, returning the wrap-corrected joules since open summed over domains.
    pub fn read_total_j(&mut self) -> Result<f64> {
        let mut total: u128 = 0;
        for d in self.domains.iter_mut() {
            let raw = read_energy(&d.path)?;
            if let Some(prev) = d.last_raw {
                d.acc_uj += wrap_delta(prev, raw, d.max_range_uj) as u128;
            }
            d.last_raw = Some(raw);
            total += d.acc_uj;
        }
        Ok(total as f64 * 1e-6)
    }
}

impl Sensor for RaplSensor {
    fn source(&self) -> EnergySource {
        EnergySource::Rapl
    }
    fn read(&mut self, _now_s: f64) -> Result<Reading> {
        Ok(Reading::Counter { energy_j: self.read_total_j()? })
    }
    fn quantum_j(&self) -> f64 {
        1e-6
    }
    fn nominal_period_s(&self) -> Option<f64> {
        Some(0.001)
    }
    fn poll_interval_s(&self) -> f64 {
        0.02
    }
    fn context(&self) -> serde_json::Value {
        serde_json::json!({
            "rapl_root": self.root.display().to_string(),
            "rapl_domains": self.domains.iter().map(|d| serde_json::json!({
                "name": d.name, "path": d.path.display().to_string(), "max_energy_range_uj": d.max_range_uj,
                "energy_j_since_open": d.acc_uj as f64 * 1e-6,
            })).collect::<Vec<_>>(),
            "scope": "CPU packages and DRAM (whole machine, not this process)",
        })
    }
}

/// Why RAPL is or is not usable under `root` (for `powertrain info`).
pub fn probe_at(root: &Path) -> serde_json::Value {
    match RaplSensor::open_at(root) {
        Ok(s) => serde_json::json!({
            "available": true,
            "domains": s.domains.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({ "available": false, "reason": format!("{e:#}") }),
    }
}
