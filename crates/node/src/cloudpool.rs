//! A cloud pool server (CP1, CP2): registrar and home server of some of the cloud-hosted
//! users of every tenant, reached only through the cloud edge; what is for a user homed on
//! another member of the pool, or from one going out, it passes on to that member.

use std::net::IpAddr;

use siplab_proxy::{
    Decision, Forward, Inbound, NOT_SIP_URI, Policy, REGISTER_TO_NOT_SIP, Reach, Reply, Why,
};
use siplab_sip::{Aor, HeaderName, Host, Method, SipUri};
use siplab_topology::{Federation, Lab};
use siplab_transport::ConnInfo;

use crate::roles::{HomeEdge, PoolPeers, home_user};

pub struct CloudPool {
    lab: Lab,
    node: String,
    /// The cloud edge: the pool's only way in and out, and the only peer that asserts its
    /// clients' identities.
    edge: HomeEdge,
    /// The pool's other members.
    pool: PoolPeers,
}

impl CloudPool {
    pub fn new(lab: &Lab, node: &str) -> Result<CloudPool, crate::NodeError> {
        Ok(CloudPool {
            edge: HomeEdge::of(lab, node)?,
            pool: PoolPeers::of(lab, node)?,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    /// The address whose DNS view this node resolves in.
    pub fn dns_source(&self) -> IpAddr {
        self.edge.source
    }

    /// The pool member that homes `aor`: this node, another member, or none.
    fn home_of(&self, aor: &str) -> Option<&str> {
        let home = self.lab.user(aor)?.home.as_str();
        (home == self.node || self.pool.member(home).is_some()).then_some(home)
    }

    /// The identity the cloud edge asserted for a request from one of its clients.
    fn asserted(&self, req: &Inbound<'_>) -> Option<Aor> {
        if !self.trusts_assertion(req.conn) {
            return None;
        }
        let ids = req.msg.addresses(HeaderName::PAssertedIdentity).ok()?;
        ids.iter().find_map(|id| id.sip_uri().map(SipUri::aor))
    }
}

impl Policy for CloudPool {
    async fn route<R: Reach>(&self, req: &Inbound<'_>, reach: &R) -> Decision {
        if let Some(in_dialog) = req.in_dialog(|h| self.lab.domain(h).is_some()) {
            return in_dialog;
        }
        let Some(ruri) = req.request_uri() else {
            return Decision::bad_request(NOT_SIP_URI);
        };
        let method = req.msg.method().unwrap_or(Method::Options);
        if let Some(passed) = self.pool.named_by(ruri) {
            return passed;
        }
        if ruri.user.is_none() && self.lab.domain(&ruri.host.to_string()).is_none() {
            return match method {
                Method::Options => Decision::reply(Why::ThisNode, Reply::capabilities()),
                _ => Decision::refuse(404, "this is the cloud pool, not a user"),
            };
        }
        if method == Method::Register {
            let Some(aor) = req.msg.to().ok().and_then(|t| t.sip_uri().map(SipUri::aor)) else {
                return Decision::bad_request(REGISTER_TO_NOT_SIP);
            };
            return match self.lab.user(&aor).map(|u| u.home.as_str()) {
                None => Decision::refuse(404, format!("no user {aor}")),
                Some(home) if home == self.node => Decision::register(aor),
                Some(home) => self
                    .pool
                    .pass_on(home)
                    .unwrap_or_else(|| Decision::refuse(403, format!("{aor} is not hosted here"))),
            };
        }
        // Section 5: the pool's own users are delivered by their home member, to a sender of
        // another tenant only when it came from outside (federation or a hybrid partner,
        // through the cloud edge). Everyone else a cloud user writes to is reached from the
        // sender's home member: through the sender's tenant's on-prem edge, the hybrid
        // partner (rows 5 to 8 and 15 to 17), or for a `direct` tenant straight to the
        // partner's federation edge (rows 19 and 21).
        let target = ruri.aor();
        let sender = self.asserted(req);
        let host = ruri.host.to_string();
        if let Some(home) = self.home_of(&target)
            && sender.as_ref().is_none_or(|s| s.domain() == host)
        {
            return self
                .pool
                .pass_on(home)
                .unwrap_or_else(|| home_user(req, target));
        }
        let Some(sender) = sender else {
            return Decision::refuse(404, format!("no hosted user {target}"));
        };
        if let Some(passed) = self.home_of(&sender).and_then(|h| self.pool.pass_on(h)) {
            return passed;
        }
        let tenant = sender.domain();
        let (why, domain) = match self.lab.domain(tenant).map(|d| d.federation) {
            Some(Federation::Direct) => (Why::DirectFederation, host.as_str()),
            _ => (Why::HybridPartner, tenant),
        };
        match reach.federation(domain).await {
            Ok((host, port)) => {
                let partner = SipUri::tls(None, Host::named(&host), Some(port));
                Decision::forward(why, Forward::preloaded(self.edge.uri.clone(), partner))
            }
            Err(e) => Decision::refuse(404, format!("no federation edge for {domain}: {e}")),
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        self.edge.trusted.is(conn) || self.pool.trusted.is(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::testing::{Case, Expect, lab, run_table};

    /// One row per reason of section 5 (and per refusal) the cloud pool gives, at CP2: the
    /// home of contoso.test's and northwind.test's cloud users; fabrikam.test's are on CP1.
    #[tokio::test]
    async fn routes_by_section_5() {
        let lab = lab();
        let cp = CloudPool::new(&lab, "CP2").unwrap();
        let ce = "sipedge01.infra.lync.test";
        let cp1 = "cpfe01.infra.lync.test";
        let from_ce = |from| Case::new("").by_peer(ce, "CP2", from);
        let rows = [
            (
                "a cloud user to a signed-in cloud user of its tenant",
                from_ce("bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("MESSAGE", "sip:ben@contoso.test")
                    .registered("ben@contoso.test")
                    .expect(Why::HomeUser, Expect::Flow),
            ),
            (
                "a cloud user to a cloud user of its tenant, not signed in",
                from_ce("bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("MESSAGE", "sip:ben@contoso.test")
                    .expect(Why::Refused, Expect::Status(480)),
            ),
            (
                "a cloud user to an on-prem user of its tenant: the hybrid partner",
                from_ce("bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("MESSAGE", "sip:alice@contoso.test")
                    .expect(Why::HybridPartner, Expect::Through(ce, "sip.contoso.test")),
            ),
            (
                "a cloud user to a cloud user of another tenant: its own hybrid partner",
                from_ce("bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("MESSAGE", "sip:berta@fabrikam.test")
                    .expect(Why::HybridPartner, Expect::Through(ce, "sip.contoso.test")),
            ),
            (
                "from federation, through the cloud edge: to a cloud user",
                from_ce("anna@fabrikam.test")
                    .request("MESSAGE", "sip:bella@contoso.test")
                    .registered("bella@contoso.test")
                    .expect(Why::HomeUser, Expect::Flow),
            ),
            (
                "from federation, to a user not hosted here",
                from_ce("anna@fabrikam.test")
                    .request("MESSAGE", "sip:alice@contoso.test")
                    .expect(Why::Refused, Expect::Status(404)),
            ),
            (
                "from federation, to a cloud user homed on the other member: passed on",
                from_ce("anna@fabrikam.test")
                    .request("MESSAGE", "sip:berta@fabrikam.test")
                    .expect(Why::PoolMember, Expect::To(cp1)),
            ),
            (
                "a cloud user homed on the other member writes out: passed on to its home",
                from_ce("berta@fabrikam.test")
                    .asserted("berta@fabrikam.test")
                    .request("MESSAGE", "sip:anna@fabrikam.test")
                    .expect(Why::PoolMember, Expect::To(cp1)),
            ),
            (
                "a user of a direct tenant to another domain: the partner's federation edge",
                from_ce("nina@northwind.test")
                    .asserted("nina@northwind.test")
                    .request("MESSAGE", "sip:alice@contoso.test")
                    .expect(
                        Why::DirectFederation,
                        Expect::Through(ce, "sip.contoso.test"),
                    ),
            ),
            (
                "passed on by the other member, its assertion holds",
                Case::new("")
                    .by_peer(cp1, "CP2", "nina@northwind.test")
                    .asserted("nina@northwind.test")
                    .request("MESSAGE", "sip:anna@fabrikam.test")
                    .expect(
                        Why::DirectFederation,
                        Expect::Through(ce, "sip.fabrikam.test"),
                    ),
            ),
            (
                "a user of a direct tenant to a domain without a federation record",
                from_ce("nina@northwind.test")
                    .asserted("nina@northwind.test")
                    .request("MESSAGE", "sip:tina@nowhere.test")
                    .expect(Why::Refused, Expect::Status(404)),
            ),
            (
                "an assertion on the wrong interface is no identity",
                Case::new("")
                    .by_peer(ce, "outside", "bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("MESSAGE", "sip:alice@contoso.test")
                    .expect(Why::Refused, Expect::Status(404)),
            ),
            (
                "REGISTER of a cloud user",
                from_ce("bella@contoso.test")
                    .asserted("bella@contoso.test")
                    .request("REGISTER", "sip:contoso.test")
                    .to("bella@contoso.test")
                    .expect(Why::Registrar, Expect::Register("bella@contoso.test")),
            ),
            (
                "REGISTER of a cloud user homed on the other member: passed on",
                from_ce("berta@fabrikam.test")
                    .asserted("berta@fabrikam.test")
                    .request("REGISTER", "sip:fabrikam.test")
                    .to("berta@fabrikam.test")
                    .expect(Why::PoolMember, Expect::To(cp1)),
            ),
            (
                "REGISTER of an on-prem user",
                from_ce("alice@contoso.test")
                    .request("REGISTER", "sip:contoso.test")
                    .to("alice@contoso.test")
                    .expect(Why::Refused, Expect::Status(403)),
            ),
            (
                "SUBSCRIBE to a cloud user",
                from_ce("anna@fabrikam.test")
                    .request("SUBSCRIBE", "sip:bella@contoso.test")
                    .expect(Why::PresenceServer, Expect::Presence("bella@contoso.test")),
            ),
            (
                "in a dialog the other member holds: passed on to it",
                from_ce("anna@fabrikam.test")
                    .request("SUBSCRIBE", "sip:cpfe01.infra.lync.test:5061;transport=tls")
                    .expect(Why::PoolMember, Expect::To(cp1)),
            ),
            (
                "OPTIONS to the pool itself",
                from_ce("anna@fabrikam.test")
                    .request("OPTIONS", "sip:cpfe02.infra.lync.test")
                    .expect(Why::ThisNode, Expect::Status(200)),
            ),
        ];
        let table: Vec<Case> = rows.into_iter().map(|(what, c)| c.named(what)).collect();
        run_table(&cp, &table).await;
    }
}
