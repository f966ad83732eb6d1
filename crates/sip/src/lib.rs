//! The SIP message model and codec (RFC 3261 sections 7, 19, 20 and 25) on `bytes`, with no
//! I/O: parse what real products send, refuse what must be refused with a reason and the
//! status to answer, and re-emit every header a program did not change byte for byte.
//!
//! - [`Message`] parses one message and gives typed access ([`Via`], [`NameAddr`],
//!   [`CSeq`], [`Contact`], ...) to what proxies and registrars read.
//! - [`StreamDecoder`] cuts a TLS byte stream into messages, answering RFC 5626 pings.

mod error;
mod framing;
mod headers;
mod message;
mod name_addr;
mod pidf;
mod scan;
mod uri;
mod values;
mod via;

pub use error::{ErrorKind, ParseError, Place, SyntaxError};
pub use framing::{Frame, StreamDecoder};
pub use headers::{Header, HeaderName, Headers};
pub use message::{Checked, CheckedResponse, Limits, Message, StartLine, reason_phrase};
pub use name_addr::NameAddr;
pub use pidf::{PRESENCE_STATES, pidf, pidf_state};
pub use uri::{Aor, Host, Params, SipUri, Uri, unescape};
pub use values::{
    CSeq, Contact, ContactParams, Method, SubscriptionState, parse_call_id, parse_number,
    parse_option_tags, random_u64,
};
pub use via::{BRANCH_COOKIE, SentBy, Via};
