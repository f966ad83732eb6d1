//! The requests a user sends, written straight into its connection's output buffer, and the
//! one thing read back off every response: which of our transactions it answers.
//!
//! Requests are formatted rather than built as a [`Message`]: at tens of thousands per
//! second on a core shared with the proxy under test, the generator must cost far less per
//! request than the proxy does. Responses it receives are parsed by the lab's codec.
//!
//! Branches are `z9hG4bK-<run>-<conn>-<n>`: the run's random salt, the connection's number
//! and a counter, so a response finds its transaction by one integer.

use std::fmt::Write;

use bytes::{Bytes, BytesMut};
use siplab_sip::{HeaderName, Message};

use crate::users::User;

/// The branch prefix of every request of this run.
const COOKIE: &str = "z9hG4bK-";

/// How a connection's user names itself and its transactions.
#[derive(Debug)]
pub struct Local {
    pub user: User,
    /// This connection's local `ip:port`: its Via sent-by and Contact.
    pub host: String,
    pub domain: String,
    pub salt: u32,
    pub conn: u32,
}

/// A dialog's identifiers, known once its INVITE is written.
#[derive(Debug, Clone)]
pub struct CallIds {
    pub call_id: String,
    pub tag: String,
    /// The callee's AOR: the INVITE's Request-URI and To.
    pub to: String,
}

/// What a 2xx to an INVITE says about the dialog, for its ACK and BYE.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub ids: CallIds,
    /// The remote target (the callee's Contact URI): their Request-URI.
    pub target: String,
    /// The 2xx's To, with the callee's tag.
    pub to: Bytes,
    /// The Record-Route of the 2xx in reverse: the caller's route set (RFC 3261 12.1.2).
    pub routes: Vec<Bytes>,
}

/// An SDP offer and answer of typical size, so INVITE and 200 weigh what real ones do.
fn sdp(ip: &str, session: u64) -> String {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

/// The body of every MESSAGE: the size of a short chat line.
const TEXT: &str = "siplab-load: a short instant message of about the size people type.";

impl Local {
    pub fn branch(&self, n: u64) -> String {
        format!("{COOKIE}{:x}-{:x}-{n:x}", self.salt, self.conn)
    }

    fn ip(&self) -> &str {
        self.host.rsplit_once(':').map_or(&self.host, |(ip, _)| ip)
    }

    fn via(&self, out: &mut BytesMut, branch: &str) {
        let _ = write!(
            out,
            "Via: SIP/2.0/TLS {};branch={branch};rport\r\nMax-Forwards: 70\r\n",
            self.host
        );
    }

    fn contact(&self) -> String {
        format!("<sip:{}@{};transport=tls;ob>", self.user.name, self.host)
    }

    /// The RFC 5626 instance of this user, the same on every REGISTER of the run.
    fn instance(&self) -> String {
        format!(
            "\"<urn:uuid:00000000-0000-4000-8000-{:04x}{:08x}>\"",
            self.salt & 0xffff,
            self.conn
        )
    }

    /// A REGISTER (the first or a refresh: same Call-ID, CSeq `cseq`) binding this
    /// connection with outbound (`ob`, `+sip.instance`, `reg-id=1`).
    pub fn register(&self, out: &mut BytesMut, n: u64, cseq: u32) {
        let aor = &self.user.aor;
        let _ = write!(out, "REGISTER sip:{} SIP/2.0\r\n", self.domain);
        self.via(out, &self.branch(n));
        let _ = write!(
            out,
            "From: <sip:{aor}>;tag={:x}-{n:x}\r\nTo: <sip:{aor}>\r\n\
             Call-ID: reg-{:x}-{:x}@{}\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: {};+sip.instance={};reg-id=1\r\nExpires: 3600\r\n\
             Supported: path, outbound\r\nContent-Length: 0\r\n\r\n",
            self.conn,
            self.salt,
            self.conn,
            self.ip(),
            self.contact(),
            self.instance()
        );
    }

    pub fn message(&self, out: &mut BytesMut, n: u64, to: &str) {
        let _ = write!(out, "MESSAGE sip:{to} SIP/2.0\r\n");
        self.via(out, &self.branch(n));
        let _ = write!(
            out,
            "From: <sip:{}>;tag={:x}-{n:x}\r\nTo: <sip:{to}>\r\n\
             Call-ID: {:x}-{:x}-{n:x}@{}\r\nCSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{TEXT}",
            self.user.aor,
            self.conn,
            self.salt,
            self.conn,
            self.ip(),
            TEXT.len()
        );
    }

    pub fn invite(&self, out: &mut BytesMut, n: u64, to: &str) -> CallIds {
        let ids = CallIds {
            call_id: format!("{:x}-{:x}-{n:x}@{}", self.salt, self.conn, self.ip()),
            tag: format!("{:x}-{n:x}", self.conn),
            to: to.to_owned(),
        };
        let body = sdp(self.ip(), n);
        let _ = write!(out, "INVITE sip:{to} SIP/2.0\r\n");
        self.via(out, &self.branch(n));
        let _ = write!(
            out,
            "From: <sip:{}>;tag={}\r\nTo: <sip:{to}>\r\nCall-ID: {}\r\nCSeq: 1 INVITE\r\n\
             Contact: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            self.user.aor,
            ids.tag,
            ids.call_id,
            self.contact(),
            body.len()
        );
        ids
    }

    /// The ACK of a non-2xx final response: hop by hop, the INVITE's branch and
    /// Request-URI, the response's To (RFC 3261 17.1.1.3).
    pub fn ack_failure(&self, out: &mut BytesMut, invite_n: u64, ids: &CallIds, to: &[u8]) {
        let _ = write!(out, "ACK sip:{} SIP/2.0\r\n", ids.to);
        self.via(out, &self.branch(invite_n));
        self.in_dialog_tail(out, ids, to, "1 ACK");
    }

    /// A request within the dialog (the 2xx's ACK, the BYE): to the remote target, along
    /// the route set (RFC 3261 12.2.1.1).
    pub fn in_dialog(&self, out: &mut BytesMut, n: u64, d: &Dialog, cseq: &str) {
        let method = cseq.rsplit(' ').next().unwrap_or(cseq);
        let _ = write!(out, "{method} {} SIP/2.0\r\n", d.target);
        self.via(out, &self.branch(n));
        for r in &d.routes {
            out.extend_from_slice(b"Route: ");
            out.extend_from_slice(r);
            out.extend_from_slice(b"\r\n");
        }
        self.in_dialog_tail(out, &d.ids, &d.to, cseq);
    }

    fn in_dialog_tail(&self, out: &mut BytesMut, ids: &CallIds, to: &[u8], cseq: &str) {
        let _ = write!(out, "From: <sip:{}>;tag={}\r\nTo: ", self.user.aor, ids.tag);
        out.extend_from_slice(to);
        let _ = write!(
            out,
            "\r\nCall-ID: {}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
            ids.call_id
        );
    }

    /// The callee side: 200 to anything but ACK; to an INVITE with our tag, Contact, the
    /// Record-Route the dialog needs (RFC 3261 12.1.1) and an SDP answer.
    pub fn answer(&self, out: &mut BytesMut, req: &Message, n: u64) {
        let mut resp = Message::response_to(req, 200, "OK");
        let tagged = req.to().is_ok_and(|t| t.tag().is_some());
        if !tagged && let Some(to) = req.headers.value(&HeaderName::To) {
            let mut value = BytesMut::from(&to[..]);
            let _ = write!(value, ";tag={:x}-{n:x}", self.conn);
            resp.headers.set(HeaderName::To, value.freeze());
        }
        if req.method() == Some(siplab_sip::Method::Invite) {
            for rr in req.headers.get_all(&HeaderName::RecordRoute) {
                resp.headers.push(HeaderName::RecordRoute, rr.value.clone());
            }
            resp.headers.push(HeaderName::Contact, self.contact());
            resp.set_body("application/sdp", sdp(self.ip(), n));
        }
        resp.write(out);
    }

    /// Which of this connection's transactions a response answers: the counter in its top
    /// Via's branch, when the branch is one of ours.
    pub fn transaction_of(&self, resp: &Message) -> Option<u64> {
        let via = resp.headers.value(&HeaderName::Via)?;
        let at = memchr::memmem::find(via, b"branch=")? + "branch=".len();
        let value = &via[at..];
        let end = value
            .iter()
            .position(|b| matches!(b, b';' | b',' | b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(value.len());
        let text = std::str::from_utf8(&value[..end]).ok()?;
        let mut parts = text.strip_prefix(COOKIE)?.split('-');
        let salt = u32::from_str_radix(parts.next()?, 16).ok()?;
        let conn = u32::from_str_radix(parts.next()?, 16).ok()?;
        let n = u64::from_str_radix(parts.next()?, 16).ok()?;
        (salt == self.salt && conn == self.conn && parts.next().is_none()).then_some(n)
    }
}

impl Dialog {
    /// The dialog a 2xx to our INVITE set up; `None` without a Contact to send ACK and BYE to.
    pub fn from_2xx(ids: CallIds, resp: &Message) -> Option<Dialog> {
        let target = resp.contacts().ok()?.into_iter().find_map(|c| match c {
            siplab_sip::Contact::Addr(a) => Some(a.uri.to_string()),
            siplab_sip::Contact::Star => None,
        })?;
        let mut routes = resp
            .headers
            .elements(&HeaderName::RecordRoute)
            .unwrap_or_default();
        routes.reverse();
        Some(Dialog {
            ids,
            target,
            to: resp.headers.value(&HeaderName::To)?.clone(),
            routes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use siplab_sip::{Frame, Limits, StreamDecoder};

    fn local() -> Local {
        Local {
            user: User {
                name: "caller0".into(),
                aor: "caller0@contoso.test".into(),
            },
            host: "127.1.250.101:40000".into(),
            domain: "contoso.test".into(),
            salt: 0xabc,
            conn: 7,
        }
    }

    fn parse(out: &BytesMut) -> Message {
        let mut buf = out.clone();
        match StreamDecoder::new(Limits::default()).decode(&mut buf) {
            Some(Frame::Message(m)) => {
                m.validate().unwrap();
                assert!(buf.is_empty(), "exactly one message");
                m
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_request_parses_and_validates() {
        let l = local();
        let mut out = BytesMut::new();
        l.register(&mut out, 1, 1);
        let reg = parse(&out);
        let contact = reg.contacts().unwrap();
        assert_eq!(contact.len(), 1);
        assert_eq!(reg.expires().unwrap(), Some(3600));

        out.clear();
        l.message(&mut out, 2, "user5@contoso.test");
        let msg = parse(&out);
        assert_eq!(&msg.body[..], TEXT.as_bytes());

        out.clear();
        let ids = l.invite(&mut out, 3, "user5@contoso.test");
        let invite = parse(&out);
        assert_eq!(invite.call_id().unwrap(), ids.call_id.as_bytes());
    }

    #[test]
    fn a_response_finds_its_transaction_by_branch() {
        let l = local();
        let mut out = BytesMut::new();
        l.message(&mut out, 0x1234, "user5@contoso.test");
        let req = parse(&out);
        let resp = Message::response_to(&req, 200, "OK");
        assert_eq!(l.transaction_of(&resp), Some(0x1234));
        let other = Local { conn: 8, ..local() };
        assert_eq!(other.transaction_of(&resp), None);
    }

    #[test]
    fn the_callee_answers_an_invite_with_tag_contact_and_record_route() {
        let caller = local();
        let callee = Local {
            user: User {
                name: "user5".into(),
                aor: "user5@contoso.test".into(),
            },
            conn: 9,
            ..local()
        };
        let mut out = BytesMut::new();
        let ids = caller.invite(&mut out, 3, "user5@contoso.test");
        let mut text = String::from_utf8(out.to_vec()).unwrap();
        text = text.replacen(
            "Via:",
            "Record-Route: <sip:tok@fe01.contoso.test:5061;transport=tls;lr>\r\nRecord-Route: <sip:edge.test;lr>\r\nVia:",
            1,
        );
        let invite = Message::parse(Bytes::from(text)).unwrap();
        let mut answer = BytesMut::new();
        callee.answer(&mut answer, &invite, 1);
        let ok = parse(&answer);
        assert_eq!(ok.status(), Some(200));
        assert!(ok.to().unwrap().tag().is_some());
        let d = Dialog::from_2xx(ids, &ok).unwrap();
        assert_eq!(d.target, "sip:user5@127.1.250.101:40000;transport=tls;ob");
        assert_eq!(d.routes.len(), 2);
        assert_eq!(&d.routes[0][..], b"<sip:edge.test;lr>");

        let mut bye = BytesMut::new();
        caller.in_dialog(&mut bye, 4, &d, "2 BYE");
        let bye = parse(&bye);
        assert_eq!(bye.method(), Some(siplab_sip::Method::Bye));
        assert_eq!(bye.headers.get_all(&HeaderName::Route).count(), 2);
        assert_eq!(bye.to().unwrap().tag(), ok.to().unwrap().tag());
    }
}
