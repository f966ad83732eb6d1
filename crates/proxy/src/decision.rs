//! What a role decides: an action (forward, answer, run the registrar or the presence
//! server) and the reason for it, one of the reasons section 5 (paths), 6 (dialogs and
//! presence) and 7 (trust) of the reference give. Plain data: no I/O, nothing of the core.

use std::fmt;

use siplab_sip::{Aor, HeaderName, NameAddr, SipUri, Uri};
use siplab_transport::FlowToken;

/// Why a node did what it did with a request: each hop of a path has one, and a trace or
/// a diagram prints it beside the hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Why {
    /// Loose routing: on to the next Route (RFC 3261 16.6 step 6), a dialog's route set.
    RouteSet,
    /// A Route of this node carried the flow token of the client connection the dialog or
    /// the registration reaches its user by (RFC 5626).
    ClientFlow,
    /// An in-dialog request to a contact a client registered here (its remote target).
    RegisteredContact,
    /// An in-dialog SUBSCRIBE of a subscription this node serves (section 6).
    Subscription,
    /// A user homed here and signed in: directly or through the edge's Path, down the
    /// connection it registered on (section 5, RFC 3327).
    HomeUser,
    /// A REGISTER for a user homed here (section 4).
    Registrar,
    /// A PUBLISH or SUBSCRIBE for a user homed here: its home server answers (section 6).
    PresenceServer,
    /// A user of this node's own domain homed in the cloud: out through the edge (shared
    /// SIP address space, section 5).
    CloudHomed,
    /// A REGISTER of a cloud-homed user: told where its home is (301, section 4).
    CloudRedirect,
    /// A client's REGISTER at a pool member that does not home the user: told which member
    /// does (`301 Redirect request to Home Server`).
    HomeServerRedirect,
    /// Another domain: federation, through the edge (section 5).
    OtherDomain,
    /// From a client or an accepted federation peer: to the inside node, which knows its
    /// users (section 5).
    Inward,
    /// A user of the edge's own domain not served on-premises: to the hosting provider's
    /// configured proxy FQDN (section 5).
    HostingProvider,
    /// A foreign domain, resolved with `_sipfederationtls._tcp.<domain>` (section 5).
    Federation,
    /// From a cloud user, for anyone not hosted here of the sender's tenant: out through
    /// the cloud edge to the sender's tenant's on-prem edge (section 5, rows 5-8, 15-17).
    HybridPartner,
    /// From a cloud user of a tenant that federates `direct`: out through the cloud edge to
    /// the `_sipfederationtls._tcp` edge of the Request-URI's domain.
    DirectFederation,
    /// The user concerned is homed on another member of this node's pool: passed on to it
    /// (the article's capture: "no user on it, so it passes the packet on").
    PoolMember,
    /// Addressed to this node itself (OPTIONS: its capabilities).
    ThisNode,
    /// Answered with an error: the Warning says which check failed (no such user, not
    /// signed in, not served here, no route).
    Refused,
    /// Refused by the trust rules of section 7 (the Warning names the rule).
    Untrusted,
    /// The request lacks something a role needs (400, the Warning says what).
    Malformed,
}

/// What a reason is about: the input of the request (or its connection) the rule that
/// fired looked at, written before the reason when a hop is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Nothing but the request's route (the next hop says it all).
    Route,
    /// The Request-URI's user (`bob@fabrikam.test`).
    Target,
    /// The Request-URI's domain (`fabrikam.test`).
    Domain,
    /// The sender (From), for a rule about where traffic from a user goes.
    Sender,
    /// From and Request-URI, for a rule about either party.
    Parties,
    /// The user a REGISTER is for (To).
    Registering,
    /// The method and the user (`SUBSCRIBE for alice@contoso.test`).
    Request,
    /// Who is at the other end of the connection (its certificate's name).
    Peer,
}

impl Why {
    /// The reason in a few words, for a log line or a diagram; it reads after its
    /// [`Why::subject`] (`fabrikam.test: not ours: federation via _sipfederationtls._tcp`).
    pub fn text(self) -> &'static str {
        match self {
            Why::RouteSet => "loose routing: the next Route",
            Why::ClientFlow => "a Route of ours names the client's flow",
            Why::RegisteredContact => "in-dialog, to a contact registered here",
            Why::Subscription => "in-dialog, a subscription served here",
            Why::HomeUser => "registered here: down the flow of the REGISTER",
            Why::Registrar => "homed here: the registrar answers",
            Why::PresenceServer => "for a user homed here: answered, not forwarded",
            Why::CloudHomed => "homed in the cloud (shared address space): out through the edge",
            Why::CloudRedirect => "homed in the cloud: redirected to its home",
            Why::HomeServerRedirect => "homed on another pool member: redirected to it",
            Why::OtherDomain => "not ours: federation through the edge",
            Why::Inward => "from outside: to the inside, which knows its users",
            Why::HostingProvider => "homed in the cloud: to the hosting provider",
            Why::Federation => "not ours: federation via _sipfederationtls._tcp",
            Why::HybridPartner => "a cloud user's traffic: to its tenant's on-prem edge",
            Why::DirectFederation => {
                "a direct tenant: to the partner's _sipfederationtls._tcp edge"
            }
            Why::PoolMember => "homed on another pool member: passed on to it",
            Why::ThisNode => "addressed to this node",
            Why::Refused => "refused",
            Why::Untrusted => "refused by the trust rules",
            Why::Malformed => "the request lacks what routing needs",
        }
    }

    /// The input the rule looked at.
    pub fn subject(self) -> Subject {
        match self {
            Why::RouteSet | Why::ClientFlow | Why::Subscription => Subject::Route,
            Why::RegisteredContact
            | Why::HomeUser
            | Why::CloudHomed
            | Why::HostingProvider
            | Why::ThisNode
            | Why::Refused
            | Why::Malformed => Subject::Target,
            Why::Registrar | Why::CloudRedirect | Why::HomeServerRedirect => Subject::Registering,
            Why::PresenceServer => Subject::Request,
            Why::OtherDomain | Why::Federation | Why::DirectFederation => Subject::Domain,
            Why::HybridPartner => Subject::Sender,
            Why::PoolMember => Subject::Parties,
            Why::Inward | Why::Untrusted => Subject::Peer,
        }
    }
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// An answer the role gives itself.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// Why, for people reading a trace: sent as a Warning (399) header.
    pub warning: Option<String>,
    /// The reason phrase, when it is not the status code's usual one.
    pub reason: Option<&'static str>,
    pub headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub fn new(code: u16) -> Reply {
        Reply {
            code,
            warning: None,
            reason: None,
            headers: Vec::new(),
        }
    }

    pub fn because(code: u16, why: impl Into<String>) -> Reply {
        Reply {
            warning: Some(why.into()),
            ..Reply::new(code)
        }
    }

    /// This answer with its own reason phrase (`301 Redirect request to Home Server`, as
    /// Skype for Business Server writes it).
    pub fn with_reason(mut self, reason: &'static str) -> Reply {
        self.reason = Some(reason);
        self
    }

    pub fn with(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// The 200 to an OPTIONS addressed to a node: what every role serves (R1, R2 and CP1, CP2
    /// answer PUBLISH; an edge passes it on), and the extensions of RFC 3327 and RFC 5626.
    pub fn capabilities() -> Reply {
        Reply::new(200)
            .with(
                HeaderName::Allow,
                "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INFO",
            )
            .with(HeaderName::Supported, "path, outbound")
    }
}

/// Where a forwarded request goes next.
#[derive(Debug, Clone)]
pub enum NextHop {
    /// Down a client's own connection.
    Flow(FlowToken),
    /// To the host of this URI, resolved through the node's reach (DNS).
    Uri(SipUri),
}

/// How to forward.
#[derive(Debug, Clone)]
pub struct Forward {
    pub next_hop: NextHop,
    /// A new Request-URI (a registered contact, when delivering to a user).
    pub request_uri: Option<Uri>,
    /// Route values to put on top, first one first (a binding's Path, a pre-loaded Route).
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

    /// To `target` as a pre-loaded loose Route on top (RFC 3261 8.1.2), reached by way of
    /// `via` (the target itself, or the edge the way out leads through).
    pub fn preloaded(via: SipUri, target: SipUri) -> Forward {
        let mut f = Forward::to(NextHop::Uri(via));
        f.routes.push(NameAddr::loose_route(target).to_string());
        f
    }
}

/// What the role does with a request.
#[derive(Debug, Clone)]
pub enum Action {
    Reply(Reply),
    Forward(Box<Forward>),
    /// The REGISTER is for a user homed here: run the registrar for this AOR.
    Register(Aor),
    /// A PUBLISH or SUBSCRIBE for the presence of a user homed here (`None`: in the dialog
    /// of a subscription this node serves): this node answers it.
    Presence(Option<Aor>),
}

/// What the role decides, and why.
#[derive(Debug, Clone)]
pub struct Decision {
    pub why: Why,
    pub action: Action,
}

impl Decision {
    pub fn forward(why: Why, f: Forward) -> Decision {
        Decision {
            why,
            action: Action::Forward(Box::new(f)),
        }
    }

    /// Forwards to `next_hop` as the request is.
    pub fn to(why: Why, next_hop: NextHop) -> Decision {
        Decision::forward(why, Forward::to(next_hop))
    }

    pub fn reply(why: Why, reply: Reply) -> Decision {
        Decision {
            why,
            action: Action::Reply(reply),
        }
    }

    /// An error answer, its Warning saying which check failed.
    pub fn refuse(code: u16, warning: impl Into<String>) -> Decision {
        Decision::reply(Why::Refused, Reply::because(code, warning))
    }

    /// A 403 of the trust rules (section 7), its Warning naming the rule.
    pub fn untrusted(warning: impl Into<String>) -> Decision {
        Decision::reply(Why::Untrusted, Reply::because(403, warning))
    }

    /// 400, with a Warning saying what the request lacks.
    pub fn bad_request(why: impl Into<String>) -> Decision {
        Decision::reply(Why::Malformed, Reply::because(400, why))
    }

    pub fn register(aor: Aor) -> Decision {
        Decision {
            why: Why::Registrar,
            action: Action::Register(aor),
        }
    }

    pub fn presence(aor: Aor) -> Decision {
        Decision {
            why: Why::PresenceServer,
            action: Action::Presence(Some(aor)),
        }
    }

    /// The status of an answer, for tables of decisions.
    pub fn status(&self) -> Option<u16> {
        match &self.action {
            Action::Reply(r) => Some(r.code),
            _ => None,
        }
    }
}

/// What a request whose Request-URI is not a SIP URI lacks (the core answers most with 416
/// before a role sees them).
pub const NOT_SIP_URI: &str = "the Request-URI is not a SIP URI";

/// What a REGISTER whose To is not a SIP URI lacks.
pub const REGISTER_TO_NOT_SIP: &str = "a REGISTER's To must be a SIP URI";
