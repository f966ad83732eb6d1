//! What a proxy does to a request on its way through (RFC 3261 16.4 to 16.6, RFC 3327,
//! RFC 3581, RFC 5626, RFC 5658): the node's own names, `received`/`rport`, Route
//! pre-processing, where a next hop is on the wire, and the edits of forwarding (Max-Forwards,
//! the role's header changes, Path, Record-Route on one or two interfaces, Via). Kamailio
//! keeps this in its rr module and tm's forwarding; here it is one file with no I/O but the
//! look-up of a next hop.

use std::net::SocketAddr;
use std::sync::Arc;

use siplab_sip::{HeaderName, Host, Message, NameAddr, SipUri, Uri, Via};
use siplab_transport::{ConnInfo, Destination, FlowToken, Transport};

use crate::decision::{Forward, NextHop, Reply};
use crate::policy::Reach;

/// One of this node's interfaces, as the core writes it into Via, Record-Route and Path.
#[derive(Debug, Clone)]
pub struct OwnInterface {
    pub name: Arc<str>,
    /// The SIP listener: the Via sent-by of requests leaving from here.
    pub addr: SocketAddr,
    /// The name peers reach it by, for Record-Route and Path (real products need an FQDN).
    pub fqdn: String,
    /// Every name of it, to recognise a Route or Request-URI naming this node.
    pub names: Vec<String>,
    /// The FQDN of the pool this node is a member of: its Record-Route names the pool, with
    /// this member as its pool member (`ms-fe`, [`SipUri::pool_member`]).
    pub pool: Option<String>,
}

impl OwnInterface {
    /// `sip:[user@]fqdn:port;transport=tls`: this interface as a URI, at the listener `port`.
    fn uri(&self, user: Option<&str>, port: u16) -> SipUri {
        SipUri::tls(user, Host::named(&self.fqdn), Some(port))
    }

    /// The URI this interface records routes as: itself, or for a pool member the pool's
    /// FQDN with the member as `ms-fe`.
    fn route_uri(&self, user: Option<&str>, port: u16) -> SipUri {
        match &self.pool {
            Some(pool) => {
                SipUri::tls(user, Host::named(pool), Some(port)).with_pool_member(&self.fqdn)
            }
            None => self.uri(user, port),
        }
    }

    /// The Contact of requests and answers this node makes itself on this interface.
    pub(crate) fn contact(&self) -> String {
        NameAddr::new(Uri::Sip(self.uri(None, self.addr.port()))).to_string()
    }
}

/// All of a node's interfaces.
#[derive(Debug, Clone)]
pub(crate) struct Interfaces(Vec<OwnInterface>);

impl Interfaces {
    pub fn new(own: Vec<OwnInterface>) -> Interfaces {
        Interfaces(own)
    }

    pub fn get(&self, name: &str) -> Option<&OwnInterface> {
        self.0.iter().find(|i| &*i.name == name)
    }

    pub fn first(&self) -> Option<&OwnInterface> {
        self.0.first()
    }

    /// Whether `host` is one of this node's names or addresses (names without case).
    pub fn is_own_host(&self, host: &Host) -> bool {
        self.0.iter().any(|i| match host {
            Host::Name(n) => i.names.iter().any(|m| m.eq_ignore_ascii_case(n)),
            Host::Ip(ip) => i.addr.ip() == *ip,
        })
    }

    /// Whether a Route leads to this node: it names one of its hosts, or the pool member it
    /// names is this node.
    fn is_own_route(&self, uri: &SipUri) -> bool {
        self.is_own_host(&uri.route_host())
    }

    /// Whether a Request-URI names this node itself rather than a user.
    pub fn is_node_uri(&self, uri: &SipUri) -> bool {
        uri.user.is_none() && self.is_own_host(&uri.host)
    }

    /// Section 16.4: a strict router's Request-URI naming us is restored from the last
    /// Route; then every Route naming this node is removed (two when it recorded the route
    /// on two interfaces, RFC 5658). A flow token in one of them names the connection the
    /// dialog reaches its client by, when that flow is live (`flow_live`) and is not the one
    /// the request came on. Returns that flow (or the one named that is gone) and the next
    /// Route, if any.
    pub fn preprocess_routes(
        &self,
        msg: &mut Message,
        conn: &ConnInfo,
        flow_live: impl Fn(&FlowToken) -> bool,
    ) -> Routes {
        let routes = msg.addresses(HeaderName::Route).unwrap_or_default();
        if let (Some(uri), Some(last)) = (msg.request_uri().and_then(Uri::as_sip), routes.last())
            && self.is_own_host(&uri.host)
        {
            let last_uri = last.uri.clone();
            let mut remaining: Vec<String> = routes.iter().map(ToString::to_string).collect();
            remaining.pop();
            msg.headers.remove_all(&HeaderName::Route);
            for r in remaining {
                msg.headers.push(HeaderName::Route, r);
            }
            msg.set_request_uri(last_uri);
        }
        let mut out = Routes::default();
        loop {
            let routes = msg.addresses(HeaderName::Route).unwrap_or_default();
            let Some(uri) = routes.first().and_then(NameAddr::sip_uri) else {
                return out;
            };
            if !self.is_own_route(uri) {
                out.next = Some(uri.clone());
                return out;
            }
            if let Some(user) = &uri.user
                && let Some(token) = FlowToken::parse(user)
                && token != conn.flow
            {
                match flow_live(&token) {
                    true => out.flow = Some(token),
                    false => out.failed = Some(token),
                }
            }
            msg.headers.remove_first_value(&HeaderName::Route);
        }
    }
}

/// What this node's own Routes said, once removed.
#[derive(Debug, Default)]
pub struct Routes {
    /// A live client flow one of them named.
    pub flow: Option<FlowToken>,
    /// A flow one of them named that is gone (RFC 5626: 430 Flow Failed).
    pub failed: Option<FlowToken>,
    /// The next Route, not this node's.
    pub next: Option<SipUri>,
}

impl Routes {
    /// The flow the request was to take is gone, and no live one was named.
    pub fn flow_failed(&self) -> bool {
        self.flow.is_none() && self.failed.is_some()
    }
}

/// RFC 3261 18.2.1 and RFC 3581: the top Via of a request from a peer is stamped with the
/// address it really came from (`received`) and, when it asks for it, the port (`rport`).
pub(crate) fn stamp_received(msg: &mut Message, top: &Via, conn: &ConnInfo) {
    let ip = conn.peer.ip();
    let host_differs = top.host != Host::Ip(ip);
    let wants_rport = top.rport() == Some(None);
    if !host_differs && !wants_rport {
        return;
    }
    let via = top.stamped(
        host_differs.then_some(ip),
        wants_rport.then_some(conn.peer.port()),
    );
    msg.headers.remove_first_value(&HeaderName::Via);
    msg.headers.push_front(HeaderName::Via, via);
}

/// Where a next hop is on the wire: the transport's destination, the interface a request
/// to it leaves from, and the connection when it goes down a flow.
pub(crate) struct Hop {
    pub dest: Destination,
    pub interface: Arc<str>,
    pub flow: Option<Arc<ConnInfo>>,
}

/// Finds `next`: a live flow, or a URI's host resolved through `reach`. The error is the
/// answer the request gets when it cannot go there.
pub(crate) async fn locate(
    next: &NextHop,
    transport: &Transport,
    reach: &impl Reach,
) -> Result<Hop, Reply> {
    match next {
        NextHop::Flow(token) => match transport.flow(token) {
            Some(c) => Ok(Hop {
                dest: Destination::Flow(*token),
                interface: c.interface.clone(),
                flow: Some(c),
            }),
            None => Err(Reply::because(430, "the user's connection is gone")),
        },
        NextHop::Uri(uri) => {
            let host = match uri.route_host().into_owned() {
                Host::Name(n) => n.clone(),
                Host::Ip(ip) => ip.to_string(),
            };
            let addr = reach
                .resolve(&host, uri.port)
                .await
                .map_err(|e| Reply::because(503, format!("cannot resolve {host}: {e}")))?;
            let iface = reach
                .interface_towards(addr.ip())
                .ok_or_else(|| Reply::because(503, format!("no interface reaches {addr}")))?;
            Ok(Hop {
                dest: Destination::Peer {
                    interface: iface.clone(),
                    addr,
                    server_name: host,
                },
                interface: iface,
                flow: None,
            })
        }
    }
}

/// The role's edits and the hop-by-hop ones before Record-Route and Via: a new
/// Request-URI, Max-Forwards one less, headers removed and set, Routes on top and, for a
/// REGISTER through an edge, its Path with the flow token of `conn` (RFC 3327, RFC 5626).
pub(crate) fn edit(
    msg: &mut Message,
    f: Forward,
    max_forwards: Option<u8>,
    conn: &ConnInfo,
    out: &OwnInterface,
) {
    if let Some(uri) = f.request_uri {
        msg.set_request_uri(uri);
    }
    let mf = max_forwards.unwrap_or(70);
    msg.headers
        .set(HeaderName::MaxForwards, mf.saturating_sub(1).to_string());
    for name in &f.remove {
        msg.headers.remove_all(name);
    }
    for (name, value) in f.set {
        msg.headers.set(name, value);
    }
    for r in f.routes.iter().rev() {
        msg.headers.push_front(HeaderName::Route, r.clone());
    }
    if f.add_path {
        let token = conn.flow.to_string();
        let path = out.uri(Some(&token), out.addr.port()).flag("lr").flag("ob");
        msg.headers
            .push_front(HeaderName::Path, NameAddr::new(Uri::Sip(path)).to_string());
    }
}

/// Record-Route of a request that creates a dialog (RFC 3261 16.6 step 4): one entry when
/// it leaves by the listener it came in on, else one per side (RFC 5658), each naming the
/// listener its peer reaches and carrying the flow token of a client connection on that
/// side, so that in-dialog requests come back down it.
pub(crate) fn record_route(
    msg: &mut Message,
    (in_if, in_port, token_in): (&OwnInterface, u16, Option<FlowToken>),
    (out_if, out_port, token_out): (&OwnInterface, u16, Option<FlowToken>),
) {
    let entry = |iface: &OwnInterface, port: u16, token: Option<FlowToken>| {
        let user = token.map(|t| t.to_string());
        NameAddr::loose_route(iface.route_uri(user.as_deref(), port)).to_string()
    };
    if in_if.name == out_if.name && in_port == out_port {
        let rr = entry(out_if, in_port, token_in.or(token_out));
        msg.headers.push_front(HeaderName::RecordRoute, rr);
    } else {
        let inner = entry(in_if, in_port, token_in);
        msg.headers.push_front(HeaderName::RecordRoute, inner);
        let outer = entry(out_if, out_port, token_out);
        msg.headers.push_front(HeaderName::RecordRoute, outer);
    }
}

/// This hop's Via (16.6 step 8), sent by `sent_by`; `alias` when the next hop may reuse
/// the connection for requests back to us (RFC 5923).
pub(crate) fn push_via(msg: &mut Message, sent_by: SocketAddr, branch: &str, alias: bool) {
    let via = Via::tls(sent_by, branch);
    let via = if alias { via.flag("alias") } else { via };
    msg.headers.push_front(HeaderName::Via, via.to_string());
}

/// The listener a connection that a peer opened to this node came in on; `None` for one this
/// node opened (its local port is an ephemeral one that nobody can connect to).
pub(crate) fn listener_of(conn: Option<&ConnInfo>) -> Option<SocketAddr> {
    conn.filter(|c| c.inbound).map(|c| c.local)
}

#[cfg(test)]
mod tests {
    use siplab_sip::{Method, SipUri};

    use super::*;
    use crate::testing::conn;

    const POOL: &str = "sippool01.infra.lync.test";

    fn own(name: &str, fqdn: &str, pool: Option<&str>) -> OwnInterface {
        OwnInterface {
            name: Arc::from(name),
            addr: "127.4.0.31:5061".parse().unwrap(),
            fqdn: fqdn.to_owned(),
            names: [Some(fqdn), pool]
                .into_iter()
                .flatten()
                .map(String::from)
                .collect(),
            pool: pool.map(String::from),
        }
    }

    fn request(routes: &[&str]) -> Message {
        let uri = SipUri::parse("sip:nina@northwind.test").unwrap();
        let mut msg = Message::request(Method::Message, Uri::Sip(uri));
        for r in routes {
            msg.headers.push(HeaderName::Route, (*r).to_owned());
        }
        msg
    }

    #[test]
    fn a_pool_member_records_the_route_as_the_pool_with_itself_as_ms_fe() {
        let cp2 = own("CP2", "cpfe02.infra.lync.test", Some(POOL));
        let r1 = own("R1", "fe01.contoso.test", None);
        let mut msg = request(&[]);
        record_route(&mut msg, (&cp2, 5061, None), (&cp2, 5061, None));
        record_route(&mut msg, (&r1, 5061, None), (&r1, 5061, None));
        let rr: Vec<String> = msg
            .addresses(HeaderName::RecordRoute)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            rr,
            [
                "<sip:fe01.contoso.test:5061;transport=tls;lr>",
                "<sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=cpfe02.infra.lync.test;lr>",
            ]
        );
    }

    #[test]
    fn a_member_takes_only_the_pool_routes_naming_it() {
        let cp2 = Interfaces::new(vec![own("CP2", "cpfe02.infra.lync.test", Some(POOL))]);
        let from = conn("1x1", "sipedge01.infra.lync.test");
        let ours =
            "<sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=cpfe02.infra.lync.test;lr>";
        let other =
            "<sip:sippool01.infra.lync.test:5061;transport=tls;ms-fe=cpfe01.infra.lync.test;lr>";
        let edge = "<sip:sipedge01.infra.lync.test:5061;transport=tls;lr>";

        let mut msg = request(&[ours, edge]);
        let routes = cp2.preprocess_routes(&mut msg, &from, |_| false);
        assert!(routes.flow.is_none() && !routes.flow_failed());
        assert_eq!(
            routes.next.unwrap().host,
            Host::named("sipedge01.infra.lync.test")
        );
        assert_eq!(msg.addresses(HeaderName::Route).unwrap().len(), 1);

        let mut msg = request(&[other, edge]);
        let next = cp2
            .preprocess_routes(&mut msg, &from, |_| false)
            .next
            .unwrap();
        assert_eq!(next.pool_member(), Some("cpfe01.infra.lync.test"));
        assert_eq!(*next.route_host(), Host::named("cpfe01.infra.lync.test"));
        assert_eq!(msg.addresses(HeaderName::Route).unwrap().len(), 2);
    }
}
