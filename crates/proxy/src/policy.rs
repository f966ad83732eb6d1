//! What a role is told, and how it reaches the network. The core does the mechanics of
//! RFC 3261 section 16 the same way for every node; a role (front end, edge, cloud pool)
//! says only where a request goes, or what to answer, in one routing function that reads
//! as section 5's reasons in section 5's order.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_sip::{Message, Method, SipUri, Uri};
use siplab_transport::{ConnInfo, FlowToken};

use crate::decision::{Action, Decision, NextHop, Why};
use crate::registrar::Location;

/// A request as the core hands it to the role, after the generic checks and after the
/// Routes naming this node were removed.
pub struct Inbound<'a> {
    pub msg: &'a Message,
    /// The connection it came on: the peer's certificate names and the interface.
    pub conn: &'a ConnInfo,
    /// A live flow named by one of this node's own Routes just removed (a Path or
    /// Record-Route entry carrying a flow token), other than the one the request came on.
    pub route_flow: Option<FlowToken>,
    /// The next Route after this node's own, if any: loose routing says go there.
    pub next_route: Option<SipUri>,
    /// Whether the Request-URI names this node itself (no user part, one of its names).
    pub for_this_node: bool,
    /// Whether it is a SUBSCRIBE in the dialog of a subscription this node serves.
    pub in_subscription: bool,
    /// The location service of this node (empty on nodes without a registrar).
    pub location: &'a Location,
}

impl Inbound<'_> {
    pub fn request_uri(&self) -> Option<&SipUri> {
        self.msg.request_uri().and_then(Uri::as_sip)
    }

    /// What a home server (front end, cloud pool) does before any reason of its own, in
    /// this order: a refresh or end of a subscription it serves; the request's own route
    /// (the next Route, or down the client flow a Route of ours named); an in-dialog
    /// request to a contact registered here. `is_domain` tells an AOR's host (a user, not
    /// a contact) from a contact's.
    pub fn in_dialog(&self, is_domain: impl Fn(&str) -> bool) -> Option<Decision> {
        if self.in_subscription && self.next_route.is_none() {
            return Some(Decision {
                why: Why::Subscription,
                action: Action::Presence(None),
            });
        }
        self.routed()
            .or_else(|| self.to_registered_contact(is_domain))
    }

    /// Where the request's own route takes it, before any policy: on to the next Route
    /// (loose routing, RFC 3261 16.6 step 6), or down the client flow a Route of ours named.
    pub fn routed(&self) -> Option<Decision> {
        if let Some(next) = &self.next_route {
            return Some(Decision::to(Why::RouteSet, NextHop::Uri(next.clone())));
        }
        self.route_flow
            .as_ref()
            .map(|flow| Decision::to(Why::ClientFlow, NextHop::Flow(*flow)))
    }

    /// An in-dialog request to the contact a client registered here (its remote target).
    fn to_registered_contact(&self, is_domain: impl Fn(&str) -> bool) -> Option<Decision> {
        let ruri = self.request_uri()?;
        if ruri.user.is_none() || is_domain(&ruri.host.to_string()) {
            return None;
        }
        self.location
            .by_contact(ruri)
            .map(|b| Decision::forward(Why::RegisteredContact, b.forward()))
    }

    /// Whether the user's home server answers this request itself rather than the user's
    /// client: PUBLISH and SUBSCRIBE (presence, section 6).
    pub fn for_home_server(&self) -> bool {
        matches!(self.msg.method(), Some(Method::Publish | Method::Subscribe))
    }

    /// Whether the request came from a user's client (its certificate names a SIP URI).
    pub fn from_client(&self) -> bool {
        self.conn.identity.sip_aor().is_some()
    }
}

/// How a node reaches the hosts a role names: one object per node, shared by the core (for
/// every next hop) and the role (for the look-ups its reasons need).
pub trait Reach: Send + Sync + 'static {
    /// A SIP host (and port) as an address.
    fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
    ) -> impl Future<Output = Result<SocketAddr, String>> + Send;

    /// `_sipfederationtls._tcp.<domain>`: the host and port of the domain's federation edge.
    fn federation(
        &self,
        domain: &str,
    ) -> impl Future<Output = Result<(String, u16), String>> + Send;

    /// The interface a request to `ip` leaves from.
    fn interface_towards(&self, ip: IpAddr) -> Option<Arc<str>>;
}

/// A role: its routing function and whom it trusts.
pub trait Policy: Send + Sync + 'static {
    /// Decides what happens to a request, in the order the spec gives its reasons. It may
    /// look things up through `reach` (DNS) before it decides.
    fn route<R: Reach>(
        &self,
        req: &Inbound<'_>,
        reach: &R,
    ) -> impl Future<Output = Decision> + Send;

    /// Whether this peer is in the node's trust domain (RFC 3325): the identity it asserts
    /// (P-Asserted-Identity) is kept and acted on; from any other peer the core removes it
    /// before [`Policy::route`] runs. A front end and the cloud pool trust their own edge on
    /// the interface that faces it, an edge its own inside.
    fn trusts_assertion(&self, conn: &ConnInfo) -> bool;
}
