//! Warnings that whoever is at the other end can repeat at will (a failed handshake, an
//! invalid message, an answer that could not be sent): logged at most once a second per
//! kind, each line saying how many it stands for, so that a flood cannot fill the log.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One kind of repeated warning; a `static` at its call site.
pub struct Repeated {
    /// Milliseconds since the process's first look at the clock, plus one, when a line was
    /// last logged; 0 for never.
    last: AtomicU64,
    /// Occurrences since that line.
    since: AtomicU64,
}

/// What one line is allowed to stand for: at most one line a second.
const EVERY_MS: u64 = 1000;

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Repeated {
    pub const fn new() -> Repeated {
        Repeated {
            last: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due now, `n` the occurrences it
    /// stands for (this one and those not logged since the last line).
    pub fn due(&self) -> Option<u64> {
        self.due_at(now_ms())
    }

    fn due_at(&self, now: u64) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last + EVERY_MS {
            return None;
        }
        // One caller wins the line; the others count on.
        self.last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(self.since.swap(0, Ordering::Relaxed).max(1))
    }
}

impl Default for Repeated {
    fn default() -> Self {
        Repeated::new()
    }
}

#[cfg(test)]
mod tests {
    use super::Repeated;

    #[test]
    fn a_flood_of_one_warning_makes_one_line_a_second_with_its_count() {
        let r = Repeated::new();
        assert_eq!(r.due_at(5), Some(1), "the first is logged");
        let quiet: Vec<_> = (0..999).map(|i| r.due_at(6 + i)).collect();
        assert!(quiet.iter().all(Option::is_none));
        assert_eq!(
            r.due_at(1005),
            Some(1000),
            "a second later: the 999 held back and this one"
        );
        assert_eq!(r.due_at(1006), None);
    }
}
