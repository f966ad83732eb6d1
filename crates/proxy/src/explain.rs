//! A hop's reason in words, from the decision that was made: the input the rule looked at
//! (its [`Subject`]), the rule ([`Why::text`]) and where the request went or what answered
//! it. What a trace shows beside a hop and what a node exports with the message; nothing
//! here decides anything.

use std::fmt;

use siplab_sip::{Message, NameAddr, SipUri, Uri};
use siplab_transport::{ConnInfo, Destination};

use crate::decision::{Subject, Why};

/// What came of the decision.
pub(crate) enum Outcome<'a> {
    /// Forwarded to this destination.
    Sent(&'a Destination),
    /// Answered here with this status.
    Answered(u16),
}

/// A hop's reason, written out only when it is displayed (a log line that is off costs
/// nothing): `fabrikam.test: not ours: federation via _sipfederationtls._tcp ->
/// sip.fabrikam.test (10.20.2.20:5061)`.
pub(crate) struct Reason<'a> {
    pub why: Why,
    pub msg: &'a Message,
    pub conn: &'a ConnInfo,
    /// What came of it, once known.
    pub outcome: Option<Outcome<'a>>,
}

impl Reason<'_> {
    /// The reason as a capture carries it.
    pub fn shared(&self) -> std::sync::Arc<str> {
        self.to_string().into()
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reason {
            why,
            msg,
            conn,
            ref outcome,
        } = *self;
        let target = || msg.request_uri().and_then(Uri::as_sip);
        let aor = |uri: Option<&SipUri>| uri.map(|u| u.aor().to_string());
        let header = |a: Result<NameAddr, _>| a.ok().and_then(|a| a.sip_uri().map(SipUri::aor));
        let subject = match why.subject() {
            Subject::Route => None,
            Subject::Target => aor(target()),
            Subject::Domain => target().map(|u| u.host.to_string()),
            Subject::Sender => header(msg.from()).map(|a| a.to_string()),
            Subject::Parties => header(msg.from()).map(|f| match aor(target()) {
                Some(t) => format!("{f} to {t}"),
                None => f.to_string(),
            }),
            Subject::Registering => header(msg.to()).map(|a| a.to_string()),
            Subject::Request => {
                let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
                Some(match aor(target()) {
                    Some(t) => format!("{method} for {t}"),
                    None => method,
                })
            }
            Subject::Peer => Some(conn.identity.describe()),
        };
        if let Some(s) = subject {
            write!(out, "{s}: ")?;
        }
        out.write_str(why.text())?;
        match outcome {
            Some(Outcome::Sent(dest)) => write!(out, " -> {}", Next(dest)),
            Some(Outcome::Answered(code)) => write!(out, ": {code}"),
            None => Ok(()),
        }
    }
}

struct Next<'a>(&'a Destination);

impl fmt::Display for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Destination::Flow(_) => f.write_str("the client's own connection"),
            Destination::Peer {
                server_name, addr, ..
            } => write!(f, "{server_name} ({addr})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::conn;

    fn request(text: &str) -> Message {
        Message::parse(bytes::Bytes::from(text.replace('\n', "\r\n"))).unwrap()
    }

    const MESSAGE: &str = "MESSAGE sip:bob@fabrikam.test SIP/2.0\n\
        Via: SIP/2.0/TLS 10.10.1.50:50000;branch=z9hG4bK1\n\
        From: <sip:alice@contoso.test>;tag=1\n\
        To: <sip:bob@fabrikam.test>\n\
        Call-ID: c1\n\
        CSeq: 1 MESSAGE\n\
        Max-Forwards: 70\n\
        Content-Length: 0\n\n";

    #[test]
    fn each_reason_names_what_it_looked_at_and_where_it_led() {
        let msg = request(MESSAGE);
        let c = conn("1x1", "fe01.contoso.test");
        let peer = Destination::Peer {
            interface: "E1x".into(),
            addr: "198.51.100.20:5061".parse().unwrap(),
            server_name: "sip.fabrikam.test".into(),
        };
        let cases = [
            (
                Why::Federation,
                Outcome::Sent(&peer),
                "fabrikam.test: not ours: federation via _sipfederationtls._tcp -> sip.fabrikam.test (198.51.100.20:5061)",
            ),
            (
                Why::HostingProvider,
                Outcome::Sent(&peer),
                "bob@fabrikam.test: homed in the cloud: to the hosting provider -> sip.fabrikam.test (198.51.100.20:5061)",
            ),
            (
                Why::HybridPartner,
                Outcome::Sent(&peer),
                "alice@contoso.test: a cloud user's traffic: to its tenant's on-prem edge -> sip.fabrikam.test (198.51.100.20:5061)",
            ),
            (
                Why::PresenceServer,
                Outcome::Answered(200),
                "MESSAGE for bob@fabrikam.test: for a user homed here: answered, not forwarded: 200",
            ),
            (
                Why::Inward,
                Outcome::Sent(&Destination::Flow(c.flow)),
                "fe01.contoso.test: from outside: to the inside, which knows its users -> the client's own connection",
            ),
            (
                Why::RouteSet,
                Outcome::Sent(&peer),
                "loose routing: the next Route -> sip.fabrikam.test (198.51.100.20:5061)",
            ),
        ];
        for (why, outcome, text) in cases {
            let outcome = Some(outcome);
            let reason = Reason {
                why,
                msg: &msg,
                conn: &c,
                outcome,
            };
            assert_eq!(reason.to_string(), text);
        }
    }
}
