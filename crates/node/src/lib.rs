//! The lab's node roles as routing policies over the shared proxy core, and starting a node
//! from the topology: its interfaces, certificates, listeners and proxy.
//!
//! Each role reads top-down in one routing function, in the order section 5 of the
//! reference gives its reasons: [`frontend::FrontEnd`], [`edge::Edge`].

mod certs;
mod client;
mod cloudpool;
mod edge;
mod frontend;
mod resolve;
mod server;
mod start;

pub use certs::Certs;
pub use client::client_config;
pub use cloudpool::CloudPool;
pub use edge::Edge;
pub use frontend::FrontEnd;
pub use resolve::LabResolver;
pub use server::{ServerArgs, init_tracing, serve};
pub use start::{RunningNode, start_node};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {0:?} is not in the topology")]
    UnknownNode(String),
    #[error("node {node}: the {role} role is not served by this program")]
    Role { node: String, role: String },
    #[error("certificate for {who}: {reason}")]
    Certificate { who: String, reason: String },
    #[error("client {aor}: {what}")]
    Client { aor: String, what: String },
    #[error("topology: {0}")]
    Topology(String),
    #[error(transparent)]
    Transport(#[from] siplab_transport::TransportError),
}
