//! The lab's certificate authority and every certificate the lab uses.
//!
//! Every SIP hop in the lab is mutual TLS (spec section 7, Trust): a node interface proves the
//! FQDNs and addresses a peer dialled, a user proves its address of record through a `sip:` URI
//! SAN, which is what a front end compares a REGISTER against. This crate makes those
//! certificates with one lab CA, lays them out under `certs/`, and tells the other crates where
//! each file lives, so no one re-derives a file name. The only I/O is in [`write_lab_certs`]
//! and [`LabCa::read`]; everything else works on PEM strings.

mod ca;
mod error;
mod files;
mod identity;
#[cfg(test)]
mod testing;

pub use ca::{IssuedCert, LabCa};
pub use error::PkiError;
pub use files::{
    CaStatus, CertPaths, WriteSummary, ca_path, node_cert_paths, user_cert_paths, write_lab_certs,
};
pub use identity::{NodeIdentity, UserIdentity};
