//! The stateful proxy core (RFC 3261 section 16), the same for every role: the pipeline a
//! message takes, and the sending. A request goes: validate -> transaction -> Max-Forwards,
//! Proxy-Require, URI scheme -> trust -> loop check -> Route pre-processing -> the role's
//! decision -> forward (Via, Record-Route, Path) or answer. A response goes back along the
//! Via chain through the transaction that sent the request.
//!
//! The units it runs: [`crate::transaction`] (the tables and timers), [`crate::forward`]
//! (Route handling and header edits), [`crate::home`] (registrar and presence), the role's
//! [`Policy`] (every routing decision) and the node's [`Reach`] (how next hops are found).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siplab_sip::{Checked, HeaderName, Message, Method, NameAddr, Via};
use siplab_transport::quiet::Repeated;
use siplab_transport::{ConnInfo, Destination, Event, FlowToken, Transport, TransportError};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::branch::{self, BranchMaker};
use crate::counters::{Count, Counters};
use crate::decision::{Action, Forward, Reply, Why};
use crate::explain::{Outcome, Reason};
use crate::flood::{Buckets, RateLimit};
use crate::forward::{self, Hop, Interfaces, OwnInterface};
use crate::home::{Answered, Home};
use crate::policy::{Inbound, Policy, Reach};
use crate::presence::{PresenceServer, Subscription};
use crate::registrar::{ExpiryBounds, Location};
use crate::reply::reply_message;
use crate::timers::Timers;
use crate::transaction::{self, Arrival, CancelMatch, Limits, Matched, ORIGINATED, Transactions};
use crate::trust;
use crate::upstream::Upstream;

/// Timers and bounds.
#[derive(Debug, Clone, Copy)]
pub struct ProxyConfig {
    /// Lanes of the transport, each with a task processing its messages (one per core by
    /// default; messages of one Call-ID always on the same lane).
    pub workers: usize,
    /// Timers B and F: a final response must come within this (64 * T1).
    pub timer_b: Duration,
    /// Timer C: an INVITE that had a provisional response waits this long for a final one.
    pub timer_c: Duration,
    /// How long an INVITE transaction answered with a non-2xx waits for its ACK (Timer H).
    pub timer_h: Duration,
    pub expiry: ExpiryBounds,
    /// Requests being answered at once; beyond it a new one gets 503 with Retry-After, so a
    /// flood (or next hops that never answer) cannot grow the transaction table without end.
    pub max_transactions: usize,
    /// Requests being answered at once for one client identity (a user's certificate, over
    /// all its connections); beyond it, 503 with Retry-After.
    pub max_client_transactions: usize,
    /// Requests being answered at once that came on one connection (a client's, or a
    /// server's carrying many users); beyond it, 503 with Retry-After.
    pub max_connection_transactions: usize,
    /// Requests per client identity (user certificate); beyond it, 503 with Retry-After.
    pub rate: RateLimit,
    /// Requests per address clients connect from (all their certificates); beyond it, 503
    /// with Retry-After.
    pub rate_per_source: RateLimit,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            timer_b: Duration::from_secs(32),
            timer_c: Duration::from_secs(180),
            timer_h: Duration::from_secs(32),
            expiry: ExpiryBounds::default(),
            max_transactions: 100_000,
            max_client_transactions: 1_000,
            max_connection_transactions: 10_000,
            rate: RateLimit::default(),
            rate_per_source: RateLimit::per_source(),
        }
    }
}

/// How often a registrar connection that clients signed in through gets a keep-alive: well
/// inside the idle time-out (600 s unless the lab file sets another).
const UPSTREAM_KEEPALIVE: Duration = Duration::from_secs(60);

/// Answers that could not be sent (a peer that stopped reading makes one a message).
static UNSENT: Repeated = Repeated::new();
/// Requests over a client's rate.
static FLOODED: Repeated = Repeated::new();
/// Requests of a client with too many in progress.
static BUSY: Repeated = Repeated::new();

/// A node's proxy: one per node, shared by its workers.
pub struct Proxy<P: Policy, R: Reach> {
    policy: P,
    reach: R,
    transport: Transport,
    own: Interfaces,
    txns: Transactions,
    home: Home,
    branches: BranchMaker,
    timers: Arc<Timers>,
    /// Asks the notifier task for a pass over the subscriptions; requests made while one
    /// is pending or running fold into one pass.
    notify_wanted: Arc<Notify>,
    /// What it handled and refused (sends that failed among them).
    counters: Arc<Counters>,
    /// Each client identity's requests, and each client source address's.
    flood: Buckets,
    flood_source: Buckets,
    /// Which client flows signed in through which connection to a registrar.
    upstream: Upstream,
}

impl<P: Policy, R: Reach> Proxy<P, R> {
    pub fn new(
        policy: P,
        reach: R,
        transport: Transport,
        own: Vec<OwnInterface>,
        config: ProxyConfig,
    ) -> Arc<Proxy<P, R>> {
        let timers = Arc::<Timers>::default();
        let limits = Limits {
            timer_b: config.timer_b,
            timer_c: config.timer_c,
            timer_h: config.timer_h,
            max: config.max_transactions,
            per_client: config.max_client_transactions,
            per_connection: config.max_connection_transactions,
        };
        Arc::new(Proxy {
            policy,
            reach,
            transport,
            own: Interfaces::new(own),
            txns: Transactions::new(limits, timers.clone()),
            home: Home {
                location: Arc::new(Location::new(config.expiry)),
                presence: Arc::default(),
            },
            branches: BranchMaker::default(),
            timers,
            notify_wanted: Arc::default(),
            counters: Arc::default(),
            flood: Buckets::new(config.rate),
            flood_source: Buckets::new(config.rate_per_source),
            upstream: Upstream::default(),
        })
    }

    /// The presence server (what users published, who watches whom).
    pub fn presence(&self) -> &Arc<PresenceServer> {
        &self.home.presence
    }

    /// The location service (shared, so the node's owner can look at the bindings).
    pub fn location(&self) -> &Arc<Location> {
        &self.home.location
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Processes the transport's lanes ([`Transport::with_lanes`]), one task per lane, until
    /// the transport goes away. The transport puts the messages of one Call-ID on the same
    /// lane, so a dialog's requests keep their order.
    pub fn spawn(self: &Arc<Self>, lanes: Vec<mpsc::Receiver<Event>>) {
        // The timer task ends with the last lane.
        let end_timers = Arc::new(EndTimers(self.timers.clone()));
        for mut events in lanes {
            let (proxy, end_timers) = (self.clone(), end_timers.clone());
            tokio::spawn(async move {
                let _end_timers = end_timers;
                while let Some(event) = events.recv().await {
                    match event {
                        Event::Message { msg, conn } => proxy.handle(msg, conn).await,
                        Event::Closed { conn } => proxy.on_closed(&conn),
                    }
                }
            });
        }
        // Keep-alives down the registrar connections clients signed in through, so that no
        // idle time-out takes one (and with it, their flows) while they depend on it.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UPSTREAM_KEEPALIVE);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                for flow in proxy.upstream.in_use() {
                    proxy.transport.ping(&flow);
                }
            }
        });
        let (timers, weak) = (self.timers.clone(), Arc::downgrade(self));
        tokio::spawn(async move {
            loop {
                let due = timers.due().await;
                let Some(proxy) = weak.upgrade().filter(|_| !due.is_empty()) else {
                    return;
                };
                for (id, timeout) in due {
                    if let Some(t) = proxy.txns.fired(&timeout, id) {
                        proxy.on_timeout(t).await;
                    }
                }
            }
        });
        let (weak, wanted) = (Arc::downgrade(self), self.notify_wanted.clone());
        tokio::spawn(async move {
            loop {
                wanted.notified().await;
                let Some(proxy) = weak.upgrade() else { return };
                proxy.notify_due(None).await;
            }
        });
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(Duration::from_secs(30));
            sweep.tick().await;
            loop {
                sweep.tick().await;
                let Some(proxy) = weak.upgrade() else { return };
                proxy.home.location.sweep();
                proxy.notify_soon();
            }
        });
    }

    async fn handle(self: &Arc<Self>, msg: Message, conn: Arc<ConnInfo>) {
        // The span's fields are worked out only when the span is enabled; the branch is
        // recorded once validation has parsed the top Via.
        let call_id = || {
            msg.headers
                .value(&HeaderName::CallId)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        if msg.is_request() {
            let span = info_span!(
                "request",
                method = %msg.method().map(|m| m.to_string()).unwrap_or_default(),
                call_id = %call_id(),
                branch = tracing::field::Empty,
                from = %conn.peer,
                why = tracing::field::Empty
            );
            self.on_request(msg, conn).instrument(span).await;
        } else {
            let span = info_span!(
                "response",
                status = msg.status().unwrap_or_default(),
                call_id = %call_id(),
                branch = tracing::field::Empty,
                from = %conn.peer
            );
            self.on_response(msg, conn).instrument(span).await;
        }
    }

    /// A connection is gone: its bindings go, and so do the client flows that signed in
    /// through it ([`Upstream`]), so that their clients sign in again now.
    fn on_closed(&self, conn: &ConnInfo) {
        if conn.inbound {
            self.home.location.remove_flow(&conn.flow);
            // Users whose last binding went are offline now.
            self.notify_soon();
        }
        let clients = self.upstream.closed(&conn.flow);
        if !clients.is_empty() {
            info!(
                clients = clients.len(),
                peer = %conn.identity.describe(),
                "connection to the registrar gone: closing the flows of the clients who signed in through it"
            );
        }
        for flow in clients {
            self.transport.close(&flow);
        }
    }

    /// Why a client's request is over its rate (its identity's, or its source address's),
    /// or `None` when it is within both.
    fn over_rate(&self, aor: &str, conn: &ConnInfo) -> Option<String> {
        if !self.flood.admit(aor) {
            return Some(format!("too many requests from {aor}"));
        }
        let source = conn.peer.ip();
        (!self.flood_source.admit(source)).then(|| format!("too many requests from {source}"))
    }

    async fn on_request(self: &Arc<Self>, mut msg: Message, conn: Arc<ConnInfo>) {
        self.counters.add(Count::Request);
        let checked = match msg.validate() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "invalid request");
                let reply = Reply::because(e.status(), e.to_string());
                return self.send_direct(&conn, reply_message(&msg, &reply)).await;
            }
        };
        let Some(method) = msg.method() else { return };
        let top = &checked.vias[0];
        record_branch(top);
        forward::stamp_received(&mut msg, top, &conn);
        let key = transaction::server_key(top, &msg, &method);
        debug!(
            uri = msg.request_uri().map(tracing::field::display),
            "received"
        );
        if method == Method::Cancel {
            return self.on_cancel(msg, conn, &key).await;
        }
        match self.txns.arrive(&key, &method, &msg, &conn) {
            Arrival::New => {}
            Arrival::AckAbsorbed => return debug!("ACK for a non-2xx absorbed"),
            Arrival::Retransmission(last) => {
                debug!("retransmission");
                if let Some((flow, last)) = last {
                    self.send_on(flow, last, "retransmitted answer").await;
                }
                return;
            }
            Arrival::Full => {
                self.counters.add(Count::TableFull);
                warn!(limit = self.txns.max(), "transaction table full");
                let reply = Reply::because(503, "too many transactions in progress")
                    .with(HeaderName::new("Retry-After"), "5");
                return self.send_direct(&conn, reply_message(&msg, &reply)).await;
            }
            busy @ (Arrival::ClientBusy | Arrival::ConnectionBusy) => {
                self.counters.add(Count::ClientBusy);
                let (whose, why) = match busy {
                    Arrival::ClientBusy => ("client", "too many of your requests in progress"),
                    _ => (
                        "connection",
                        "too many requests in progress on this connection",
                    ),
                };
                if let Some(repeated) = BUSY.due() {
                    warn!(peer = %conn.identity.describe(), whose, repeated, "requests in progress at their bound: 503");
                }
                let reply = Reply::because(503, why).with(HeaderName::new("Retry-After"), "1");
                return self.send_direct(&conn, reply_message(&msg, &reply)).await;
            }
        }
        // An ACK is never answered (its key is its INVITE's): a refusal just ends it here.
        let is_ack = method == Method::Ack;
        if !is_ack
            && let Some(aor) = conn.identity.sip_aor()
            && let Some(over) = self.over_rate(aor, &conn)
        {
            self.counters.add(Count::OverRate);
            if let Some(repeated) = FLOODED.due() {
                warn!(%aor, source = %conn.peer.ip(), repeated, "request rate of one client exceeded: 503");
            }
            let reply = Reply::because(503, over).with(HeaderName::new("Retry-After"), "1");
            return self.reply(&key, reply).await;
        }
        if method == Method::Invite {
            self.reply(&key, Reply::new(100)).await;
        }
        let trusted = self.policy.trusts_assertion(&conn);
        let mut refused = self.check(&msg, &checked, &method);
        if refused.is_none()
            && let Err(reply) = trust::admit(&mut msg, &checked, &method, &conn, trusted)
        {
            warn!(why = ?reply.warning, peer = %conn.identity.describe(), "refused");
            refused = Some(reply);
        }
        // Hashed as it goes on, after the trust rules' removals.
        let hash = loop_hash(&msg, &checked, &conn.interface);
        if refused.is_none()
            && checked.vias.iter().any(|v| {
                self.own.is_own_host(&v.host)
                    && v.branch().is_some_and(|b| branch::carries(b, hash))
            })
        {
            refused = Some(Reply::because(
                482,
                "this request passed here before unchanged",
            ));
        }
        if let Some(reply) = refused {
            if !is_ack {
                self.reply(&key, reply).await;
            }
            return;
        }
        let routes = self
            .own
            .preprocess_routes(&mut msg, &conn, |t| self.transport.flow(t).is_some());
        if routes.flow_failed() {
            if !is_ack {
                let gone = "the connection this request was to take to its client is gone";
                self.reply(&key, Reply::because(430, gone)).await;
            }
            return;
        }
        let (route_flow, next_route) = (routes.flow, routes.next);
        let for_this_node = msg
            .request_uri()
            .and_then(|u| u.as_sip())
            .is_some_and(|u| self.own.is_node_uri(u));
        let inbound = Inbound {
            msg: &msg,
            conn: &conn,
            route_flow,
            next_route,
            for_this_node,
            in_subscription: method == Method::Subscribe && self.home.presence.holds(&msg),
            location: &self.home.location,
        };
        let decision = self.policy.route(&inbound, &self.reach).await;
        let why = decision.why;
        tracing::Span::current().record(
            "why",
            tracing::field::display(Reason {
                why,
                msg: &msg,
                conn: &conn,
                outcome: None,
            }),
        );
        debug!("decided");
        debug!(action = ?decision.action, "decision");
        match decision.action {
            Action::Forward(f) => {
                let limits = (hash, checked.max_forwards);
                self.forward(msg, *f, &key, limits, &conn, why).await
            }
            _ if is_ack => {}
            Action::Reply(r) => {
                let reason = self.reason(why, &msg, &conn, Outcome::Answered(r.code));
                self.reply_because(&key, r, reason).await
            }
            Action::Register(aor) => {
                let answer = self.home.register(&msg, &conn, &aor, trusted);
                self.answer_home(&key, answer, (why, &msg, &conn)).await
            }
            Action::Presence(aor) => {
                let contact = self
                    .own
                    .get(&conn.interface)
                    .map(OwnInterface::contact)
                    .unwrap_or_default();
                let answer = self
                    .home
                    .presence(&msg, &conn, aor.as_ref(), trusted, &contact);
                self.answer_home(&key, answer, (why, &msg, &conn)).await
            }
        }
    }

    /// Section 16.3 steps 3 and 5, and 8.2.2: Max-Forwards, Proxy-Require, the URI scheme.
    fn check(&self, msg: &Message, checked: &Checked, method: &Method) -> Option<Reply> {
        let uri = msg.request_uri()?;
        if checked.max_forwards == Some(0) {
            let to_us = uri.as_sip().is_some_and(|u| self.own.is_node_uri(u));
            if !(to_us && *method == Method::Options) {
                return Some(Reply::because(483, "Max-Forwards reached 0"));
            }
        }
        if let Ok(tags) = msg.option_tags(HeaderName::ProxyRequire)
            && !tags.is_empty()
        {
            return Some(Reply::new(420).with(HeaderName::Unsupported, tags.join(", ")));
        }
        if uri.as_sip().is_none() {
            return Some(Reply::because(
                416,
                format!("the {} scheme is not served here", uri.scheme()),
            ));
        }
        None
    }

    /// Sends what the registrar or the presence server answered, and the NOTIFYs it causes.
    async fn answer_home(
        self: &Arc<Self>,
        key: &str,
        answer: Result<Answered, Reply>,
        (why, msg, conn): (Why, &Message, &ConnInfo),
    ) {
        let code = match &answer {
            Ok(a) => a.response.status().unwrap_or_default(),
            Err(reply) => reply.code,
        };
        let reason = self.reason(why, msg, conn, Outcome::Answered(code));
        match answer {
            Ok(Answered { response, changed }) => {
                self.send_response(key, response, reason).await;
                self.notify_due(Some(&changed)).await;
            }
            Err(reply) => self.reply_because(key, reply, reason).await,
        }
    }

    /// A hop's reason for a capture, worked out only when the transport is tapped.
    fn reason(
        &self,
        why: Why,
        msg: &Message,
        conn: &ConnInfo,
        outcome: Outcome<'_>,
    ) -> Option<Arc<str>> {
        let outcome = Some(outcome);
        let reason = || {
            Reason {
                why,
                msg,
                conn,
                outcome,
            }
            .shared()
        };
        self.transport.tapped().then(reason)
    }

    /// Has the notifier task send the NOTIFYs the latest changes call for: the lanes must
    /// not wait on watchers' next hops (a DNS look-up, a connect), and a burst of changes
    /// (a thousand connections closing) makes one pass, not a thousand tasks.
    fn notify_soon(&self) {
        self.notify_wanted.notify_one();
    }

    /// Sends the NOTIFYs that are due (see [`Home::due`]).
    async fn notify_due(self: &Arc<Self>, target: Option<&str>) {
        let contact = self
            .own
            .first()
            .map(OwnInterface::contact)
            .unwrap_or_default();
        for (notify, sub) in self.home.due(target, &contact) {
            self.originate(notify, &sub).await;
        }
    }

    /// Sends a request this node makes itself (a NOTIFY) in `sub`'s dialog.
    async fn originate(self: &Arc<Self>, mut msg: Message, sub: &Subscription) {
        let Some(hop) = self.home.notify_hop(sub) else {
            return;
        };
        let Hop {
            dest,
            interface: out,
            ..
        } = match forward::locate(&hop.next_hop, &self.transport, &self.reach).await {
            Ok(d) => d,
            Err(reply) => return warn!(why = ?reply.warning, "NOTIFY not sent"),
        };
        for r in hop.routes.iter().rev() {
            msg.headers.push_front(HeaderName::Route, r.clone());
        }
        let Some(out_if) = self.own.get(&out) else {
            return;
        };
        // What a copy of this NOTIFY coming back is checked by.
        let (to, from) = (msg.to().ok(), msg.from().ok());
        let tags = (
            to.as_ref().and_then(NameAddr::tag),
            from.as_ref().and_then(NameAddr::tag),
        );
        let hash = branch::loop_hash(&msg, tags, msg.cseq().map_or(0, |c| c.seq), "");
        let branch = self.branches.make(hash);
        forward::push_via(&mut msg, out_if.addr, &branch, false);
        let bytes = msg.to_bytes();
        let key = format!("{ORIGINATED}{}", sub.call_id);
        self.txns.open_client(&branch, key, Method::Notify, msg);
        match self.transport.send(&dest, bytes).await {
            Ok(c) => self.txns.sent(&branch, c),
            Err(e) => {
                self.txns.close_client(&branch);
                warn!(error = %e, "NOTIFY not sent");
            }
        }
    }

    async fn forward(
        self: &Arc<Self>,
        mut msg: Message,
        f: Forward,
        key: &str,
        (hash, max_forwards): (u64, Option<u8>),
        conn: &Arc<ConnInfo>,
        why: Why,
    ) {
        let method = msg.method().unwrap_or(Method::Ack);
        let hop = match forward::locate(&f.next_hop, &self.transport, &self.reach).await {
            Ok(h) => h,
            Err(reply) => {
                let reason = self.reason(why, &msg, conn, Outcome::Answered(reply.code));
                return self.reply_because(key, reply, reason).await;
            }
        };
        // Before the edits: the Request-URI the rule looked at, not the contact it became.
        let reason = self.reason(why, &msg, conn, Outcome::Sent(&hop.dest));
        let (Some(out_if), Some(in_if)) =
            (self.own.get(&hop.interface), self.own.get(&conn.interface))
        else {
            let missing = Reply::because(500, "interface missing from the node's own list");
            return self.reply(key, missing).await;
        };
        forward::edit(&mut msg, f, max_forwards, conn, out_if);
        // Each side is named by the listener its peer reaches: a client that connected to
        // the edge's client port (443) sees that port in Via and Record-Route, so its
        // in-dialog requests and responses ride the connection it registered on (RFC 5626).
        let out_addr = forward::listener_of(hop.flow.as_deref()).unwrap_or(out_if.addr);
        let in_port =
            forward::listener_of(Some(conn.as_ref())).map_or(in_if.addr.port(), |a| a.port());
        if method.creates_dialog() {
            let token_in = conn.identity.sip_aor().map(|_| conn.flow);
            let token_out = match &hop.dest {
                Destination::Flow(t) => Some(*t),
                Destination::Peer { .. } => None,
            };
            forward::record_route(
                &mut msg,
                (in_if, in_port, token_in),
                (out_if, out_addr.port(), token_out),
            );
        }
        let branch = self.branches.make(hash);
        let to_peer = matches!(hop.dest, Destination::Peer { .. });
        forward::push_via(&mut msg, out_addr, &branch, to_peer);
        let bytes = msg.to_bytes();
        debug!(to = ?hop.dest, iface = %out_if.name, %branch, "forwarding");

        if method == Method::Ack {
            if let Err(e) = self.transport.send_because(&hop.dest, bytes, reason).await {
                warn!(error = %e, "ACK not sent");
            }
            return;
        }
        self.txns.open_client(&branch, key.to_owned(), method, msg);
        match self.transport.send_because(&hop.dest, bytes, reason).await {
            Ok(c) => self.txns.sent(&branch, c),
            Err(e) => {
                self.txns.close_client(&branch);
                let code = match e {
                    TransportError::FlowGone(_) => 430,
                    _ => 503,
                };
                warn!(error = %e, code, "next hop unreachable");
                self.reply(key, Reply::because(code, e.to_string())).await;
            }
        }
    }

    /// Timer B, F or C fired for client transaction `t`.
    async fn on_timeout(self: &Arc<Self>, t: transaction::ClientTxn) {
        warn!(method = %t.method, "no final response in time");
        if let Some(call_id) = t.server_key.strip_prefix(ORIGINATED) {
            return self.home.presence.drop_dialog(call_id);
        }
        if t.method == Method::Invite
            && t.provisional
            && let Some(conn) = &t.conn
        {
            self.send_cancel(&t.request, conn).await;
        }
        let late = Reply::because(408, "the next hop sent no final response in time");
        self.reply(&t.server_key, late).await;
    }

    async fn on_cancel(self: &Arc<Self>, cancel: Message, conn: Arc<ConnInfo>, key: &str) {
        let CancelMatch::Found(downstream) = self.txns.cancel(key, &conn) else {
            let reply = Reply::because(481, "no INVITE transaction for this CANCEL");
            return self
                .send_direct(&conn, reply_message(&cancel, &reply))
                .await;
        };
        self.send_direct(&conn, reply_message(&cancel, &Reply::new(200)))
            .await;
        if let Some(derived) = downstream {
            let (invite, next) = *derived;
            self.send_cancel(&invite, &next).await;
        }
    }

    /// A CANCEL matching a forwarded INVITE (section 9.1).
    async fn send_cancel(&self, invite: &Message, conn: &ConnInfo) {
        let req = transaction::derived_request(invite, Method::Cancel, None);
        self.send_on(conn.flow, req.to_bytes(), "CANCEL").await;
    }

    async fn on_response(self: &Arc<Self>, mut msg: Message, conn: Arc<ConnInfo>) {
        self.counters.add(Count::Response);
        let checked = match msg.validate_response() {
            Ok(c) => c,
            Err(e) => return warn!(error = %e, "invalid response; dropped"),
        };
        let top = &checked.vias[0];
        record_branch(top);
        let code = msg.status().unwrap_or_default();
        if checked.cseq.method == Method::Cancel {
            // The answer to a CANCEL this node sent: hop by hop, it ends here (16.10). It
            // shares the INVITE's branch, so it must not end the INVITE's transaction.
            return debug!(code, "answer to our CANCEL");
        }
        let Some(branch) = top.branch() else {
            return;
        };
        // 430 Flow Failed: the edge a binding was reached through lost its client's
        // connection (RFC 5626 section 5.3); the binding goes, so the next request finds
        // the device's newer one, or none.
        let failed_flow = (code == 430).then(|| self.txns.target_of(branch)).flatten();
        let (key, ack) = match self.txns.response(branch, code, &conn, &msg) {
            Matched::Unknown => {
                return debug!(code, "response matches no transaction here; dropped");
            }
            Matched::WrongPeer => {
                let peer = conn.identity.describe();
                return warn!(code, %peer, "response from a peer the request was not sent to; dropped");
            }
            Matched::Trying => return,
            Matched::Relay { key, ack } => (key, ack),
        };
        if let Some(derived) = ack {
            let (ack, next) = *derived;
            self.send_on(next.flow, ack.to_bytes(), "ACK of a non-2xx")
                .await;
        }
        if let Some(contact) = failed_flow {
            // Dropped by this 430, or by another one for the same flow just before.
            if self.home.location.remove_contact(&contact) {
                debug!(%contact, "binding dropped: its flow failed");
                self.notify_soon();
            }
            // The 430 was this hop's business (RFC 5626 section 5.3): upstream, the user is
            // not reachable now, which is 480 (a request of our own just ends here).
            if !key.starts_with(ORIGINATED) {
                let gone = "the user's connection through its edge is gone: binding dropped";
                return self.reply(&key, Reply::because(480, gone)).await;
            }
        }
        if let Some(call_id) = key.strip_prefix(ORIGINATED) {
            // The answer to a request of our own: a watcher that is gone ends its subscription.
            if matches!(code, 404 | 408 | 480 | 481) {
                self.home.presence.drop_dialog(call_id);
            }
            return debug!(code, "answer to our NOTIFY");
        }
        if checked.cseq.method == Method::Register
            && (200..300).contains(&code)
            && let Some(client) = self.txns.server_conn(&key)
            && client.identity.sip_aor().is_some()
        {
            self.upstream.registered(client.flow, conn.flow);
        }
        msg.headers.remove_first_value(&HeaderName::Via);
        debug!(code, "relaying response");
        self.send_response(&key, msg, None).await;
    }

    async fn reply(self: &Arc<Self>, key: &str, reply: Reply) {
        self.reply_because(key, reply, None).await
    }

    /// Answers like [`Proxy::reply`]; a capture carries `reason`.
    async fn reply_because(self: &Arc<Self>, key: &str, reply: Reply, reason: Option<Arc<str>>) {
        if let Some(resp) = self.txns.response_for(key, &reply) {
            self.send_response(key, resp, reason).await;
        }
    }

    /// Sends a response through its server transaction.
    async fn send_response(self: &Arc<Self>, key: &str, resp: Message, reason: Option<Arc<str>>) {
        let code = resp.status().unwrap_or_default();
        let bytes = resp.to_bytes();
        let Some(flow) = self.txns.answer(key, code, &bytes) else {
            return debug!(code, "transaction already answered; dropped");
        };
        let sent = self
            .transport
            .send_because(&Destination::Flow(flow), bytes, reason)
            .await;
        match sent {
            Ok(_) => {}
            // The client hung up before its answer came (a sign-out that does not wait).
            Err(e @ TransportError::FlowGone(_)) => {
                let unsent = self.counters.add(Count::Unsent);
                debug!(error = %e, code, unsent, "response not sent: the connection is gone");
            }
            Err(e) => {
                if let Some(repeated) = UNSENT.due() {
                    warn!(error = %e, code, repeated, "response could not be sent upstream");
                }
            }
        }
    }

    async fn send_direct(&self, conn: &ConnInfo, resp: Message) {
        self.send_on(conn.flow, resp.to_bytes(), "answer").await;
    }

    /// Sends what needs no transaction of its own down `flow`; a failure is counted and
    /// logged (the peer's connection is gone: nothing else can be done with it).
    async fn send_on(&self, flow: FlowToken, bytes: Bytes, what: &'static str) {
        if let Err(e) = self.transport.send(&Destination::Flow(flow), bytes).await {
            let unsent = self.counters.add(Count::Unsent);
            debug!(error = %e, what, unsent, "not sent");
        }
    }

    /// How many answers, ACKs and CANCELs could not be sent because their connection was gone
    /// (responses through a transaction included).
    pub fn unsent(&self) -> u64 {
        self.counters.get().unsent
    }

    /// What it handled and refused so far, shared (for a node's summary line).
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// The loop check's hash of a request (16.3 step 4, 16.6 step 8): what a copy of it coming
/// back unchanged on the same interface would hash to.
pub fn loop_hash(msg: &Message, checked: &Checked, arrived_on: &str) -> u64 {
    let tags = (checked.to.tag(), checked.from.tag());
    branch::loop_hash(msg, tags, checked.cseq.seq, arrived_on)
}

/// Puts the top Via's branch into the message's span (request or response).
fn record_branch(top: &Via) {
    tracing::Span::current().record(
        "branch",
        tracing::field::display(top.branch().unwrap_or_default()),
    );
}

/// Ends the timer task when the lane tasks that share it are gone.
struct EndTimers(Arc<Timers>);

impl Drop for EndTimers {
    fn drop(&mut self) {
        self.0.end();
    }
}
