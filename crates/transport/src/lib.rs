//! The transport layer (RFC 3261 section 18 over TLS, RFC 5626 flows, RFC 5923 connection
//! reuse): listeners and connectors speaking mutual TLS, one table of connections per node,
//! one reader (framing with the codec) and one writer (a bounded queue, batched writes) per
//! connection, and the limits and time-outs that keep one bad peer from costing the others.
//!
//! What arrives goes up as [`Event`]s on one channel, or on several lanes keyed by Call-ID
//! ([`Transport::with_lanes`]); what goes down is addressed to a
//! [`Destination`]: a flow (the very connection a client opened) or a peer address. A
//! listener may share its port with one other protocol, chosen by the client through ALPN
//! ([`Transport::listen_with_alpn`]); such connections are handed over whole and never
//! reach the SIP layer.

mod capture;
mod connection;
pub mod hep;
pub mod quiet;
mod serve;
mod sources;
mod tls;
mod transport;

use std::time::Duration;

pub use capture::{CaptureSink, Captured, Tap};
pub use connection::{ConnInfo, ConnMeta, FlowToken};
pub use serve::serve_bounded;
pub use tls::{PeerIdentity, TlsConfig};
pub use transport::{AlpnHandler, Destination, Event, Transport};

/// Limits on everything that comes from outside.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub codec: siplab_sip::Limits,
    /// A TLS handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Once a message has begun, all of it must arrive within this.
    pub message_read_timeout: Duration,
    /// A connection that carries nothing (not even a keep-alive) for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once on a node, inbound and outbound together. Whatever it says,
    /// all the nodes of a process together hold no more than the descriptors the process
    /// may open leave room for ([`descriptor_budget`]).
    pub max_connections: usize,
    /// Inbound connections from one address open at once; beyond it, more are closed at
    /// accept.
    pub max_connections_per_source: usize,
    /// Inbound connections from one address whose TLS handshake is under way: beyond it,
    /// more are closed at accept.
    pub max_pending_per_source: usize,
    /// Inbound connections from one address that have not sent their first message yet
    /// (handshakes under way included): beyond it, more are closed at accept.
    pub max_silent_per_source: usize,
    /// An inbound connection must send its first message within this (a keep-alive does
    /// not count); after that the idle time-out applies.
    pub first_message_timeout: Duration,
    /// Messages queued for one connection's writer; beyond it sending fails at once.
    pub write_queue: usize,
    /// Opening a TCP connection must succeed within this.
    pub connect_timeout: Duration,
    /// A write (and the close at the end) must be taken by the peer within this; a peer that
    /// stops reading loses its connection instead of holding the writer for ever.
    pub write_timeout: Duration,
    /// When reading ends (the peer closed, or sent what cannot be framed), how long the
    /// connection stays for the answers to the requests that came before.
    pub linger: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            codec: siplab_sip::Limits::default(),
            handshake_timeout: Duration::from_secs(10),
            message_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            max_connections: 50_000,
            max_connections_per_source: 20_000,
            max_pending_per_source: 256,
            max_silent_per_source: 20_000,
            first_message_timeout: Duration::from_secs(120),
            write_queue: 4096,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
        }
    }
}

/// The connections all the nodes of this process may hold together: the descriptors it may
/// open (RLIMIT_NOFILE, its soft limit first raised to the hard one) less headroom for
/// listeners, DNS, logs and files (a 32nd, at least 256). Worked out once.
pub fn descriptor_budget() -> usize {
    static BUDGET: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BUDGET.get_or_init(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write the one struct given.
        let open = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024 - 128;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
            lim.rlim_cur
        };
        let open = usize::try_from(open).unwrap_or(usize::MAX).min(1 << 24);
        open.saturating_sub((open / 32).max(256)).max(16)
    })
}

/// What can go wrong below the SIP layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("TLS set-up: {0}")]
    Tls(String),
    #[error("no interface named {0:?} on this node")]
    UnknownInterface(String),
    #[error("flow {0} is gone")]
    FlowGone(String),
    #[error("connecting to {addr} ({name}): {reason}")]
    Connect {
        addr: std::net::SocketAddr,
        name: String,
        reason: String,
    },
    #[error("the write queue to {0} is full")]
    QueueFull(std::net::SocketAddr),
    #[error("connection to {0} closed")]
    Closed(std::net::SocketAddr),
    #[error("the node's connection limit ({0}) is reached")]
    TooManyConnections(usize),
    #[error("listening on {addr}: {reason}")]
    Listen {
        addr: std::net::SocketAddr,
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_connection_budget_leaves_descriptors_for_the_rest() {
        let budget = super::descriptor_budget();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the one struct given.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let open = lim.rlim_cur as usize;
        assert!(budget + 256 <= open, "{budget} of {open}");
        assert!(
            budget >= open.saturating_sub(open / 32 + 256),
            "{budget} of {open}"
        );
    }
}
