//! The sensor abstraction: everything the meter reads goes through `Sensor`, so tests can script counter and
//! power sequences deterministically and the real sensors (NVML, RAPL) stay small.

use super::EnergySource;
use anyhow::Result;

/// When a power sample was taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stamp {
    /// At the `now_s` passed to `Sensor::read` (the meter's clock).
    Now,
    /// Unix time in seconds (NVML buffered samples carry CPU timestamps in µs since the epoch).
    Unix(f64),
    /// Already on the meter's clock, seconds.
    Clock(f64),
}

/// What one read of a sensor returns.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A cumulative energy counter, joules since an arbitrary origin (NVML total energy, RAPL after wrap
    /// correction). Monotonic unless the counter was reset.
    Counter { energy_j: f64 },
    /// Power samples (watts) that are new since the previous read, oldest first; may be empty.
    Power(Vec<(Stamp, f64)>),
}

/// A source of energy readings. `read` is called from the training thread at step edges and from the
/// background sampler thread (behind a mutex), never concurrently.
pub trait Sensor: Send {
    fn source(&self) -> EnergySource;
    /// Read the sensor. `now_s` is the meter's clock at the time of the call; real sensors ignore it
    /// (except to stamp instant readings), scripted sensors compute their value from it.
    fn read(&mut self, now_s: f64) -> Result<Reading>;
    /// Resolution of the counter in joules (NVML: 1 mJ; RAPL: 1 µJ); 0 for power sensors.
    fn quantum_j(&self) -> f64;
    /// The sensor's update period or averaging window if known beforehand (seconds).
    fn nominal_period_s(&self) -> Option<f64> {
        None
    }
    /// How the sampler should poll this sensor (seconds between reads).
    fn poll_interval_s(&self) -> f64 {
        0.01
    }
    /// Device/sensor description for `RunEnergy::context`.
    fn context(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    /// Independent power readings kept beside a counter to cross-check it (e.g. NVML's instant power field
    /// and buffered power samples next to the total-energy counter): their labels, in `read_check` order.
    /// Default: none.
    fn check_labels(&self) -> Vec<String> {
        Vec::new()
    }
    /// Seconds between `read_check(i, ..)` calls for check reading `i`.
    fn check_interval_s(&self, _i: usize) -> f64 {
        0.1
    }
    /// Read cross-check power reading `i` (new samples since the last call, oldest first).
    fn read_check(&mut self, _i: usize, _now_s: f64) -> Result<Vec<(Stamp, f64)>> {
        Ok(Vec::new())
    }
    /// The device's state now (clocks, temperature, throttle reasons), recorded at the end of a run next to
    /// the context's values from the start, to show thermal drift. Default: nothing.
    fn state(&mut self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Start-up self-characterisation (a second or two of tight reads on real hardware): returns what was
    /// measured (update period, window, ...) to merge into the context. Default: nothing.
    fn characterise(&mut self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
