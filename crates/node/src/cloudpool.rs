//! The cloud pool (CP): registrar and home server of every cloud-hosted user of every
//! tenant, reached only through the cloud edge.

use std::net::IpAddr;

use siplab_proxy::{
    Decision, Forward, Inbound, NOT_SIP_URI, Policy, REGISTER_TO_NOT_SIP, Reach, Reply, Why,
};
use siplab_sip::{Aor, HeaderName, Host, Method, SipUri};
use siplab_topology::Lab;
use siplab_transport::ConnInfo;

use crate::roles::{HomeEdge, home_user};

pub struct CloudPool {
    lab: Lab,
    node: String,
    /// The cloud edge: the pool's only way in and out, and the only peer that asserts its
    /// clients' identities.
    edge: HomeEdge,
}

impl CloudPool {
    pub fn new(lab: &Lab, node: &str) -> Result<CloudPool, crate::NodeError> {
        Ok(CloudPool {
            edge: HomeEdge::of(lab, node)?,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    /// The address whose DNS view this node resolves in.
    pub fn dns_source(&self) -> IpAddr {
        self.edge.source
    }

    fn is_home(&self, aor: &str) -> bool {
        self.lab
            .user(aor)
            .is_some_and(|u| u.home.as_str() == self.node)
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
            return match self.lab.user(&aor) {
                None => Decision::refuse(404, format!("no user {aor}")),
                Some(_) if !self.is_home(&aor) => {
                    Decision::refuse(403, format!("{aor} is not hosted here"))
                }
                Some(_) => Decision::register(aor),
            };
        }
        // Section 5: its own users are delivered here, to a sender of another tenant only
        // when it came from outside (federation or a hybrid partner, through the cloud
        // edge); everyone else a cloud user writes to is reached through the sender's
        // tenant's on-prem edge, the hybrid partner (rows 5 to 8 and 15 to 17).
        let target = ruri.aor();
        let sender = self.asserted(req);
        let host = ruri.host.to_string();
        if self.is_home(&target) && sender.as_ref().is_none_or(|s| s.domain() == host) {
            return home_user(req, target);
        }
        let Some(sender) = sender else {
            return Decision::refuse(404, format!("no hosted user {target}"));
        };
        let tenant = sender.domain();
        match reach.federation(tenant).await {
            Ok((host, port)) => {
                let partner = SipUri::tls(None, Host::named(&host), Some(port));
                Decision::forward(
                    Why::HybridPartner,
                    Forward::preloaded(self.edge.uri.clone(), partner),
                )
            }
            Err(e) => Decision::refuse(404, format!("no on-prem edge for {tenant}: {e}")),
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        self.edge.trusted.is(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::testing::{Case, Expect, lab, run_table};

    /// One row per reason of section 5 (and per refusal) the cloud pool gives.
    #[tokio::test]
    async fn routes_by_section_5() {
        let lab = lab();
        let cp = CloudPool::new(&lab, "CP").unwrap();
        let ce = "sipedge01.infra.lync.test";
        let from_ce = |from| Case::new("").by_peer(ce, "CP", from);
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
                "OPTIONS to the pool itself",
                from_ce("anna@fabrikam.test")
                    .request("OPTIONS", "sip:sippool01.infra.lync.test")
                    .expect(Why::ThisNode, Expect::Status(200)),
            ),
        ];
        let table: Vec<Case> = rows.into_iter().map(|(what, c)| c.named(what)).collect();
        run_table(&cp, &table).await;
    }
}
