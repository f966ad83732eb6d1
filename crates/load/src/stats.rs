//! What one step (or the warm-up, or the sign-in) counts. Every request carries the step it
//! was scheduled in, so a response that arrives after the step's sending window still counts
//! for that step, with its latency taken from the time it was scheduled to be sent: a proxy
//! that falls behind shows it in the latency, not in a quietly lower send rate.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

/// Why a unit of load failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// A final response >= 300, with the method it answered when that was not the first
    /// request of the unit (the BYE of a call).
    Status {
        method: Option<&'static str>,
        code: u16,
    },
    Timeout {
        method: Option<&'static str>,
    },
    /// The connection closed or could not be written, or was never up.
    Transport,
    /// A 2xx the next request cannot be built from (a 200 to INVITE without Contact).
    Malformed(&'static str),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status { method: None, code } => write!(f, "{code}"),
            Failure::Status {
                method: Some(m),
                code,
            } => write!(f, "{m} {code}"),
            Failure::Timeout { method: None } => f.write_str("timeout"),
            Failure::Timeout { method: Some(m) } => write!(f, "{m} timeout"),
            Failure::Transport => f.write_str("transport"),
            Failure::Malformed(what) => write!(f, "malformed: {what}"),
        }
    }
}

#[derive(Debug)]
pub struct Tally {
    /// Scheduled send time to the final response of the unit's first request (µs).
    pub latency: Histogram<u64>,
    /// A call's BYE: sent to its final response (µs).
    pub teardown: Histogram<u64>,
    /// Scheduled send time to the moment the request was handed to its connection (µs): how
    /// far the generator fell behind its own schedule.
    pub slip: Histogram<u64>,
    pub sent: u64,
    pub ok: u64,
    pub failures: BTreeMap<Failure, u64>,
    /// Units resolved by a final response (any status), and when the last one was.
    pub answered: u64,
    pub last_answer: Option<Instant>,
}

/// The counts of one step, shared by the scheduler and every connection.
#[derive(Debug)]
pub struct StepStats {
    /// Units sent and not yet resolved (success, failure or time-out).
    outstanding: AtomicI64,
    tally: Mutex<Tally>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to an hour at three significant digits: every time-out fits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl StepStats {
    pub fn new() -> StepStats {
        StepStats {
            outstanding: AtomicI64::new(0),
            tally: Mutex::new(Tally {
                latency: histogram(),
                teardown: histogram(),
                slip: histogram(),
                sent: 0,
                ok: 0,
                failures: BTreeMap::new(),
                answered: 0,
                last_answer: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panicking recorder leaves counts that are still counts.
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A unit was scheduled and handed to a connection.
    pub fn dispatched(&self) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// Its first request goes on the wire now.
    pub fn sending(&self, scheduled: Instant, now: Instant) {
        let mut t = self.lock();
        t.sent += 1;
        let _ = t
            .slip
            .record(micros(now.saturating_duration_since(scheduled)));
    }

    /// The unit's first request was answered with success.
    pub fn answered(&self, scheduled: Instant, now: Instant) {
        let _ = self
            .lock()
            .latency
            .record(micros(now.saturating_duration_since(scheduled)));
    }

    /// A call's BYE was answered with success after `took`.
    pub fn torn_down(&self, took: Duration) {
        let _ = self.lock().teardown.record(micros(took));
    }

    pub fn succeeded(&self) {
        let mut t = self.lock();
        t.ok += 1;
        t.answer(Instant::now());
        drop(t);
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn failed(&self, why: Failure) {
        let mut t = self.lock();
        if matches!(why, Failure::Status { .. }) {
            t.answer(Instant::now());
        }
        *t.failures.entry(why).or_default() += 1;
        drop(t);
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    /// A unit that never reached a connection.
    pub fn not_sent(&self, why: Failure) {
        let mut t = self.lock();
        t.sent += 1;
        *t.failures.entry(why).or_default() += 1;
        drop(t);
        self.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn outstanding(&self) -> i64 {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Waits until every unit is resolved; time-outs resolve the last ones, so `limit`
    /// (a little over the time-out) is only a guard against a connection that hangs.
    pub async fn drained(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.outstanding() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn snapshot(&self) -> Tally {
        let t = self.lock();
        Tally {
            latency: t.latency.clone(),
            teardown: t.teardown.clone(),
            slip: t.slip.clone(),
            sent: t.sent,
            ok: t.ok,
            failures: t.failures.clone(),
            answered: t.answered,
            last_answer: t.last_answer,
        }
    }
}

impl Tally {
    fn answer(&mut self, at: Instant) {
        self.answered += 1;
        self.last_answer = Some(self.last_answer.map_or(at, |l| l.max(at)));
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// A latency in milliseconds at a quantile, for the report.
pub fn ms_at(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn ms_max(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.max() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_counts_from_the_scheduled_time() {
        let s = StepStats::new();
        let t0 = Instant::now();
        s.dispatched();
        s.sending(t0, t0 + Duration::from_millis(3));
        s.answered(t0, t0 + Duration::from_millis(50));
        s.succeeded();
        s.dispatched();
        s.failed(Failure::Timeout { method: None });
        let t = s.snapshot();
        assert_eq!((t.sent, t.ok, t.failed()), (1, 1, 1));
        assert!((ms_at(&t.latency, 0.5) - 50.0).abs() < 0.1);
        assert!((ms_at(&t.slip, 0.99) - 3.0).abs() < 0.01);
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn failures_read_as_the_status_or_the_reason() {
        let bye = Failure::Status {
            method: Some("BYE"),
            code: 481,
        };
        assert_eq!(bye.to_string(), "BYE 481");
        assert_eq!(
            Failure::Status {
                method: None,
                code: 404
            }
            .to_string(),
            "404"
        );
        assert_eq!(Failure::Timeout { method: None }.to_string(), "timeout");
    }
}
