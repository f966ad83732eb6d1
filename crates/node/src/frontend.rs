//! The front end (R1, R2): registrar and home server of its company's on-premises users.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_proxy::{Decision, Inbound, NOT_SIP_URI, NextHop, Policy, REGISTER_TO_NOT_SIP, Reply};
use siplab_sip::{HeaderName, Host, Method, SipUri};
use siplab_topology::{Lab, UserClass};
use siplab_transport::ConnInfo;

use siplab_dns::discovery::LabResolver;

pub struct FrontEnd {
    lab: Lab,
    node: String,
    domain: String,
    /// The edge's internal interface: everything not delivered here leaves through it.
    edge: SipUri,
    /// The edge's certificate names, which may assert identities (P-Asserted-Identity).
    edge_names: Vec<String>,
    /// This node's interface on the edge's network: the only one assertions are taken on.
    facing_edge: Arc<str>,
    /// The 301 Contact for cloud-hosted users.
    cloud_redirect: String,
    resolver: LabResolver,
}

impl FrontEnd {
    pub fn new(lab: &Lab, node: &str) -> Option<FrontEnd> {
        let n = lab.node(node)?;
        let domain = n.domain.clone()?;
        let edge = lab.node(n.edge.as_ref()?.as_str())?;
        let ours = lab.interfaces_of(node).next()?;
        // The edge interface on the front end's own network is the way out.
        let edge_if = lab
            .interfaces_of(edge.name.as_str())
            .find(|i| i.network == ours.network)?;
        let edge_fqdn = edge_if.fqdns.first()?.clone();
        let port = edge_if.ports.sip.unwrap_or(5061);
        Some(FrontEnd {
            edge: SipUri::new(None, Host::Name(edge_fqdn.clone()), Some(port)),
            edge_names: edge_if.fqdns.clone(),
            facing_edge: Arc::from(ours.name.as_str()),
            cloud_redirect: format!("<{}>", n.cloud_redirect.as_ref()?.uri()),
            resolver: LabResolver::for_source(lab, ours.ip()).ok()?,
            domain,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    fn to_edge(&self) -> Decision {
        Decision::to(NextHop::Uri(self.edge.clone()))
    }
}

impl Policy for FrontEnd {
    async fn route(&self, req: &Inbound<'_>) -> Decision {
        if let Some(routed) = req.routed() {
            return routed;
        }
        if let Some(in_dialog) = req.to_registered_contact(|h| self.lab.domain(h).is_some()) {
            return in_dialog;
        }
        let Some(ruri) = req.request_uri() else {
            return Decision::bad_request(NOT_SIP_URI);
        };
        let method = req.msg.method().unwrap_or(Method::Options);
        let host = ruri.host.to_string();
        if ruri.user.is_none() && host != self.domain {
            return match method {
                Method::Options => Decision::Local,
                _ => Decision::Reply(Reply::because(
                    404,
                    format!("{host} is this server, not a user"),
                )),
            };
        }
        if method == Method::Register {
            let Ok(to) = req.msg.to() else {
                return Decision::bad_request(REGISTER_TO_NOT_SIP);
            };
            let Some(aor) = to.sip_uri().map(SipUri::aor) else {
                return Decision::bad_request(REGISTER_TO_NOT_SIP);
            };
            return match self.lab.user(&aor) {
                _ if host != self.domain => {
                    Decision::Reply(Reply::because(403, format!("{host} is not served here")))
                }
                None => Decision::Reply(Reply::because(404, format!("no user {aor}"))),
                // A cloud-hosted user is told where its home is (section 4).
                Some(u) if u.class == UserClass::B => Decision::Reply(
                    Reply::because(301, format!("{aor} is homed in the cloud"))
                        .with(HeaderName::Contact, self.cloud_redirect.clone()),
                ),
                Some(_) => Decision::Register { aor },
            };
        }
        let aor = ruri.aor();
        if host == self.domain {
            match self.lab.user(&aor) {
                None => Decision::Reply(Reply::because(404, format!("no user {aor}"))),
                // Its own users: directly, or through the edge's Path, down their own flow.
                // Its presence is answered here, never by the user's client.
                Some(u) if u.home.as_str() == self.node && req.for_home_server() => {
                    Decision::Presence { aor }
                }
                Some(u) if u.home.as_str() == self.node => match req.location.lookup(&aor) {
                    Some(b) => Decision::forward(b.forward()),
                    None => Decision::Reply(Reply::because(480, format!("{aor} is not signed in"))),
                },
                // Shared SIP address space: the user is homed in the cloud, reached via the edge.
                Some(_) => self.to_edge(),
            }
        } else {
            // Another domain: federation, through the edge.
            self.to_edge()
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        *conn.interface == *self.facing_edge
            && self.edge_names.iter().any(|n| conn.identity.names_host(n))
    }

    async fn resolve(&self, host: &str, port: Option<u16>) -> Result<SocketAddr, String> {
        crate::resolve_sip(&self.resolver, host, port).await
    }

    fn interface_towards(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.lab
            .interface_towards(&self.node, ip)
            .map(|i| Arc::from(i.name.as_str()))
    }
}
