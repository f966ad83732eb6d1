//! The front end (R1, R2, and R1b beside R1 in contoso's pool): registrar and home server of
//! its company's on-premises users. In a pool each user is homed on one member: a client that
//! signs in at another member is sent to its home server (301), and what reaches a member for
//! another member's user, through the edge or from a user of its own, is passed on to it.

use std::net::IpAddr;

use siplab_proxy::{
    Decision, Inbound, NOT_SIP_URI, NextHop, Policy, REGISTER_TO_NOT_SIP, Reach, Reply, Why,
};
use siplab_sip::{HeaderName, Host, Method, NameAddr, SipUri, Uri};
use siplab_topology::{Lab, UserClass};
use siplab_transport::ConnInfo;

use crate::roles::{HomeEdge, Lacks, PoolPeers, home_user};

pub struct FrontEnd {
    lab: Lab,
    node: String,
    domain: String,
    /// Its edge: everything not delivered here leaves through it, and only it asserts.
    edge: HomeEdge,
    /// The other members of its pool (none for a front end of its own).
    pool: PoolPeers,
    /// The 301 Contact for cloud-hosted users.
    cloud_redirect: String,
}

impl FrontEnd {
    pub fn new(lab: &Lab, node: &str) -> Result<FrontEnd, crate::NodeError> {
        let lacks = Lacks(node);
        let n = lab.node(node).ok_or_else(|| lacks.what("a node entry"))?;
        let domain = n.domain.clone().ok_or_else(|| lacks.what("a SIP domain"))?;
        let redirect = n
            .cloud_redirect
            .as_ref()
            .ok_or_else(|| lacks.what("a cloud redirect (the hosting provider)"))?;
        let home = SipUri::tls(None, Host::named(&redirect.host), Some(redirect.port));
        Ok(FrontEnd {
            edge: HomeEdge::of(lab, node)?,
            pool: PoolPeers::of(lab, node)?,
            cloud_redirect: NameAddr::new(Uri::Sip(home)).to_string(),
            domain,
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }

    /// The address whose DNS view this node resolves in.
    pub fn dns_source(&self) -> IpAddr {
        self.edge.source
    }

    fn to_edge(&self, why: Why) -> Decision {
        Decision::to(why, NextHop::Uri(self.edge.uri.clone()))
    }
}

impl Policy for FrontEnd {
    async fn route<R: Reach>(&self, req: &Inbound<'_>, _reach: &R) -> Decision {
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
        let host = ruri.host.to_string();
        if ruri.user.is_none() && host != self.domain {
            return match method {
                Method::Options => Decision::reply(Why::ThisNode, Reply::capabilities()),
                _ => Decision::refuse(404, format!("{host} is this server, not a user")),
            };
        }
        if method == Method::Register {
            let Some(aor) = req.msg.to().ok().and_then(|t| t.sip_uri().map(SipUri::aor)) else {
                return Decision::bad_request(REGISTER_TO_NOT_SIP);
            };
            return match self.lab.user(&aor) {
                _ if host != self.domain => {
                    Decision::refuse(403, format!("{host} is not served here"))
                }
                None => Decision::refuse(404, format!("no user {aor}")),
                // A cloud-hosted user is told where its home is (section 4).
                Some(u) if u.class == UserClass::B => Decision::reply(
                    Why::CloudRedirect,
                    Reply::because(301, format!("{aor} is homed in the cloud"))
                        .with(HeaderName::Contact, self.cloud_redirect.clone()),
                ),
                Some(u) if u.home.as_str() == self.node => Decision::register(aor),
                // Homed on another member. Its own client is told where (Skype for Business
                // Server's 301, the home server first by q); one that came through the edge,
                // which it cannot leave, is proxied there.
                Some(u) => match self.pool.member(u.home.as_str()) {
                    None => Decision::refuse(403, format!("{aor} is not homed in this pool")),
                    Some(home) if self.trusts_assertion(req.conn) => PoolPeers::pass_to(home),
                    Some(home) => Decision::reply(
                        Why::HomeServerRedirect,
                        Reply::because(301, format!("{aor} is homed on {home}"))
                            .with_reason("Redirect request to Home Server")
                            .with(HeaderName::Contact, home_contact(home)),
                    ),
                },
            };
        }
        if host != self.domain {
            // Another domain: federation, through the edge.
            return self.to_edge(Why::OtherDomain);
        }
        let aor = ruri.aor();
        match self.lab.user(&aor) {
            None => Decision::refuse(404, format!("no user {aor}")),
            // Its own users: directly, or through the edge's Path, down their own flow.
            // Its presence is answered here, never by the user's client.
            Some(u) if u.home.as_str() == self.node => home_user(req, aor),
            // Homed on another member of the pool: passed on to it (the article's R1 -> R1);
            // else, shared SIP address space: homed in the cloud, reached via the edge.
            Some(u) => self
                .pool
                .pass_on(u.home.as_str())
                .unwrap_or_else(|| self.to_edge(Why::CloudHomed)),
        }
    }

    fn trusts_assertion(&self, conn: &ConnInfo) -> bool {
        self.edge.trusted.is(conn) || self.pool.trusted.is(conn)
    }
}

/// The Contact of a 301 to a user's home server: the primary registrar, ranked first.
fn home_contact(home: &SipUri) -> String {
    let mut uri = home.clone();
    uri.params.set("transport", Some("tls"));
    let mut contact = NameAddr::new(Uri::Sip(uri));
    contact.params.set("q", Some("0.7"));
    contact.to_string()
}

#[cfg(test)]
mod tests {
    use siplab_proxy::Why;

    use super::*;
    use crate::roles::testing::{Case, Expect, lab, run_table};

    /// One row per reason of section 5 (and per refusal) the front end R1 gives.
    #[tokio::test]
    async fn routes_by_section_5() {
        let lab = lab();
        let r1 = FrontEnd::new(&lab, "R1").unwrap();
        let table = [
            Case::new("MESSAGE to a user homed here, signed in")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:adam@contoso.test")
                .registered("adam@contoso.test")
                .expect(Why::HomeUser, Expect::Flow),
            Case::new("MESSAGE to a user homed here, not signed in")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:adam@contoso.test")
                .expect(Why::Refused, Expect::Status(480)),
            Case::new("MESSAGE to a cloud-homed user of the domain")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:bella@contoso.test")
                .expect(Why::CloudHomed, Expect::To("edge01-int.contoso.test")),
            Case::new("MESSAGE to another domain")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:anna@fabrikam.test")
                .expect(Why::OtherDomain, Expect::To("edge01-int.contoso.test")),
            Case::new("MESSAGE to nobody of the domain")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:nobody@contoso.test")
                .expect(Why::Refused, Expect::Status(404)),
            Case::new("REGISTER of a user homed here")
                .by_client("adam@contoso.test")
                .request("REGISTER", "sip:contoso.test")
                .to("adam@contoso.test")
                .expect(Why::Registrar, Expect::Register("adam@contoso.test")),
            Case::new("REGISTER of a cloud-homed user")
                .by_client("bella@contoso.test")
                .request("REGISTER", "sip:contoso.test")
                .to("bella@contoso.test")
                .expect(Why::CloudRedirect, Expect::Status(301)),
            Case::new("REGISTER for another domain")
                .by_client("anna@fabrikam.test")
                .request("REGISTER", "sip:anna@fabrikam.test")
                .to("anna@fabrikam.test")
                .expect(Why::Refused, Expect::Status(403)),
            Case::new("SUBSCRIBE to a user homed here")
                .by_client("alice@contoso.test")
                .request("SUBSCRIBE", "sip:adam@contoso.test")
                .expect(Why::PresenceServer, Expect::Presence("adam@contoso.test")),
            Case::new("OPTIONS to the server itself")
                .by_client("alice@contoso.test")
                .request("OPTIONS", "sip:fe01.contoso.test")
                .expect(Why::ThisNode, Expect::Status(200)),
            Case::new("MESSAGE to the server itself")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:fe01.contoso.test")
                .expect(Why::Refused, Expect::Status(404)),
            Case::new("in-dialog, along the route set")
                .by_client("alice@contoso.test")
                .request("BYE", "sip:adam@contoso.test")
                .next_route("sip:edge01-int.contoso.test:5061;lr")
                .expect(Why::RouteSet, Expect::To("edge01-int.contoso.test")),
            Case::new("in-dialog, down the flow a Route of ours named")
                .by_client("alice@contoso.test")
                .request("BYE", "sip:adam@contoso.test")
                .route_flow()
                .expect(Why::ClientFlow, Expect::Flow),
            Case::new("in-dialog, to a contact registered here")
                .by_client("alice@contoso.test")
                .request("BYE", "sip:adam@127.0.0.1:5061;transport=tls")
                .registered("adam@contoso.test")
                .expect(Why::RegisteredContact, Expect::Flow),
            Case::new("in-dialog SUBSCRIBE of a subscription served here")
                .by_client("alice@contoso.test")
                .request("SUBSCRIBE", "sip:fe01.contoso.test:5061;transport=tls")
                .in_subscription()
                .expect(Why::Subscription, Expect::InSubscription),
        ];
        run_table(&r1, &table).await;
        // amber is homed on R1b, R1's fellow member of pool01.contoso.test.
        let fe02 = "fe02.contoso.test";
        let pool = [
            Case::new("REGISTER from her own client at the other member: told her home")
                .by_client("amber@contoso.test")
                .request("REGISTER", "sip:contoso.test")
                .to("amber@contoso.test")
                .expect(Why::HomeServerRedirect, Expect::Status(301)),
            Case::new("REGISTER through the edge, which she cannot leave: passed on")
                .by_peer("edge01-int.contoso.test", "R1", "amber@contoso.test")
                .asserted("amber@contoso.test")
                .request("REGISTER", "sip:contoso.test")
                .to("amber@contoso.test")
                .expect(Why::PoolMember, Expect::To(fe02)),
            Case::new("MESSAGE to a user homed on the other member: passed on (R1 -> R1)")
                .by_client("alice@contoso.test")
                .request("MESSAGE", "sip:amber@contoso.test")
                .expect(Why::PoolMember, Expect::To(fe02)),
            Case::new("in a dialog the other member holds: to it")
                .by_client("alice@contoso.test")
                .request("SUBSCRIBE", "sip:fe02.contoso.test:5061;transport=tls")
                .expect(Why::PoolMember, Expect::To(fe02)),
        ];
        run_table(&r1, &pool).await;
        let home = SipUri::new(None, Host::named(fe02), Some(5061));
        assert_eq!(
            home_contact(&home),
            "<sip:fe02.contoso.test:5061;transport=tls>;q=0.7"
        );
    }
}
