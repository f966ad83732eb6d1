//! Ladder (sequence) diagrams of what the nodes captured on the wire: one lifeline per
//! interface or client placement a message passed, one arrow per message from its real
//! source to its real destination, each forwarded request with the reason its node gave.
//! Built from the captures alone, not from a model of the paths.

use serde::Serialize;
use siplab_sip::{Message, Method, StartLine};
use siplab_topology::Lab;
use siplab_transport::Captured;

use crate::chain::name_of;

/// One message on the wire.
#[derive(Debug, Clone, Serialize)]
pub struct Arrow {
    pub from: String,
    pub to: String,
    /// The method of a request, the status and reason phrase of a response.
    pub label: String,
    pub request: bool,
    /// The real addresses: `127.1.0.20:40122 -> 127.3.0.10:5061`.
    pub wire: String,
    /// Why the sending node sent it there (a node's forwarded request or own answer).
    pub reason: Option<String>,
    /// Milliseconds since the ladder's first message.
    pub at_ms: f64,
}

/// The messages of one Call-ID (or one transaction of it) as a ladder.
#[derive(Debug, Clone, Serialize)]
pub struct Ladder {
    pub title: String,
    pub call_id: String,
    /// Left to right, in the order the messages first reached them.
    pub lifelines: Vec<String>,
    pub arrows: Vec<Arrow>,
}

/// Which messages of a call a ladder shows.
#[derive(Debug, Clone)]
pub enum Select {
    /// Every message of the Call-ID (a dialog, for the live page).
    Call,
    /// The first transaction of this method in the Call-ID (by CSeq): the request on every
    /// hop and its responses.
    First(Method),
}

impl Ladder {
    /// The ladder of `call_id` from the captures of every node of `lab`. Each message is
    /// drawn once: a node-to-node message as its sender captured it, a message from a client
    /// as the node that received it did.
    pub fn of(lab: &Lab, events: &[Captured], call_id: &str, select: Select) -> Ladder {
        let mut parsed: Vec<(&Captured, Message)> = events
            .iter()
            .filter(|e| e.call_id() == Some(call_id.as_bytes()))
            .filter(|e| e.sent || !from_a_node(lab, e))
            .filter_map(|e| Message::parse(e.payload.clone()).ok().map(|m| (e, m)))
            .collect();
        parsed.sort_by_key(|(e, _)| e.time);
        if let Select::First(method) = &select {
            let first = parsed
                .iter()
                .filter_map(|(_, m)| m.cseq().ok())
                .filter(|c| c.method == *method)
                .map(|c| c.seq)
                .min();
            parsed.retain(|(_, m)| {
                m.cseq()
                    .is_ok_and(|c| c.method == *method && Some(c.seq) == first)
            });
        }
        let start = parsed.first().map(|(e, _)| e.time);
        let mut ladder = Ladder {
            title: String::new(),
            call_id: call_id.to_owned(),
            lifelines: Vec::new(),
            arrows: Vec::new(),
        };
        for (e, msg) in &parsed {
            let (from, to) = (
                name_of(lab, &e.src.ip().to_string()),
                name_of(lab, &e.dst.ip().to_string()),
            );
            for name in [&from, &to] {
                if !ladder.lifelines.contains(name) {
                    ladder.lifelines.push(name.clone());
                }
            }
            let (label, request) = match &msg.start {
                StartLine::Request { method, .. } => (method.to_string(), true),
                StartLine::Response { code, reason } => {
                    (format!("{code} {}", String::from_utf8_lossy(reason)), false)
                }
            };
            let at_ms = start
                .and_then(|s| e.time.duration_since(s).ok())
                .map_or(0.0, |d| d.as_secs_f64() * 1e3);
            ladder.arrows.push(Arrow {
                from,
                to,
                label,
                request,
                wire: format!("{} -> {}", e.src, e.dst),
                reason: e.reason.as_deref().map(str::to_owned),
                at_ms,
            });
        }
        ladder
    }

    /// The interfaces the request passed, in the article's terms: each request arrow's
    /// sender (its Via), then the last one's receiver.
    pub fn path(&self) -> Vec<String> {
        let requests: Vec<&Arrow> = self.arrows.iter().filter(|a| a.request).collect();
        let mut path: Vec<String> = requests.iter().map(|a| a.from.clone()).collect();
        path.extend(requests.last().map(|a| a.to.clone()));
        path
    }

    pub fn titled(mut self, title: impl Into<String>) -> Ladder {
        self.title = title.into();
        self
    }
}

/// Whether a capture's source is one of the lab's node interfaces (else a client's).
fn from_a_node(lab: &Lab, e: &Captured) -> bool {
    lab.interface_by_addr(e.src.ip()).is_some()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;

    fn lab() -> Lab {
        Lab::reference().unwrap()
    }

    fn captured(
        src: &str,
        dst: &str,
        sent: bool,
        t: u64,
        text: &str,
        reason: Option<&str>,
    ) -> Captured {
        let addr = |a: &str| a.parse::<SocketAddr>().unwrap();
        Captured {
            node: "X".into(),
            agent: 1,
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(t),
            src: addr(src),
            dst: addr(dst),
            sent,
            payload: Bytes::from(text.replace('\n', "\r\n")),
            reason: reason.map(Arc::from),
        }
    }

    fn message(call_id: &str, first: &str) -> String {
        format!(
            "{first}\nVia: SIP/2.0/TLS 10.10.1.50:5061;branch=z9hG4bK1\nFrom: <sip:alice@contoso.test>;tag=1\n\
             To: <sip:bob@fabrikam.test>\nCall-ID: {call_id}\nCSeq: 1 MESSAGE\nMax-Forwards: 70\nContent-Length: 0\n\n"
        )
    }

    #[test]
    fn each_message_is_drawn_once_from_its_real_source_with_its_reason() {
        let lab = lab();
        let (a1i, r1) = ("10.10.1.101:40000", "10.10.1.10:5061");
        let (r1_out, e1i) = ("10.10.1.10:41000", "10.10.1.11:5061");
        let req = message("c1", "MESSAGE sip:bob@fabrikam.test SIP/2.0");
        let ok = message("c1", "SIP/2.0 200 OK");
        let events = [
            // R1 receives from the client (drawn) and sends to E1 (drawn); E1 receives from
            // R1 (a node: drawn once, by R1); the 200 back.
            captured(a1i, r1, false, 0, &req, None),
            captured(r1_out, e1i, true, 1, &req, Some("fabrikam.test: not ours")),
            captured(r1_out, e1i, false, 2, &req, None),
            captured(e1i, r1_out, true, 5, &ok, None),
            captured(e1i, r1_out, false, 6, &ok, None),
            captured(r1, a1i, true, 7, &ok, None),
            captured(r1, a1i, true, 8, &message("other", "SIP/2.0 200 OK"), None),
        ];
        let lad = Ladder::of(&lab, &events, "c1", Select::First(Method::Message));
        let names: Vec<_> = lad
            .arrows
            .iter()
            .map(|a| (a.from.as_str(), a.to.as_str(), a.label.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("A1i", "R1", "MESSAGE"),
                ("R1", "E1i", "MESSAGE"),
                ("E1i", "R1", "200 OK"),
                ("R1", "A1i", "200 OK")
            ]
        );
        assert_eq!(lad.lifelines, ["A1i", "R1", "E1i"]);
        assert_eq!(
            lad.arrows[1].reason.as_deref(),
            Some("fabrikam.test: not ours")
        );
        assert_eq!(lad.path(), ["A1i", "R1", "E1i"]);
    }
}
