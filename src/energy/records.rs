//! Records derived from energy: carbon (only with explicit inputs) and the human-readable probe report.
//! (`window_s`, the seconds a steps.jsonl record covers, is `crate::rundir`'s.)

pub use crate::rundir::window_s;

use anyhow::{bail, Result};
use serde_json::json;

/// The `carbon` block of summary.json. Carbon is reported only when `--carbon-intensity` (gCO2e/kWh) and
/// `--pue` are both given; the block states both inputs. Returns `Null` when neither is given.
pub fn carbon_block(
    energy_j: Option<f64>,
    intensity_g_per_kwh: Option<f64>,
    pue: Option<f64>,
) -> Result<serde_json::Value> {
    let (ci, pue) = match (intensity_g_per_kwh, pue) {
        (None, None) => return Ok(serde_json::Value::Null),
        (Some(ci), Some(pue)) => (ci, pue),
        (Some(_), None) => bail!("--carbon-intensity needs --pue (the site's power usage effectiveness, e.g. 1.2)"),
        (None, Some(_)) => bail!("--pue needs --carbon-intensity (gCO2e/kWh of the electricity used)"),
    };
    if !(ci.is_finite() && ci >= 0.0) {
        bail!("--carbon-intensity {ci}: must be a non-negative number of gCO2e/kWh");
    }
    if !(pue.is_finite() && pue >= 1.0) {
        bail!("--pue {pue}: must be >= 1.0 (facility energy / IT energy)");
    }
    let kwh = energy_j.map(|j| j / 3.6e6);
    Ok(json!({
        "carbon_intensity_g_per_kwh": ci,
        "pue": pue,
        "energy_kwh": kwh,
        "facility_energy_kwh": kwh.map(|k| k * pue),
        "co2e_g": kwh.map(|k| k * pue * ci),
        "note": "co2e_g = the run's energy x pue x carbon intensity (both given on the command line); the energy \
                 is what energy_source says: a measurement only for nvml-counter, nvml-power or rapl",
    }))
}

/// A few lines describing `probe_report()` for `powertrain info`.
pub fn probe_text(v: &serde_json::Value) -> String {
    let mut s = String::from("energy sensors:\n");
    let nv = &v["nvml"];
    if nv["available"] == json!(true) {
        let devs = nv["devices"].as_array().cloned().unwrap_or_default();
        if devs.is_empty() {
            s.push_str("  nvml: initialised, no GPUs\n");
        }
        for d in devs {
            let c = if d["counter"]["available"] == json!(true) {
                "energy counter: yes".to_string()
            } else {
                format!("energy counter: no ({})", d["counter"]["reason"].as_str().unwrap_or("?"))
            };
            let p = if d["power"]["available"] == json!(true) {
                format!("power: {}", d["power"]["reading"].as_str().unwrap_or("?"))
            } else {
                format!("power: no ({})", d["power"]["reason"].as_str().unwrap_or("?"))
            };
            s.push_str(&format!(
                "  nvml gpu {}: {} ({}), driver {}: {c}; {p}\n",
                d["index"],
                d["gpu_name"].as_str().unwrap_or("?"),
                d["gpu_uuid"].as_str().unwrap_or("?"),
                d["driver_version"].as_str().unwrap_or("?")
            ));
        }
    } else {
        s.push_str(&format!("  nvml: no ({})\n", nv["reason"].as_str().unwrap_or("?")));
    }
    let r = &v["rapl"];
    if r["available"] == json!(true) {
        s.push_str(&format!("  rapl: yes ({})\n", r["domains"]));
    } else {
        s.push_str(&format!("  rapl: no ({})\n", r["reason"].as_str().unwrap_or("?")));
    }
    s.push_str(&format!("  estimate: {}\n", v["estimate"].as_str().unwrap_or("")));
    s.push_str(&format!(
        "  --energy auto picks: cuda -> {}, cpu -> {}\n",
        v["auto"]["cuda"].as_str().unwrap_or("?"),
        v["auto"]["cpu"].as_str().unwrap_or("?")
    ));
    s
}
