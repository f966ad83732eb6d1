//! Transaction time-outs (Timers B/F, C and H of RFC 3261) without a task per transaction:
//! the deadlines sit in one ordered map, a transaction that ends takes its own out, and one
//! task per proxy fires whatever comes due. Setting and clearing a timer is a map insert and
//! remove under a short lock, where a spawned sleeping task would cost a task allocation, a
//! timer-wheel entry and an abort.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// What a timer that fires is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// A client transaction (by branch) had no final response in time (Timers B, F and C).
    Client(String),
    /// A server transaction (by key) answered with a non-2xx waited for its ACK (Timer H).
    Server(String),
}

/// Names one armed timer, to clear it.
pub(crate) type TimerId = (Instant, u64);

#[derive(Debug, Default)]
pub(crate) struct Timers {
    armed: Mutex<BTreeMap<TimerId, Timeout>>,
    next: AtomicU64,
    /// Wakes the firing task when a timer earlier than all others is set, or at the end.
    earlier: Notify,
    ended: AtomicBool,
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TimerId, Timeout>> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Arms a timer that fires `after` from now.
    pub(crate) fn set(&self, after: Duration, what: Timeout) -> TimerId {
        let id = (
            Instant::now() + after,
            self.next.fetch_add(1, Ordering::Relaxed),
        );
        let mut armed = self.lock();
        let first = armed.first_key_value().is_none_or(|(k, _)| id < *k);
        armed.insert(id, what);
        drop(armed);
        if first {
            self.earlier.notify_one();
        }
        id
    }

    /// Disarms a timer; one that fired already is simply gone.
    pub(crate) fn clear(&self, id: TimerId) {
        self.lock().remove(&id);
    }

    /// Ends the firing: `due` returns nothing from now on.
    pub(crate) fn end(&self) {
        self.ended.store(true, Ordering::Relaxed);
        self.earlier.notify_one();
    }

    /// Waits until timers come due and returns them with their ids, earliest first; empty
    /// once ended. The id tells a firing from a timer its transaction has since replaced.
    pub(crate) async fn due(&self) -> Vec<(TimerId, Timeout)> {
        loop {
            if self.ended.load(Ordering::Relaxed) {
                return Vec::new();
            }
            let now = Instant::now();
            let next = {
                let mut armed = self.lock();
                let mut due = Vec::new();
                while let Some(entry) = armed.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    due.push(entry.remove_entry());
                }
                if !due.is_empty() {
                    return due;
                }
                armed.first_key_value().map(|(k, _)| k.0)
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.earlier.notified() => {}
                    }
                }
                None => self.earlier.notified().await,
            }
        }
    }

    /// How many timers are armed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order_and_cleared_ones_never() {
        let timers = std::sync::Arc::new(Timers::default());
        let late = timers.set(Duration::from_secs(32), Timeout::Client("b1".into()));
        timers.set(Duration::from_secs(40), Timeout::Server("k".into()));
        let cleared = timers.set(Duration::from_secs(1), Timeout::Client("gone".into()));
        timers.clear(cleared);
        let waiter = tokio::spawn({
            let timers = timers.clone();
            async move { timers.due().await }
        });
        // A timer earlier than every other wakes the waiting task.
        tokio::time::sleep(Duration::from_millis(10)).await;
        timers.set(Duration::from_secs(5), Timeout::Client("early".into()));
        let started = Instant::now();
        let fired = |due: Vec<(TimerId, Timeout)>| -> Vec<Timeout> {
            due.into_iter().map(|(_, t)| t).collect()
        };
        assert_eq!(
            fired(waiter.await.unwrap()),
            vec![Timeout::Client("early".into())]
        );
        assert!(started.elapsed() >= Duration::from_secs(4));
        assert_eq!(timers.len(), 2);
        timers.clear(late);
        assert_eq!(fired(timers.due().await), vec![Timeout::Server("k".into())]);
        assert_eq!(timers.len(), 0);
        timers.end();
        assert!(timers.due().await.is_empty());
    }
}
