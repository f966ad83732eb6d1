//! The cloud pool (CP): registrar and home server of every cloud-hosted user of every
//! tenant, reached only through the cloud edge.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_proxy::{
    Decision, Forward, Inbound, NOT_SIP_URI, NextHop, Policy, REGISTER_TO_NOT_SIP, Reply,
};
use siplab_sip::{HeaderName, Host, Method, SipUri};
use siplab_topology::Lab;
use siplab_transport::ConnInfo;

use siplab_dns::discovery::LabResolver;

pub struct CloudPool {
    lab: Lab,
    node: String,
    /// The cloud edge's internal interface: the pool's only way in and out.
    edge: SipUri,
    /// The cloud edge's certificate names, which assert its clients' identities, and this
    /// node's interface facing it: the only one assertions are taken on.
    edge_names: Vec<String>,
    facing_edge: Arc<str>,
    resolver: LabResolver,
}

impl CloudPool {
    pub fn new(lab: &Lab, node: &str) -> Option<CloudPool> {
        let n = lab.node(node)?;
        let ours = lab.interfaces_of(node).next()?;
        let edge = lab.node(n.edge.as_ref()?.as_str())?;
        let edge_if = lab
            .interfaces_of(edge.name.as_str())
            .find(|i| i.network == ours.network)?;
        Some(CloudPool {
            edge: SipUri::new(
                None,
                Host::Name(edge_if.fqdns.first()?.clone()),
                edge_if.ports.sip,
            ),
            edge_names: edge_if.fqdns.clone(),
            facing_edge: Arc::from(ours.name.as_str()),
            resolver: LabResolver::for_source(lab, ours.ip()).ok()?,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    fn is_home(&self, aor: &str) -> bool {
        self.lab
            .user(aor)
            .is_some_and(|u| u.home.as_str() == self.node)
    }

    /// A hosted user: delivered through the cloud edge along its Path when signed in.
    fn deliver(&self, req: &Inbound<'_>, aor: &str) -> Decision {
        if !self.is_home(aor) {
            return Decision::Reply(Reply::because(404, format!("no hosted user {aor}")));
        }
        if req.for_home_server() {
            return Decision::Presence {
                aor: aor.to_owned(),
            };
        }
        match req.location.lookup(aor) {
            Some(b) => Decision::forward(b.forward()),
            None => Decision::Reply(Reply::because(480, format!("{aor} is not signed in"))),
        }
    }

    /// The identity the cloud edge asserted for a request from one of its clients.
    fn asserted(&self, req: &Inbound<'_>) -> Option<String> {
        if !self.trusts_assertion(req.conn) {
            return None;
        }
        let ids = req.msg.addresses(HeaderName::PAssertedIdentity).ok()?;
        ids.iter().find_map(|id| id.sip_uri().map(SipUri::aor))
    }
}

impl Policy for CloudPool {
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
        if ruri.user.is_none() && self.lab.domain(&ruri.host.to_string()).is_none() {
            return match method {
                Method::Options => Decision::Local,
                _ => Decision::Reply(Reply::because(404, "this is the cloud pool, not a user")),
            };
        }
        if method == Method::Register {
            let Some(aor) = req.msg.to().ok().and_then(|t| t.sip_uri().map(SipUri::aor)) else {
                return Decision::bad_request(REGISTER_TO_NOT_SIP);
            };
            return match self.lab.user(&aor) {
                None => Decision::Reply(Reply::because(404, format!("no user {aor}"))),
                Some(_) if !self.is_home(&aor) => {
                    Decision::Reply(Reply::because(403, format!("{aor} is not hosted here")))
                }
                Some(_) => Decision::Register { aor },
            };
        }
        let target = ruri.aor();
        match self.asserted(req) {
            // From one of our own clients: a user of the sender's own tenant who is hosted
            // here is delivered here; everyone else is reached through the sender's tenant's
            // on-prem edge, the hybrid partner (rows 5 to 8 and 15 to 17).
            Some(sender) => {
                let sender_domain = sender.split_once('@').map_or("", |(_, d)| d).to_owned();
                if ruri.host.to_string() == sender_domain && self.is_home(&target) {
                    return self.deliver(req, &target);
                }
                match crate::federation(&self.resolver, &sender_domain).await {
                    Ok((host, port)) => {
                        let mut f = Forward::to(NextHop::Uri(self.edge.clone()));
                        f.routes
                            .push(format!("<sip:{host}:{port};transport=tls;lr>"));
                        Decision::forward(f)
                    }
                    Err(e) => Decision::Reply(Reply::because(
                        404,
                        format!("no on-prem edge for {sender_domain}: {e}"),
                    )),
                }
            }
            // From federation or a hybrid partner, through the cloud edge: for our users.
            None => self.deliver(req, &target),
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
