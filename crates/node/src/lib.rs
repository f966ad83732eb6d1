//! The lab's node roles as routing policies over the shared proxy core, and starting a node
//! from the topology: its interfaces, certificates, listeners, proxy and autodiscover service.
//!
//! Each role reads top-down in one routing function, in the order section 5 of the
//! reference gives its reasons, each decision naming its reason: [`FrontEnd`], [`Edge`],
//! [`CloudPool`]. They reach the network through one [`LabReach`] per node.

mod certs;
mod client;
mod cloudpool;
mod edge;
mod frontend;
mod outside;
mod reach;
mod roles;
mod server;
mod start;

pub use certs::Certs;
pub use client::{Discover, client_config, describe};
pub use cloudpool::CloudPool;
pub use edge::Edge;
pub use frontend::FrontEnd;
pub use outside::{OutsideSetup, write_baresip, write_linphone};
pub use reach::LabReach;
pub use server::{COUNTERS_EVERY, HEP_QUEUE, init_tracing, server_main, shutdown_signal};
pub use start::{RunningNode, start_node};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {0:?} is not in the topology")]
    UnknownNode(String),
    #[error("node {node}: the {role} role is not served by this program")]
    Role { node: String, role: String },
    #[error("node {node}: its role needs {what}, which the topology lacks")]
    Lacks { node: String, what: String },
    #[error("certificate for {who}: {reason}")]
    Certificate { who: String, reason: String },
    #[error("client {aor}: {what}")]
    Client { aor: String, what: String },
    #[error("topology: {0}")]
    Topology(String),
    #[error("DNS: {0}")]
    Dns(#[from] siplab_dns::DnsError),
    #[error(transparent)]
    Autodiscover(#[from] siplab_autodiscover::AutodiscoverError),
    #[error(transparent)]
    Transport(#[from] siplab_transport::TransportError),
    #[error("HEP export: {0}")]
    Hep(String),
}
