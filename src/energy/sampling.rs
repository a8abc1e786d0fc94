//! Reading the sensor: the meter's clock, the power timeline fed by a background sampler thread, the
//! cross-check readings beside a counter, and the reads at step edges with the run's counter sum.
use super::attribution::Timeline;
use super::sensors::{Reading, Sensor, Stamp};
use super::{EnergySource, MeterOptions};
use anyhow::Result;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The meter's clock: seconds since `origin`, which should be the backend's creation instant so that
/// `now_s` from `Backend::clock_s()` and the sampler's timestamps agree (see `Meter::set_clock`).
#[derive(Clone, Copy, Debug)]
struct ClockMap {
    origin: Instant,
    /// Unix time (s) at `origin`, to map NVML sample timestamps.
    unix_at_origin: f64,
}

impl ClockMap {
    fn new(origin: Instant) -> ClockMap {
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        ClockMap { origin, unix_at_origin: unix_now - origin.elapsed().as_secs_f64() }
    }
    fn now_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }
    /// A sample's time on this clock; `read_at` is when the sensor was read (for `Stamp::Now`).
    fn stamp_s(&self, stamp: Stamp, read_at: f64) -> f64 {
        match stamp {
            Stamp::Now => read_at,
            Stamp::Unix(u) => u - self.unix_at_origin,
            Stamp::Clock(c) => c,
        }
    }
}

type SharedSensor = Arc<Mutex<Box<dyn Sensor>>>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in the sampler thread cannot leave the timeline half-updated in a way that matters here.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feed one reading taken at `t` into the timeline; returns the counter value for counter sensors.
fn feed(tl: &Mutex<Timeline>, clock: &ClockMap, t: f64, r: Reading) -> Option<f64> {
    let Ok(mut tl) = tl.lock() else { return None };
    match r {
        Reading::Counter { energy_j } => {
            tl.observe_counter(t, energy_j);
            Some(energy_j)
        }
        Reading::Power(v) => {
            for (stamp, w) in v {
                tl.observe_power(clock.stamp_s(stamp, t), w);
            }
            None
        }
    }
}

/// Cross-check power readings kept beside a counter (see `Sensor::check_labels`): one timeline each.
pub(super) struct Checks {
    pub labels: Vec<String>,
    pub tls: Vec<Timeline>,
    interval_s: Vec<f64>,
    next_due: Vec<f64>,
    pub errors: u64,
}

type SharedChecks = Arc<Mutex<Checks>>;

/// Read the cross-checks that are due at `t` (sampler thread, or `Meter::poll` in tests).
fn poll_checks(sensor: &SharedSensor, checks: &SharedChecks, clock: &ClockMap, t: f64) {
    let due: Vec<usize> = {
        let c = lock(checks);
        (0..c.labels.len()).filter(|&i| t >= c.next_due[i]).collect()
    };
    for i in due {
        let r = lock(sensor).read_check(i, t);
        let mut c = lock(checks);
        c.next_due[i] = t + c.interval_s[i];
        match r {
            Ok(v) => {
                for (stamp, w) in v {
                    c.tls[i].observe_power(clock.stamp_s(stamp, t), w);
                }
            }
            Err(_) => c.errors += 1,
        }
    }
}

struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The run's total on a counter: the positive deltas between the meter's own reads at step edges.
#[derive(Clone, Debug, Default)]
pub(super) struct CounterSum {
    /// The latest value the meter read.
    pub last: Option<f64>,
    pub run_j: f64,
    /// The counter went backwards once: no total (`run_j` is then a lower bound).
    pub reset: bool,
}

impl CounterSum {
    fn add(&mut self, c: f64) {
        if let Some(prev) = self.last {
            if c >= prev {
                self.run_j += c - prev;
            } else {
                self.reset = true;
            }
        }
        self.last = Some(c);
    }
}

/// The sensor side of the meter.
pub(super) struct Sensing {
    sensor: Option<SharedSensor>,
    /// A counter (NVML total energy, RAPL) rather than power samples.
    pub is_counter: bool,
    pub quantum_j: f64,
    clock: Arc<Mutex<ClockMap>>,
    /// `set_clock` ran (else the first step aligns the clock).
    pub clock_set: bool,
    tl: Arc<Mutex<Timeline>>,
    checks: SharedChecks,
    /// Run a sampler thread (`MeterOptions::sampler`).
    want_sampler: bool,
    nonblocking_edges: bool,
    sampler: Option<Sampler>,
    sampler_errors: Arc<AtomicU64>,
    /// The sensor's poll interval, cached at the first step edge: asking the sensor on every edge would wait
    /// for its lock, which the sampler holds during each (millisecond-long) NVML read.
    edge_poll_s: Option<f64>,
    /// Failed reads on the calling thread, and the latest one's message.
    pub read_errors: u64,
    pub last_error: Option<String>,
    pub counter: CounterSum,
}

impl Sensing {
    pub fn new(sensor: Option<Box<dyn Sensor>>, source: EnergySource, opts: &MeterOptions) -> Sensing {
        let (period, quantum) = match &sensor {
            Some(s) => (s.nominal_period_s(), s.quantum_j()),
            None => (None, 0.0),
        };
        let labels = sensor.as_ref().map(|s| s.check_labels()).unwrap_or_default();
        let interval_s: Vec<f64> =
            (0..labels.len()).map(|i| sensor.as_ref().map_or(0.1, |s| s.check_interval_s(i)).max(0.001)).collect();
        let checks = Checks {
            tls: labels.iter().map(|_| Timeline::new(opts.timeline_cap, None)).collect(),
            next_due: vec![f64::NEG_INFINITY; labels.len()],
            interval_s,
            labels,
            errors: 0,
        };
        Sensing {
            sensor: sensor.map(|s| Arc::new(Mutex::new(s))),
            is_counter: matches!(source, EnergySource::NvmlCounter | EnergySource::Rapl | EnergySource::Sim),
            quantum_j: quantum,
            clock: Arc::new(Mutex::new(ClockMap::new(Instant::now()))),
            clock_set: false,
            tl: Arc::new(Mutex::new(Timeline::new(opts.timeline_cap, period))),
            checks: Arc::new(Mutex::new(checks)),
            want_sampler: opts.sampler,
            nonblocking_edges: opts.nonblocking_edges,
            sampler: None,
            sampler_errors: Arc::new(AtomicU64::new(0)),
            edge_poll_s: None,
            read_errors: 0,
            last_error: None,
            counter: CounterSum::default(),
        }
    }

    pub fn has_sensor(&self) -> bool {
        self.sensor.is_some()
    }

    /// True while the sampler thread runs.
    pub fn sampling(&self) -> bool {
        self.sampler.is_some()
    }

    /// True when step edges take the sampler's latest counter read instead of reading the counter.
    pub fn nonblocking_edges(&self) -> bool {
        self.is_counter && self.nonblocking_edges && self.sampler.is_some()
    }

    /// Start the sampler thread (when `MeterOptions::sampler` asks for one and there is a sensor); false
    /// when the thread could not start (step-edge reads only).
    pub fn start_sampler(&mut self) -> bool {
        if !self.want_sampler {
            return true;
        }
        let Some(sensor) = self.sensor.clone() else { return true };
        let interval = Duration::from_secs_f64(lock(&sensor).poll_interval_s().clamp(0.001, 1.0));
        let stop = Arc::new(AtomicBool::new(false));
        let (tl, clock, errors, stop2) =
            (self.tl.clone(), self.clock.clone(), self.sampler_errors.clone(), stop.clone());
        let checks = self.checks.clone();
        let has_checks = !lock(&checks).labels.is_empty();
        let handle = std::thread::Builder::new()
            .name("powertrain-energy-sampler".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    let c = *lock(&clock);
                    let t = c.now_s();
                    let r = lock(&sensor).read(t);
                    match r {
                        Ok(r) => {
                            feed(&tl, &c, t, r);
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if has_checks {
                        poll_checks(&sensor, &checks, &c, c.now_s());
                    }
                }
            })
            .ok();
        let started = handle.is_some();
        self.sampler = Some(Sampler { stop, handle });
        started
    }

    /// Stop the sampler thread (joins it).
    pub fn stop_sampler(&mut self) {
        self.sampler = None;
    }

    /// Restart a stopped sampler (if the meter runs one).
    pub fn resume_sampler(&mut self) -> bool {
        if self.sampler.is_none() && self.want_sampler && self.sensor.is_some() {
            return self.start_sampler();
        }
        true
    }

    /// Move the clock's origin (see `Meter::set_clock`); the timeline's times move with it.
    pub fn set_clock(&mut self, origin: Instant) {
        let mut c = lock(&self.clock);
        let delta =
            if origin >= c.origin { (origin - c.origin).as_secs_f64() } else { -(c.origin - origin).as_secs_f64() };
        *c = ClockMap::new(origin);
        drop(c);
        lock(&self.tl).shift(delta);
        self.clock_set = true;
    }

    pub fn now_s(&self) -> f64 {
        lock(&self.clock).now_s()
    }

    /// Read the sensor once at `now_s` (cross-checks that are due too); the counter value for counters.
    pub fn poll(&mut self, now_s: f64) -> Result<Option<f64>> {
        let Some(sensor) = self.sensor.clone() else { return Ok(None) };
        let c = *lock(&self.clock);
        poll_checks(&sensor, &self.checks, &c, now_s);
        let r = lock(&sensor).read(now_s);
        match r {
            Ok(r) => {
                let c = *lock(&self.clock);
                Ok(feed(&self.tl, &c, now_s, r))
            }
            Err(e) => {
                self.read_errors += 1;
                self.last_error = Some(format!("{e:#}"));
                Err(e)
            }
        }
    }

    /// The sensor's poll interval (s); `fallback` without a sensor.
    pub fn poll_interval_s(&self, fallback: f64) -> f64 {
        self.sensor.as_ref().map(|s| lock(s).poll_interval_s()).unwrap_or(fallback)
    }

    pub fn timeline(&self) -> MutexGuard<'_, Timeline> {
        lock(&self.tl)
    }

    pub fn checks(&self) -> MutexGuard<'_, Checks> {
        lock(&self.checks)
    }

    /// Failed reads, on the calling thread and in the sampler.
    pub fn errors(&self) -> u64 {
        self.read_errors + self.sampler_errors.load(Ordering::Relaxed)
    }

    /// The device's state now (None when the sensor has none).
    pub fn sensor_state(&self) -> Option<serde_json::Value> {
        self.sensor.as_ref().map(|s| lock(s).state()).filter(|v| !v.is_null())
    }

    /// Read at a step edge; keeps the run's counter sum (positive deltas between the meter's own reads).
    pub fn edge_read(&mut self, now_s: f64) -> (Option<f64>, Option<String>) {
        if self.sensor.is_none() {
            return (None, None);
        }
        let latest = if self.nonblocking_edges() {
            // The sampler's latest read stands for the counter at `now_s` when it is recent: the counter only
            // changes once per update period, so a read a few ms old holds the same value unless an update
            // fell in between (one update's energy moves to the next window; covered by the uncertainty).
            let sensor = &self.sensor;
            let poll = *self
                .edge_poll_s
                .get_or_insert_with(|| sensor.as_ref().map(|s| lock(s).poll_interval_s()).unwrap_or(0.01));
            lock(&self.tl).last_read().filter(|&(t, _)| now_s - t <= (4.0 * poll).max(0.02) && t <= now_s + 1e-3)
        } else {
            None
        };
        let read = match latest {
            Some((_, e)) => Ok(Some(e)),
            None => self.poll(now_s),
        };
        match read {
            Ok(Some(c)) => {
                self.counter.add(c);
                (Some(c), None)
            }
            Ok(None) => (None, None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    }

    /// Average power over about `secs` seconds of idling (the counter's delta, else the timeline's integral
    /// where it covers most of the window); also the window's length.
    pub fn idle_power(&mut self, secs: f64) -> (Option<f64>, f64) {
        let step = self.poll_interval_s(0.01).clamp(0.001, 0.1);
        let t0 = self.now_s();
        let c0 = self.poll(t0).ok().flatten();
        loop {
            std::thread::sleep(Duration::from_secs_f64(step));
            let t = self.now_s();
            if self.sampler.is_none() {
                let _ = self.poll(t);
            }
            if t - t0 >= secs {
                break;
            }
        }
        let t1 = self.now_s();
        let c1 = self.poll(t1).ok().flatten();
        let p = match (c0, c1) {
            (Some(a), Some(b)) if b >= a && t1 > t0 => Some((b - a) / (t1 - t0)),
            (Some(_), Some(_)) => None,
            _ => {
                // Power samples arrive with a lag: give them a moment, then integrate what covers the window.
                std::thread::sleep(Duration::from_millis(100));
                let _ = self.poll(self.now_s());
                let i = lock(&self.tl).integrate(t0, t1);
                let covered = (t1 - t0) - i.unknown_s;
                if covered > 0.5 * (t1 - t0) {
                    Some(i.known_j / covered)
                } else {
                    None
                }
            }
        };
        (p.filter(|w| w.is_finite() && *w >= 0.0), t1 - t0)
    }
}
