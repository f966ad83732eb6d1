//! How a lab node reaches the hosts its role names: the lab's DNS, as seen from one of the
//! node's addresses (split-brain views, section 3), and the topology's networks for the
//! interface a request leaves from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_dns::discovery::{LabResolver, federation_target};
use siplab_proxy::Reach;
use siplab_topology::Lab;

use crate::NodeError;

pub struct LabReach {
    lab: Lab,
    node: String,
    dns: LabResolver,
}

impl LabReach {
    /// `node`'s reach, asking the lab's DNS from `source` (the address whose view it gets).
    pub fn new(lab: &Lab, node: &str, source: IpAddr) -> Result<LabReach, NodeError> {
        Ok(LabReach {
            dns: LabResolver::for_source(lab, source)?,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }
}

impl Reach for LabReach {
    /// A SIP host through the lab's DNS (A record; the port given or 5061).
    async fn resolve(&self, host: &str, port: Option<u16>) -> Result<SocketAddr, String> {
        self.dns
            .resolve_sip(host, port.unwrap_or(5061))
            .await
            .map_err(|e| e.to_string())
    }

    async fn federation(&self, domain: &str) -> Result<(String, u16), String> {
        federation_target(&self.dns, domain)
            .await
            .map(|(host, port, _)| (host, port))
            .map_err(|e| e.to_string())
    }

    fn interface_towards(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.lab
            .interface_towards(&self.node, ip)
            .map(|i| Arc::from(i.name.as_str()))
    }
}
