//! The trust domain (RFC 3325) and section 7 of the reference: which identity a request may
//! act for, and which identity headers survive the hop into this node.
//!
//! Identity comes from two places only: a user's client certificate (its `sip:` URI SAN),
//! checked here on every request the client sends, and the P-Asserted-Identity of a peer
//! the role trusts (a front end's own edge, an edge's own inside). Whatever else a request
//! claims is removed before the role sees it, so no header a client or a federation peer
//! writes can make a node act for someone else.

use siplab_sip::{Aor, Checked, HeaderName, Message, Method, NameAddr, SipUri, Uri};
use siplab_transport::ConnInfo;

use crate::decision::Reply;

/// Headers that claim an identity (RFC 3325): kept only from a peer the node trusts.
const CLAIMS: [HeaderName; 2] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
];

/// The claims and a Path, which names proxies and never the sender itself (RFC 3327).
const CLAIMS_AND_PATH: [HeaderName; 3] = [
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
    HeaderName::Path,
];

/// The AOR a client's certificate proves, as a registrar keys it; `None` for a server peer.
pub fn certificate_aor(conn: &ConnInfo) -> Option<Aor> {
    conn.identity
        .uris
        .iter()
        .find_map(|u| SipUri::parse(u).ok())
        .filter(|u| u.user.is_some())
        .map(|u| u.aor())
}

/// A P-Asserted-Identity value for `aor` (`<sip:aor>`).
pub fn asserted_identity(aor: &Aor) -> String {
    NameAddr::new(Uri::Sip(aor.uri())).to_string()
}

/// Applies the trust rules to a request before the role decides where it goes.
///
/// From a user's client: a REGISTER must be for the certificate's own AOR (To), and every
/// request must come from it (From); any identity header or Path the client wrote is
/// removed (a Path names proxies, never the client itself, RFC 3327). From a server peer the
/// node does not trust, identity headers are removed (RFC 3325 section 5) and so is a
/// REGISTER's Path. From a trusted peer the request is kept as it is.
///
/// `Err` is the 403 the request gets, its Warning naming the check that failed.
pub fn admit(
    msg: &mut Message,
    checked: &Checked,
    method: &Method,
    conn: &ConnInfo,
    trusted: bool,
) -> Result<(), Reply> {
    if conn.identity.sip_aor().is_none() {
        if !trusted {
            let claims: &[HeaderName] = if *method == Method::Register {
                &CLAIMS_AND_PATH
            } else {
                &CLAIMS
            };
            msg.headers.remove_any(claims);
        }
        return Ok(());
    }
    // (what is checked, the AOR it names): a REGISTER's To first, then From.
    let register = (*method == Method::Register).then_some(("REGISTER for", &checked.to));
    for (what, addr) in register.into_iter().chain([("From", &checked.from)]) {
        if !acts_for_certificate(addr, conn) {
            let claimed = addr
                .sip_uri()
                .map_or_else(|| "a non-SIP URI".into(), |u| u.aor().to_string());
            let cert = certificate_aor(conn)
                .map(|c| c.to_string())
                .unwrap_or_default();
            return Err(Reply::because(
                403,
                format!("{what} {claimed}, but the client certificate is {cert}"),
            ));
        }
    }
    msg.headers.remove_any(&CLAIMS_AND_PATH);
    Ok(())
}

/// Whether `addr` names the AOR of the client certificate of `conn`. The certificate's URI
/// as written is compared first, which is what a client sends: no allocation per request;
/// only a mismatch compares the canonical forms (escapes decoded, host case folded).
fn acts_for_certificate(addr: &NameAddr, conn: &ConnInfo) -> bool {
    let Some(uri) = addr.sip_uri() else {
        return false;
    };
    let written = conn.identity.sip_aor().and_then(|a| a.split_once('@'));
    if let (Some((user, host)), Some(u)) = (written, &uri.user)
        && u == user
        && matches!(&uri.host, siplab_sip::Host::Name(h) if h == host)
    {
        return true;
    }
    certificate_aor(conn).is_some_and(|cert| uri.aor() == cert)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use siplab_transport::{FlowToken, PeerIdentity};

    use super::*;

    fn conn(uris: &[&str], dns: &[&str]) -> ConnInfo {
        let addr: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        ConnInfo {
            id: 1,
            flow: FlowToken::parse("1x1").unwrap(),
            interface: Arc::from("R1"),
            local: addr,
            peer: addr,
            identity: PeerIdentity {
                dns_names: dns.iter().map(|d| d.to_string()).collect(),
                ips: Vec::new(),
                uris: uris.iter().map(|u| u.to_string()).collect(),
            },
            inbound: true,
        }
    }

    fn request(method: &str, from: &str, to: &str, extra: &str) -> Message {
        let text = format!(
            "{method} sip:{to} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.9:5061;branch=z9hG4bKt1\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=1\r\nTo: <sip:{to}>\r\nCall-ID: t1\r\n\
             CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        Message::parse(bytes::Bytes::from(text)).unwrap()
    }

    /// Admits `msg` from `conn`; the Warning of a refusal, or the request as it goes on.
    fn run(mut msg: Message, conn: &ConnInfo, trusted: bool) -> Result<Message, String> {
        let checked = msg.validate().unwrap();
        let method = msg.method().unwrap();
        admit(&mut msg, &checked, &method, conn, trusted)
            .map(|()| msg)
            .map_err(|r| {
                assert_eq!(r.code, 403);
                r.warning.unwrap_or_default()
            })
    }

    const FORGED: &str = "P-Asserted-Identity: <sip:adam@contoso.test>\r\n\
                          P-Preferred-Identity: <sip:adam@contoso.test>\r\n\
                          Path: <sip:x@edge01-int.contoso.test;lr>\r\n";

    #[test]
    fn a_client_acts_only_for_its_certificate() {
        let alice = conn(&["sip:alice@contoso.test"], &[]);
        let cases = [
            // (method, From, To, refused because)
            (
                "REGISTER",
                "alice",
                "adam",
                Some("REGISTER for adam@contoso.test"),
            ),
            (
                "REGISTER",
                "adam",
                "adam",
                Some("REGISTER for adam@contoso.test"),
            ),
            ("REGISTER", "adam", "alice", Some("From adam@contoso.test")),
            ("MESSAGE", "adam", "ben", Some("From adam@contoso.test")),
            ("INVITE", "adam", "alice", Some("From adam@contoso.test")),
            ("REGISTER", "alice", "alice", None),
            ("MESSAGE", "alice", "adam", None),
            // The host of an AOR is case-insensitive, as a registrar keys it.
            ("MESSAGE", "alice@CONTOSO.test", "adam", None),
        ];
        for (method, from, to, refused) in cases {
            let at = |u: &str| {
                if u.contains('@') {
                    u.to_owned()
                } else {
                    format!("{u}@contoso.test")
                }
            };
            let outcome = run(request(method, &at(from), &at(to), FORGED), &alice, false);
            match (refused, outcome) {
                (Some(why), Err(w)) => {
                    assert!(w.starts_with(why), "{method} {from}->{to}: {w}");
                    assert!(w.contains("alice@contoso.test"), "{w}");
                }
                (None, Ok(m)) => {
                    for name in [
                        HeaderName::PAssertedIdentity,
                        HeaderName::PPreferredIdentity,
                        HeaderName::Path,
                    ] {
                        assert!(m.headers.get(&name).is_none(), "{method}: {name:?} kept");
                    }
                }
                (want, got) => panic!("{method} {from}->{to}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn claims_survive_only_from_a_trusted_peer() {
        let edge = conn(&[], &["edge01-int.contoso.test"]);
        let register = || request("REGISTER", "adam@contoso.test", "adam@contoso.test", FORGED);
        let kept = run(register(), &edge, true).unwrap();
        assert!(kept.headers.get(&HeaderName::PAssertedIdentity).is_some());
        assert!(kept.headers.get(&HeaderName::Path).is_some());
        let stripped = run(register(), &edge, false).unwrap();
        for name in [
            HeaderName::PAssertedIdentity,
            HeaderName::PPreferredIdentity,
            HeaderName::Path,
        ] {
            assert!(stripped.headers.get(&name).is_none(), "{name:?} kept");
        }
        // An untrusted peer's MESSAGE keeps its (meaningless) Path but loses its claims.
        let msg = request("MESSAGE", "anna@fabrikam.test", "adam@contoso.test", FORGED);
        let m = run(msg, &edge, false).unwrap();
        assert!(m.headers.get(&HeaderName::PAssertedIdentity).is_none());
    }

    #[test]
    fn the_asserted_identity_is_a_name_addr() {
        assert_eq!(
            asserted_identity(&Aor::named("alice@contoso.test")),
            "<sip:alice@contoso.test>"
        );
        let alice = conn(&["sip:alice@contoso.test"], &[]);
        assert_eq!(
            certificate_aor(&alice).as_deref(),
            Some("alice@contoso.test")
        );
        assert_eq!(certificate_aor(&conn(&[], &["fe01.contoso.test"])), None);
    }
}
