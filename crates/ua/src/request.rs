//! The requests a UA sends, built as RFC 3261 section 8.1.1 lists their headers: a Via with
//! a fresh branch and `rport` (the client sits behind whatever rewrites its address),
//! Max-Forwards 70, From, To, Call-ID and CSeq, then what the method needs.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use siplab_sip::{CSeq, HeaderName, Host, Message, Method, NameAddr, SipUri, Uri, Via};

use crate::ids;

/// A request ready to go, with what its transaction needs to know about it.
#[derive(Debug)]
pub(crate) struct OutRequest {
    pub(crate) msg: Message,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) branch: String,
    /// The Via value the UA put on, which a non-2xx ACK repeats.
    pub(crate) via: String,
    pub(crate) cseq: u32,
}

/// The headers every request starts with.
pub(crate) struct Head<'a> {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    /// The local end of the flow: the Via sent-by.
    pub(crate) local: SocketAddr,
    /// The whole From value, tag included.
    pub(crate) from: &'a str,
    pub(crate) to: &'a str,
    pub(crate) call_id: &'a str,
    pub(crate) cseq: u32,
}

impl OutRequest {
    pub(crate) fn new(head: Head<'_>) -> OutRequest {
        let branch = ids::branch();
        let via = Via::tls(head.local, &branch).flag("rport").to_string();
        let mut msg = Message::request(head.method.clone(), head.uri.clone());
        msg.headers.push(HeaderName::Via, via.clone());
        msg.headers.push(HeaderName::MaxForwards, "70");
        msg.headers.push(HeaderName::From, head.from.to_owned());
        msg.headers.push(HeaderName::To, head.to.to_owned());
        msg.headers
            .push(HeaderName::CallId, head.call_id.to_owned());
        msg.headers.push(
            HeaderName::CSeq,
            CSeq::new(head.cseq, head.method.clone()).to_string(),
        );
        OutRequest {
            msg,
            method: head.method,
            uri: head.uri,
            branch,
            via,
            cseq: head.cseq,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: impl Into<Bytes>) -> OutRequest {
        self.msg.headers.push(name, value);
        self
    }

    /// Ends the header section with the body's Content-Type and Content-Length.
    pub(crate) fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> OutRequest {
        self.msg.set_body(content_type, body);
        self
    }

    /// Ends the header section of a request without a body.
    pub(crate) fn empty(self) -> OutRequest {
        self.header(HeaderName::ContentLength, "0")
    }
}

/// The Contact a client puts in REGISTER and in dialogs: its address on the flow, marked
/// `ob` (RFC 5626) because it can only be reached back down that flow.
pub(crate) fn contact(user: &str, local: SocketAddr) -> String {
    contact_addr(user, local).to_string()
}

/// [`contact`] as an address, for a REGISTER to add its parameters to.
pub(crate) fn contact_addr(user: &str, local: SocketAddr) -> NameAddr {
    let uri = SipUri::tls(Some(user), Host::Ip(local.ip()), Some(local.port())).flag("ob");
    NameAddr::new(Uri::Sip(uri))
}

/// `<uri>`: an address as From, To and Contact carry it.
pub(crate) fn addr(uri: &Uri) -> String {
    NameAddr::new(uri.clone()).to_string()
}

/// A minimal SDP offer or answer: the lab signals calls, it carries no media.
pub(crate) fn sdp(ip: IpAddr) -> String {
    let net = if ip.is_ipv4() { "IP4" } else { "IP6" };
    format!(
        "v=0\r\no=- 1 1 IN {net} {ip}\r\ns=siplab\r\nc=IN {net} {ip}\r\nt=0 0\r\n\
         m=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_has_the_mandatory_headers_in_order() {
        let local: SocketAddr = "127.3.0.201:40000".parse().unwrap();
        let req = OutRequest::new(Head {
            method: Method::Message,
            uri: Uri::parse("sip:adam@contoso.test").unwrap(),
            local,
            from: "<sip:alice@contoso.test>;tag=1",
            to: "<sip:adam@contoso.test>",
            call_id: "c1@127.3.0.201",
            cseq: 1,
        })
        .body("text/plain", "hi");
        req.msg.validate().unwrap();
        let text = String::from_utf8(req.msg.to_bytes().to_vec()).unwrap();
        let expected = format!(
            "MESSAGE sip:adam@contoso.test SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.3.0.201:40000;branch={};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@contoso.test>;tag=1\r\n\
             To: <sip:adam@contoso.test>\r\n\
             Call-ID: c1@127.3.0.201\r\n\
             CSeq: 1 MESSAGE\r\n\
             Content-Type: text/plain\r\n\
             Content-Length: 2\r\n\r\nhi",
            req.branch
        );
        assert_eq!(text, expected);
        assert_eq!(
            contact("alice", local),
            "<sip:alice@127.3.0.201:40000;transport=tls;ob>"
        );
    }
}
