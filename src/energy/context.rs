//! The energy context of a run (summary.json's `energy_context`): where the numbers came from and how well
//! they close. The meter fills it; `powertrain train` adds the kernel timing; reports and the studies read it.
//!
//! Serialised as one JSON object with sorted keys (through `serde_json::Value`, as earlier versions wrote it):
//! the typed fields below, the run accounting flattened in once the meter finished, and the sensor's own
//! description (GPU name, UUID, driver, power limit, RAPL domains, ...) flattened in as it comes.
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EnergyContext {
    /// The energy source (`EnergySource::as_str`).
    #[serde(default)]
    pub source: String,
    /// Why `--energy auto` found no sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_fallback: Option<String>,
    /// `--energy estimate`: the watts assumed and what that means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<EstimateNote>,
    /// How step edges read a counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_reads: Option<String>,
    /// Set when the sampler thread could not start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// The idle baseline measured before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdleBaseline>,
    /// With `--per-kernel`: how the launches were timed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_timing: Option<KernelTimingInfo>,
    /// The run's accounting (once `Meter::finish` ran).
    #[serde(flatten)]
    pub totals: Option<RunAccounting>,
    /// The sensor's description of itself and its device (`Sensor::context`), key by key.
    #[serde(flatten)]
    pub sensor: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EstimateNote {
    pub watts: Option<f64>,
    pub note: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleBaseline {
    /// None when it could not be measured.
    pub power_w: Option<f64>,
    pub window_s: f64,
    pub note: String,
}

/// The `kernel_timing` block: the clock, `--kernel-sample`, and how many launches were timed in their own
/// step (the others took the latest timed profile's times).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KernelTimingInfo {
    /// "events", "stamps" or "wall clock" (CPU).
    pub clock: String,
    pub sample: u64,
    pub launches: u64,
    pub timed_launches: u64,
}

/// What `Meter::finish` accounts for: how the total was obtained, how much of it the windows hold, the
/// host time folded into them, the timeline's state and the sensor's errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunAccounting {
    pub total_method: String,
    /// Sum of the windows' energies (null with source none).
    pub steps_j: Option<f64>,
    pub steps_with_energy: u64,
    pub steps_without_energy: u64,
    /// Step work inside the windows (s).
    pub busy_s: f64,
    /// Host time folded into the windows (s).
    pub gap_s: f64,
    /// How windows are laid out (contiguous or step work only).
    pub windows: String,
    /// The windows' energies over the run's total (1 = every joule attributed); null without a total.
    pub closure: Option<f64>,
    pub unattributed_residual_j: f64,
    pub update_period_s: Option<f64>,
    pub counter_quantum_j: f64,
    pub timeline_points: usize,
    pub unsettled_windows: u64,
    pub read_errors: u64,
    /// The sensor's state at the end (clocks, temperature, throttle reasons; the start is in `sensor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_at_end: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_read_error: Option<String>,
    /// The counter went backwards: the sum of its positive steps, a lower bound of the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lower_bound_j: Option<f64>,
    /// Beside a counter: the cross-check power readings integrated over the run window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_check: Option<PowerCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_note: Option<String>,
    /// The run total's statistical and systematic half-widths (`uncertainty.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<super::uncertainty::RunUncertainty>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerCheck {
    #[serde(default)]
    pub window_s: f64,
    #[serde(default)]
    pub readings: Vec<PowerReading>,
    #[serde(default)]
    pub read_errors: u64,
    #[serde(default)]
    pub note: String,
}

/// One cross-check reading over the run window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PowerReading {
    /// What was read (e.g. "field NVML_FI_DEV_POWER_INSTANT (186), polled every 50 ms").
    pub reading: String,
    #[serde(default)]
    pub integral_j: Option<f64>,
    /// Share of the window its samples cover.
    #[serde(default)]
    pub covered_fraction: f64,
    #[serde(default)]
    pub samples: usize,
    #[serde(default)]
    pub counter_j: Option<f64>,
    /// (integral - counter) / counter.
    #[serde(default)]
    pub gap_rel: Option<f64>,
}

impl EnergyContext {
    /// A context for `source` around the sensor's own description (an object's keys are kept as they are;
    /// anything else is kept under `sensor`).
    pub fn new(source: &str, sensor: serde_json::Value) -> EnergyContext {
        let sensor = match sensor {
            serde_json::Value::Object(m) => m,
            other => serde_json::Map::from_iter([("sensor".to_string(), other)]),
        };
        EnergyContext { source: source.into(), sensor, ..Default::default() }
    }

    /// The run's accounting, once the meter finished.
    pub fn totals(&self) -> Option<&RunAccounting> {
        self.totals.as_ref()
    }

    /// The closure (windows / total), when known.
    pub fn closure(&self) -> Option<f64> {
        self.totals.as_ref().and_then(|t| t.closure)
    }

    /// The context as JSON (keys sorted), as summary.json holds it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_sensor_keys_and_reads_partial_hand_written_contexts() {
        let mut c =
            EnergyContext::new("nvml-counter", serde_json::json!({"gpu_uuid": "GPU-1", "driver_version": "580"}));
        c.totals =
            Some(RunAccounting { total_method: "counter delta".into(), closure: Some(0.99), ..Default::default() });
        let v = c.to_json();
        // One flat object: typed keys and sensor keys side by side; null where a number is unknown.
        assert_eq!(v["gpu_uuid"], "GPU-1");
        assert_eq!(v["closure"], 0.99);
        assert!(v["update_period_s"].is_null() && v.get("power_check").is_none());
        let back: EnergyContext = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        // A context without the run's accounting (a fake or an early record) keeps its keys as sensor keys.
        let fake: EnergyContext = serde_json::from_str(r#"{"gpu_uuid": "GPU-fake-0", "driver": "580.00"}"#).unwrap();
        assert!(fake.totals.is_none() && fake.sensor["driver"] == "580.00");
        // A hand-written power check needs only its readings.
        let pc: PowerCheck = serde_json::from_str(r#"{"readings": [{"reading": "x", "gap_rel": -0.04}]}"#).unwrap();
        assert_eq!(pc.readings[0].gap_rel, Some(-0.04));
    }
}
