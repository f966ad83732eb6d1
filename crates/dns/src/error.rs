//! What can go wrong serving or asking the lab's DNS, named so that the reader knows which
//! name, which server and which view were involved.

use std::io;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::net::NetError;

/// Why the lab's DNS could not be served or could not answer a question.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist in the asker's view (NXDOMAIN). Discovery treats this as the
    /// normal "not here, try the next record", so it is kept apart from real failures.
    #[error("{name} {record_type}: no such name (NXDOMAIN)")]
    NotFound {
        name: String,
        record_type: &'static str,
    },
    /// The name exists but has no record of this type (NOERROR without answers).
    #[error("{name} {record_type}: no {record_type} record")]
    NoRecords {
        name: String,
        record_type: &'static str,
    },
    /// The server refused: the name is in none of its zones, or the source address is in none
    /// of its views (the resolver is bound to the wrong address).
    #[error("{name} {record_type}: refused by {server} (asked from {source_ip})")]
    Refused {
        name: String,
        record_type: &'static str,
        server: SocketAddr,
        source_ip: IpAddr,
    },
    /// No usable answer for another reason: timeout, unreachable server, malformed reply.
    #[error("{name} {record_type}: lookup at {server} failed: {source}")]
    Lookup {
        name: String,
        record_type: &'static str,
        server: SocketAddr,
        #[source]
        source: Box<NetError>,
    },
    /// hickory could not set up a resolver for the server.
    #[error("cannot set up a resolver for {server}: {source}")]
    Resolver {
        server: SocketAddr,
        #[source]
        source: Box<NetError>,
    },
    /// A name that cannot be a DNS name, from the caller or from the topology.
    #[error("{name:?} is not a DNS name: {reason}")]
    BadName { name: String, reason: String },
    /// A record of the topology points at an interface it does not define.
    #[error("record {record}: unknown interface {interface}")]
    UnknownInterface { record: String, interface: String },
    /// None of the discovery records of section 4 led to a server.
    #[error("no SIP server found for {domain}: tried {tried}")]
    NotDiscovered { domain: String, tried: String },
    /// An address has no lab DNS server on its network, so nothing could answer it.
    #[error("no DNS server of the lab on the network of {0}")]
    NoServerFor(IpAddr),
    /// The topology gives the DNS node no listener.
    #[error("the topology has no DNS listener (node DNS, ports.dns)")]
    NoListeners,
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The server stopped by itself: one of its sockets failed.
    #[error("DNS server stopped: {0}")]
    Stopped(#[source] Box<NetError>),
}

impl DnsError {
    /// Whether the answer was "there is no such record here" (NXDOMAIN or no record of the
    /// type), as opposed to a failure to get an answer at all.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DnsError::NotFound { .. } | DnsError::NoRecords { .. })
    }
}
