//! The edges: a company's on-premises edge (E1, E2) and the cloud edge (CE). Each has an
//! internal interface towards its inside (the front end, the cloud pool) and an external
//! one for clients on the internet (443) and for federation (5061).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_proxy::{
    Decision, Forward, Inbound, NOT_SIP_URI, NextHop, Policy, Reply, asserted_identity,
    certificate_aor,
};
use siplab_sip::{HeaderName, Host, Method, SipUri};
use siplab_topology::{Lab, Role};
use siplab_transport::ConnInfo;

use siplab_dns::discovery::LabResolver;

pub struct Edge {
    lab: Lab,
    node: String,
    /// The cloud edge trusts a company's on-prem edge for its tenant's users (hybrid).
    cloud: bool,
    /// Where clients and accepted federation go: the front end, or the cloud pool.
    inside: SipUri,
    /// The inside node's certificate names: requests from it go out.
    inside_names: Vec<String>,
    inside_ip: IpAddr,
    /// The interface facing the inside: the only one the inside's assertions are taken on.
    internal: Arc<str>,
    /// An on-prem edge's SIP domain and the hosting provider that serves its cloud users.
    domain: Option<String>,
    /// Its proxy FQDN and SIP port (section 5: "its configured proxy FQDN").
    hosting_provider: Option<(String, u16)>,
    resolver: LabResolver,
}

impl Edge {
    pub fn new(lab: &Lab, node: &str) -> Option<Edge> {
        let n = lab.node(node)?;
        let inside = n.frontend.as_ref()?;
        let inside_if = lab.interfaces_of(inside.as_str()).next()?;
        let internal = lab
            .interfaces_of(node)
            .find(|i| i.network == inside_if.network)?;
        let domain = n.domain.clone();
        let hosting_provider = domain.as_deref().and_then(|d| lab.domain(d)).map(|d| {
            let port = lab
                .interfaces()
                .iter()
                .find(|i| i.fqdns.contains(&d.hosting_provider))
                .and_then(|i| i.ports.sip)
                .unwrap_or(5061);
            (d.hosting_provider.clone(), port)
        });
        Some(Edge {
            cloud: n.role == Role::CloudEdge,
            inside: SipUri::new(
                None,
                Host::Name(inside_if.fqdns.first()?.clone()),
                inside_if.ports.sip,
            ),
            inside_names: inside_if.fqdns.clone(),
            inside_ip: inside_if.ip(),
            internal: Arc::from(internal.name.as_str()),
            domain,
            hosting_provider,
            resolver: LabResolver::for_source(lab, internal.ip()).ok()?,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    fn is_inside(&self, conn: &ConnInfo) -> bool {
        self.inside_names
            .iter()
            .any(|n| conn.identity.names_host(n))
    }

    /// Section 7: a federated request is accepted when the peer's certificate names the
    /// host that `_sipfederationtls._tcp` of the From domain points to, or the peer is the
    /// configured hosting provider of that domain. The cloud edge also accepts a company's
    /// on-prem edge carrying a request for one of its tenant's users (the hybrid partner of
    /// the To domain, as in rows 13 and 17).
    async fn check_federation(&self, req: &Inbound<'_>) -> Result<(), String> {
        let domain_of = |n: Result<siplab_sip::NameAddr, _>| {
            n.ok().and_then(|a| a.sip_uri().map(|u| u.host.to_string()))
        };
        let from = domain_of(req.msg.from()).ok_or("no From domain")?;
        let peer = &req.conn.identity;
        let edge_of = async |d: &str| {
            crate::federation(&self.resolver, d)
                .await
                .ok()
                .map(|(host, _)| host)
        };
        if edge_of(&from).await.is_some_and(|h| peer.names_host(&h)) {
            return Ok(());
        }
        if self
            .lab
            .domain(&from)
            .is_some_and(|d| peer.names_host(&d.hosting_provider))
        {
            return Ok(());
        }
        if self.cloud
            && let Some(to) = domain_of(req.msg.to())
            && self.lab.domain(&to).is_some()
            && edge_of(&to).await.is_some_and(|h| peer.names_host(&h))
        {
            return Ok(());
        }
        Err(format!(
            "{} is neither the federation edge nor the hosting provider of {from}",
            peer.describe()
        ))
    }

    /// Whether a Route names the inside node (the front end, the cloud pool).
    fn is_inside_uri(&self, uri: &SipUri) -> bool {
        match &uri.host {
            Host::Name(n) => self.inside_names.iter().any(|i| i.eq_ignore_ascii_case(n)),
            Host::Ip(ip) => *ip == self.inside_ip,
        }
    }

    /// In from a client or a federation peer, to `next` (the inside node): a client's
    /// request with the identity its certificate proves (the core has checked that From is
    /// that identity and removed every claim the client wrote), and for a REGISTER this
    /// edge's Path with the flow token of the client's connection (RFC 3327, RFC 5626).
    fn inward(&self, req: &Inbound<'_>, next: SipUri) -> Decision {
        let mut f = Forward::to(NextHop::Uri(next));
        if let Some(id) = certificate_aor(req.conn)
            .as_deref()
            .and_then(asserted_identity)
        {
            f.set.push((HeaderName::PAssertedIdentity, id));
            f.add_path = req.msg.method() == Some(Method::Register);
        }
        Decision::forward(f)
    }

    /// Out to another domain's edge or the hosting provider, with it as a pre-loaded Route
    /// (RFC 3261 8.1.2), and without identities asserted inside (RFC 3325 section 5).
    fn outward(&self, host: String, port: u16) -> Decision {
        let target = SipUri::new(None, Host::Name(host), Some(port));
        let mut f = Forward::to(NextHop::Uri(target.clone()));
        f.routes.push(format!("<{target};transport=tls;lr>"));
        f.remove.push(HeaderName::PAssertedIdentity);
        Decision::forward(f)
    }
}

impl Policy for Edge {
    async fn route(&self, req: &Inbound<'_>) -> Decision {
        let from_client = req.from_client();
        let from_inside = !from_client && self.is_inside(req.conn);
        // Anything from another server outside is checked before it may go anywhere.
        if !from_client
            && !from_inside
            && let Err(why) = self.check_federation(req).await
        {
            return Decision::Reply(Reply::because(403, why));
        }
        if from_inside {
            // On along its route set (out, or down the client flow our Path or Record-Route
            // named); nothing asserted inside leaves the trust domain.
            if let Some(next) = &req.next_route {
                let mut f = Forward::to(NextHop::Uri(next.clone()));
                if !self.is_inside_uri(next) {
                    f.remove.push(HeaderName::PAssertedIdentity);
                }
                return Decision::forward(f);
            }
            if let Some(flow) = req.route_flow {
                return Decision::to(NextHop::Flow(flow));
            }
        } else {
            // From outside, a route set leads only inwards: the edge is the wall, and no
            // Route a client or a federation peer writes goes round it.
            if req.route_flow.is_some() {
                return Decision::Reply(Reply::because(
                    403,
                    "a request from outside may not be routed to a client's connection",
                ));
            }
            if let Some(next) = &req.next_route {
                if !self.is_inside_uri(next) {
                    return Decision::Reply(Reply::because(
                        403,
                        format!(
                            "a request from outside is routed only to {}, not to {next}",
                            self.inside
                        ),
                    ));
                }
                return self.inward(req, next.clone());
            }
        }
        let Some(ruri) = req.request_uri() else {
            return Decision::bad_request(NOT_SIP_URI);
        };
        let is_own = |h: &Host| {
            self.lab
                .interfaces_of(&self.node)
                .any(|i| i.fqdns.iter().any(|f| Host::Name(f.clone()) == *h))
        };
        if ruri.user.is_none() && is_own(&ruri.host) {
            return match req.msg.method() {
                Some(Method::Options) => Decision::Local,
                _ => Decision::Reply(Reply::because(404, "this is the edge, not a user")),
            };
        }
        if !from_inside {
            // A client signed in through us, or accepted federation: to the inside, which
            // knows its users.
            return self.inward(req, self.inside.clone());
        }
        // From the inside, out: the company's own users that reach the edge are hosted in
        // the cloud (shared address space); other domains are federation.
        let domain = ruri.host.to_string();
        if self.domain.as_deref() == Some(domain.as_str())
            && let Some((hp, port)) = &self.hosting_provider
        {
            return self.outward(hp.clone(), *port);
        }
        match crate::federation(&self.resolver, &domain).await {
            Ok((host, port)) => self.outward(host, port),
            Err(e) => Decision::Reply(Reply::because(
                404,
                format!("no federation route to {domain}: {e}"),
            )),
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        *conn.interface == *self.internal && self.is_inside(conn)
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
