//! Name resolution as a node of the lab sees it: the records of its DNS view in the
//! topology, so that `sip.contoso.test` is R1 from the LAN and E1x from the internet.
//! (The lab's DNS server serves the same records over the wire.)

use std::net::{IpAddr, SocketAddr};

use siplab_topology::{Lab, RecordData};

#[derive(Debug, Clone)]
pub struct LabResolver {
    lab: Lab,
    /// The address whose DNS view applies.
    source: IpAddr,
}

impl LabResolver {
    pub fn new(lab: Lab, source: IpAddr) -> LabResolver {
        LabResolver { lab, source }
    }

    /// An A record of the view, then any interface's own name; the port is the given one
    /// or the interface's SIP port.
    pub fn resolve(&self, host: &str, port: Option<u16>) -> Result<SocketAddr, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port.unwrap_or(5061)));
        }
        let from_view = self.lab.view_for(self.source).and_then(|v| {
            v.lookup(host).find_map(|r| match &r.data {
                RecordData::A(iface) => self.lab.interface(iface.as_str()),
                _ => None,
            })
        });
        let iface = from_view
            .or_else(|| {
                self.lab
                    .interfaces()
                    .iter()
                    .find(|i| i.fqdns.iter().any(|f| f.eq_ignore_ascii_case(host)))
            })
            .ok_or_else(|| format!("{host} does not resolve"))?;
        let port = port
            .or(iface.ports.sip)
            .or(iface.ports.client)
            .unwrap_or(5061);
        Ok(SocketAddr::new(iface.ip(), port))
    }
}

impl LabResolver {
    /// `_sipfederationtls._tcp.<domain>`: the host and port of a domain's federation edge.
    pub fn federation(&self, domain: &str) -> Result<(String, u16), String> {
        let name = format!("_sipfederationtls._tcp.{domain}");
        self.lab
            .view_for(self.source)
            .and_then(|v| {
                v.lookup(&name).find_map(|r| match &r.data {
                    RecordData::Srv { port, target, .. } => Some((target.clone(), *port)),
                    _ => None,
                })
            })
            .ok_or_else(|| format!("{name} does not resolve"))
    }
}
