//! Where a node's and a user's certificates come from: the files `siplab certs` wrote, or a
//! CA held in memory (the single-process lab and the tests issue their own at start).

use std::path::PathBuf;
use std::sync::Arc;

use siplab_pki::{LabCa, NodeIdentity, UserIdentity};
use siplab_topology::Lab;
use siplab_transport::TlsConfig;

use crate::NodeError;

#[derive(Clone)]
pub enum Certs {
    Dir(PathBuf),
    Authority(Arc<LabCa>),
}

impl Certs {
    /// The TLS identity of one node interface.
    pub fn interface(&self, lab: &Lab, name: &str) -> Result<TlsConfig, NodeError> {
        let err = |reason: String| NodeError::Certificate {
            who: name.to_owned(),
            reason,
        };
        match self {
            Certs::Dir(dir) => {
                let p = siplab_pki::node_cert_paths(dir, name);
                TlsConfig::from_files(&siplab_pki::ca_path(dir), &p.cert, &p.key)
                    .map_err(|e| err(e.to_string()))
            }
            Certs::Authority(ca) => {
                let id = lab
                    .node_identities()
                    .into_iter()
                    .find(|i| i.interface.as_str() == name)
                    .ok_or_else(|| err("no such interface".into()))?;
                let id = NodeIdentity {
                    name: name.to_owned(),
                    dns_names: id.dns_names,
                    ips: vec![id.address],
                };
                let issued = ca.issue_node(&id).map_err(|e| err(e.to_string()))?;
                TlsConfig::from_pem(
                    ca.cert_pem().as_bytes(),
                    issued.cert_pem.as_bytes(),
                    issued.key_pem.as_bytes(),
                )
                .map_err(|e| err(e.to_string()))
            }
        }
    }

    /// The TLS identity of a user's client (its certificate carries `sip:aor`).
    pub fn user(&self, aor: &str) -> Result<TlsConfig, NodeError> {
        let err = |reason: String| NodeError::Certificate {
            who: aor.to_owned(),
            reason,
        };
        match self {
            Certs::Dir(dir) => {
                let p = siplab_pki::user_cert_paths(dir, aor);
                TlsConfig::from_files(&siplab_pki::ca_path(dir), &p.cert, &p.key)
                    .map_err(|e| err(e.to_string()))
            }
            Certs::Authority(ca) => {
                let issued = ca
                    .issue_user(&UserIdentity {
                        aor: aor.to_owned(),
                    })
                    .map_err(|e| err(e.to_string()))?;
                TlsConfig::from_pem(
                    ca.cert_pem().as_bytes(),
                    issued.cert_pem.as_bytes(),
                    issued.key_pem.as_bytes(),
                )
                .map_err(|e| err(e.to_string()))
            }
        }
    }
}
