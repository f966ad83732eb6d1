//! Starting a node from the topology: one transport interface per topology interface, its
//! listeners (the web one also serving autodiscover), and the proxy with the node's role as
//! policy.

use std::net::SocketAddr;
use std::sync::Arc;

use siplab_proxy::{
    Counters, Location, OwnInterface, Policy, PresenceServer, Proxy, ProxyConfig, Reach,
};
use siplab_topology::{Lab, NodeLimits, Purpose, Role};
use siplab_transport::{CaptureSink, Limits, Tap, Transport};
use tracing::info;

use crate::{Certs, CloudPool, Edge, FrontEnd, LabReach, NodeError};

/// A node that runs: what it listens on, its transport (to count or close connections).
pub struct RunningNode {
    pub name: String,
    pub listening: Vec<(String, SocketAddr)>,
    pub transport: Transport,
    /// The bindings of a registrar node.
    pub location: Arc<Location>,
    /// The presence server of a home server: publications and subscriptions.
    pub presence: Arc<PresenceServer>,
    /// Its capture agent id: its place among the lab's nodes, from 1.
    pub agent: u32,
    /// What its proxy handled and refused.
    pub counters: Arc<Counters>,
}

impl RunningNode {
    /// Captures what the node receives and sends into `sink` from now on (HEP export, a
    /// report, a live page).
    pub fn capture_into(&self, sink: CaptureSink) {
        self.transport.tap(Tap {
            node: Arc::from(self.name.as_str()),
            agent: self.agent,
            sink,
        });
    }

    /// Logs, every `every`, one line at info with the node's connections, bindings and
    /// counters, when they changed since the last line: what an attack costs shows there,
    /// not in one line per message.
    pub fn log_counters(&self, every: std::time::Duration) {
        let (name, transport) = (self.name.clone(), self.transport.clone());
        let (location, counters) = (self.location.clone(), self.counters.clone());
        tokio::spawn(async move {
            let mut last = None;
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = (
                    transport.connection_count(),
                    location.bindings(),
                    counters.get(),
                );
                if last == Some(now) {
                    continue;
                }
                let (connections, bindings, c) = now;
                info!(
                    node = %name, connections, bindings, requests = c.requests,
                    responses = c.responses, over_rate = c.over_rate,
                    client_busy = c.client_busy, table_full = c.table_full, unsent = c.unsent,
                    "counters"
                );
                last = Some(now);
            }
        });
    }

    /// Closes every connection of the node (a crash or restart, as peers see it).
    pub fn drop_connections(&self) {
        self.transport.close_all();
    }
}

/// Starts `name` (a front end, an edge or the cloud pool) of `lab` on its addresses.
pub async fn start_node(
    lab: &Lab,
    name: &str,
    certs: &Certs,
    mut config: ProxyConfig,
) -> Result<RunningNode, NodeError> {
    let node = lab
        .node(name)
        .ok_or_else(|| NodeError::UnknownNode(name.to_owned()))?;
    let mut limits = Limits::default();
    apply_limits(&node.limits, &mut limits, &mut config);
    let (transport, events) = Transport::with_lanes(limits, config.workers);
    let mut own = Vec::new();
    let mut listening = Vec::new();
    let identities = lab.node_identities();
    // Autodiscover, where the topology gives the node a web port (section 4).
    let autodiscover = if lab.interfaces_of(name).any(|i| i.ports.web.is_some()) {
        let directory = siplab_autodiscover::Directory::for_node(lab, name)?;
        Some(siplab_autodiscover::handler(Arc::new(directory)))
    } else {
        None
    };
    for iface in lab.interfaces_of(name) {
        transport.add_interface(
            iface.name.as_str(),
            iface.ip(),
            certs.interface(lab, iface.name.as_str())?,
        );
        // One listener per address: purposes sharing a port (client and web) share it.
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for (_, addr) in iface.sockets() {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        let web = iface.socket(Purpose::Web);
        for addr in addrs {
            let bound = match &autodiscover {
                Some(handler) if web == Some(addr) => {
                    let alpn = siplab_autodiscover::ALPN;
                    transport
                        .listen_with_alpn(iface.name.as_str(), addr, alpn, handler.clone())
                        .await?
                }
                _ => transport.listen(iface.name.as_str(), addr).await?,
            };
            listening.push((iface.name.to_string(), bound));
        }
        let names = identities
            .iter()
            .find(|i| i.interface == iface.name)
            .map(|i| i.dns_names.clone())
            .unwrap_or_default();
        let sip = iface.ports.sip.or(iface.ports.client).unwrap_or(5061);
        own.push(OwnInterface {
            name: Arc::from(iface.name.as_str()),
            addr: SocketAddr::new(iface.ip(), sip),
            fqdn: iface
                .fqdns
                .first()
                .cloned()
                .unwrap_or_else(|| iface.ip().to_string()),
            names,
            pool: lab.pool_of(name).map(|p| p.fqdn.clone()),
        });
    }
    let (location, presence, counters) = match node.role {
        Role::Frontend => {
            let role = FrontEnd::new(lab, name)?;
            let reach = LabReach::new(lab, name, role.dns_source())?;
            run(role, reach, &transport, own, config, events)
        }
        Role::Edge | Role::CloudEdge => {
            let role = Edge::new(lab, name)?;
            let reach = LabReach::new(lab, name, role.dns_source())?;
            run(role, reach, &transport, own, config, events)
        }
        Role::CloudPool => {
            let role = CloudPool::new(lab, name)?;
            let reach = LabReach::new(lab, name, role.dns_source())?;
            run(role, reach, &transport, own, config, events)
        }
        Role::Dns | Role::Partner => {
            return Err(NodeError::Role {
                node: name.to_owned(),
                role: node.role.to_string(),
            });
        }
    };
    info!(node = name, role = %node.role, ?listening, "node up");
    let place = lab
        .nodes()
        .iter()
        .position(|n| n.name.as_str() == name)
        .unwrap_or(0);
    Ok(RunningNode {
        name: name.to_owned(),
        listening,
        transport,
        location,
        presence,
        agent: u32::try_from(place + 1).unwrap_or(u32::MAX),
        counters,
    })
}

/// The lab file's limits for a node over the programs' defaults (and over what the caller
/// chose): only what the file sets changes.
fn apply_limits(set: &NodeLimits, t: &mut Limits, c: &mut ProxyConfig) {
    let secs = std::time::Duration::from_secs;
    let rate = |n: u32| f64::from(n);
    if let Some(n) = set.max_connections {
        t.max_connections = n;
    }
    if let Some(n) = set.max_connections_per_source {
        t.max_connections_per_source = n;
    }
    if let Some(n) = set.max_pending_per_source {
        t.max_pending_per_source = n;
    }
    if let Some(n) = set.max_silent_per_source {
        t.max_silent_per_source = n;
    }
    if let Some(s) = set.handshake_timeout_s {
        t.handshake_timeout = secs(s);
    }
    if let Some(s) = set.message_read_timeout_s {
        t.message_read_timeout = secs(s);
    }
    if let Some(s) = set.first_message_timeout_s {
        t.first_message_timeout = secs(s);
    }
    if let Some(s) = set.idle_timeout_s {
        t.idle_timeout = secs(s);
    }
    if let Some(n) = set.max_transactions {
        c.max_transactions = n;
    }
    if let Some(n) = set.max_client_transactions {
        c.max_client_transactions = n;
    }
    if let Some(n) = set.max_connection_transactions {
        c.max_connection_transactions = n;
    }
    if let Some(n) = set.client_rate {
        c.rate.per_second = rate(n);
    }
    if let Some(n) = set.client_burst {
        c.rate.burst = rate(n);
    }
    if let Some(n) = set.source_rate {
        c.rate_per_source.per_second = rate(n);
    }
    if let Some(n) = set.source_burst {
        c.rate_per_source.burst = rate(n);
    }
}

/// Starts the proxy core with a role's policy; returns its location and presence services.
fn run<P: Policy, R: Reach>(
    policy: P,
    reach: R,
    transport: &Transport,
    own: Vec<OwnInterface>,
    config: ProxyConfig,
    events: Vec<tokio::sync::mpsc::Receiver<siplab_transport::Event>>,
) -> (Arc<Location>, Arc<PresenceServer>, Arc<Counters>) {
    let proxy = Proxy::new(policy, reach, transport.clone(), own, config);
    proxy.spawn(events);
    let counters = proxy.counters().clone();
    (proxy.location().clone(), proxy.presence().clone(), counters)
}
