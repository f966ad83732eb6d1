//! Starting every node of a lab in this process, and the clients of its users.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use siplab_dns::{DnsServer, RunningDns};
use siplab_node::{Certs, Discover, NodeError, RunningNode, client_config, start_node};
use siplab_proxy::ProxyConfig;
use siplab_topology::{At, Lab};
use siplab_ua::{Ua, UaError};
use tokio::sync::Mutex;
use tracing::info;

/// How long a client may take to sign in (redirects included).
pub const SIGN_IN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("load: {0}")]
    Load(String),
    #[error("DNS server: {0}")]
    Dns(#[from] siplab_dns::DnsError),
    #[error("{aor} at {at:?}: {error}")]
    Client { aor: String, at: At, error: UaError },
}

/// How one client signed in: what discovery found (the records and autodiscover services
/// that answered) and the servers it registered with in turn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignInReport {
    pub aor: String,
    pub discovery: Vec<String>,
    /// The record that led to the first server.
    pub via: String,
    pub servers: Vec<(String, Option<u16>)>,
}

/// A running lab: its nodes, and one client per user, wherever that user last signed in.
pub struct LabRun {
    pub lab: Lab,
    pub certs: Certs,
    pub dns: RunningDns,
    pub nodes: Vec<RunningNode>,
    clients: Mutex<HashMap<String, (At, Arc<Ua>)>>,
}

impl LabRun {
    /// Starts the DNS server and every SIP node of `lab` (front ends, edges, the cloud edge
    /// and pool).
    pub async fn start(lab: Lab, certs: Certs) -> Result<LabRun, RunError> {
        let dns = DnsServer::start(&lab).await?;
        let mut nodes = Vec::new();
        for node in lab.nodes() {
            if !node.role.is_siplab_sip_node() {
                continue;
            }
            nodes.push(start_node(&lab, node.name.as_str(), &certs, ProxyConfig::default()).await?);
        }
        info!(nodes = nodes.len(), "lab up");
        Ok(LabRun {
            lab,
            certs,
            dns,
            nodes,
            clients: Mutex::new(HashMap::new()),
        })
    }

    pub fn node(&self, name: &str) -> Option<&RunningNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Makes sure `aor` is signed in `at` its place: an existing client elsewhere signs out
    /// first, so that its home server has exactly the binding of this place. Returns how
    /// the sign-in went when there was one.
    pub async fn place(&self, aor: &str, at: At) -> Result<Option<SignInReport>, RunError> {
        let mut clients = self.clients.lock().await;
        if clients.get(aor).is_some_and(|(a, _)| *a == at) {
            return Ok(None);
        }
        if let Some((_, old)) = clients.remove(aor)
            && let Some(old) = Arc::into_inner(old)
        {
            old.shutdown().await;
        }
        let err = |error| RunError::Client {
            aor: aor.to_owned(),
            at,
            error,
        };
        let (cfg, found) =
            client_config(&self.lab, &self.certs, aor, at, Discover::Autodiscover).await?;
        info!(%aor, ?at, server = %siplab_node::describe(&found), "discovered");
        let ua = Ua::start(cfg).await.map_err(err)?;
        let reg = ua.wait_registered(SIGN_IN).await.map_err(err)?;
        let report = SignInReport {
            aor: aor.to_owned(),
            discovery: found
                .steps
                .iter()
                .filter_map(|s| s.answer.as_ref().map(|a| format!("{} {a}", s.query)))
                .collect(),
            via: found.via.clone(),
            servers: reg
                .sign_in
                .servers
                .iter()
                .map(|s| (s.name.clone(), s.status))
                .collect(),
        };
        clients.insert(aor.to_owned(), (at, Arc::new(ua)));
        Ok(Some(report))
    }

    /// Signs in one user at each of the eight places of the article (A1i, A1e, B1i, ...):
    /// the first user of a class on the LAN, the second on the internet.
    pub async fn sign_in_everyone(&self) -> Result<Vec<(String, SignInReport)>, RunError> {
        let mut out = Vec::new();
        for place in self.lab.placements() {
            let Some(user) = self.lab.resident(place.name) else {
                continue;
            };
            if let Some(report) = self.place(&user.aor, place.name.at).await? {
                out.push((place.name.to_string(), report));
            }
        }
        Ok(out)
    }

    /// The client of `aor`, placed before.
    pub async fn client(&self, aor: &str) -> Option<Arc<Ua>> {
        self.clients.lock().await.get(aor).map(|(_, ua)| ua.clone())
    }

    /// Signs one user's client out (REGISTER with expires 0) and stops it.
    pub async fn sign_out(&self, aor: &str) {
        let removed = self.clients.lock().await.remove(aor);
        if let Some((_, ua)) = removed
            && let Some(ua) = Arc::into_inner(ua)
        {
            ua.shutdown().await;
        }
    }

    /// Signs every client out.
    pub async fn sign_out_all(&self) {
        let mut clients = self.clients.lock().await;
        for (_, (_, ua)) in clients.drain() {
            if let Some(ua) = Arc::into_inner(ua) {
                ua.shutdown().await;
            }
        }
    }
}
