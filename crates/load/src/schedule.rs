//! The open loop: unit i of a step is due at t0 + i/R and is handed to its connection then,
//! whatever the proxy has answered so far. A slow proxy cannot slow the sender down (which
//! would hide its slowness, the "coordinated omission" of closed-loop testers); a slow
//! generator shows as send slip, which the report turns into a warning.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::Scenario;
use crate::conn::{Job, JobSender, Unit};
use crate::stats::Failure;

/// Hands out `count` units at `rate` per second and returns when the last one is out;
/// `send(i, due)` dispatches unit i. Returns t0.
pub async fn open_loop(rate: f64, count: u64, mut send: impl FnMut(u64, Instant)) -> Instant {
    let t0 = Instant::now();
    let due_at = |i: u64| t0 + Duration::from_secs_f64(i as f64 / rate);
    let mut i = 0;
    while i < count {
        let elapsed = Instant::now().saturating_duration_since(t0).as_secs_f64();
        // Every unit due by now, in one go when the timer woke late.
        let due = ((elapsed * rate).floor() as u64 + 1).min(count);
        while i < due {
            send(i, due_at(i));
            i += 1;
        }
        if i < count {
            tokio::time::sleep_until(due_at(i)).await;
        }
    }
    t0
}

/// Who sends each unit of a scenario, and to whom.
pub struct Dispatcher {
    pub scenario: Scenario,
    /// Connections of the callees, in user order.
    pub callees: Vec<JobSender>,
    pub callee_aors: Vec<Arc<str>>,
    pub callers: Vec<JobSender>,
    pub rng: fastrand::Rng,
}

impl Dispatcher {
    /// Unit i of the load: a random callee is the target (or, for REGISTER refreshes, the
    /// sender), the callers take turns.
    pub fn load(&mut self, i: u64, unit: Unit) {
        unit.stats.dispatched();
        let callee = self.rng.usize(..self.callees.len());
        let caller = |callers: &[JobSender]| callers[(i % callers.len() as u64) as usize].clone();
        let (tx, job) = match self.scenario {
            Scenario::Message => (
                caller(&self.callers),
                Job::Message {
                    to: self.callee_aors[callee].clone(),
                    unit,
                },
            ),
            Scenario::Call => (
                caller(&self.callers),
                Job::Call {
                    to: self.callee_aors[callee].clone(),
                    unit,
                },
            ),
            Scenario::Register | Scenario::RegisterOnly => {
                (self.callees[callee].clone(), Job::Register(unit))
            }
        };
        send(&tx, job);
    }
}

/// Unit i of the sign-in: connection i registers its user.
pub fn sign_in(conns: &[JobSender], i: u64, unit: Unit) {
    unit.stats.dispatched();
    send(&conns[i as usize], Job::Register(unit));
}

fn send(tx: &JobSender, job: Job) {
    if let Err(e) = tx.send(job) {
        e.0.unit().stats.not_sent(Failure::Transport);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn units_are_due_on_a_fixed_grid_whatever_happens() {
        let mut due = Vec::new();
        let t0 = open_loop(1000.0, 50, |i, at| due.push((i, at))).await;
        assert_eq!(due.len(), 50);
        for (i, at) in &due {
            let offset = at.duration_since(t0).as_secs_f64();
            assert!(
                (offset - *i as f64 / 1000.0).abs() < 1e-6,
                "unit {i} at {offset}"
            );
        }
    }
}
