//! The reference lab as data.
//!
//! `deploy/lab.toml` describes sections 1 to 5 of the reference-lab spec: networks, SIP
//! domains, users, nodes and their interfaces, where test clients sit, the DNS views and the
//! paths requests must take. Every program and test reads it through [`Lab`], so the lab is
//! described once and a typo in it is caught when it is loaded, not as a puzzling SIP failure:
//! loading checks that every name used is defined, every address lies in its network and the
//! DNS data resolves what the nodes claim to be.
//!
//! The container profile is the file itself; [`Lab::localized`] derives the single-process
//! profile (loopback addresses, one range per test slot, unprivileged ports) from the same data.

mod check;
mod error;
mod file;
mod lab;
mod model;
mod names;
mod subnet;

pub use error::TopologyError;
pub use lab::Lab;
pub use model::{
    ClientPlace, CloudRedirect, Collector, DnsView, Domain, Federation, Hop, Identity, Interface,
    Network, Node, NodeLimits, Path, Pool, Ports, Purpose, Record, RecordData, Role, User,
};
pub use names::{At, InterfaceName, NodeName, Placement, UserClass};
pub use subnet::Subnet;
