//! What a node's proxy counts, for the summary line a node logs at info: how much it
//! handled and how much it refused, so that an attack shows in one line a minute instead
//! of one line a message.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one proxy, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    responses: AtomicU64,
    over_rate: AtomicU64,
    client_busy: AtomicU64,
    table_full: AtomicU64,
    unsent: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// Requests received (retransmissions and ACKs included).
    pub requests: u64,
    /// Responses received from next hops.
    pub responses: u64,
    /// Requests answered 503 for their client's rate (identity or source address).
    pub over_rate: u64,
    /// Requests answered 503 for their client's requests in progress (its identity's, or
    /// its connection's).
    pub client_busy: u64,
    /// Requests answered 503 because the transaction table was full.
    pub table_full: u64,
    /// Answers, ACKs and CANCELs not sent because their connection was gone.
    pub unsent: u64,
}

/// Which counter an event adds to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    Request,
    Response,
    OverRate,
    ClientBusy,
    TableFull,
    Unsent,
}

impl Counters {
    /// Adds one; returns the new value.
    pub(crate) fn add(&self, what: Count) -> u64 {
        let c = match what {
            Count::Request => &self.requests,
            Count::Response => &self.responses,
            Count::OverRate => &self.over_rate,
            Count::ClientBusy => &self.client_busy,
            Count::TableFull => &self.table_full,
            Count::Unsent => &self.unsent,
        };
        c.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn get(&self) -> Counted {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counted {
            requests: v(&self.requests),
            responses: v(&self.responses),
            over_rate: v(&self.over_rate),
            client_busy: v(&self.client_busy),
            table_full: v(&self.table_full),
            unsent: v(&self.unsent),
        }
    }
}
