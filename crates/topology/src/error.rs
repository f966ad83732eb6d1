//! What can be wrong with a lab file, named so that the reader finds the entry to fix.

use std::path::PathBuf;

/// Why a lab description was refused.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read at all.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of a lab file; toml's message shows the line.
    #[error(transparent)]
    Syntax(#[from] toml::de::Error),
    /// Two entries of one kind share a name, so a reference to it would be ambiguous.
    #[error("duplicate {kind} {name:?}")]
    Duplicate { kind: &'static str, name: String },
    /// A well-formed entry that contradicts the rest of the lab, e.g.
    /// `path 5: unknown hop "E9"`.
    #[error("{entry}: {problem}")]
    Invalid { entry: String, problem: String },
}

impl TopologyError {
    /// Shorthand for [`TopologyError::Invalid`].
    pub(crate) fn invalid(entry: impl ToString, problem: impl ToString) -> TopologyError {
        TopologyError::Invalid {
            entry: entry.to_string(),
            problem: problem.to_string(),
        }
    }
}
