//! Requests per client identity and per client source address, in the spirit of Kamailio's
//! pike: a token bucket per user certificate and one per address clients connect from, so
//! that one client's flood (or many certificates' from one address) is answered `503` with
//! `Retry-After` (never silence) instead of taking the node from everyone else. Servers
//! (edges, pools, partners) carry many users' traffic and are not limited here.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Mutex;
use std::time::Instant;

/// How many requests one client identity (or one source address) may send: `per_second` on
/// average, `burst` at once.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    /// Far above what any client of a lab on one machine sends (the load generator's callers
    /// send a few thousand a second each).
    fn default() -> Self {
        RateLimit {
            per_second: 10_000.0,
            burst: 20_000.0,
        }
    }
}

impl RateLimit {
    /// The default per source address: far above what the load generator sends from its
    /// one address with all its users (some 30,000 a second).
    pub fn per_source() -> RateLimit {
        RateLimit {
            per_second: 60_000.0,
            burst: 120_000.0,
        }
    }
}

/// Identities remembered at most; beyond it, those whose buckets are full again are forgotten.
const MAX_IDENTITIES: usize = 65_536;

struct Bucket {
    tokens: f64,
    /// Seconds since the table's start, when `tokens` was last worked out.
    at: f64,
}

pub(crate) struct Buckets {
    limit: RateLimit,
    table: Mutex<HashMap<u64, Bucket>>,
    hasher: RandomState,
    start: Instant,
}

impl Buckets {
    pub fn new(limit: RateLimit) -> Buckets {
        Buckets {
            limit,
            table: Mutex::default(),
            hasher: RandomState::new(),
            start: Instant::now(),
        }
    }

    /// Takes a token for `who`; false when its bucket is empty.
    pub fn admit(&self, who: impl Hash) -> bool {
        self.admit_at(who, self.start.elapsed().as_secs_f64())
    }

    fn admit_at(&self, who: impl Hash, now: f64) -> bool {
        let RateLimit { per_second, burst } = self.limit;
        let key = self.hasher.hash_one(who);
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_IDENTITIES && !table.contains_key(&key) {
            table.retain(|_, b| b.tokens + (now - b.at) * per_second < burst);
        }
        let b = table.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + (now - b.at) * per_second).min(burst);
        b.at = now;
        if b.tokens < 1.0 {
            return false;
        }
        b.tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_and_others_are_not_touched() {
        let b = Buckets::new(RateLimit {
            per_second: 10.0,
            burst: 5.0,
        });
        let passed = (0..20)
            .filter(|_| b.admit_at("alice@contoso.test", 0.0))
            .count();
        assert_eq!(passed, 5, "the burst");
        assert!(
            b.admit_at("adam@contoso.test", 0.0),
            "another identity has its own"
        );
        assert!(!b.admit_at("alice@contoso.test", 0.05), "half a token");
        assert!(
            b.admit_at("alice@contoso.test", 0.1),
            "one token after 0.1 s"
        );
        let later = (0..20)
            .filter(|_| b.admit_at("alice@contoso.test", 10.0))
            .count();
        assert_eq!(later, 5, "never more than the burst");
    }
}
