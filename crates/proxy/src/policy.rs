//! What a role decides, and what it is told. The core does the mechanics of RFC 3261
//! section 16 the same way for every node; a role (front end, edge, cloud pool) says only
//! where a request goes, or what to answer, in one routing function.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_sip::{HeaderName, Message, Method, SipUri, Uri};
use siplab_transport::{ConnInfo, FlowToken};

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
    /// The location service of this node (empty on nodes without a registrar).
    pub location: &'a Location,
}

impl Inbound<'_> {
    pub fn request_uri(&self) -> Option<&SipUri> {
        self.msg.request_uri().and_then(Uri::as_sip)
    }

    /// Where the request's own route takes it, before any policy: on to the next Route
    /// (loose routing, RFC 3261 16.6 step 6), or down the client flow a Route of ours named.
    pub fn routed(&self) -> Option<Decision> {
        if let Some(next) = &self.next_route {
            return Some(Decision::to(NextHop::Uri(next.clone())));
        }
        self.route_flow
            .as_ref()
            .map(|flow| Decision::to(NextHop::Flow(*flow)))
    }

    /// An in-dialog request to the contact a client registered here (its remote target).
    /// `is_domain` tells an AOR's host (a user, not a contact) from a contact's.
    pub fn to_registered_contact(&self, is_domain: impl Fn(&str) -> bool) -> Option<Decision> {
        let ruri = self.request_uri()?;
        if ruri.user.is_none() || is_domain(&ruri.host.to_string()) {
            return None;
        }
        self.location
            .by_contact(ruri)
            .map(|b| Decision::forward(b.forward()))
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

/// An answer the role gives itself.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// Why, for people reading a trace: sent as a Warning (399) header.
    pub warning: Option<String>,
    pub headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub fn new(code: u16) -> Reply {
        Reply {
            code,
            warning: None,
            headers: Vec::new(),
        }
    }

    pub fn because(code: u16, why: impl Into<String>) -> Reply {
        Reply {
            code,
            warning: Some(why.into()),
            headers: Vec::new(),
        }
    }

    pub fn with(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Where a forwarded request goes next.
#[derive(Debug, Clone)]
pub enum NextHop {
    /// Down a client's own connection.
    Flow(FlowToken),
    /// To the host of this URI, resolved by the role (the topology now, DNS later).
    Uri(SipUri),
}

/// How to forward.
#[derive(Debug, Clone)]
pub struct Forward {
    pub next_hop: NextHop,
    /// A new Request-URI (a registered contact, when delivering to a user).
    pub request_uri: Option<Uri>,
    /// Route values to put on top, first one first (a binding's Path).
    pub routes: Vec<String>,
    /// Add this node's Path (RFC 3327) with the flow token of the connection the REGISTER
    /// came on, so that requests for the user come back down that connection.
    pub add_path: bool,
    /// Headers to set (replacing any), e.g. P-Asserted-Identity for a verified client.
    pub set: Vec<(HeaderName, String)>,
    /// Headers to remove, e.g. a P-Asserted-Identity nobody trusted asserted.
    pub remove: Vec<HeaderName>,
}

impl Forward {
    pub fn to(next_hop: NextHop) -> Forward {
        Forward {
            next_hop,
            request_uri: None,
            routes: Vec::new(),
            add_path: false,
            set: Vec::new(),
            remove: Vec::new(),
        }
    }
}

/// What the role decides.
#[derive(Debug, Clone)]
pub enum Decision {
    Reply(Reply),
    Forward(Box<Forward>),
    /// The REGISTER is for a user homed here: run the registrar for this AOR.
    Register {
        aor: String,
    },
    /// Answer here (OPTIONS addressed to this node).
    Local,
    /// A PUBLISH or SUBSCRIBE for the presence of a user homed here: this node answers it.
    Presence {
        aor: String,
    },
}

impl Decision {
    pub fn forward(f: Forward) -> Decision {
        Decision::Forward(Box::new(f))
    }

    /// Forwards to `next_hop` as the request is.
    pub fn to(next_hop: NextHop) -> Decision {
        Decision::forward(Forward::to(next_hop))
    }

    /// 400, with a Warning saying what the request lacks.
    pub fn bad_request(why: impl Into<String>) -> Decision {
        Decision::Reply(Reply::because(400, why))
    }
}

/// What a request whose Request-URI is not a SIP URI lacks (the core answers most with 416
/// before a role sees them).
pub const NOT_SIP_URI: &str = "the Request-URI is not a SIP URI";

/// What a REGISTER whose To is not a SIP URI lacks.
pub const REGISTER_TO_NOT_SIP: &str = "a REGISTER's To must be a SIP URI";

/// A role: its routing function and how it reaches the hosts it names.
pub trait Policy: Send + Sync + 'static {
    /// Decides what happens to a request, in the order the spec gives its reasons. It may
    /// look things up (DNS) before it decides.
    fn route(&self, req: &Inbound<'_>) -> impl Future<Output = Decision> + Send;

    /// Whether this peer is in the node's trust domain (RFC 3325): the identity it asserts
    /// (P-Asserted-Identity) is kept and acted on; from any other peer the core removes it
    /// before [`Policy::route`] runs. A front end and the cloud pool trust their own edge on
    /// the interface that faces it, an edge its own inside.
    fn trusts_assertion(&self, conn: &ConnInfo) -> bool;

    /// Resolves a host (and port) to an address.
    fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
    ) -> impl Future<Output = Result<SocketAddr, String>> + Send;

    /// The interface a request to `ip` leaves from.
    fn interface_towards(&self, ip: IpAddr) -> Option<Arc<str>>;
}
