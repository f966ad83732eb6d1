//! The lab's SIP client: one user (AOR) at one place, on one mutual-TLS connection.
//!
//! A client on the internet cannot be dialled, so, like a real Lync or Skype client, it opens
//! one connection to its server with its user certificate and does everything over it: it
//! registers with RFC 5626 outbound so that requests for it come back down that flow, follows
//! the 301 a front end gives cloud-hosted users, refreshes and keeps the flow alive, and signs
//! in again when the flow dies. It sends MESSAGE, OPTIONS and INVITE, answers whatever
//! arrives as RFC 3261 section 8.2 says, keeps the dialogs of the calls it placed or
//! answered (ACK, MESSAGE and BYE along the dialog's route set, from either side), and
//! records every request it receives with its Via chain: what the path tests of the lab
//! assert.
//!
//! - [`Ua`] is the client; [`UaConfig`] says who and where it is.
//! - [`Call`] is one call, placed ([`Ua::invite`]) or answered ([`Ua::next_call`]), with
//!   its side of the dialog.
//! - [`Outcome`] is the final answer to a request; any status is an answer, not an error.
//! - [`Received`] is a request as it arrived, [`ViaHop`] one of its Vias.
//! - [`Registration`] and [`SignIn`] tell where the client ended up and how.

mod call;
mod config;
mod dialog;
mod error;
mod ids;
mod registration;
mod request;
mod transaction;
mod ua;
mod uas;

pub use call::Call;
pub use config::{Resolver, SourceFor, UaConfig};
pub use error::UaError;
pub use registration::{Registration, ServerTried, SignIn};
pub use transaction::Outcome;
pub use ua::Ua;
pub use uas::{Received, ViaHop};
