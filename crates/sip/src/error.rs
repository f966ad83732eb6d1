//! What went wrong in a message and where, and what a server answers for it.

use std::fmt;

/// Where in a message a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    StartLine,
    /// A header by its canonical name and its 1-based position among headers of that name.
    Header {
        name: String,
        index: usize,
    },
    /// The header section as a whole (a missing or repeated header, a line without a colon).
    Headers,
    Body,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::StartLine => f.write_str("start line"),
            Place::Header { name, index } => write!(f, "{name} header {index}"),
            Place::Headers => f.write_str("header section"),
            Place::Body => f.write_str("body"),
        }
    }
}

/// A syntax problem inside one value, with the byte offset where the parser stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (at byte {at})")]
pub struct SyntaxError {
    pub what: &'static str,
    pub at: usize,
}

impl SyntaxError {
    pub(crate) fn new(what: &'static str, at: usize) -> Self {
        SyntaxError { what, at }
    }
}

/// The kinds of problems, each with the status a server answers a request with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    #[error("headers are not allowed in a Request-URI")]
    HeadersInRequestUri,
    #[error("value {value:?} is out of range (at most {max})")]
    OutOfRange { value: String, max: u64 },
    #[error("missing")]
    Missing,
    #[error("appears {count} times but allows one value")]
    Repeated { count: usize },
    #[error("CSeq method {cseq:?} does not match the request method {method:?}")]
    MethodMismatch { method: String, cseq: String },
    #[error("the header section exceeds {limit} bytes")]
    HeaderSectionTooLarge { limit: usize },
    #[error("more than {limit} header lines")]
    TooManyHeaders { limit: usize },
    #[error("body of {length} bytes exceeds {limit} bytes")]
    BodyTooLarge { length: usize, limit: usize },
    #[error("Content-Length is required on a stream transport")]
    MissingContentLength,
    #[error("Content-Length {declared} is more than the {available} bytes that follow")]
    TruncatedBody { declared: usize, available: usize },
    #[error("the header section never ends")]
    UnterminatedHeaders,
}

/// A message that cannot be accepted: where, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {kind}")]
pub struct ParseError {
    pub place: Place,
    pub kind: ErrorKind,
}

impl ParseError {
    pub(crate) fn new(place: Place, kind: impl Into<ErrorKind>) -> Self {
        ParseError {
            place,
            kind: kind.into(),
        }
    }

    pub(crate) fn header(name: &str, index: usize, kind: impl Into<ErrorKind>) -> Self {
        ParseError::new(
            Place::Header {
                name: name.to_owned(),
                index,
            },
            kind,
        )
    }

    /// The status a server answers a request with (RFC 3261 sections 8.2 and 21.4); a
    /// response with any of these problems is dropped instead.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::UnsupportedVersion(_) => 505,
            ErrorKind::BodyTooLarge { .. } => 413,
            // RFC 3261 section 21.5.14: the message is longer than the server can process.
            ErrorKind::HeaderSectionTooLarge { .. } => 513,
            _ => 400,
        }
    }

    /// A framing error leaves the stream at an unknown position: the connection must close.
    pub fn breaks_stream(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::HeaderSectionTooLarge { .. }
                | ErrorKind::BodyTooLarge { .. }
                | ErrorKind::MissingContentLength
                | ErrorKind::UnterminatedHeaders
        ) || matches!(&self.place, Place::Header { name, .. } if name == "Content-Length")
    }
}
