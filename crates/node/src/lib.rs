//! The lab's node roles as routing policies over the shared proxy core, and starting a node
//! from the topology: its interfaces, certificates, listeners, proxy and autodiscover service.
//!
//! Each role reads top-down in one routing function, in the order section 5 of the
//! reference gives its reasons: [`frontend::FrontEnd`], [`edge::Edge`].

mod certs;
mod client;
mod cloudpool;
mod edge;
mod frontend;
mod outside;
mod server;
mod start;

pub use certs::Certs;
pub use client::{Discover, client_config, describe};
pub use cloudpool::CloudPool;
pub use edge::Edge;
pub use frontend::FrontEnd;
pub use outside::{OutsideSetup, write_baresip, write_linphone};
pub use server::{init_tracing, server_main};
pub use start::{RunningNode, start_node};

use std::net::SocketAddr;

/// A SIP host through the lab's DNS (A record; the port given or 5061).
pub(crate) async fn resolve_sip(
    dns: &siplab_dns::discovery::LabResolver,
    host: &str,
    port: Option<u16>,
) -> Result<SocketAddr, String> {
    dns.resolve_sip(host, port.unwrap_or(5061))
        .await
        .map_err(|e| e.to_string())
}

/// `_sipfederationtls._tcp.<domain>`: the host and port of the domain's federation edge.
pub(crate) async fn federation(
    dns: &siplab_dns::discovery::LabResolver,
    domain: &str,
) -> Result<(String, u16), String> {
    siplab_dns::discovery::federation_target(dns, domain)
        .await
        .map(|(host, port, _)| (host, port))
        .map_err(|e| e.to_string())
}

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
    #[error("DNS: {0}")]
    Dns(#[from] siplab_dns::DnsError),
    #[error(transparent)]
    Autodiscover(#[from] siplab_autodiscover::AutodiscoverError),
    #[error(transparent)]
    Transport(#[from] siplab_transport::TransportError),
}
