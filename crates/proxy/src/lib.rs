//! Transactions and the stateful proxy core (RFC 3261 sections 16 and 17) over a reliable
//! transport, the registrar and location service (section 10, RFC 3327, RFC 5626), the
//! presence server (RFC 3856), and the [`Policy`] through which each node role says where
//! requests go, and why.
//!
//! The files, lowest first (each uses only those above it):
//! - `timers`, `branch`: deadlines without a task each; branches that carry the loop hash;
//!   `counters`: what a proxy handled and refused, for a node's summary line.
//! - `decision`: what a role decides ([`Decision`], [`Why`], [`Forward`], [`Reply`]).
//! - `explain`: a hop's reason in words, for traces and captures; `flood`: requests per
//!   client identity (a token bucket each).
//! - `reply`: answers built here; `registrar`, `presence`: the location service and the
//!   presence state; `trust`: section 7's rules (RFC 3325).
//! - `policy`: what a role is told ([`Inbound`]) and how a node reaches hosts ([`Reach`]).
//! - `transaction`: the tables, keys and timers of section 17; `forward`: Route handling
//!   and the header edits of forwarding; `home`: registrar and presence glue; `upstream`:
//!   which client flows signed in through which registrar connection.
//! - `core`: the pipeline, which runs them all.

mod branch;
mod core;
mod counters;
mod decision;
mod explain;
mod flood;
mod forward;
mod home;
mod policy;
mod presence;
mod registrar;
mod reply;
mod timers;
mod transaction;
mod trust;
mod upstream;

pub use crate::core::{Proxy, ProxyConfig, loop_hash};
pub use counters::{Counted, Counters};
pub use decision::{
    Action, Decision, Forward, NOT_SIP_URI, NextHop, REGISTER_TO_NOT_SIP, Reply, Subject, Why,
};
pub use flood::RateLimit;
pub use forward::OwnInterface;
pub use policy::{Inbound, Policy, Reach};
pub use presence::{PresenceServer, Subscription};
pub use registrar::{Binding, ExpiryBounds, Location};
pub use trust::{asserted_identity, certificate_aor};

#[cfg(test)]
mod testing {
    //! What the units' tests share: a peer's connection, without a socket.

    use std::net::SocketAddr;
    use std::sync::Arc;

    use siplab_transport::{ConnInfo, FlowToken, PeerIdentity};

    /// An inbound connection on R1 with flow token `flow` from a peer whose certificate
    /// names `host`.
    pub fn conn(flow: &str, host: &str) -> Arc<ConnInfo> {
        let addr: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        Arc::new(ConnInfo {
            id: 1,
            flow: FlowToken::parse(flow).unwrap(),
            interface: Arc::from("R1"),
            local: addr,
            peer: addr,
            identity: PeerIdentity {
                dns_names: vec![host.to_owned()],
                ..PeerIdentity::default()
            },
            inbound: true,
        })
    }
}
