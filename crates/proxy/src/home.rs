//! A home server's own answers: the registrar (RFC 3261 section 10) and the presence
//! server (RFC 3856) of the users homed on this node, with who may act for whom, and the
//! NOTIFYs their watchers are owed. Kamailio's registrar and presence modules over usrloc;
//! here it decides and builds, and the core sends.

use std::sync::Arc;

use siplab_sip::{Aor, HeaderName, Message, Method, SipUri, Uri};
use siplab_transport::ConnInfo;
use tracing::{debug, info, warn};

use crate::decision::{Forward, NextHop, Reply};
use crate::presence::{self, PresenceServer, Subscription};
use crate::registrar::Location;
use crate::reply::add_to_tag;
use crate::trust;

/// The location service and presence server of a node.
pub(crate) struct Home {
    pub location: Arc<Location>,
    pub presence: Arc<PresenceServer>,
}

/// A home server's answer, and whose watchers may now be owed a NOTIFY.
pub(crate) struct Answered {
    pub response: Message,
    pub changed: Aor,
}

impl Home {
    /// A REGISTER for `aor`, a user homed here. `trusted`: the peer may assert identities.
    pub fn register(
        &self,
        msg: &Message,
        conn: &ConnInfo,
        aor: &Aor,
        trusted: bool,
    ) -> Result<Answered, Reply> {
        authorise(msg, conn, aor, trusted)?;
        let mut response = self.location.register(msg, aor, &conn.flow);
        add_to_tag(&mut response);
        debug!(%aor, status = response.status().unwrap_or_default(), "registrar");
        Ok(Answered {
            response,
            changed: aor.clone(),
        })
    }

    /// A PUBLISH or SUBSCRIBE for `aor`, a user homed here (`None`: in the dialog of a
    /// subscription this node serves). `contact`: this node's Contact on the interface the
    /// request came in on.
    pub fn presence(
        &self,
        msg: &Message,
        conn: &ConnInfo,
        aor: Option<&Aor>,
        trusted: bool,
        contact: &str,
    ) -> Result<Answered, Reply> {
        let event = msg.headers.value(&HeaderName::Event);
        let package = event.map(|e| {
            let e = String::from_utf8_lossy(e);
            e.split(';').next().unwrap_or("").trim().to_owned()
        });
        if package.as_deref() != Some("presence") {
            return Err(
                Reply::because(489, "only the presence event package is served")
                    .with(HeaderName::AllowEvents, "presence"),
            );
        }
        let result = match (msg.method(), aor) {
            (Some(Method::Publish), Some(aor)) => {
                authorise(msg, conn, aor, trusted)?;
                self.presence.publish(msg, aor).map(|r| (r, aor.clone()))
            }
            (Some(Method::Publish), None) => Err((
                400,
                "a PUBLISH is not sent in a subscription's dialog".into(),
            )),
            (_, aor) => self
                .presence
                .subscribe(msg, aor, contact)
                .map(|(r, sub)| (r, sub.target)),
        };
        match result {
            Ok((mut response, changed)) => {
                add_to_tag(&mut response);
                debug!(target = %changed, "presence");
                Ok(Answered { response, changed })
            }
            Err((code, why)) => Err(Reply::because(code, why)),
        }
    }

    /// The NOTIFYs that are due, each with its subscription: to the watchers of `target`
    /// (of everyone when `None`) whose user's state changed, or whose subscription just
    /// began or ended. `contact`: this node's Contact.
    pub fn due(&self, target: Option<&str>, contact: &str) -> Vec<(Message, Subscription)> {
        let location = &self.location;
        let presence = &self.presence;
        let due = presence.due(target, |aor| {
            presence.state(aor, location.lookup(aor).is_some())
        });
        due.into_iter()
            .map(|(sub, state)| {
                debug!(watcher = %sub.watcher, target = %sub.target, %state, "NOTIFY");
                (presence::notify(&sub, &state, contact), sub)
            })
            .collect()
    }

    /// Where a NOTIFY in `sub`'s dialog goes: along its route set, else to the remote
    /// target, a client registered here (its flow or Path). `None` when it cannot go: the
    /// watcher signed out or moved (its subscription has ended), or the route set is not SIP.
    pub fn notify_hop(&self, sub: &Subscription) -> Option<Forward> {
        let first = sub.route_set.first();
        if let Some(first) = first.and_then(|r| siplab_sip::NameAddr::parse(r.as_bytes()).ok()) {
            return match first.uri {
                Uri::Sip(u) => Some(Forward::to(NextHop::Uri(u))),
                Uri::Other(_) => {
                    warn!(watcher = %sub.watcher, "route set with a non-SIP URI; NOTIFY not sent");
                    None
                }
            };
        }
        match self.location.by_contact(&sub.remote_target) {
            Some(b) => Some(b.forward()),
            None => {
                info!(watcher = %sub.watcher, "watcher gone (no route set, no binding here); subscription ended");
                self.presence.drop_dialog(&sub.call_id);
                None
            }
        }
    }
}

/// The identity a request may act for: what the node's own edge asserted (when the peer
/// is `trusted`), else the client certificate's AOR. `Err` is the 403 for acting for anyone
/// else.
fn authorise(msg: &Message, conn: &ConnInfo, aor: &Aor, trusted: bool) -> Result<(), Reply> {
    let asserted = trusted
        .then(|| msg.addresses(HeaderName::PAssertedIdentity).ok())
        .flatten()
        .and_then(|ids| ids.into_iter().find_map(|id| id.sip_uri().map(SipUri::aor)));
    let who = asserted.or_else(|| trust::certificate_aor(conn));
    if who.as_ref() == Some(aor) {
        return Ok(());
    }
    let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
    let why = match who {
        Some(w) => format!("{method} for {aor}, but the authenticated identity is {w}"),
        None => format!("{method} for {aor} from a peer without a user identity"),
    };
    warn!(%why, "refused");
    Err(Reply::because(403, why))
}
