//! The user agent server (RFC 3261 section 8.2): every request that comes down the flow is
//! recorded, with the Via chain that tells which way it came, and answered as a real client
//! would, so that the proxies on the way see whole transactions. An INVITE answered with 200
//! opens the callee's dialog (12.1.1); a request inside a dialog (its To has a tag) is
//! answered only if that dialog is open, 481 otherwise (12.2.2), and a BYE ends it (15.1.2).

use std::sync::Arc;
use std::time::SystemTime;

use siplab_sip::{HeaderName, Message, Method, NameAddr, ParseError, Via, reason_phrase};
use siplab_transport::{ConnInfo, Destination, TransportError};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::call::Call;
use crate::dialog::{Dialog, DialogId};
use crate::ids;
use crate::request::{contact, sdp};
use crate::ua::{Core, lock};

/// The methods a client answers; anything else gets 405 with this list.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, NOTIFY";

/// One Via of a received request, as the proxy that inserted it wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaHop {
    /// `host:port` as sent.
    pub sent_by: String,
    pub host: String,
    pub port: Option<u16>,
    /// What the next hop saw as the source address, if it differed (RFC 3261 18.2.1).
    pub received: Option<String>,
    /// The source port the next hop filled in (RFC 3581).
    pub rport: Option<u16>,
}

impl ViaHop {
    fn of(via: &Via) -> ViaHop {
        ViaHop {
            sent_by: via.sent_by().to_string(),
            host: via.host.to_string(),
            port: via.port,
            received: via.received().map(str::to_owned),
            rport: via.rport().flatten(),
        }
    }
}

/// A request as the client received it: what the path tests assert.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// The AOR of From and To (`alice@contoso.test`).
    pub from: String,
    pub to: String,
    pub call_id: String,
    /// Every Via, top first: the last proxy first, the sender's own at the bottom.
    pub vias: Vec<ViaHop>,
    /// Route values as they arrived (a request at its target has usually none left).
    pub route: Vec<String>,
    pub record_route: Vec<String>,
    /// The body as text (a MESSAGE's text).
    pub body: String,
    pub at: SystemTime,
    /// The whole request, for anything else a test reads.
    pub request: Message,
}

impl Received {
    fn read(req: &Message) -> Result<Received, ParseError> {
        req.validate()?;
        let aor = |a: NameAddr| {
            a.sip_uri()
                .map_or_else(|| a.uri.to_string(), |u| u.aor().to_string())
        };
        let values = |name: &HeaderName| -> Vec<String> {
            req.headers
                .elements(name)
                .unwrap_or_default()
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        Ok(Received {
            method: req.cseq()?.method,
            from: aor(req.from()?),
            to: aor(req.to()?),
            call_id: String::from_utf8_lossy(req.call_id()?).into_owned(),
            vias: req.vias()?.iter().map(ViaHop::of).collect(),
            route: values(&HeaderName::Route),
            record_route: values(&HeaderName::RecordRoute),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            at: SystemTime::now(),
            request: req.clone(),
        })
    }
}

/// Records and answers a request that came down `conn`.
pub(crate) async fn handle(core: &Arc<Core>, conn: &Arc<ConnInfo>, req: Message) {
    let received = match Received::read(&req) {
        Ok(r) => r,
        Err(error) => {
            warn!(%error, "invalid request");
            if req.method() != Some(Method::Ack) {
                let resp = Message::response_to(&req, 400, reason_phrase(400));
                send(core, conn, with_warning(resp, &error.to_string())).await;
            }
            return;
        }
    };
    let method = received.method.clone();
    let span = info_span!("uas", %method, call_id = %received.call_id);
    async {
        info!(from = %received.from, hops = received.vias.len(), "request");
        match core.received.try_send(received) {
            Ok(()) => {}
            // A client run without an observer (`siplab run` signs its users in and out).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!("no observer of received requests; not recorded")
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("the observer of received requests is behind; record dropped")
            }
        }
        let dialog = DialogId::of_request(&req);
        // A NOTIFY of a subscription of ours opens (or is in) its dialog.
        if let (Method::Notify, Some(d)) = (&method, &dialog)
            && lock(&core.watching).contains(&(d.call_id.clone(), d.local_tag.clone()))
        {
            core.dialogs.open(d.clone());
        }
        let unknown = dialog.as_ref().is_some_and(|d| !core.dialogs.is_live(d));
        match method {
            Method::Ack => debug!("ACK absorbed"),
            Method::Cancel => cancel(core, conn, &req).await,
            _ if unknown => {
                info!("no such dialog");
                respond(core, conn, &req, 481, &ids::tag()).await;
            }
            Method::Bye => {
                if let Some(dialog) = &dialog {
                    core.dialogs.end(dialog);
                    info!("dialog ended by the far end");
                }
                respond(core, conn, &req, 200, &ids::tag()).await;
            }
            Method::Message | Method::Options | Method::Info | Method::Notify => {
                respond(core, conn, &req, 200, &ids::tag()).await;
            }
            Method::Invite => {
                let (core, conn) = (core.clone(), conn.clone());
                tokio::spawn(answer_invite(core, conn, req).in_current_span());
            }
            _ => {
                let mut resp = response(&req, 405, &ids::tag());
                resp.headers.push(HeaderName::Allow, ALLOW);
                send(core, conn, resp).await;
            }
        }
    }
    .instrument(span)
    .await
}

/// 180, then after the ring time 200 with the dialog's Contact, the Record-Route copied
/// (RFC 3261 12.1.1) and an SDP answer; or 487 if a CANCEL came first. The 200 to a new
/// INVITE opens the callee's dialog and hands its [`Call`] to [`Ua::next_call`]; an INVITE
/// that could not make a dialog (no Contact) is refused with 400. A re-INVITE (inside a
/// dialog) is answered the same way in the dialog it belongs to.
///
/// [`Ua::next_call`]: crate::Ua::next_call
async fn answer_invite(core: Arc<Core>, conn: Arc<ConnInfo>, req: Message) {
    let tag = ids::tag();
    let dialog = if DialogId::of_request(&req).is_some() {
        None
    } else {
        match Dialog::as_callee(&req, &tag) {
            Ok(dialog) => Some(dialog),
            Err(why) => {
                warn!(%why, "INVITE refused");
                let resp = response(&req, 400, &tag);
                let why = format!("INVITE cannot make a dialog: {why}");
                send(&core, &conn, with_warning(resp, &why)).await;
                return;
            }
        }
    };
    let branch = branch_of(&req);
    let (cancel_tx, cancelled) = oneshot::channel();
    lock(&core.ringing).insert(branch.clone(), cancel_tx);
    let contact = contact(&core.user, conn.local);
    let mut ringing = response(&req, 180, &tag);
    ringing.headers.push(HeaderName::Contact, contact.clone());
    send(&core, &conn, ringing).await;
    let was_cancelled = tokio::select! {
        _ = tokio::time::sleep(core.cfg.ring) => false,
        r = cancelled => r.is_ok(),
    };
    lock(&core.ringing).remove(&branch);
    if was_cancelled {
        info!("cancelled while ringing");
        send(&core, &conn, response(&req, 487, &tag)).await;
        return;
    }
    let mut ok = response(&req, 200, &tag);
    for rr in req.headers.get_all(&HeaderName::RecordRoute) {
        ok.headers.push(HeaderName::RecordRoute, rr.value.clone());
    }
    ok.headers.push(HeaderName::Contact, contact);
    // `response` ended the headers with Content-Length 0; set_body replaces it.
    ok.set_body("application/sdp", sdp(conn.local.ip()));
    let Some(dialog) = dialog else {
        send(&core, &conn, ok).await;
        info!("answered in the dialog");
        return;
    };
    // Open before the 200 leaves: the caller's ACK and requests may follow at once.
    core.dialogs.open(dialog.id.clone());
    send(&core, &conn, ok.clone()).await;
    info!(route = dialog.route.len(), "answered; dialog open");
    let call = Call::answered(core.clone(), ok, vec![180], dialog);
    if core.calls.try_send(call).is_err() {
        debug!("nobody takes the calls this client answers; the dialog stays open");
    }
}

/// CANCEL (RFC 3261 9.2): 200 and the INVITE ends with 487 if it still rings; 481 if there
/// is no such INVITE (any more).
async fn cancel(core: &Arc<Core>, conn: &Arc<ConnInfo>, req: &Message) {
    let ringing = lock(&core.ringing).remove(&branch_of(req));
    let status = match ringing.map(|invite| invite.send(())) {
        Some(Ok(())) => 200,
        _ => 481,
    };
    respond(core, conn, req, status, &ids::tag()).await;
}

/// The transaction key an INVITE and its CANCEL share: the top Via branch.
fn branch_of(req: &Message) -> String {
    req.top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned))
        .unwrap_or_default()
}

/// A response with the To tag this client answers with, unless the request is in a dialog
/// already (its To has a tag).
fn response(req: &Message, code: u16, tag: &str) -> Message {
    let mut resp = Message::response_to(req, code, reason_phrase(code));
    resp.tag_to(tag);
    resp
}

/// A response saying why in a Warning (RFC 3261 20.43), as siplab's servers do.
fn with_warning(mut resp: Message, why: &str) -> Message {
    resp.push_warning(why);
    resp
}

async fn respond(core: &Core, conn: &ConnInfo, req: &Message, code: u16, tag: &str) {
    send(core, conn, response(req, code, tag)).await;
}

/// Sends a response back down the connection its request came on.
async fn send(core: &Core, conn: &ConnInfo, resp: Message) {
    let status = resp.status();
    match core
        .transport
        .send(&Destination::Flow(conn.flow), resp.to_bytes())
        .await
    {
        Ok(_) => debug!(?status, "responded"),
        // Signed out: the last NOTIFY of a subscription can arrive as the flow closes.
        Err(error @ TransportError::FlowGone(_)) => {
            debug!(?status, %error, "response not sent: signed out")
        }
        Err(error) => warn!(?status, %error, "response not sent"),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const MESSAGE: &[u8] = b"MESSAGE sip:adam@contoso.test SIP/2.0\r\n\
Via: SIP/2.0/TLS 127.1.0.10:5061;branch=z9hG4bKr1\r\n\
Via: SIP/2.0/TLS 127.1.0.101:40000;branch=z9hG4bKa;rport=40000;received=127.1.0.101\r\n\
Max-Forwards: 69\r\n\
To: <sip:adam@contoso.test>\r\n\
From: \"Alice\" <sip:alice@contoso.test>;tag=1\r\n\
Call-ID: c1\r\n\
CSeq: 1 MESSAGE\r\n\
Content-Type: text/plain\r\n\
Content-Length: 2\r\n\
\r\n\
hi";

    #[test]
    fn a_request_is_read_with_its_via_chain() {
        let req = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        let r = Received::read(&req).unwrap();
        assert_eq!(r.method, Method::Message);
        assert_eq!(
            (r.from.as_str(), r.to.as_str()),
            ("alice@contoso.test", "adam@contoso.test")
        );
        assert_eq!(r.body, "hi");
        let sent_by: Vec<_> = r.vias.iter().map(|v| v.sent_by.as_str()).collect();
        assert_eq!(sent_by, ["127.1.0.10:5061", "127.1.0.101:40000"]);
        assert_eq!(r.vias[1].rport, Some(40000));
        assert_eq!(r.vias[1].received.as_deref(), Some("127.1.0.101"));
        assert_eq!(r.vias[0].port, Some(5061));
    }

    #[test]
    fn responses_carry_a_to_tag_unless_in_a_dialog() {
        let req = Message::parse(Bytes::from_static(MESSAGE)).unwrap();
        let resp = response(&req, 200, "t1");
        assert_eq!(resp.to().unwrap().tag(), Some("t1"));
        resp.validate().unwrap();
        let in_dialog = String::from_utf8_lossy(MESSAGE).replace(
            "To: <sip:adam@contoso.test>",
            "To: <sip:adam@contoso.test>;tag=x",
        );
        let req = Message::parse(Bytes::from(in_dialog)).unwrap();
        assert_eq!(response(&req, 200, "t1").to().unwrap().tag(), Some("x"));
    }
}
