//! Who a certificate speaks for: a node interface or a user.

use std::net::IpAddr;

use crate::PkiError;

/// One TLS identity of a node interface, e.g. `E1x` with `sip.contoso.test` and its addresses.
///
/// The same certificate serves for accepting and for dialling: every hop is mutual TLS and a
/// proxy is server and client alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The interface's short name from the topology (`R1`, `E1i`, `CEx`, ...); it also names
    /// the files.
    pub name: String,
    /// The FQDNs a peer may dial the interface by; the first one becomes the subject CN.
    pub dns_names: Vec<String>,
    /// The addresses a peer may dial the interface by.
    pub ips: Vec<IpAddr>,
}

/// One user, by address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The address of record without scheme, like `alice@contoso.test`; it also names the files.
    pub aor: String,
}

impl NodeIdentity {
    /// How errors name this identity.
    pub(crate) fn label(&self) -> String {
        format!("node {}", self.name)
    }

    /// Refuses what would give a certificate no peer can verify, or a file outside its folder.
    pub(crate) fn check(&self) -> Result<(), PkiError> {
        let refuse = |reason| {
            Err(PkiError::Identity {
                identity: self.label(),
                reason,
            })
        };
        if !usable_as_file_name(&self.name) {
            return refuse(NOT_A_FILE_NAME);
        }
        if self.dns_names.is_empty() && self.ips.is_empty() {
            return refuse("no DNS name and no address: a peer could verify it against nothing");
        }
        Ok(())
    }
}

impl UserIdentity {
    /// The URI SAN of the user's certificate, which a front end compares with the AOR of a
    /// REGISTER.
    pub fn sip_uri(&self) -> String {
        format!("sip:{}", self.aor)
    }

    /// How errors name this identity.
    pub(crate) fn label(&self) -> String {
        format!("user {}", self.aor)
    }

    /// Refuses an AOR that is not `user@domain` or would make a file outside its folder.
    pub(crate) fn check(&self) -> Result<(), PkiError> {
        let refuse = |reason| {
            Err(PkiError::Identity {
                identity: self.label(),
                reason,
            })
        };
        match self.aor.split_once('@') {
            Some((user, domain))
                if !user.is_empty() && !domain.is_empty() && !domain.contains('@') => {}
            _ => return refuse("the address of record must be user@domain"),
        }
        if !usable_as_file_name(&self.aor) {
            return refuse(NOT_A_FILE_NAME);
        }
        Ok(())
    }
}

/// Why [`usable_as_file_name`] said no.
const NOT_A_FILE_NAME: &str =
    "it names the certificate files, so only letters, digits and - _ . + @, not starting with .";

/// Whether `s` can name a file in `nodes/` or `users/` without escaping it or hiding it.
fn usable_as_file_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{alice, e1x};

    #[test]
    fn lab_identities_pass() {
        e1x().check().unwrap();
        alice().check().unwrap();
        assert_eq!(alice().sip_uri(), "sip:alice@contoso.test");
    }

    #[test]
    fn a_node_name_that_would_escape_its_folder_is_refused() {
        for name in ["", "..", "../ca", "a/b", ".hidden", "E 1"] {
            let node = NodeIdentity {
                name: name.into(),
                ..e1x()
            };
            let err = node.check().unwrap_err();
            assert!(err.to_string().starts_with("node "), "{err}");
        }
    }

    #[test]
    fn a_node_without_names_is_refused() {
        let node = NodeIdentity {
            dns_names: vec![],
            ips: vec![],
            ..e1x()
        };
        assert!(node.check().unwrap_err().to_string().contains("E1x"));
    }

    #[test]
    fn an_aor_must_be_user_at_domain() {
        for aor in [
            "alice",
            "@contoso.test",
            "alice@",
            "a@b@c",
            "../x@y",
            "al ice@contoso.test",
        ] {
            let user = UserIdentity { aor: aor.into() };
            let err = user.check().unwrap_err();
            assert!(err.to_string().starts_with("user "), "{err}");
        }
    }
}
