//! What can go wrong making, reading or writing the lab's certificates.
//!
//! Each error names the identity or the file concerned; the underlying cause, where there is
//! one, is the error's `source()`, so `anyhow`'s chain prints it once.

use std::io;
use std::path::PathBuf;

/// An error of the lab PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// An identity that cannot become a certificate or a file name.
    #[error("{identity}: {reason}")]
    Identity {
        /// For example `node E1x` or `user alice@contoso.test`.
        identity: String,
        reason: &'static str,
    },
    /// rcgen refused to make a key or build and sign a certificate.
    #[error("{subject}: cannot make the certificate")]
    Certificate {
        /// `CA`, `node E1x`, `user alice@contoso.test`.
        subject: String,
        source: rcgen::Error,
    },
    /// A CA certificate that cannot be parsed, is no CA, or is no longer valid.
    #[error("{origin}: {reason}")]
    CaCertificate {
        /// The file it came from, or `CA certificate` when given as a string.
        origin: String,
        reason: String,
    },
    /// A CA private key that cannot be parsed.
    #[error("{origin}: not a usable private key")]
    CaKey {
        /// The file it came from, or `CA key` when given as a string.
        origin: String,
        source: rcgen::Error,
    },
    /// A CA key that is not the one the CA certificate certifies: every leaf it signed would
    /// fail verification, so it is refused up front.
    #[error("{key} is not the key of the certificate in {cert}")]
    CaKeyMismatch { cert: String, key: String },
    /// Half a CA on disk: making a new one would silently orphan the half that is there.
    #[error("{} exists without {}; remove it, or replace the CA", present.display(), missing.display())]
    IncompleteCa { present: PathBuf, missing: PathBuf },
    /// Reading or writing a file failed.
    #[error("{}", path.display())]
    Io { path: PathBuf, source: io::Error },
}
