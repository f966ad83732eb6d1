//! The edge (E1, E2): a proxy with an internal interface towards its front end and an
//! external one for clients on the internet and for federation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_proxy::{Decision, Forward, Inbound, NextHop, Policy, Reply};
use siplab_sip::{HeaderName, Host, Method, SipUri};
use siplab_topology::Lab;
use siplab_transport::ConnInfo;

use crate::resolve::LabResolver;

pub struct Edge {
    lab: Lab,
    node: String,
    /// The front end every client request goes to (its home server).
    frontend: SipUri,
    resolver: LabResolver,
}

impl Edge {
    pub fn new(lab: &Lab, node: &str) -> Option<Edge> {
        let n = lab.node(node)?;
        let fe = n.frontend.as_ref()?;
        let fe_if = lab.interfaces_of(fe.as_str()).next()?;
        let internal = lab
            .interfaces_of(node)
            .find(|i| i.network == fe_if.network)?;
        Some(Edge {
            frontend: SipUri::new(
                None,
                Host::Name(fe_if.fqdns.first()?.clone()),
                fe_if.ports.sip,
            ),
            resolver: LabResolver::new(lab.clone(), internal.ip()),
            node: node.to_owned(),
            lab: lab.clone(),
        })
    }
}

impl Policy for Edge {
    fn route(&self, req: &Inbound<'_>) -> Decision {
        // Loose routing: a client's in-dialog request goes on along its route set.
        if let Some(next) = &req.next_route {
            return Decision::to(NextHop::Uri(next.clone()));
        }
        // Our Path or Record-Route named the client's flow: down that very connection.
        if let Some(flow) = &req.route_flow {
            return Decision::to(NextHop::Flow(flow.clone()));
        }
        let Some(ruri) = req.request_uri() else {
            return Decision::Reply(Reply::new(400));
        };
        if ruri.user.is_none()
            && self
                .lab
                .interfaces_of(&self.node)
                .any(|i| i.fqdns.iter().any(|f| Host::Name(f.clone()) == ruri.host))
        {
            return match req.msg.method() {
                Some(Method::Options) => Decision::Local,
                _ => Decision::Reply(Reply::because(404, "this is the edge, not a user")),
            };
        }
        // A client signed in through us: to its home server, with the identity its
        // certificate proves, and for a REGISTER our Path with its flow token.
        if let Some(aor) = req.conn.identity.sip_aor() {
            let mut f = Forward::to(NextHop::Uri(self.frontend.clone()));
            f.set
                .push((HeaderName::PAssertedIdentity, format!("<sip:{aor}>")));
            f.add_path = req.msg.method() == Some(Method::Register);
            return Decision::forward(f);
        }
        Decision::Reply(Reply::because(404, format!("no route to {ruri}")))
    }

    fn trusts_assertion(&self, _conn: &ConnInfo) -> bool {
        false
    }

    async fn resolve(&self, host: &str, port: Option<u16>) -> Result<SocketAddr, String> {
        self.resolver.resolve(host, port)
    }

    fn interface_towards(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.lab
            .interface_towards(&self.node, ip)
            .map(|i| Arc::from(i.name.as_str()))
    }
}
