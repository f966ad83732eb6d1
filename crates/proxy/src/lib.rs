//! Transactions and the stateful proxy core (RFC 3261 sections 16 and 17) over a reliable
//! transport, the registrar and location service (section 10, RFC 3327, RFC 5626), and the
//! [`Policy`] through which each node role says where requests go.

mod branch;
mod core;
mod policy;
mod presence;
mod registrar;
mod timers;
mod trust;

pub use crate::core::{OwnInterface, Proxy, ProxyConfig};
pub use policy::{
    Decision, Forward, Inbound, NOT_SIP_URI, NextHop, Policy, REGISTER_TO_NOT_SIP, Reply,
};
pub use presence::{PresenceServer, Subscription};
pub use registrar::{Binding, ExpiryBounds, Location};
pub use trust::{asserted_identity, certificate_aor};
