//! Lync autodiscover over HTTPS (MS-OCDISCWS), the first thing a client asks when it signs in
//! (section 4 of the reference, the article's "Anmeldung"): `lyncdiscoverinternal.<domain>`
//! on the LAN, `lyncdiscover.<domain>` from the internet, each answering where the user's SIP
//! clients sign in, or sending a cloud-hosted user on to the cloud's service.
//!
//! - [`Directory`] is one node's service as data, taken from the topology, and its answers;
//!   [`document`] is their JSON.
//! - [`handler`] serves it with hyper on the connections a node's SIP listener hands over by
//!   ALPN (`http/1.1`), so it shares port 443 with clients' SIP; the transport knows nothing
//!   of HTTP.
//! - [`Client`] is the client side: autodiscover first, then the DNS records, as real
//!   clients sign in.

mod client;
mod directory;
pub mod document;
mod server;

pub use client::{Client, SourceFor};
pub use directory::{Directory, Reply};
pub use document::Document;
pub use server::{ALPN, handler};

/// What can go wrong building a service from the topology or asking one.
#[derive(Debug, thiserror::Error)]
pub enum AutodiscoverError {
    /// The topology does not give the node what its service must answer.
    #[error("autodiscover on node {node}: {what}")]
    Topology { node: String, what: String },
    #[error("{0:?} is not an https URL")]
    Url(String),
    /// No answer: connecting, TLS, ALPN or HTTP failed, or it took too long.
    #[error("GET {url}: {reason}")]
    Get { url: String, reason: String },
    #[error("GET {url}: status {status}")]
    Status { url: String, status: u16 },
    #[error("GET {url}: not an autodiscover document: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}
