//! The transaction layer of a proxy over a reliable transport (RFC 3261 section 17): the
//! tables of server and client transactions, their keys, Timers B/F, C and H, CANCEL
//! matching, and what a response does to them. It decides; the core sends. No I/O here, so
//! every rule can be tested with a paused clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use siplab_sip::{CSeq, HeaderName, Message, Method, Uri, Via};
use siplab_transport::{ConnInfo, FlowToken};

use crate::decision::Reply;
use crate::reply::reply_message;
use crate::timers::{Timeout, TimerId, Timers};

/// The client transactions of requests this node made itself carry this before their
/// Call-ID where forwarded ones carry the key of their server transaction.
pub(crate) const ORIGINATED: &str = "originated:";

/// Timers and bounds of the tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Timers B and F: a final response must come within this (64 * T1).
    pub timer_b: Duration,
    /// Timer C: an INVITE that had a provisional response waits this long for a final one.
    pub timer_c: Duration,
    /// How long an INVITE transaction answered with a non-2xx waits for its ACK (Timer H).
    pub timer_h: Duration,
    /// Server transactions at once.
    pub max: usize,
}

/// A request being answered here: where the answer goes and what was sent already.
struct ServerTxn {
    request: Message,
    conn: Arc<ConnInfo>,
    final_code: Option<u16>,
    last: Option<Bytes>,
    client_branch: Option<String>,
    /// Timer H, while an INVITE answered with a non-2xx waits for its ACK.
    timer: Option<TimerId>,
}

/// A request this node forwarded (or made) and waits on.
pub(crate) struct ClientTxn {
    pub server_key: String,
    pub method: Method,
    /// What was sent, for the CANCEL and the hop-by-hop ACK that must match it.
    pub request: Message,
    pub conn: Option<Arc<ConnInfo>>,
    pub provisional: bool,
    timer: Option<TimerId>,
}

/// A request derived from one sent (a CANCEL, the ACK of a non-2xx) and the connection
/// it goes down: boxed, since most answers carry none.
pub(crate) type Derived = Box<(Message, Arc<ConnInfo>)>;

/// What a request arriving does to the server transactions.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A new transaction (or an ACK that is not hop-by-hop): route it.
    New,
    /// A retransmission: the last answer, if any, goes again down this flow.
    Retransmission(Option<(FlowToken, Bytes)>),
    /// The ACK of a non-2xx answered here: it ends the INVITE transaction here.
    AckAbsorbed,
    /// The table is full: the request gets 503.
    Full,
}

/// What a response does to the client transactions.
pub(crate) enum Matched {
    /// No transaction here has its branch.
    Unknown,
    /// It came from a peer the request was not sent to.
    WrongPeer,
    /// A 100: it ends at this hop.
    Trying,
    /// Relay it through the server transaction `key`, after sending `ack` (the ACK of a
    /// non-2xx, 17.1.1.3) down its connection.
    Relay { key: String, ack: Option<Derived> },
}

/// What a CANCEL finds (9.2).
pub(crate) enum CancelMatch {
    /// No INVITE transaction from this peer: 481.
    Unknown,
    /// The INVITE: 200 to the CANCEL, and a CANCEL of our own down this connection when the
    /// INVITE went on and has no final answer yet.
    Found(Option<Derived>),
}

pub(crate) struct Transactions {
    servers: Mutex<HashMap<String, ServerTxn>>,
    clients: Mutex<HashMap<String, ClientTxn>>,
    timers: Arc<Timers>,
    limits: Limits,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transactions {
    pub fn new(limits: Limits, timers: Arc<Timers>) -> Transactions {
        Transactions {
            servers: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            timers,
            limits,
        }
    }

    pub fn max(&self) -> usize {
        self.limits.max
    }

    /// A request arrives: opens its server transaction (not for an ACK), or tells a
    /// retransmission or the hop-by-hop ACK of a non-2xx.
    pub fn arrive(
        &self,
        key: &str,
        method: &Method,
        msg: &Message,
        conn: &Arc<ConnInfo>,
    ) -> Arrival {
        let mut servers = lock(&self.servers);
        if *method == Method::Ack {
            if servers
                .get(key)
                .is_some_and(|t| t.final_code.is_some_and(|c| c >= 300))
            {
                if let Some(id) = servers.remove(key).and_then(|t| t.timer) {
                    self.timers.clear(id);
                }
                return Arrival::AckAbsorbed;
            }
            return Arrival::New;
        }
        if let Some(t) = servers.get(key) {
            return Arrival::Retransmission(t.last.clone().map(|last| (t.conn.flow, last)));
        }
        if servers.len() >= self.limits.max {
            return Arrival::Full;
        }
        servers.insert(
            key.to_owned(),
            ServerTxn {
                request: msg.clone(),
                conn: conn.clone(),
                final_code: None,
                last: None,
                client_branch: None,
                timer: None,
            },
        );
        Arrival::New
    }

    /// The response `reply` makes to the request of server transaction `key`, built from
    /// the stored request in place (no copy of it is needed).
    pub fn response_for(&self, key: &str, reply: &Reply) -> Option<Message> {
        lock(&self.servers)
            .get(key)
            .map(|t| reply_message(&t.request, reply))
    }

    /// A response about to go upstream through server transaction `key`, written as
    /// `bytes`: returns the flow it goes down, or `None` when it must not be sent (no such
    /// transaction, or a final answer went already and this is not a 2xx of an INVITE).
    /// Ends the transaction as 17.2 says for a reliable transport; an INVITE answered with a
    /// non-2xx waits for its ACK, but not for ever (Timer H).
    pub fn answer(&self, key: &str, code: u16, bytes: &Bytes) -> Option<FlowToken> {
        let mut servers = lock(&self.servers);
        let t = servers.get_mut(key)?;
        let is_invite = t.request.method() == Some(Method::Invite);
        if t.final_code.is_some() && !(is_invite && (200..300).contains(&code)) {
            return None;
        }
        let flow = t.conn.flow;
        t.last = Some(bytes.clone());
        if code >= 200 {
            t.final_code = Some(code);
            if !is_invite || code < 300 {
                servers.remove(key);
            } else {
                t.timer = Some(
                    self.timers
                        .set(self.limits.timer_h, Timeout::Server(key.to_owned())),
                );
            }
        }
        Some(flow)
    }

    /// Opens the client transaction of a request about to be sent (Timer B/F runs from
    /// now), tied to server transaction `server_key` when it has one.
    pub fn open_client(&self, branch: &str, server_key: String, method: Method, request: Message) {
        let timer = self
            .timers
            .set(self.limits.timer_b, Timeout::Client(branch.to_owned()));
        if let Some(t) = lock(&self.servers).get_mut(&server_key) {
            t.client_branch = Some(branch.to_owned());
        }
        lock(&self.clients).insert(
            branch.to_owned(),
            ClientTxn {
                server_key,
                method,
                request,
                conn: None,
                provisional: false,
                timer: Some(timer),
            },
        );
    }

    /// The request of client transaction `branch` went out on `conn`.
    pub fn sent(&self, branch: &str, conn: Arc<ConnInfo>) {
        if let Some(t) = lock(&self.clients).get_mut(branch) {
            t.conn = Some(conn);
        }
    }

    /// Ends a client transaction (answered, timed out or never sent) and its timer.
    pub fn close_client(&self, branch: &str) -> Option<ClientTxn> {
        let t = lock(&self.clients).remove(branch)?;
        if let Some(id) = t.timer {
            self.timers.clear(id);
        }
        Some(t)
    }

    /// Timer `id` fired: the client transaction it guarded, unless it ended or re-armed its
    /// timer since (a server transaction's Timer H just ends it).
    pub fn fired(&self, timeout: &Timeout, id: TimerId) -> Option<ClientTxn> {
        match timeout {
            Timeout::Client(branch) => {
                let mut clients = lock(&self.clients);
                match clients.get(branch) {
                    Some(t) if t.timer == Some(id) => clients.remove(branch),
                    _ => None,
                }
            }
            Timeout::Server(key) => {
                let mut servers = lock(&self.servers);
                if servers.get(key).is_some_and(|t| t.timer == Some(id)) {
                    servers.remove(key);
                }
                None
            }
        }
    }

    /// A CANCEL from `conn` for the INVITE transaction `key`.
    pub fn cancel(&self, key: &str, conn: &ConnInfo) -> CancelMatch {
        let pending = lock(&self.servers)
            .get(key)
            .filter(|t| same_peer(&t.conn, conn))
            .map(|t| (t.final_code.is_none(), t.client_branch.clone()));
        let Some((unanswered, client_branch)) = pending else {
            return CancelMatch::Unknown;
        };
        let downstream = client_branch.filter(|_| unanswered).and_then(|branch| {
            let clients = lock(&self.clients);
            let t = clients.get(&branch)?;
            Some(Box::new((t.request.clone(), t.conn.clone()?)))
        });
        CancelMatch::Found(downstream)
    }

    /// A response with status `code` and top branch `branch` from `conn`. Only the peer a
    /// request went to may answer it (a branch is no secret from a client that sees the
    /// request's Via). A provisional answer to an INVITE replaces Timer B with Timer C.
    pub fn response(&self, branch: &str, code: u16, conn: &ConnInfo, msg: &Message) -> Matched {
        let mut clients = lock(&self.clients);
        let Some(t) = clients.get_mut(branch) else {
            return Matched::Unknown;
        };
        if t.conn.as_ref().is_some_and(|c| !same_peer(c, conn)) {
            return Matched::WrongPeer;
        }
        if code < 200 {
            t.provisional = true;
            if t.method == Method::Invite {
                t.timer.take().inspect(|&id| self.timers.clear(id));
                t.timer = Some(
                    self.timers
                        .set(self.limits.timer_c, Timeout::Client(branch.to_owned())),
                );
            }
            if code == 100 {
                return Matched::Trying;
            }
            return Matched::Relay {
                key: t.server_key.clone(),
                ack: None,
            };
        }
        let Some(t) = clients.remove(branch) else {
            return Matched::Unknown;
        };
        if let Some(id) = t.timer {
            self.timers.clear(id);
        }
        // The client transaction acknowledges a non-2xx final response itself (17.1.1.3).
        let ack = match (t.method == Method::Invite && code >= 300, t.conn) {
            (true, Some(c)) => Some(Box::new((
                derived_request(&t.request, Method::Ack, Some(msg)),
                c,
            ))),
            _ => None,
        };
        Matched::Relay {
            key: t.server_key,
            ack,
        }
    }
}

/// Whether two connections reach the same peer: the same connection, or one proving the
/// same certificate identity (a peer may answer on a new connection, RFC 3261 18.2.2).
fn same_peer(a: &ConnInfo, b: &ConnInfo) -> bool {
    a.flow == b.flow || a.identity == b.identity
}

/// The key of a server transaction (17.2.3): branch, sent-by and method; for a request
/// without the RFC 3261 cookie, the whole top Via, Call-ID and CSeq number instead. An ACK
/// and a CANCEL are keyed as the INVITE they refer to.
pub(crate) fn server_key(top: &Via, msg: &Message, method: &Method) -> String {
    let method = match method {
        Method::Ack | Method::Cancel => &Method::Invite,
        m => m,
    };
    match top.branch() {
        Some(b) if top.has_rfc3261_branch() => format!("{b}|{}|{method}", top.sent_by()),
        _ => format!(
            "2543|{top}|{}|{}|{method}",
            msg.call_id()
                .map(String::from_utf8_lossy)
                .unwrap_or_default(),
            msg.cseq().map(|c| c.seq).unwrap_or_default()
        ),
    }
}

/// CANCEL and the ACK of a non-2xx, built from the request they refer to (9.1, 17.1.1.3):
/// same Request-URI, Call-ID, From, CSeq number, Route set, and our Via with its branch
/// alone; To from the response when it has one.
pub(crate) fn derived_request(
    req: &Message,
    method: Method,
    response: Option<&Message>,
) -> Message {
    let uri = req
        .request_uri()
        .cloned()
        .unwrap_or(Uri::Other(String::new()));
    let mut out = Message::request(method.clone(), uri);
    if let Some(via) = req
        .headers
        .elements(&HeaderName::Via)
        .and_then(|v| v.into_iter().next())
    {
        out.headers.push(HeaderName::Via, via);
    }
    out.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = req.headers.value(&name) {
            out.headers.push(name, v.clone());
        }
    }
    let to = response
        .and_then(|r| r.headers.value(&HeaderName::To))
        .or(req.headers.value(&HeaderName::To));
    if let Some(to) = to {
        out.headers.push(HeaderName::To, to.clone());
    }
    let seq = req.cseq().map(|c| c.seq).unwrap_or_default();
    out.headers
        .push(HeaderName::CSeq, CSeq::new(seq, method).to_string());
    for h in req.headers.get_all(&HeaderName::Route) {
        out.headers.push(HeaderName::Route, h.value.clone());
    }
    out.headers.push(HeaderName::ContentLength, "0");
    out
}
