//! What can keep a user agent from getting an answer. A final response of any status is an
//! answer, not an error: tests check 403, 404 and 480 as results.

use std::time::Duration;

use siplab_sip::{ParseError, SyntaxError};
use siplab_transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error("{0:?} is not an address of record like alice@contoso.test")]
    BadAor(String),
    #[error("{text:?} is not a URI: {error}")]
    BadUri { text: String, error: SyntaxError },
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("no final response to {method} within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("the connection carrying the {method} closed before its final response")]
    ConnectionLost { method: String },
    #[error("not connected: no registered flow to send on")]
    NotConnected,
    #[error("not registered within {0:?}")]
    NotRegistered(Duration),
    #[error("REGISTER answered {status} {reason}")]
    Rejected { status: u16, reason: String },
    #[error("redirect: {0}")]
    Redirect(String),
    #[error("the {status} response has no SIP Contact")]
    NoContact { status: u16 },
    #[error("{what} in the response: {error}")]
    BadResponse {
        what: &'static str,
        error: ParseError,
    },
    #[error("the INVITE got {status}: there is no dialog to send in")]
    NoDialog { status: u16 },
    #[error(
        "no {method} sent: the dialog of call {call_id} has ended (a BYE was sent or received)"
    )]
    DialogEnded { call_id: String, method: String },
}
