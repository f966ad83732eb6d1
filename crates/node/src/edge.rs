//! The edges: a company's on-premises edge (E1, E2) and the cloud edge (CE). Each has an
//! internal interface towards its inside (the front end, the cloud pool) and an external
//! one for clients on the internet (443) and for federation (5061).

use std::net::IpAddr;
use std::sync::Arc;

use siplab_proxy::{
    Decision, Forward, Inbound, NOT_SIP_URI, NextHop, Policy, Reach, Reply, Why, asserted_identity,
    certificate_aor,
};
use siplab_sip::{HeaderName, Host, Method, SipUri};
use siplab_topology::{Lab, Role};
use siplab_transport::ConnInfo;

use crate::roles::{Lacks, TrustedPeer, pool_entry};

pub struct Edge {
    lab: Lab,
    /// The cloud edge trusts a company's on-prem edge for its tenant's users (hybrid).
    cloud: bool,
    /// Where clients and accepted federation go: the front end, or the members of the cloud
    /// pool, in the pool's order (see [`pool_entry`]).
    inside: Vec<SipUri>,
    /// The inside node's (or pool's) certificate names (requests from it go out), and the
    /// interface facing it: the only one the inside's assertions are taken on.
    inside_peer: TrustedPeer,
    inside_ips: Vec<IpAddr>,
    /// An on-prem edge's SIP domain and the hosting provider that serves its cloud users.
    domain: Option<String>,
    /// Its proxy FQDN and SIP port (section 5: "its configured proxy FQDN").
    hosting_provider: Option<(String, u16)>,
    /// The internal interface's address, whose DNS view the node resolves in.
    source: IpAddr,
}

impl Edge {
    pub fn new(lab: &Lab, node: &str) -> Result<Edge, crate::NodeError> {
        let lacks = Lacks(node);
        let n = lab.node(node).ok_or_else(|| lacks.what("a node entry"))?;
        let inside = n
            .frontend
            .as_ref()
            .ok_or_else(|| lacks.what("an inside node (front end or cloud pool)"))?;
        let mut uris = Vec::new();
        let mut names: Vec<String> = lab
            .pool(inside.as_str())
            .map(|p| p.fqdn.clone())
            .into_iter()
            .collect();
        let mut ips = Vec::new();
        let mut internal = None;
        for member in lab.members(inside.as_str()) {
            let m = member.name.as_str();
            let inside_if = lab
                .interfaces_of(m)
                .next()
                .ok_or_else(|| lacks.what(&format!("an interface of its inside node {m}")))?;
            let facing = lab
                .interfaces_of(node)
                .find(|i| i.network == inside_if.network)
                .ok_or_else(|| lacks.what(&format!("an interface on {m}'s network")))?;
            internal.get_or_insert(facing);
            let fqdn = inside_if
                .fqdns
                .first()
                .ok_or_else(|| lacks.what(&format!("an FQDN of {}", inside_if.name)))?;
            uris.push(SipUri::new(None, Host::named(fqdn), inside_if.ports.sip));
            names.extend(inside_if.fqdns.iter().cloned());
            ips.push(inside_if.ip());
        }
        let internal =
            internal.ok_or_else(|| lacks.what(&format!("an inside node in {inside}")))?;
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
        Ok(Edge {
            cloud: n.role == Role::CloudEdge,
            inside: uris,
            inside_peer: TrustedPeer {
                interface: Arc::from(internal.name.as_str()),
                names,
            },
            inside_ips: ips,
            source: internal.ip(),
            domain,
            hosting_provider,
            lab: lab.clone(),
        })
    }

    /// The inside member a request concerning `tenant` enters by (the one inside node when
    /// it is no pool).
    fn entry(&self, tenant: &str) -> SipUri {
        let i = pool_entry(tenant, self.inside.len());
        self.inside[i.min(self.inside.len() - 1)].clone()
    }

    /// The address whose DNS view this node resolves in.
    pub fn dns_source(&self) -> IpAddr {
        self.source
    }

    fn is_inside(&self, conn: &ConnInfo) -> bool {
        self.inside_peer.names_peer(conn)
    }

    /// Section 7: a federated request is accepted when the peer's certificate names the
    /// host that `_sipfederationtls._tcp` of the From domain points to (a cloud-only
    /// tenant's leads to the hosting provider), or the From domain is this edge's own and
    /// the peer its configured hosting provider. The cloud edge also accepts a company's
    /// on-prem edge carrying a request for one of its tenant's users (the hybrid partner of
    /// the To domain, as in rows 13 and 17).
    async fn check_federation(&self, req: &Inbound<'_>, reach: &impl Reach) -> Result<(), String> {
        let domain_of = |n: Result<siplab_sip::NameAddr, _>| {
            n.ok().and_then(|a| a.sip_uri().map(|u| u.host.to_string()))
        };
        let from = domain_of(req.msg.from()).ok_or("no From domain")?;
        let peer = &req.conn.identity;
        let edge_of = async |d: &str| reach.federation(d).await.ok().map(|(host, _)| host);
        if edge_of(&from).await.is_some_and(|h| peer.names_host(&h)) {
            return Ok(());
        }
        // The hosting provider this edge is configured with serves its own domain only: it
        // may not speak for any other (the article's question, answered: Office 365 cannot
        // pose as every SIP domain).
        if self
            .domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(&from))
            && let Some((hp, _)) = &self.hosting_provider
            && peer.names_host(hp)
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
        let expected = match edge_of(&from).await {
            Some(host) => host,
            None => format!("a _sipfederationtls._tcp.{from} record"),
        };
        let seen = match peer.dns_names.as_slice() {
            [] => peer.describe(),
            names => names.join(", "),
        };
        Err(format!(
            "a certificate for {seen} is neither the federation edge of {from} ({expected}) \
             nor its hosting provider here"
        ))
    }

    /// Whether a Route (or Request-URI) leads to the inside node: the front end, the cloud
    /// pool, or the pool member it names (`ms-fe`), which must be inside too.
    fn is_inside_uri(&self, uri: &SipUri) -> bool {
        match &*uri.route_host() {
            Host::Name(n) => self
                .inside_peer
                .names
                .iter()
                .any(|i| i.eq_ignore_ascii_case(n)),
            Host::Ip(ip) => self.inside_ips.contains(ip),
        }
    }

    /// In from a client or a federation peer, to `next` (the inside node): a client's
    /// request with the identity its certificate proves (the core has checked that From is
    /// that identity and removed every claim the client wrote), and for a REGISTER this
    /// edge's Path with the flow token of the client's connection (RFC 3327, RFC 5626).
    fn inward(&self, req: &Inbound<'_>, why: Why, next: SipUri) -> Decision {
        let mut f = Forward::to(NextHop::Uri(next));
        if let Some(aor) = certificate_aor(req.conn) {
            f.set
                .push((HeaderName::PAssertedIdentity, asserted_identity(&aor)));
            f.add_path = req.msg.method() == Some(Method::Register);
        }
        Decision::forward(why, f)
    }

    /// Out to another domain's edge or the hosting provider, with it as a pre-loaded Route
    /// (RFC 3261 8.1.2), and without identities asserted inside (RFC 3325 section 5).
    fn outward(&self, why: Why, host: &str, port: u16) -> Decision {
        let target = SipUri::new(None, Host::named(host), Some(port));
        let route = SipUri::tls(None, Host::named(host), Some(port));
        let mut f = Forward::preloaded(target, route);
        f.remove.push(HeaderName::PAssertedIdentity);
        Decision::forward(why, f)
    }
}

impl Policy for Edge {
    async fn route<R: Reach>(&self, req: &Inbound<'_>, reach: &R) -> Decision {
        let from_client = req.from_client();
        let from_inside = !from_client && self.is_inside(req.conn);
        // Anything from another server outside is checked before it may go anywhere.
        if !from_client
            && !from_inside
            && let Err(why) = self.check_federation(req, reach).await
        {
            return Decision::untrusted(why);
        }
        if from_inside {
            // On along its route set (out, or down the client flow our Path or Record-Route
            // named); nothing asserted inside leaves the trust domain.
            if let Some(next) = &req.next_route {
                let mut f = Forward::to(NextHop::Uri(next.clone()));
                if !self.is_inside_uri(next) {
                    f.remove.push(HeaderName::PAssertedIdentity);
                }
                return Decision::forward(Why::RouteSet, f);
            }
            if let Some(flow) = req.route_flow {
                return Decision::to(Why::ClientFlow, NextHop::Flow(flow));
            }
        } else {
            // From outside, a route set leads only inwards: the edge is the wall, and no
            // Route a client or a federation peer writes goes round it.
            if req.route_flow.is_some() {
                return Decision::untrusted(
                    "a request from outside may not be routed to a client's connection",
                );
            }
            if let Some(next) = &req.next_route {
                if !self.is_inside_uri(next) {
                    return Decision::untrusted(format!(
                        "a request from outside is routed only to {}, not to {next}",
                        self.inside_peer.names.join(" or ")
                    ));
                }
                return self.inward(req, Why::RouteSet, next.clone());
            }
        }
        if req.for_this_node {
            return match req.msg.method() {
                Some(Method::Options) => Decision::reply(Why::ThisNode, Reply::capabilities()),
                _ => Decision::refuse(404, "this is the edge, not a user"),
            };
        }
        let Some(ruri) = req.request_uri() else {
            return Decision::bad_request(NOT_SIP_URI);
        };
        if !from_inside {
            // A client signed in through us, or accepted federation: to the inside, which
            // knows its users; into a pool at the member the tenant concerned picks (the
            // client's own, or the Request-URI's, in the cloud).
            if self.is_inside_uri(ruri) {
                // The remote target of a dialog an inside member holds (its Contact).
                return self.inward(req, Why::Inward, ruri.clone());
            }
            // An on-prem edge's pool serves its one domain; the cloud's, every tenant.
            let client = certificate_aor(req.conn);
            let host;
            let tenant = match (&self.domain, &client) {
                (Some(domain), _) => domain.as_str(),
                (None, Some(aor)) => aor.domain(),
                (None, None) => {
                    host = ruri.host.to_string();
                    host.as_str()
                }
            };
            return self.inward(req, Why::Inward, self.entry(tenant));
        }
        // From the inside, out: the company's own users that reach the edge are hosted in
        // the cloud (shared address space); other domains are federation.
        let domain = ruri.host.to_string();
        if self.domain.as_deref() == Some(domain.as_str())
            && let Some((hp, port)) = &self.hosting_provider
        {
            return self.outward(Why::HostingProvider, hp, *port);
        }
        match reach.federation(&domain).await {
            Ok((host, port)) => self.outward(Why::Federation, &host, port),
            Err(e) => Decision::refuse(404, format!("no federation route to {domain}: {e}")),
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        self.inside_peer.is(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::testing::{Case, Expect, lab, run_table};

    /// One row per reason of section 5 and per refusal of section 7 the edge E1 gives.
    #[tokio::test]
    async fn routes_by_sections_5_and_7() {
        let lab = lab();
        let e1 = Edge::new(&lab, "E1").unwrap();
        let r1 = "fe01.contoso.test";
        let table = [
            Case::new("from a client outside: to the inside")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .expect(Why::Inward, Expect::To(r1)),
            Case::new("from an accepted federation peer: to the inside")
                .by_peer("sip.fabrikam.test", "E1x", "anna@fabrikam.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Inward, Expect::To(r1)),
            Case::new("from a federation peer that is not the From domain's edge")
                .by_peer("sip.fabrikam.test", "E1x", "tina@tailspin.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Untrusted, Expect::Status(403)),
            Case::new("from inside, another domain: its _sipfederationtls edge")
                .by_peer(r1, "E1i", "alice@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .expect(
                    Why::Federation,
                    Expect::Through("sip.fabrikam.test", "sip.fabrikam.test"),
                ),
            Case::new("from inside, a cloud user of the domain: the hosting provider")
                .by_peer(r1, "E1i", "alice@contoso.test")
                .request("MESSAGE", "sip:bella@contoso.test")
                .expect(
                    Why::HostingProvider,
                    Expect::Through("sipfed.online.lync.test", "sipfed.online.lync.test"),
                ),
            Case::new("from inside, a domain without a federation record")
                .by_peer(r1, "E1i", "alice@contoso.test")
                .request("MESSAGE", "sip:tina@nowhere.test")
                .expect(Why::Refused, Expect::Status(404)),
            Case::new("from inside, along the route set")
                .by_peer(r1, "E1i", "alice@contoso.test")
                .request("BYE", "sip:anna@fabrikam.test")
                .next_route("sip:sip.fabrikam.test:5061;lr")
                .expect(Why::RouteSet, Expect::To("sip.fabrikam.test")),
            Case::new("from inside, down the client flow our Path named")
                .by_peer(r1, "E1i", "anna@fabrikam.test")
                .request("MESSAGE", "sip:alice@127.0.0.1:5061")
                .route_flow()
                .expect(Why::ClientFlow, Expect::Flow),
            Case::new("from outside, along a route set to the inside")
                .by_client("alice@contoso.test")
                .request("BYE", "sip:anna@fabrikam.test")
                .next_route("sip:fe01.contoso.test:5061;lr")
                .expect(Why::RouteSet, Expect::To(r1)),
            Case::new("from outside, a Route leading anywhere but the inside")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .next_route("sip:sip.fabrikam.test:5061;lr")
                .expect(Why::Untrusted, Expect::Status(403)),
            Case::new("from outside, a pool Route whose member is no inside node")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .next_route("sip:pool01.contoso.test:5061;transport=tls;ms-fe=sip.fabrikam.test;lr")
                .expect(Why::Untrusted, Expect::Status(403)),
            Case::new("from outside, a Route naming another client's flow")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:adam@contoso.test")
                .route_flow()
                .expect(Why::Untrusted, Expect::Status(403)),
            Case::new("OPTIONS to the edge itself")
                .by_client("alice@contoso.test")
                .request("OPTIONS", "sip:sip.contoso.test")
                .for_this_node()
                .expect(Why::ThisNode, Expect::Status(200)),
            Case::new("MESSAGE to the edge itself")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:sip.contoso.test")
                .for_this_node()
                .expect(Why::Refused, Expect::Status(404)),
        ];
        run_table(&e1, &table).await;
        let hp = "sipfed.online.lync.test";
        let federated = [
            Case::new("the hosting provider, for this edge's own domain")
                .by_peer(hp, "E1x", "ben@contoso.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Inward, Expect::To(r1)),
            Case::new("the hosting provider, for a cloud-only tenant whose record names it")
                .by_peer(hp, "E1x", "nina@northwind.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Inward, Expect::To(r1)),
            Case::new("the hosting provider, posing as another hybrid domain")
                .by_peer(hp, "E1x", "berta@fabrikam.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Untrusted, Expect::Status(403)),
        ];
        run_table(&e1, &federated).await;
        // Assertions are taken only from the inside, on the interface facing it.
        let inside = |interface| crate::roles::testing::peer_conn(r1, interface);
        assert!(e1.trusts_assertion(&inside("E1i")));
        assert!(!e1.trusts_assertion(&inside("E1x")));
    }

    /// The cloud edge hands a request into the pool at the member the tenant concerned
    /// picks: a client's own tenant, else the Request-URI's.
    #[tokio::test]
    async fn the_cloud_edge_enters_the_pool_by_tenant() {
        let lab = lab();
        let ce = Edge::new(&lab, "CE").unwrap();
        let (cp1, cp2) = ("cpfe01.infra.lync.test", "cpfe02.infra.lync.test");
        let table = [
            Case::new("a contoso.test client: CP2")
                .by_client("ben@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .expect(Why::Inward, Expect::To(cp2)),
            Case::new("a northwind.test client: CP1")
                .by_client("nina@northwind.test")
                .request("MESSAGE", "sip:alice@contoso.test")
                .expect(Why::Inward, Expect::To(cp1)),
            Case::new("from a hybrid partner, for fabrikam.test: CP1")
                .by_peer("sip.fabrikam.test", "CEx", "anna@fabrikam.test")
                .request("MESSAGE", "sip:bruno@fabrikam.test")
                .expect(Why::Inward, Expect::To(cp1)),
            Case::new("in-dialog, to the Contact of a member, with no Route left")
                .by_peer("sip.fabrikam.test", "CEx", "anna@fabrikam.test")
                .request("SUBSCRIBE", "sip:cpfe02.infra.lync.test:5061;transport=tls")
                .expect(Why::Inward, Expect::To(cp2)),
            Case::new("in-dialog, along a Route naming the pool and its member")
                .by_client("ben@contoso.test")
                .request("BYE", "sip:anna@fabrikam.test")
                .next_route("sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=cpfe02.infra.lync.test;lr")
                .expect(Why::RouteSet, Expect::To("sippool01.infra.lync.test")),
        ];
        run_table(&ce, &table).await;
    }
}
