//! Dialogs (RFC 3261 section 12): what caller and callee remember after a 2xx to an INVITE,
//! and how they send inside it. Both sides hold the same state and send the same way; they
//! only build it from different messages. The caller reads the 2xx it received (12.1.2):
//! its route set is the Record-Route reversed, because the 2xx lists the proxies in the
//! order the INVITE passed them, callee side first. The callee reads the INVITE it answered
//! (12.1.1): the Record-Route in order, because seen from the callee the first proxy is the
//! one nearest to it. Either way every proxy on the path is a loose router (`lr`), so an
//! in-dialog request goes to the remote target with the route set as Route headers and
//! passes exactly the proxies that recorded the route (the spec's section 6).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

use siplab_sip::{Contact, HeaderName, Message, Method, NameAddr, ParseError, Uri};

use crate::request::{Head, OutRequest};
use crate::ua::lock;

/// Names a dialog as one side sees it (12): the Call-ID and both tags, ours first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DialogId {
    pub(crate) call_id: String,
    pub(crate) local_tag: String,
    pub(crate) remote_tag: String,
}

impl DialogId {
    /// The dialog an arriving request claims to be in (12.2.2): the To tag is ours, the From
    /// tag the sender's. `None` for a request outside any dialog (its To has no tag).
    pub(crate) fn of_request(req: &Message) -> Option<DialogId> {
        let local_tag = req.to().ok()?.tag()?.to_owned();
        let remote_tag = req
            .from()
            .ok()
            .and_then(|f| f.tag().map(str::to_owned))
            .unwrap_or_default();
        let call_id = String::from_utf8_lossy(req.call_id().ok()?).into_owned();
        Some(DialogId {
            call_id,
            local_tag,
            remote_tag,
        })
    }
}

/// The dialogs a client is in. A dialog lives from its 2xx until a BYE is sent or received
/// in it, or an in-dialog request is answered 481 or 408 (12.2.1.2); dropping the [`Call`]
/// that holds it does not end it, just as a phone left off the hook stays in its call, so
/// the far end can still send in it and hang up.
///
/// [`Call`]: crate::Call
#[derive(Default)]
pub(crate) struct Dialogs {
    live: Mutex<HashSet<DialogId>>,
}

impl Dialogs {
    pub(crate) fn open(&self, id: DialogId) {
        lock(&self.live).insert(id);
    }

    pub(crate) fn is_live(&self, id: &DialogId) -> bool {
        lock(&self.live).contains(id)
    }

    /// Ends a dialog; false if it was not live.
    pub(crate) fn end(&self, id: &DialogId) -> bool {
        lock(&self.live).remove(id)
    }
}

/// Why a message cannot set up a dialog.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("no SIP Contact to send in-dialog requests to")]
    NoContact,
    #[error("{what}: {error}")]
    Bad {
        what: &'static str,
        error: ParseError,
    },
}

impl Unusable {
    /// As the error of a request whose answer (`status`) or request set the dialog up.
    pub(crate) fn into_error(self, status: u16) -> crate::error::UaError {
        use crate::error::UaError;
        match self {
            Unusable::NoContact => UaError::NoContact { status },
            Unusable::Bad { what, error } => UaError::BadResponse { what, error },
        }
    }
}

/// One side of a dialog: everything an in-dialog request is built from.
#[derive(Debug)]
pub(crate) struct Dialog {
    pub(crate) id: DialogId,
    /// Our address with our tag: the From of our requests.
    local: String,
    /// The peer's address with its tag: the To of our requests.
    remote: String,
    /// The peer's Contact: the Request-URI of our requests.
    target: Uri,
    /// Route headers of our requests, first hop first.
    pub(crate) route: Vec<String>,
    /// The CSeq number of our last request in the dialog.
    cseq: u32,
}

impl Dialog {
    /// The caller's side, from the 2xx to its INVITE (12.1.2). `local` is the INVITE's From,
    /// `invite_cseq` its CSeq number, which the ACK repeats and later requests count on from.
    pub(crate) fn as_caller(
        call_id: &str,
        local: String,
        invite_cseq: u32,
        ok: &Message,
    ) -> Result<Dialog, Unusable> {
        let remote = ok
            .to()
            .map_err(|error| Unusable::Bad { what: "To", error })?;
        let mut route = record_route(ok);
        route.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: call_id.to_owned(),
                local_tag: tag_of(&local),
                remote_tag: remote.tag().unwrap_or_default().to_owned(),
            },
            local,
            remote: header(ok, &HeaderName::To),
            target: remote_target(ok)?,
            route,
            cseq: invite_cseq,
        })
    }

    /// The callee's side, from the INVITE it answers with `tag` in its To (12.1.1). Its own
    /// requests start a CSeq count of their own at 1.
    pub(crate) fn as_callee(invite: &Message, tag: &str) -> Result<Dialog, Unusable> {
        let bad = |what| move |error| Unusable::Bad { what, error };
        let from = invite.from().map_err(bad("From"))?;
        let call_id = invite.call_id().map_err(bad("Call-ID"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: String::from_utf8_lossy(call_id).into_owned(),
                local_tag: tag.to_owned(),
                remote_tag: from.tag().unwrap_or_default().to_owned(),
            },
            local: with_tag(&header(invite, &HeaderName::To), tag),
            remote: header(invite, &HeaderName::From),
            target: remote_target(invite)?,
            route: record_route(invite),
            cseq: 0,
        })
    }

    /// The ACK for the 2xx (13.2.2.4): a transaction of its own, along the route set, with
    /// the INVITE's CSeq number. Only the caller sends one, before any other request.
    pub(crate) fn ack(&self, local: SocketAddr) -> OutRequest {
        self.build(Method::Ack, local, self.cseq).empty()
    }

    /// The next request in the dialog (12.2.1.1), headers only: the caller adds the body.
    pub(crate) fn next_request(&mut self, method: Method, local: SocketAddr) -> OutRequest {
        self.cseq += 1;
        self.build(method, local, self.cseq)
    }

    fn build(&self, method: Method, local: SocketAddr, cseq: u32) -> OutRequest {
        let mut req = OutRequest::new(Head {
            method,
            uri: self.target.clone(),
            local,
            from: &self.local,
            to: &self.remote,
            call_id: &self.id.call_id,
            cseq,
        });
        for route in &self.route {
            req = req.header(HeaderName::Route, route.clone());
        }
        req
    }
}

/// A header's first value as text, empty when absent.
fn header(msg: &Message, name: &HeaderName) -> String {
    msg.headers
        .value(name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The tag of a From or To value we wrote ourselves.
fn tag_of(value: &str) -> String {
    value
        .rsplit_once(";tag=")
        .map(|(_, tag)| tag.to_owned())
        .unwrap_or_default()
}

/// Every Record-Route value as it stands in the message, top first.
fn record_route(msg: &Message) -> Vec<String> {
    msg.headers
        .elements(&HeaderName::RecordRoute)
        .unwrap_or_default()
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The peer's Contact URI: where in-dialog requests go (12.1.1, 12.1.2).
fn remote_target(msg: &Message) -> Result<Uri, Unusable> {
    msg.contacts()
        .map_err(|error| Unusable::Bad {
            what: "Contact",
            error,
        })?
        .into_iter()
        .find_map(|c| match c {
            Contact::Addr(a) => Some(a.uri),
            Contact::Star => None,
        })
        .ok_or(Unusable::NoContact)
}

/// A To value with our tag added, as a UAS answers a request outside a dialog (8.2.6.2).
fn with_tag(to: &str, tag: &str) -> String {
    match NameAddr::parse(to.as_bytes()) {
        Ok(addr) => addr.with_tag(tag).to_string(),
        Err(_) => to.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const INVITE: &str = "INVITE sip:adam@contoso.test SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.1.0.10:5061;branch=z9hG4bKr1\r\n\
Via: SIP/2.0/TLS 127.1.0.101:40000;branch=z9hG4bKa;rport=40000\r\n\
Record-Route: <sip:fe01.contoso.test:5061;transport=tls;lr>\r\n\
Record-Route: <sip:edge01-int.contoso.test:5061;transport=tls;lr>, <sip:sip.contoso.test:5061;transport=tls;lr>\r\n\
Max-Forwards: 68\r\n\
To: <sip:adam@contoso.test>\r\n\
From: <sip:alice@contoso.test>;tag=caller\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@127.1.0.101:40000;transport=tls;ob>\r\n\
Content-Length: 0\r\n\
\r\n";

    fn parse(text: &str) -> Message {
        Message::parse(Bytes::from(text.to_owned())).unwrap()
    }

    fn routes(req: &OutRequest) -> Vec<String> {
        req.msg
            .headers
            .elements(&HeaderName::Route)
            .unwrap_or_default()
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    const RR: [&str; 3] = [
        "<sip:fe01.contoso.test:5061;transport=tls;lr>",
        "<sip:edge01-int.contoso.test:5061;transport=tls;lr>",
        "<sip:sip.contoso.test:5061;transport=tls;lr>",
    ];

    #[test]
    fn the_callee_routes_along_the_record_route_in_order() {
        let mut d = Dialog::as_callee(&parse(INVITE), "callee").unwrap();
        assert_eq!(
            d.id,
            DialogId {
                call_id: "c1".into(),
                local_tag: "callee".into(),
                remote_tag: "caller".into(),
            }
        );
        assert_eq!(d.route, RR);
        let local = "127.1.0.102:40001".parse().unwrap();
        let bye = d.next_request(Method::Bye, local).empty();
        bye.msg.validate().unwrap();
        assert_eq!(
            bye.msg.request_uri().unwrap().to_string(),
            "sip:alice@127.1.0.101:40000;transport=tls;ob"
        );
        assert_eq!(routes(&bye), RR);
        assert_eq!(bye.msg.from().unwrap().tag(), Some("callee"));
        assert_eq!(bye.msg.to().unwrap().tag(), Some("caller"));
        assert_eq!(bye.msg.cseq().unwrap().seq, 1);
        // The request names the dialog as the caller sees it: tags the other way round.
        let at_caller = DialogId::of_request(&bye.msg).unwrap();
        assert_eq!(
            (at_caller.local_tag.as_str(), at_caller.remote_tag.as_str()),
            ("caller", "callee")
        );
    }

    #[test]
    fn the_caller_routes_along_the_record_route_reversed() {
        let ok = INVITE
            .replace("INVITE sip:adam@contoso.test SIP/2.0", "SIP/2.0 200 OK")
            .replace(
                "To: <sip:adam@contoso.test>",
                "To: <sip:adam@contoso.test>;tag=callee",
            )
            .replace("alice@127.1.0.101:40000", "adam@127.1.0.102:40001");
        let local = "<sip:alice@contoso.test>;tag=caller".to_owned();
        let mut d = Dialog::as_caller("c1", local, 1, &parse(&ok)).unwrap();
        assert_eq!(
            (d.id.local_tag.as_str(), d.id.remote_tag.as_str()),
            ("caller", "callee")
        );
        let reversed: Vec<_> = RR.iter().rev().map(|r| r.to_string()).collect();
        assert_eq!(d.route, reversed);
        let at = "127.1.0.101:40000".parse().unwrap();
        assert_eq!(d.ack(at).msg.cseq().unwrap().seq, 1);
        let msg = d.next_request(Method::Message, at).body("text/plain", "hi");
        assert_eq!(msg.msg.cseq().unwrap().seq, 2);
        assert_eq!(
            msg.msg.request_uri().unwrap().to_string(),
            "sip:adam@127.1.0.102:40001;transport=tls;ob"
        );
        assert_eq!(routes(&msg), reversed);
    }

    #[test]
    fn an_invite_without_contact_makes_no_dialog() {
        let invite = INVITE.replace(
            "Contact: <sip:alice@127.1.0.101:40000;transport=tls;ob>\r\n",
            "",
        );
        assert!(matches!(
            Dialog::as_callee(&parse(&invite), "t"),
            Err(Unusable::NoContact)
        ));
    }
}
