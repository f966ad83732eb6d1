//! The lab's DNS (sections 3 and 4 of the reference-lab spec).
//!
//! One authoritative server, ns.lab.test, with an address on every network and split-brain
//! views: the querier's source address picks the view, so an internal client finds the pool
//! and an external one the edge, under the same names, as in a real Skype for Business
//! deployment. The data is the topology's ([`siplab_topology::Lab::views`]); nothing here
//! knows a name of the lab.
//!
//! - [`DnsServer`] serves it, on hickory-server: `zones` holds the data and decides,
//!   `handler` speaks DNS, `server` owns the sockets.
//! - [`discovery`] is the client side: a resolver bound to the client's address, the sign-in
//!   discovery of section 4 and the federation look-up of section 5.

pub mod discovery;
mod error;
mod handler;
mod server;
mod zones;

pub use error::DnsError;
pub use server::{DnsServer, RunningDns};
pub use zones::TTL;
