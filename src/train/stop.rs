//! When a run stops: the epoch limit, `--max-steps`, a diverged loss, or every task reaching `--target-acc`.
use std::collections::BTreeMap;

/// Why a run stopped (summary.json's `stop_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    EpochLimit,
    MaxSteps,
    Diverged,
    TargetReached,
    /// `sweep --prune`: the run used more than its cap (the best configuration's cost so far).
    Capped,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EpochLimit => "epoch_limit",
            StopReason::MaxSteps => "max_steps",
            StopReason::Diverged => "diverged",
            StopReason::TargetReached => "target_reached",
            StopReason::Capped => "capped",
        }
    }
}

pub struct Stopper {
    max_steps: Option<usize>,
    target_acc: Option<f64>,
    cap: Option<f64>,
    pub reason: StopReason,
}

impl Stopper {
    pub fn new(max_steps: Option<usize>, target_acc: Option<f64>) -> Stopper {
        Stopper { max_steps, target_acc, cap: None, reason: StopReason::EpochLimit }
    }

    /// With a cap (joules, or seconds without energy readings): see [`Stopper::capped`].
    pub fn with_cap(mut self, cap: Option<f64>) -> Stopper {
        self.cap = cap;
        self
    }

    /// After a step, `used` so far (joules when the run has energy readings, else wall seconds): true when it
    /// exceeds the cap; the run ends after this epoch's evaluation.
    pub fn capped(&mut self, used: f64) -> bool {
        let hit = self.cap.is_some_and(|c| used > c);
        if hit {
            self.reason = StopReason::Capped;
        }
        hit
    }

    /// Before the next step, `done` steps in: true when `--max-steps` is used up.
    pub fn max_steps_reached(&mut self, done: u64) -> bool {
        let hit = self.max_steps.is_some_and(|m| done >= m as u64);
        if hit {
            self.reason = StopReason::MaxSteps;
        }
        hit
    }

    /// After a step: true when its loss is not finite.
    pub fn diverged(&mut self, loss: f32) -> bool {
        if !loss.is_finite() {
            self.reason = StopReason::Diverged;
        }
        !loss.is_finite()
    }

    /// After an epoch's evaluation (`per_task`: validation accuracy per task): true when every task reached
    /// the target.
    pub fn target_reached(&mut self, per_task: &BTreeMap<String, f64>) -> bool {
        let Some(t) = self.target_acc else { return false };
        let reached = per_task.values().all(|&acc| acc >= t);
        if reached {
            self.reason = StopReason::TargetReached;
        }
        reached
    }

    /// True when the run stops after this epoch (`--max-steps` was hit during it).
    pub fn stops_after_epoch(&self) -> bool {
        matches!(self.reason, StopReason::MaxSteps | StopReason::Capped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_stops_after_the_epoch_only_when_exceeded() {
        let mut s = Stopper::new(None, Some(0.8)).with_cap(Some(100.0));
        assert!(!s.capped(100.0) && !s.stops_after_epoch(), "at the cap is not over it");
        assert!(s.capped(100.5) && s.stops_after_epoch() && s.reason.as_str() == "capped");
        let mut s = Stopper::new(None, None);
        assert!(!s.capped(1e300));
    }

    #[test]
    fn max_steps_divergence_and_target() {
        let mut s = Stopper::new(Some(3), Some(0.8));
        assert!(!s.max_steps_reached(2) && s.reason == StopReason::EpochLimit);
        assert!(s.max_steps_reached(3) && s.stops_after_epoch());
        let mut s = Stopper::new(None, Some(0.8));
        assert!(!s.diverged(1.5) && s.diverged(f32::NAN) && s.reason.as_str() == "diverged");
        let mut s = Stopper::new(None, Some(0.8));
        let accs = |a: f64, b: f64| BTreeMap::from([("Smiling".to_string(), a), ("Male".to_string(), b)]);
        assert!(!s.target_reached(&accs(0.9, 0.79)));
        assert!(s.target_reached(&accs(0.9, 0.8)) && s.reason.as_str() == "target_reached");
        assert!(!Stopper::new(None, None).target_reached(&accs(1.0, 1.0)), "no target, never reached");
    }
}
