//! What the three roles share: naming what the topology lacks for a role, the peer each
//! trusts, a home server's edge; and, for their unit tests, a table runner with a fake inbound request.

use std::net::IpAddr;
use std::sync::Arc;

use siplab_proxy::{Decision, Inbound, NextHop, Why};
use siplab_sip::{Aor, Host, SipUri};
use siplab_topology::Lab;
use siplab_transport::ConnInfo;

use crate::NodeError;

/// Names what the topology lacks for the role of a node.
pub(crate) struct Lacks<'a>(pub &'a str);

impl Lacks<'_> {
    pub fn what(&self, what: &str) -> NodeError {
        NodeError::Lacks {
            node: self.0.to_owned(),
            what: what.to_owned(),
        }
    }
}

/// The one peer a role takes assertions (P-Asserted-Identity) from: a server whose
/// certificate names one of `names`, on this node's interface `interface` that faces it.
pub(crate) struct TrustedPeer {
    pub interface: Arc<str>,
    pub names: Vec<String>,
}

impl TrustedPeer {
    /// Whether `conn` is that peer, on that interface.
    pub fn is(&self, conn: &ConnInfo) -> bool {
        *conn.interface == *self.interface && self.names_peer(conn)
    }

    /// Whether `conn`'s certificate names that peer, on whatever interface.
    pub fn names_peer(&self, conn: &ConnInfo) -> bool {
        self.names.iter().any(|n| conn.identity.names_host(n))
    }
}

/// A home server's edge (R1's E1, CP's CE) as the home server sees it: the edge's interface
/// on the home server's network, the only way in and out, and the only asserting peer.
pub(crate) struct HomeEdge {
    pub uri: SipUri,
    pub trusted: TrustedPeer,
    /// The home server's own address, whose DNS view it resolves in.
    pub source: IpAddr,
}

impl HomeEdge {
    pub fn of(lab: &Lab, node: &str) -> Result<HomeEdge, NodeError> {
        let lacks = Lacks(node);
        let n = lab.node(node).ok_or_else(|| lacks.what("a node entry"))?;
        let ours = lab
            .interfaces_of(node)
            .next()
            .ok_or_else(|| lacks.what("an interface"))?;
        let edge = n.edge.as_ref().ok_or_else(|| lacks.what("an edge"))?;
        let edge_if = lab
            .interfaces_of(edge.as_str())
            .find(|i| i.network == ours.network)
            .ok_or_else(|| lacks.what(&format!("an interface of {edge} on its network")))?;
        let fqdn = edge_if
            .fqdns
            .first()
            .ok_or_else(|| lacks.what(&format!("an FQDN of {}", edge_if.name)))?;
        Ok(HomeEdge {
            uri: SipUri::new(None, Host::named(fqdn), edge_if.ports.sip),
            trusted: TrustedPeer {
                interface: Arc::from(ours.name.as_str()),
                names: edge_if.fqdns.clone(),
            },
            source: ours.ip(),
        })
    }
}

/// The other members of a registrar's pool (none for a node in no pool): where a request for
/// a user homed on one of them is passed on, and peers whose assertions count, since a member
/// passes on what the edge asserted.
pub(crate) struct PoolPeers {
    /// Member name and URI, in the pool's order.
    pub members: Vec<(String, SipUri)>,
    pub trusted: TrustedPeer,
}

impl PoolPeers {
    pub fn of(lab: &Lab, node: &str) -> Result<PoolPeers, NodeError> {
        let lacks = Lacks(node);
        let ours = lab
            .interfaces_of(node)
            .next()
            .ok_or_else(|| lacks.what("an interface"))?;
        let mut members = Vec::new();
        let mut names = Vec::new();
        let others = lab.pool_of(node).into_iter().flat_map(|p| &p.members);
        for member in others.filter(|m| *m != node) {
            let m = member.as_str();
            let iface = lab
                .interface_on(m, &ours.network)
                .ok_or_else(|| lacks.what(&format!("an interface of {m} on its network")))?;
            let fqdn = iface
                .fqdns
                .first()
                .ok_or_else(|| lacks.what(&format!("an FQDN of {}", iface.name)))?;
            members.push((
                m.to_owned(),
                SipUri::new(None, Host::named(fqdn), iface.ports.sip),
            ));
            names.extend(iface.fqdns.iter().cloned());
        }
        Ok(PoolPeers {
            members,
            trusted: TrustedPeer {
                interface: Arc::from(ours.name.as_str()),
                names,
            },
        })
    }

    /// The member `home` names, when it is another member of this pool.
    pub fn member(&self, home: &str) -> Option<&SipUri> {
        self.members.iter().find(|(m, _)| m == home).map(|(_, u)| u)
    }

    /// On to the member a Request-URI names (its Contact, in a dialog that member holds);
    /// hosts compare as parsed, lower-cased.
    pub fn named_by(&self, uri: &SipUri) -> Option<Decision> {
        let (_, member) = self.members.iter().find(|(_, m)| m.host == uri.host)?;
        Some(PoolPeers::pass_to(member))
    }

    /// On to the member that homes the user concerned, when it is another member.
    pub fn pass_on(&self, home: &str) -> Option<Decision> {
        self.member(home).map(PoolPeers::pass_to)
    }

    /// On to `member`.
    pub fn pass_to(member: &SipUri) -> Decision {
        Decision::to(Why::PoolMember, NextHop::Uri(member.clone()))
    }
}

/// The member of a pool of `members` an edge hands a request concerning `tenant` to: FNV-1a
/// of the lower-cased domain, reduced to the range by multiplication (the high bits, which
/// FNV spreads well, unlike its low ones). A tenant's requests always enter at the same
/// member; that member passes on what is for users homed elsewhere.
pub(crate) fn pool_entry(tenant: &str, members: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tenant.bytes().map(|b| b.to_ascii_lowercase()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let reduced = (u128::from(hash) * members as u128) >> 64;
    usize::try_from(reduced).unwrap_or(0)
}

/// A user homed on this node: its presence answered here, anything else delivered down the
/// flow it registered on, directly or through its edge's Path (section 5), when signed in.
pub(crate) fn home_user(req: &Inbound<'_>, aor: Aor) -> Decision {
    if req.for_home_server() {
        return Decision::presence(aor);
    }
    match req.location.lookup(&aor) {
        Some(b) => Decision::forward(Why::HomeUser, b.forward()),
        None => Decision::refuse(480, format!("{aor} is not signed in")),
    }
}

#[cfg(test)]
mod tests {
    use super::pool_entry;

    /// The entries lab.toml's homes are chosen by: contoso.test enters the cloud pool at its
    /// second member, fabrikam.test and northwind.test at the first; one member takes all.
    #[test]
    fn a_tenant_enters_a_pool_at_one_member() {
        assert_eq!(pool_entry("contoso.test", 2), 1);
        assert_eq!(pool_entry("CONTOSO.test", 2), 1);
        assert_eq!(pool_entry("fabrikam.test", 2), 0);
        assert_eq!(pool_entry("northwind.test", 2), 0);
        assert_eq!(pool_entry("contoso.test", 1), 0);
        assert_eq!(pool_entry("anything", 0), 0);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A role's routing as a table: each row a fake inbound request (no sockets), the
    //! reason the role must give and what it must do.

    use std::net::{IpAddr, SocketAddr};
    use std::sync::Arc;

    use siplab_proxy::{Action, ExpiryBounds, Inbound, Location, NextHop, Policy, Reach, Why};
    use siplab_sip::{Message, SipUri};
    use siplab_topology::Lab;
    use siplab_transport::{ConnInfo, FlowToken, PeerIdentity};

    pub fn lab() -> Lab {
        Lab::reference().expect("the reference topology loads")
    }

    /// The lab's federation records, without a DNS server.
    pub struct FakeReach;

    impl Reach for FakeReach {
        async fn resolve(&self, host: &str, _port: Option<u16>) -> Result<SocketAddr, String> {
            Err(format!("{host}: no look-ups in a unit test"))
        }

        async fn federation(&self, domain: &str) -> Result<(String, u16), String> {
            match domain {
                "contoso.test" => Ok(("sip.contoso.test".into(), 5061)),
                "fabrikam.test" => Ok(("sip.fabrikam.test".into(), 5061)),
                "northwind.test" => Ok(("sipfed.online.lync.test".into(), 5061)),
                _ => Err(format!("no _sipfederationtls record for {domain}")),
            }
        }

        fn interface_towards(&self, _ip: IpAddr) -> Option<Arc<str>> {
            None
        }
    }

    /// What a row expects the role to do.
    #[derive(Debug, Clone, Copy)]
    pub enum Expect {
        /// Down a client's flow.
        Flow,
        /// To this host.
        To(&'static str),
        /// To the first host, with a pre-loaded Route to the second.
        Through(&'static str, &'static str),
        Status(u16),
        Register(&'static str),
        Presence(&'static str),
        InSubscription,
    }

    /// One row.
    #[derive(Debug, Clone)]
    pub struct Case {
        what: &'static str,
        method: &'static str,
        ruri: &'static str,
        from: &'static str,
        to: Option<&'static str>,
        client: Option<&'static str>,
        peer: Option<(&'static str, &'static str)>,
        asserted: Option<&'static str>,
        registered: Option<&'static str>,
        next_route: Option<&'static str>,
        route_flow: bool,
        in_subscription: bool,
        for_this_node: bool,
        expect: Option<(Why, Expect)>,
    }

    impl Case {
        pub fn new(what: &'static str) -> Case {
            Case {
                what,
                method: "OPTIONS",
                ruri: "sip:nobody.test",
                from: "nobody@nobody.test",
                to: None,
                client: None,
                peer: None,
                asserted: None,
                registered: None,
                next_route: None,
                route_flow: false,
                in_subscription: false,
                for_this_node: false,
                expect: None,
            }
        }

        pub fn named(mut self, what: &'static str) -> Case {
            self.what = what;
            self
        }

        pub fn request(mut self, method: &'static str, ruri: &'static str) -> Case {
            self.method = method;
            self.ruri = ruri;
            self
        }

        /// From a user's client with this AOR's certificate (and From).
        pub fn by_client(mut self, aor: &'static str) -> Case {
            self.client = Some(aor);
            self.from = aor;
            self
        }

        /// From a server whose certificate names `host`, on the node's interface `interface`,
        /// for a user `from`.
        pub fn by_peer(
            mut self,
            host: &'static str,
            interface: &'static str,
            from: &'static str,
        ) -> Case {
            self.peer = Some((host, interface));
            self.from = from;
            self
        }

        pub fn asserted(mut self, aor: &'static str) -> Case {
            self.asserted = Some(aor);
            self
        }

        pub fn to(mut self, aor: &'static str) -> Case {
            self.to = Some(aor);
            self
        }

        /// With `aor` registered here, directly on a flow of its own.
        pub fn registered(mut self, aor: &'static str) -> Case {
            self.registered = Some(aor);
            self
        }

        pub fn next_route(mut self, uri: &'static str) -> Case {
            self.next_route = Some(uri);
            self
        }

        pub fn route_flow(mut self) -> Case {
            self.route_flow = true;
            self
        }

        pub fn in_subscription(mut self) -> Case {
            self.in_subscription = true;
            self
        }

        /// The Request-URI names the node itself (the core tells it from the node's names).
        pub fn for_this_node(mut self) -> Case {
            self.for_this_node = true;
            self
        }

        pub fn expect(mut self, why: Why, expect: Expect) -> Case {
            self.expect = Some((why, expect));
            self
        }

        fn message(&self, extra: &str) -> Message {
            let (m, to) = (self.method, self.to.unwrap_or("nobody@nobody.test"));
            let to = match self.ruri.strip_prefix("sip:") {
                Some(u) if self.to.is_none() && u.contains('@') && !u.contains(';') => u,
                _ => to,
            };
            let text = format!(
                "{m} {} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.9:5061;branch=z9hG4bKrow\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{}>;tag=1\r\nTo: <sip:{to}>\r\n\
                 Call-ID: row\r\nCSeq: 1 {m}\r\n{extra}Content-Length: 0\r\n\r\n",
                self.ruri, self.from
            );
            Message::parse(text.into()).expect("a row's request parses")
        }
    }

    fn conn(identity: PeerIdentity, interface: &str) -> ConnInfo {
        let addr: SocketAddr = "127.0.0.9:5061".parse().expect("an address");
        ConnInfo {
            id: 1,
            flow: FlowToken::parse("1x1").expect("a flow token"),
            interface: Arc::from(interface),
            local: addr,
            peer: addr,
            identity,
            inbound: true,
        }
    }

    /// A connection from a server whose certificate names `host`, on the node's `interface`.
    pub fn peer_conn(host: &str, interface: &str) -> ConnInfo {
        let identity = PeerIdentity {
            dns_names: vec![host.to_owned()],
            ..PeerIdentity::default()
        };
        conn(identity, interface)
    }

    /// Runs every row through `role`'s `route` and checks its reason and action.
    pub async fn run_table(role: &impl Policy, table: &[Case]) {
        for case in table {
            let what = case.what;
            let conn = match (case.client, case.peer) {
                (Some(aor), _) => {
                    let identity = PeerIdentity {
                        uris: vec![format!("sip:{aor}")],
                        ..PeerIdentity::default()
                    };
                    conn(identity, "outside")
                }
                (None, Some((host, interface))) => peer_conn(host, interface),
                (None, None) => conn(PeerIdentity::default(), "outside"),
            };
            let location = Location::new(ExpiryBounds::default());
            let other_flow = FlowToken::parse("2x2").expect("a flow token");
            if let Some(aor) = case.registered {
                let user = aor.split('@').next().unwrap_or(aor);
                let reg = Case::new("registration")
                    .request("REGISTER", "sip:contoso.test")
                    .by_client(aor)
                    .to(aor)
                    .message(&format!(
                        "Contact: <sip:{user}@127.0.0.1:5061;transport=tls>\r\nExpires: 600\r\n"
                    ));
                let resp = location.register(&reg, &siplab_sip::Aor::named(aor), &other_flow);
                assert_eq!(resp.status(), Some(200), "{what}: the registration");
            }
            let mut extra = String::new();
            if let Some(id) = case.asserted {
                extra.push_str(&format!("P-Asserted-Identity: <sip:{id}>\r\n"));
            }
            if case.method == "SUBSCRIBE" {
                extra.push_str("Event: presence\r\n");
            }
            let msg = case.message(&extra);
            let inbound = Inbound {
                msg: &msg,
                conn: &conn,
                route_flow: case.route_flow.then_some(other_flow),
                next_route: case
                    .next_route
                    .map(|u| SipUri::parse(u).expect("a row's Route parses")),
                for_this_node: case.for_this_node,
                in_subscription: case.in_subscription,
                location: &location,
            };
            let decision = role.route(&inbound, &FakeReach).await;
            let Some((why, expect)) = case.expect else {
                panic!("{what}: the row expects nothing");
            };
            assert_eq!(decision.why, why, "{what}: {decision:?}");
            let host = |u: &SipUri| u.host.to_string();
            let ok = match (&decision.action, expect) {
                (Action::Forward(f), Expect::Flow) => matches!(f.next_hop, NextHop::Flow(_)),
                (Action::Forward(f), Expect::To(h)) => {
                    matches!(&f.next_hop, NextHop::Uri(u) if host(u) == h)
                }
                (Action::Forward(f), Expect::Through(via, route)) => {
                    matches!(&f.next_hop, NextHop::Uri(u) if host(u) == via)
                        && f.routes.first().is_some_and(|r| r.contains(route))
                }
                (Action::Reply(r), Expect::Status(code)) => r.code == code,
                (Action::Register(a), Expect::Register(aor)) => *a == aor,
                (Action::Presence(Some(a)), Expect::Presence(aor)) => *a == aor,
                (Action::Presence(None), Expect::InSubscription) => true,
                _ => false,
            };
            assert!(ok, "{what}: expected {expect:?}, got {decision:?}");
        }
    }
}
