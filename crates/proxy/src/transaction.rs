//! The transaction layer of a proxy over a reliable transport (RFC 3261 section 17): the
//! tables of server and client transactions, their keys, Timers B/F, C and H, CANCEL
//! matching, and what a response does to them. It decides; the core sends. No I/O here, so
//! every rule can be tested with a paused clock.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use siplab_sip::{CSeq, HeaderName, Message, Method, SipUri, Uri, Via};
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
    /// Server transactions at once of one client identity (a user's certificate), over all
    /// its connections: a client that sends faster than it is answered waits, the others
    /// do not.
    pub per_client: usize,
    /// Server transactions at once of one connection (a client's, or a server's carrying
    /// many users): one connection's flood is answered 503 beyond it, whoever sent it.
    pub per_connection: usize,
}

/// A request being answered here: where the answer goes and what was sent already.
struct ServerTxn {
    request: Message,
    conn: Arc<ConnInfo>,
    /// The client identity it counts against (a hash of its AOR), when it came from a client.
    client: Option<u64>,
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
    /// This client has `per_client` requests in progress already: 503.
    ClientBusy,
    /// This connection has `per_connection` requests in progress already: 503.
    ConnectionBusy,
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

/// How many server transactions each of some holders (client identities, connections) has.
#[derive(Default)]
struct PerHolder(HashMap<u64, usize>);

impl PerHolder {
    /// One more for `holder`, unless it has `max` already.
    fn take(&mut self, holder: u64, max: usize) -> bool {
        let n = self.0.entry(holder).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&mut self, holder: u64) {
        if let Some(n) = self.0.get_mut(&holder) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(&holder);
            }
        }
    }
}

/// The server transactions, and how many of them each client identity and each connection
/// has.
#[derive(Default)]
struct Servers {
    txns: HashMap<String, ServerTxn>,
    per_client: PerHolder,
    per_conn: PerHolder,
}

impl Servers {
    fn get(&self, key: &str) -> Option<&ServerTxn> {
        self.txns.get(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut ServerTxn> {
        self.txns.get_mut(key)
    }

    /// Ends a server transaction, and its counts against its client and its connection.
    fn remove(&mut self, key: &str) -> Option<ServerTxn> {
        let t = self.txns.remove(key)?;
        if let Some(client) = t.client {
            self.per_client.give_back(client);
        }
        self.per_conn.give_back(t.conn.id);
        Some(t)
    }
}

pub(crate) struct Transactions {
    servers: Mutex<Servers>,
    clients: Mutex<HashMap<String, ClientTxn>>,
    timers: Arc<Timers>,
    limits: Limits,
    /// Hashes client identities for `Servers::per_client`.
    keys: std::hash::RandomState,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Transactions {
    pub fn new(limits: Limits, timers: Arc<Timers>) -> Transactions {
        Transactions {
            servers: Mutex::default(),
            clients: Mutex::new(HashMap::new()),
            timers,
            limits,
            keys: std::hash::RandomState::new(),
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
        if servers.txns.len() >= self.limits.max {
            return Arrival::Full;
        }
        // Hashed, not copied: this runs for every request from a client.
        let client = conn.identity.sip_aor().map(|aor| self.keys.hash_one(aor));
        if let Some(client) = client
            && !servers.per_client.take(client, self.limits.per_client)
        {
            return Arrival::ClientBusy;
        }
        if !servers.per_conn.take(conn.id, self.limits.per_connection) {
            if let Some(client) = client {
                servers.per_client.give_back(client);
            }
            return Arrival::ConnectionBusy;
        }
        servers.txns.insert(
            key.to_owned(),
            ServerTxn {
                request: msg.clone(),
                conn: conn.clone(),
                client,
                final_code: None,
                last: None,
                client_branch: None,
                timer: None,
            },
        );
        Arrival::New
    }

    /// The connection server transaction `key`'s request came on.
    pub fn server_conn(&self, key: &str) -> Option<Arc<ConnInfo>> {
        lock(&self.servers).get(key).map(|t| t.conn.clone())
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
    /// The Request-URI a client transaction's request went to (a registered contact, when
    /// it was delivered to a user).
    pub fn target_of(&self, branch: &str) -> Option<SipUri> {
        let clients = lock(&self.clients);
        let uri = clients.get(branch)?.request.request_uri()?;
        uri.as_sip().cloned()
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::conn;

    const B: Duration = Duration::from_secs(32);
    const C: Duration = Duration::from_secs(180);
    const H: Duration = Duration::from_secs(32);

    fn table(max: usize) -> Transactions {
        let limits = Limits {
            timer_b: B,
            timer_c: C,
            timer_h: H,
            max,
            per_client: 2,
            per_connection: 3,
        };
        Transactions::new(limits, Arc::default())
    }

    fn request(method: &str, branch: &str) -> Message {
        let text = format!(
            "{method} sip:adam@contoso.test SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.0.0.9:5061;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@contoso.test>;tag=1\r\nTo: <sip:adam@contoso.test>\r\n\
             Call-ID: t1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse(text.into()).unwrap()
    }

    fn response(req: &Message, code: u16) -> Message {
        reply_message(req, &Reply::new(code))
    }

    fn key_of(msg: &Message) -> String {
        let vias = msg.vias().unwrap();
        server_key(&vias[0], msg, &msg.method().unwrap())
    }

    /// Opens the server transaction of `req` from `from`.
    fn arrive(t: &Transactions, req: &Message, from: &Arc<ConnInfo>) -> Arrival {
        t.arrive(&key_of(req), &req.method().unwrap(), req, from)
    }

    #[test]
    fn a_retransmission_gets_the_last_answer_and_a_final_answer_ends_it() {
        let (t, alice) = (table(10), conn("1x1", "alice"));
        let msg = request("MESSAGE", "m1");
        assert!(matches!(arrive(&t, &msg, &alice), Arrival::New));
        assert!(matches!(
            arrive(&t, &msg, &alice),
            Arrival::Retransmission(None)
        ));
        let key = key_of(&msg);
        let ok = Bytes::from_static(b"SIP/2.0 200 OK");
        assert_eq!(t.answer(&key, 200, &ok), Some(alice.flow));
        // Reliable transport: the transaction ends with its final answer (Timer J is 0).
        assert_eq!(t.answer(&key, 200, &ok), None);
        assert!(matches!(arrive(&t, &msg, &alice), Arrival::New));
    }

    #[test]
    fn a_client_has_a_bound_of_its_own_on_requests_in_progress() {
        let t = table(10);
        let addr: std::net::SocketAddr = "127.0.0.1:5061".parse().unwrap();
        let user = |id: u64| {
            Arc::new(ConnInfo {
                id,
                flow: FlowToken::parse("1x1").unwrap(),
                interface: Arc::from("E1x"),
                local: addr,
                peer: addr,
                identity: siplab_transport::PeerIdentity {
                    uris: vec!["sip:alice@contoso.test".into()],
                    ..Default::default()
                },
                inbound: true,
            })
        };
        let (first, second) = (user(1), user(2));
        let msgs: Vec<Message> = (0..4)
            .map(|i| request("MESSAGE", &format!("c{i}")))
            .collect();
        assert!(matches!(arrive(&t, &msgs[0], &first), Arrival::New));
        assert!(matches!(arrive(&t, &msgs[1], &second), Arrival::New));
        // Over both of alice's connections.
        assert!(matches!(arrive(&t, &msgs[2], &first), Arrival::ClientBusy));
        // A server's connection (many users' requests) is not counted per client.
        let server = conn("1x2", "edge.contoso.test");
        assert!(matches!(arrive(&t, &msgs[2], &server), Arrival::New));
        let ok = Bytes::from_static(b"SIP/2.0 200 OK");
        t.answer(&key_of(&msgs[0]), 200, &ok);
        assert!(
            matches!(arrive(&t, &msgs[3], &first), Arrival::New),
            "one ended"
        );
    }

    #[test]
    fn a_connection_has_a_bound_of_its_own_on_requests_in_progress() {
        let t = table(10);
        // A server's connection, carrying many users' requests: no client bound applies.
        let edge = conn("1x1", "edge.contoso.test");
        let other = Arc::new(ConnInfo {
            id: 2,
            flow: FlowToken::parse("1x2").unwrap(),
            interface: edge.interface.clone(),
            local: edge.local,
            peer: edge.peer,
            identity: edge.identity.clone(),
            inbound: true,
        });
        let msgs: Vec<Message> = (0..5)
            .map(|i| request("MESSAGE", &format!("k{i}")))
            .collect();
        for m in &msgs[..3] {
            assert!(matches!(arrive(&t, m, &edge), Arrival::New));
        }
        assert!(matches!(
            arrive(&t, &msgs[3], &edge),
            Arrival::ConnectionBusy
        ));
        assert!(
            matches!(arrive(&t, &msgs[3], &other), Arrival::New),
            "another connection has a bound of its own"
        );
        t.answer(
            &key_of(&msgs[0]),
            200,
            &Bytes::from_static(b"SIP/2.0 200 OK"),
        );
        assert!(
            matches!(arrive(&t, &msgs[4], &edge), Arrival::New),
            "one ended"
        );
    }

    #[test]
    fn an_invite_answered_with_a_non_2xx_resends_it_until_its_ack() {
        let (t, alice) = (table(10), conn("1x1", "alice"));
        let invite = request("INVITE", "i1");
        arrive(&t, &invite, &alice);
        let key = key_of(&invite);
        let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here");
        assert_eq!(t.answer(&key, 486, &busy), Some(alice.flow));
        // A second final answer is not sent.
        assert_eq!(t.answer(&key, 480, &busy), None);
        match arrive(&t, &invite, &alice) {
            Arrival::Retransmission(Some((flow, last))) => {
                assert_eq!((flow, last), (alice.flow, busy));
            }
            other => panic!("{other:?}"),
        }
        let ack = request("ACK", "i1");
        assert!(matches!(arrive(&t, &ack, &alice), Arrival::AckAbsorbed));
        assert!(matches!(arrive(&t, &ack, &alice), Arrival::New));
    }

    #[tokio::test(start_paused = true)]
    async fn timer_h_ends_an_invite_whose_ack_never_comes() {
        let (t, alice) = (table(10), conn("1x1", "alice"));
        let invite = request("INVITE", "i2");
        arrive(&t, &invite, &alice);
        let key = key_of(&invite);
        t.answer(&key, 486, &Bytes::from_static(b"486"));
        let started = tokio::time::Instant::now();
        let due = t.timers.due().await;
        assert_eq!(started.elapsed(), H);
        assert_eq!(due.len(), 1);
        let (id, timeout) = &due[0];
        assert_eq!(*timeout, Timeout::Server(key.clone()));
        assert!(t.fired(timeout, *id).is_none());
        // The transaction is gone: a late ACK is not absorbed but routed (and dropped there).
        let ack = request("ACK", "i2");
        assert!(matches!(arrive(&t, &ack, &alice), Arrival::New));
    }

    #[tokio::test(start_paused = true)]
    async fn timer_b_fires_for_silence_and_a_provisional_answer_moves_an_invite_to_timer_c() {
        let (t, next) = (table(10), conn("2x2", "edge"));
        let invite = request("INVITE", "c1");
        t.open_client("z9hG4bKout1", "k1".into(), Method::Invite, invite.clone());
        t.sent("z9hG4bKout1", next.clone());
        let message = request("MESSAGE", "c2");
        t.open_client("z9hG4bKout2", "k2".into(), Method::Message, message);
        // The INVITE rings: Timer C replaces its Timer B.
        let ringing = response(&invite, 180);
        assert!(matches!(
            t.response("z9hG4bKout1", 180, &next, &ringing),
            Matched::Relay { ack: None, .. }
        ));
        let started = tokio::time::Instant::now();
        let due = t.timers.due().await;
        assert_eq!(started.elapsed(), B);
        let fired: Vec<_> = due.iter().filter_map(|(id, to)| t.fired(to, *id)).collect();
        assert_eq!(fired.len(), 1, "only the MESSAGE's Timer B fires at 32 s");
        assert_eq!(fired[0].server_key, "k2");
        let due = t.timers.due().await;
        assert_eq!(started.elapsed(), C);
        let fired: Vec<_> = due.iter().filter_map(|(id, to)| t.fired(to, *id)).collect();
        assert_eq!(fired.len(), 1);
        assert!(
            fired[0].provisional,
            "Timer C: the INVITE rang, so it gets a CANCEL"
        );
    }

    #[test]
    fn responses_count_only_from_the_peer_the_request_went_to() {
        let t = table(10);
        let (next, other) = (conn("2x2", "edge"), conn("3x3", "mallory"));
        let invite = request("INVITE", "r1");
        t.open_client("z9hG4bKout", "k".into(), Method::Invite, invite.clone());
        t.sent("z9hG4bKout", next.clone());
        let busy = response(&invite, 486);
        assert!(matches!(
            t.response("z9hG4bKout", 486, &other, &busy),
            Matched::WrongPeer
        ));
        assert!(matches!(
            t.response("z9hG4bKout", 100, &next, &response(&invite, 100)),
            Matched::Trying
        ));
        // The non-2xx final answer: relayed, and acknowledged here hop by hop (17.1.1.3).
        let Matched::Relay {
            key,
            ack: Some(ack),
        } = t.response("z9hG4bKout", 486, &next, &busy)
        else {
            panic!("a 486 to an INVITE is relayed with an ACK");
        };
        assert_eq!(key, "k");
        let (ack, down) = *ack;
        assert_eq!(down.flow, next.flow);
        assert_eq!(ack.method(), Some(Method::Ack));
        assert_eq!(ack.cseq().unwrap().seq, 1);
        assert!(matches!(
            t.response("z9hG4bKout", 486, &next, &busy),
            Matched::Unknown
        ));
    }

    #[test]
    fn a_cancel_finds_its_invite_only_from_the_invites_peer() {
        let t = table(10);
        let (alice, mallory, next) = (
            conn("1x1", "alice"),
            conn("3x3", "mallory"),
            conn("2x2", "edge"),
        );
        let invite = request("INVITE", "x1");
        arrive(&t, &invite, &alice);
        let key = key_of(&invite);
        t.open_client("z9hG4bKdown", key.clone(), Method::Invite, invite.clone());
        t.sent("z9hG4bKdown", next.clone());
        let cancel = request("CANCEL", "x1");
        assert_eq!(key_of(&cancel), key, "a CANCEL is keyed as its INVITE");
        assert!(matches!(t.cancel(&key, &mallory), CancelMatch::Unknown));
        match t.cancel(&key, &alice) {
            CancelMatch::Found(Some(down)) => assert_eq!(down.1.flow, next.flow),
            _ => panic!("the INVITE went on: it is cancelled downstream"),
        }
        t.answer(&key, 486, &Bytes::from_static(b"486"));
        assert!(matches!(t.cancel(&key, &alice), CancelMatch::Found(None)));
    }

    #[test]
    fn a_full_table_refuses_new_requests_but_not_retransmissions() {
        let (t, alice) = (table(1), conn("1x1", "alice"));
        let first = request("MESSAGE", "f1");
        assert!(matches!(arrive(&t, &first, &alice), Arrival::New));
        assert!(matches!(
            arrive(&t, &request("MESSAGE", "f2"), &alice),
            Arrival::Full
        ));
        assert!(matches!(
            arrive(&t, &first, &alice),
            Arrival::Retransmission(None)
        ));
    }

    #[test]
    fn derived_requests_match_what_they_refer_to() {
        let invite = request("INVITE", "d1");
        let cancel = derived_request(&invite, Method::Cancel, None);
        assert_eq!(cancel.request_uri(), invite.request_uri());
        assert_eq!(cancel.vias().unwrap().len(), 1);
        assert_eq!(cancel.vias().unwrap()[0].branch(), Some("z9hG4bKd1"));
        assert_eq!(cancel.cseq().unwrap().to_string(), "1 CANCEL");
    }
}
