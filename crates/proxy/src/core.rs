//! The stateful proxy core (RFC 3261 section 16) with its server and client transactions
//! (section 17, reliable transport: no retransmission timers, only B, F and C), the same for
//! every role. A request goes: validate -> transaction -> Max-Forwards, Proxy-Require, URI
//! scheme, loop check -> Route pre-processing -> the role's decision -> forward (Via,
//! Record-Route, Path) or answer. Responses go back along the Via chain through the
//! transaction that sent the request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use siplab_sip::{
    Checked, HeaderName, Host, Message, Method, NameAddr, SipUri, Uri, Via, reason_phrase,
};
use siplab_transport::{ConnInfo, Destination, Event, FlowToken, Transport, TransportError};
use tokio::sync::{Notify, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::branch::{self, BranchMaker};
use crate::policy::{Decision, Forward, Inbound, NextHop, Policy, Reply};
use crate::presence::{self, PresenceServer, Subscription};
use crate::registrar::{ExpiryBounds, Location};
use crate::timers::{Timeout, TimerId, Timers};
use crate::trust;

/// One of this node's interfaces, as the core writes it into Via, Record-Route and Path.
#[derive(Debug, Clone)]
pub struct OwnInterface {
    pub name: Arc<str>,
    /// The SIP listener: the Via sent-by of requests leaving from here.
    pub addr: SocketAddr,
    /// The name peers reach it by, for Record-Route and Path (real products need an FQDN).
    pub fqdn: String,
    /// Every name of it, to recognise a Route or Request-URI naming this node.
    pub names: Vec<String>,
}

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
        }
    }
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

/// A request this node forwarded and waits on.
struct ClientTxn {
    server_key: String,
    method: Method,
    /// What was sent, for the CANCEL and the hop-by-hop ACK that must match it.
    request: Message,
    conn: Option<Arc<ConnInfo>>,
    provisional: bool,
    timer: Option<TimerId>,
}

/// A node's proxy: one per node, shared by its workers.
pub struct Proxy<P: Policy> {
    policy: P,
    transport: Transport,
    own: Vec<OwnInterface>,
    location: Arc<Location>,
    config: ProxyConfig,
    servers: Mutex<HashMap<String, ServerTxn>>,
    clients: Mutex<HashMap<String, ClientTxn>>,
    branches: BranchMaker,
    presence: Arc<PresenceServer>,
    timers: Arc<Timers>,
    /// Asks the notifier task for a pass over the subscriptions; requests made while one
    /// is pending or running fold into one pass.
    notify_wanted: Arc<Notify>,
    /// Sends without a transaction that failed (see [`Proxy::unsent`]).
    unsent: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<P: Policy> Proxy<P> {
    pub fn new(
        policy: P,
        transport: Transport,
        own: Vec<OwnInterface>,
        config: ProxyConfig,
    ) -> Arc<Proxy<P>> {
        Arc::new(Proxy {
            policy,
            transport,
            own,
            location: Arc::new(Location::new(config.expiry)),
            config,
            servers: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            branches: BranchMaker::default(),
            presence: Arc::new(PresenceServer::default()),
            timers: Arc::default(),
            notify_wanted: Arc::default(),
            unsent: AtomicU64::new(0),
        })
    }

    /// The location service (shared, so the node's owner can look at the bindings).
    /// The presence server (what users published, who watches whom).
    pub fn presence(&self) -> &Arc<PresenceServer> {
        &self.presence
    }

    pub fn location(&self) -> &Arc<Location> {
        &self.location
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
                        Event::Closed { conn } => {
                            if conn.inbound {
                                proxy.location.remove_flow(&conn.flow);
                                // Users whose last binding went are offline now.
                                proxy.notify_soon();
                            }
                        }
                    }
                }
            });
        }
        let (timers, weak) = (self.timers.clone(), Arc::downgrade(self));
        tokio::spawn(async move {
            loop {
                let due = timers.due().await;
                let Some(proxy) = weak.upgrade().filter(|_| !due.is_empty()) else {
                    return;
                };
                for (id, timeout) in due {
                    match timeout {
                        Timeout::Client(branch) => proxy.on_timeout(&branch, id).await,
                        Timeout::Server(key) => {
                            let mut servers = lock(&proxy.servers);
                            if servers.get(&key).is_some_and(|t| t.timer == Some(id)) {
                                servers.remove(&key);
                            }
                        }
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
                proxy.location.sweep();
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
                from = %conn.peer
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

    fn own_interface(&self, name: &str) -> Option<&OwnInterface> {
        self.own.iter().find(|i| &*i.name == name)
    }

    fn is_own_host(&self, host: &Host) -> bool {
        self.own.iter().any(|i| match host {
            Host::Name(n) => i.names.iter().any(|m| m.eq_ignore_ascii_case(n)),
            Host::Ip(ip) => i.addr.ip() == *ip,
        })
    }

    fn is_own_uri(&self, uri: &SipUri) -> bool {
        self.is_own_host(&uri.host)
    }

    async fn on_request(self: &Arc<Self>, mut msg: Message, conn: Arc<ConnInfo>) {
        let checked = match msg.validate() {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "invalid request");
                let reply = Reply::because(e.status(), e.to_string());
                self.send_direct(&conn, reply_message(&msg, &reply)).await;
                return;
            }
        };
        let Some(method) = msg.method() else { return };
        let top = &checked.vias[0];
        record_branch(top);
        stamp_received(&mut msg, top, &conn);
        let key = server_key(
            top,
            &msg,
            if method == Method::Ack {
                &Method::Invite
            } else {
                &method
            },
        );
        info!(
            uri = msg.request_uri().map(tracing::field::display),
            "received"
        );

        match method {
            Method::Ack => {
                let mut servers = lock(&self.servers);
                if servers
                    .get(&key)
                    .is_some_and(|t| t.final_code.is_some_and(|c| c >= 300))
                {
                    // The ACK of a non-2xx ends the INVITE transaction here (hop by hop).
                    if let Some(id) = servers.remove(&key).and_then(|t| t.timer) {
                        self.timers.clear(id);
                    }
                    debug!("ACK for a non-2xx absorbed");
                    return;
                }
            }
            Method::Cancel => return self.on_cancel(msg, conn, top).await,
            _ => {
                let known = lock(&self.servers)
                    .get(&key)
                    .map(|t| (t.last.clone(), t.conn.flow));
                if let Some((last, flow)) = known {
                    debug!("retransmission");
                    if let Some(last) = last {
                        self.send_on(flow, last, "retransmitted answer").await;
                    }
                    return;
                }
            }
        }
        if method != Method::Ack {
            let opened = {
                let mut servers = lock(&self.servers);
                let room = servers.len() < self.config.max_transactions;
                if room {
                    servers.insert(
                        key.clone(),
                        ServerTxn {
                            request: msg.clone(),
                            conn: conn.clone(),
                            final_code: None,
                            last: None,
                            client_branch: None,
                            timer: None,
                        },
                    );
                }
                room
            };
            if !opened {
                warn!(
                    limit = self.config.max_transactions,
                    "transaction table full"
                );
                let reply = Reply::because(503, "too many transactions in progress")
                    .with(HeaderName::new("Retry-After"), "5");
                return self.send_direct(&conn, reply_message(&msg, &reply)).await;
            }
            if method == Method::Invite {
                self.reply(&key, Reply::new(100)).await;
            }
        }

        if let Some(reply) = self.check(&msg, &checked, &method) {
            return self.reply(&key, reply).await;
        }
        let trusted = self.policy.trusts_assertion(&conn);
        if let Err(reply) = trust::admit(&mut msg, &checked, &method, &conn, trusted) {
            warn!(why = ?reply.warning, peer = %conn.identity.describe(), "refused");
            if method == Method::Ack {
                return; // an ACK is never answered; it goes no further
            }
            return self.reply(&key, reply).await;
        }
        let tags = (checked.to.tag(), checked.from.tag());
        let hash = branch::loop_hash(&msg, tags, checked.cseq.seq, &conn.interface);
        if checked.vias.iter().any(|v| {
            self.is_own_host(&v.host) && v.branch().is_some_and(|b| branch::carries(b, hash))
        }) {
            return self
                .reply(
                    &key,
                    Reply::because(482, "this request passed here before unchanged"),
                )
                .await;
        }
        let (route_flow, next_route) = self.preprocess_routes(&mut msg, &conn);
        // A refresh or an end of a subscription this node serves, in its dialog.
        if method == Method::Subscribe && next_route.is_none() && self.presence.holds(&msg) {
            return self.presence_request(&key, &msg, &conn, "").await;
        }
        let inbound = Inbound {
            msg: &msg,
            conn: &conn,
            route_flow,
            next_route,
            location: &self.location,
        };
        let decision = self.policy.route(&inbound).await;
        debug!(?decision, "decided");
        if method == Method::Ack {
            if let Decision::Forward(f) = decision {
                self.forward(msg, *f, &key, (hash, checked.max_forwards), &conn)
                    .await;
            }
            return;
        }
        match decision {
            Decision::Reply(r) => self.reply(&key, r).await,
            Decision::Local => {
                let r = Reply::new(200)
                    .with(HeaderName::Allow, "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INFO")
                    .with(HeaderName::Supported, "path, outbound");
                self.reply(&key, r).await
            }
            Decision::Register { aor } => self.register(&key, &msg, &conn, &aor).await,
            Decision::Presence { aor } => self.presence_request(&key, &msg, &conn, &aor).await,
            Decision::Forward(f) => {
                self.forward(msg, *f, &key, (hash, checked.max_forwards), &conn)
                    .await
            }
        }
    }

    /// Section 16.3 steps 3 and 5, and 8.2.2: Max-Forwards, Proxy-Require, the URI scheme.
    fn check(&self, msg: &Message, checked: &Checked, method: &Method) -> Option<Reply> {
        let uri = msg.request_uri()?;
        if checked.max_forwards == Some(0) {
            let to_us = uri
                .as_sip()
                .is_some_and(|u| u.user.is_none() && self.is_own_uri(u));
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

    /// Section 16.4: a strict router's Request-URI naming us is restored from the last
    /// Route; then every Route naming this node is removed (two when it recorded the route
    /// on two interfaces, RFC 5658). A flow token in one of them names the connection the
    /// dialog reaches its client by.
    fn preprocess_routes(
        &self,
        msg: &mut Message,
        conn: &ConnInfo,
    ) -> (Option<FlowToken>, Option<SipUri>) {
        let routes = msg.addresses(HeaderName::Route).unwrap_or_default();
        if let (Some(uri), Some(last)) = (msg.request_uri().and_then(Uri::as_sip), routes.last())
            && self.is_own_uri(uri)
            && !routes.is_empty()
        {
            let last_uri = last.uri.clone();
            let mut remaining: Vec<String> = routes.iter().map(ToString::to_string).collect();
            remaining.pop();
            msg.headers.remove_all(&HeaderName::Route);
            for r in remaining {
                msg.headers.push(HeaderName::Route, r);
            }
            msg.set_request_uri(last_uri);
        }
        let mut route_flow = None;
        loop {
            let routes = msg.addresses(HeaderName::Route).unwrap_or_default();
            let Some(first) = routes.first() else {
                return (route_flow, None);
            };
            let Some(uri) = first.sip_uri() else {
                return (route_flow, None);
            };
            if !self.is_own_uri(uri) {
                return (route_flow, Some(uri.clone()));
            }
            if let Some(user) = &uri.user
                && let Some(token) = FlowToken::parse(user)
                && token != conn.flow
                && self.transport.flow(&token).is_some()
            {
                route_flow = Some(token);
            }
            msg.headers.remove_first_value(&HeaderName::Route);
        }
    }

    /// The identity a request may act for: what the node's own edge asserted, else the
    /// client certificate's AOR. `Err` is the 403 for acting for anyone else.
    fn authorise(&self, msg: &Message, conn: &ConnInfo, aor: &str) -> Result<(), Reply> {
        let asserted = if self.policy.trusts_assertion(conn) {
            msg.addresses(HeaderName::PAssertedIdentity)
                .ok()
                .and_then(|ids| ids.into_iter().find_map(|id| id.sip_uri().map(SipUri::aor)))
        } else {
            None
        };
        let who = asserted.or_else(|| trust::certificate_aor(conn));
        if who.as_deref() == Some(aor) {
            return Ok(());
        }
        let method = msg.method().map(|m| m.to_string()).unwrap_or_default();
        let why = match who {
            Some(w) => format!("{method} for {aor}, but the authenticated identity is {w}"),
            None => format!("{method} for {aor} from a peer without a user identity"),
        };
        warn!(%why, "refused");
        Err(Reply::because(403, why))
    }

    async fn register(self: &Arc<Self>, key: &str, msg: &Message, conn: &ConnInfo, aor: &str) {
        if let Err(reply) = self.authorise(msg, conn, aor) {
            return self.reply(key, reply).await;
        }
        let mut resp = self.location.register(msg, aor, &conn.flow);
        add_to_tag(&mut resp);
        info!(%aor, status = resp.status().unwrap_or_default(), "registrar");
        self.send_response(key, resp).await;
        self.notify_due(Some(aor)).await;
    }

    /// PUBLISH and SUBSCRIBE for a user homed here (or in a subscription this node serves:
    /// `aor` empty), answered by this node as the user's presence server.
    async fn presence_request(
        self: &Arc<Self>,
        key: &str,
        msg: &Message,
        conn: &ConnInfo,
        aor: &str,
    ) {
        let event = msg
            .headers
            .value(&HeaderName::Event)
            .map(|e| String::from_utf8_lossy(e).into_owned());
        if event
            .as_deref()
            .map(|e| e.split(';').next().unwrap_or("").trim())
            != Some("presence")
        {
            let reply = Reply::because(489, "only the presence event package is served")
                .with(HeaderName::AllowEvents, "presence");
            return self.reply(key, reply).await;
        }
        let contact = self
            .own_interface(&conn.interface)
            .map(|i| format!("<sip:{}:{};transport=tls>", i.fqdn, i.addr.port()))
            .unwrap_or_default();
        let result = if msg.method() == Some(Method::Publish) {
            if let Err(reply) = self.authorise(msg, conn, aor) {
                return self.reply(key, reply).await;
            }
            self.presence.publish(msg, aor).map(|r| (r, aor.to_owned()))
        } else {
            self.presence
                .subscribe(msg, aor, &contact)
                .map(|(r, sub)| (r, sub.target))
        };
        match result {
            Ok((mut resp, target)) => {
                add_to_tag(&mut resp);
                info!(target = %target, "presence");
                self.send_response(key, resp).await;
                self.notify_due(Some(&target)).await;
            }
            Err((code, why)) => self.reply(key, Reply::because(code, why)).await,
        }
    }

    /// Has the notifier task send the NOTIFYs the latest changes call for: the lanes must
    /// not wait on watchers' next hops (a DNS look-up, a connect), and a burst of changes
    /// (a thousand connections closing) makes one pass, not a thousand tasks.
    fn notify_soon(&self) {
        self.notify_wanted.notify_one();
    }

    /// Sends the NOTIFYs that are due: to the watchers of `target` (of everyone when
    /// `None`) whose user's state changed, or whose subscription just began or ended.
    async fn notify_due(self: &Arc<Self>, target: Option<&str>) {
        let location = self.location.clone();
        let presence = self.presence.clone();
        let due = self.presence.due(target, |aor| {
            presence.state(aor, location.lookup(aor).is_some())
        });
        for (sub, state) in due {
            let contact = self
                .own
                .first()
                .map(|i| format!("<sip:{}:{};transport=tls>", i.fqdn, i.addr.port()))
                .unwrap_or_default();
            let req = presence::notify(&sub, &state, &contact);
            info!(watcher = %sub.watcher, target = %sub.target, %state, "NOTIFY");
            self.originate(req, &sub).await;
        }
    }

    /// Sends a request this node makes itself (a NOTIFY) in a dialog: along its route set,
    /// else to the remote target, which is a client registered here (its flow or Path).
    async fn originate(self: &Arc<Self>, mut msg: Message, sub: &Subscription) {
        let hop = match sub
            .route_set
            .first()
            .and_then(|r| siplab_sip::NameAddr::parse(r.as_bytes()).ok())
        {
            Some(first) => match first.uri {
                Uri::Sip(u) => Forward::to(NextHop::Uri(u)),
                Uri::Other(_) => return warn!("route set with a non-SIP URI"),
            },
            None => match self.location.by_contact(&sub.remote_target) {
                Some(b) => b.forward(),
                None => {
                    // The watcher signed out or moved: its subscription ends.
                    info!(watcher = %sub.watcher, "watcher gone (no route set, no binding here); subscription ended");
                    return self.presence.drop_dialog(&sub.call_id);
                }
            },
        };
        let Route {
            dest,
            interface: out,
            ..
        } = match self.destination(&hop.next_hop).await {
            Ok(d) => d,
            Err(reply) => return warn!(why = ?reply.warning, "NOTIFY not sent"),
        };
        for r in hop.routes.iter().rev() {
            msg.headers.push_front(HeaderName::Route, r.clone());
        }
        let Some(out_if) = self.own_interface(&out) else {
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
        msg.headers.push_front(
            HeaderName::Via,
            format!("SIP/2.0/TLS {};branch={branch}", out_if.addr),
        );
        let bytes = msg.to_bytes();
        self.open_client(
            &branch,
            format!("{ORIGINATED}{}", sub.call_id),
            Method::Notify,
            msg,
        );
        if let Err(e) = self.transport.send(&dest, bytes).await {
            self.close_client(&branch);
            warn!(error = %e, "NOTIFY not sent");
        }
    }

    async fn forward(
        self: &Arc<Self>,
        mut msg: Message,
        f: Forward,
        key: &str,
        (hash, max_forwards): (u64, Option<u8>),
        conn: &Arc<ConnInfo>,
    ) {
        let method = msg.method().unwrap_or(Method::Ack);
        let Route {
            dest,
            interface: out,
            flow: out_conn,
        } = match self.destination(&f.next_hop).await {
            Ok(d) => d,
            Err(reply) => return self.reply(key, reply).await,
        };
        let (Some(out_if), Some(in_if)) = (
            self.own_interface(&out),
            self.own_interface(&conn.interface),
        ) else {
            return self
                .reply(
                    key,
                    Reply::because(500, "interface missing from the node's own list"),
                )
                .await;
        };

        if let Some(uri) = f.request_uri {
            msg.set_request_uri(uri);
        }
        let mf = max_forwards.unwrap_or(70);
        msg.headers
            .set(HeaderName::MaxForwards, mf.saturating_sub(1).to_string());
        for name in &f.remove {
            msg.headers.remove_all(name);
        }
        for (name, value) in f.set {
            msg.headers.set(name, value);
        }
        for r in f.routes.iter().rev() {
            msg.headers.push_front(HeaderName::Route, r.clone());
        }
        if f.add_path {
            let path = format!(
                "<sip:{}@{}:{};transport=tls;lr;ob>",
                conn.flow,
                out_if.fqdn,
                out_if.addr.port()
            );
            msg.headers.push_front(HeaderName::Path, path);
        }
        // Each side is named by the listener its peer reaches: a client that connected to
        // the edge's client port (443) sees that port in Via and Record-Route, so its
        // in-dialog requests and responses ride the connection it registered on (RFC 5626).
        let out_addr = listener_of(out_conn.as_deref()).unwrap_or(out_if.addr);
        let in_port = listener_of(Some(conn.as_ref())).map_or(in_if.addr.port(), |a| a.port());
        if method.creates_dialog() {
            let token_in = conn.identity.sip_aor().map(|_| conn.flow);
            let token_out = match &dest {
                Destination::Flow(t) => Some(*t),
                Destination::Peer { .. } => None,
            };
            if in_if.name == out_if.name && in_port == out_addr.port() {
                msg.headers.push_front(
                    HeaderName::RecordRoute,
                    record_route(out_if, in_port, token_in.or(token_out).as_ref()),
                );
            } else {
                msg.headers.push_front(
                    HeaderName::RecordRoute,
                    record_route(in_if, in_port, token_in.as_ref()),
                );
                msg.headers.push_front(
                    HeaderName::RecordRoute,
                    record_route(out_if, out_addr.port(), token_out.as_ref()),
                );
            }
        }
        let branch = self.branches.make(hash);
        let alias = if matches!(dest, Destination::Peer { .. }) {
            ";alias"
        } else {
            ""
        };
        msg.headers.push_front(
            HeaderName::Via,
            format!("SIP/2.0/TLS {out_addr};branch={branch}{alias}"),
        );
        let bytes = msg.to_bytes();
        info!(to = ?dest, iface = %out_if.name, %branch, "forwarding");

        if method == Method::Ack {
            if let Err(e) = self.transport.send(&dest, bytes).await {
                warn!(error = %e, "ACK not sent");
            }
            return;
        }
        self.open_client(&branch, key.to_owned(), method, msg);
        if let Some(t) = lock(&self.servers).get_mut(key) {
            t.client_branch = Some(branch.clone());
        }
        match self.transport.send(&dest, bytes).await {
            Ok(c) => {
                if let Some(t) = lock(&self.clients).get_mut(&branch) {
                    t.conn = Some(c);
                }
            }
            Err(e) => {
                self.close_client(&branch);
                let code = match e {
                    TransportError::FlowGone(_) => 430,
                    _ => 503,
                };
                warn!(error = %e, code, "next hop unreachable");
                self.reply(key, Reply::because(code, e.to_string())).await;
            }
        }
    }

    /// Where a next hop is on the wire, the interface a request to it leaves from and, for a
    /// flow, its connection; the error is the answer the request gets when it cannot go there.
    async fn destination(&self, hop: &NextHop) -> Result<Route, Reply> {
        match hop {
            NextHop::Flow(token) => match self.transport.flow(token) {
                Some(c) => Ok(Route {
                    dest: Destination::Flow(*token),
                    interface: c.interface.clone(),
                    flow: Some(c),
                }),
                None => Err(Reply::because(430, "the user's connection is gone")),
            },
            NextHop::Uri(uri) => {
                let host = match &uri.host {
                    Host::Name(n) => n.clone(),
                    Host::Ip(ip) => ip.to_string(),
                };
                let addr = self
                    .policy
                    .resolve(&host, uri.port)
                    .await
                    .map_err(|e| Reply::because(503, format!("cannot resolve {host}: {e}")))?;
                let iface = self
                    .policy
                    .interface_towards(addr.ip())
                    .ok_or_else(|| Reply::because(503, format!("no interface reaches {addr}")))?;
                Ok(Route {
                    dest: Destination::Peer {
                        interface: iface.clone(),
                        addr,
                        server_name: host,
                    },
                    interface: iface,
                    flow: None,
                })
            }
        }
    }

    /// Opens the client transaction of a request about to be sent: Timer B/F runs from now.
    fn open_client(&self, branch: &str, server_key: String, method: Method, request: Message) {
        let timer = self
            .timers
            .set(self.config.timer_b, Timeout::Client(branch.to_owned()));
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

    /// Ends a client transaction (answered, timed out or never sent) and its timer.
    fn close_client(&self, branch: &str) -> Option<ClientTxn> {
        let t = lock(&self.clients).remove(branch)?;
        if let Some(id) = t.timer {
            self.timers.clear(id);
        }
        Some(t)
    }

    /// Timer B, F or C (`id`) fired for the client transaction `branch`, unless the
    /// transaction ended or re-armed its timer since.
    async fn on_timeout(self: &Arc<Self>, branch: &str, id: TimerId) {
        let t = {
            let mut clients = lock(&self.clients);
            match clients.get(branch) {
                Some(t) if t.timer == Some(id) => clients.remove(branch),
                _ => None,
            }
        };
        let Some(t) = t else { return };
        warn!(%branch, method = %t.method, "no final response in time");
        if let Some(call_id) = t.server_key.strip_prefix(ORIGINATED) {
            return self.presence.drop_dialog(call_id);
        }
        if t.method == Method::Invite && t.provisional {
            self.cancel_downstream(&t).await;
        }
        self.reply(
            &t.server_key,
            Reply::because(408, "the next hop sent no final response in time"),
        )
        .await;
    }

    async fn on_cancel(self: &Arc<Self>, cancel: Message, conn: Arc<ConnInfo>, top: &Via) {
        let key = server_key(top, &cancel, &Method::Invite);
        let pending = {
            let servers = lock(&self.servers);
            servers
                .get(&key)
                .filter(|t| same_peer(&t.conn, &conn))
                .map(|t| (t.final_code.is_none(), t.client_branch.clone()))
        };
        let Some((unanswered, client_branch)) = pending else {
            let reply = Reply::because(481, "no INVITE transaction for this CANCEL");
            return self
                .send_direct(&conn, reply_message(&cancel, &reply))
                .await;
        };
        self.send_direct(&conn, reply_message(&cancel, &Reply::new(200)))
            .await;
        if unanswered && let Some(branch) = client_branch {
            let t = lock(&self.clients)
                .get(&branch)
                .map(|t| (t.request.clone(), t.conn.clone()));
            if let Some((request, Some(conn))) = t {
                self.send_cancel(&request, &conn).await;
            }
        }
    }

    async fn cancel_downstream(&self, t: &ClientTxn) {
        if let Some(conn) = &t.conn {
            self.send_cancel(&t.request, conn).await;
        }
    }

    /// A CANCEL matching a forwarded INVITE (section 9.1): same Request-URI, Call-ID, From,
    /// To, CSeq number, Route set, and our Via with the INVITE's branch alone.
    async fn send_cancel(&self, invite: &Message, conn: &ConnInfo) {
        let req = derived_request(invite, Method::Cancel, None);
        self.send_on(conn.flow, req.to_bytes(), "CANCEL").await;
    }

    async fn on_response(self: &Arc<Self>, mut msg: Message, conn: Arc<ConnInfo>) {
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
        let (key, ack) = {
            let mut clients = lock(&self.clients);
            let Some(t) = clients.get_mut(branch) else {
                return debug!(code, "response matches no transaction here; dropped");
            };
            // Only the peer a request went to may answer it (a branch is no secret from a
            // client that sees the request's Via).
            if t.conn.as_ref().is_some_and(|c| !same_peer(c, &conn)) {
                let peer = conn.identity.describe();
                return warn!(code, %peer, "response from a peer the request was not sent to; dropped");
            }
            if code < 200 {
                t.provisional = true;
                if t.method == Method::Invite {
                    // Timer C replaces Timer B once the INVITE is ringing.
                    t.timer.take().inspect(|&id| self.timers.clear(id));
                    t.timer = Some(
                        self.timers
                            .set(self.config.timer_c, Timeout::Client(branch.to_owned())),
                    );
                }
                if code == 100 {
                    return;
                }
                (t.server_key.clone(), None)
            } else {
                let Some(t) = clients.remove(branch) else {
                    return;
                };
                if let Some(id) = t.timer {
                    self.timers.clear(id);
                }
                // The client transaction acknowledges a non-2xx final response itself
                // (17.1.1.3).
                let ack = (t.method == Method::Invite && code >= 300)
                    .then(|| (derived_request(&t.request, Method::Ack, Some(&msg)), t.conn));
                (t.server_key, ack)
            }
        };
        if let Some((ack, Some(conn))) = ack {
            self.send_on(conn.flow, ack.to_bytes(), "ACK of a non-2xx")
                .await;
        }
        if let Some(call_id) = key.strip_prefix(ORIGINATED) {
            // The answer to a request of our own: a watcher that is gone ends its subscription.
            if matches!(code, 404 | 408 | 480 | 481) {
                self.presence.drop_dialog(call_id);
            }
            return debug!(code, "answer to our NOTIFY");
        }
        msg.headers.remove_first_value(&HeaderName::Via);
        info!(code, "relaying response");
        self.send_response(&key, msg).await;
    }

    async fn reply(self: &Arc<Self>, key: &str, reply: Reply) {
        // Built from the stored request in place: no copy of it is needed.
        let response = lock(&self.servers)
            .get(key)
            .map(|t| reply_message(&t.request, &reply));
        if let Some(resp) = response {
            self.send_response(key, resp).await;
        }
    }

    /// Sends a response through its server transaction and ends the transaction as 17.2
    /// says for a reliable transport.
    async fn send_response(self: &Arc<Self>, key: &str, resp: Message) {
        let code = resp.status().unwrap_or_default();
        let bytes = resp.to_bytes();
        let flow = {
            let mut servers = lock(&self.servers);
            let Some(t) = servers.get_mut(key) else {
                return;
            };
            let is_invite = t.request.method() == Some(Method::Invite);
            if t.final_code.is_some() && !(is_invite && (200..300).contains(&code)) {
                return debug!(code, "transaction already answered; dropped");
            }
            let flow = t.conn.flow;
            t.last = Some(bytes.clone());
            if code >= 200 {
                t.final_code = Some(code);
                if !is_invite || code < 300 {
                    servers.remove(key);
                } else {
                    // An INVITE answered with a non-2xx waits for its ACK, but not for ever.
                    t.timer = Some(
                        self.timers
                            .set(self.config.timer_h, Timeout::Server(key.to_owned())),
                    );
                }
            }
            flow
        };
        if let Err(e) = self.transport.send(&Destination::Flow(flow), bytes).await {
            warn!(error = %e, code, "response could not be sent upstream");
        }
    }

    async fn send_direct(&self, conn: &ConnInfo, resp: Message) {
        self.send_on(conn.flow, resp.to_bytes(), "answer").await;
    }

    /// Sends what needs no transaction of its own down `flow`; a failure is counted and
    /// logged (the peer's connection is gone: nothing else can be done with it).
    async fn send_on(&self, flow: FlowToken, bytes: Bytes, what: &'static str) {
        if let Err(e) = self.transport.send(&Destination::Flow(flow), bytes).await {
            let unsent = self.unsent.fetch_add(1, Ordering::Relaxed) + 1;
            debug!(error = %e, what, unsent, "not sent");
        }
    }

    /// How many answers, ACKs and CANCELs could not be sent because their connection was gone.
    pub fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }
}

/// Where a forwarded request goes: the transport's destination, the interface it leaves
/// from, and the connection when it goes down a flow.
struct Route {
    dest: Destination,
    interface: Arc<str>,
    flow: Option<Arc<ConnInfo>>,
}

/// Whether two connections reach the same peer: the same connection, or one proving the
/// same certificate identity (a peer may answer on a new connection, RFC 3261 18.2.2).
fn same_peer(a: &ConnInfo, b: &ConnInfo) -> bool {
    a.flow == b.flow || a.identity == b.identity
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

/// The client transactions of requests this node made itself carry this before their
/// Call-ID where forwarded ones carry the key of their server transaction.
const ORIGINATED: &str = "originated:";

/// The key of a server transaction (17.2.3): branch, sent-by and method; for a request
/// without the RFC 3261 cookie, the whole top Via, Call-ID and CSeq number instead.
fn server_key(top: &Via, msg: &Message, method: &Method) -> String {
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

/// RFC 3261 18.2.1 and RFC 3581: the top Via of a request from a peer is stamped with the
/// address it really came from (`received`) and, when it asks for it, the port (`rport`).
fn stamp_received(msg: &mut Message, top: &Via, conn: &ConnInfo) {
    let ip = conn.peer.ip();
    let host_differs = top.host != Host::Ip(ip);
    let wants_rport = top.rport() == Some(None);
    if !host_differs && !wants_rport {
        return;
    }
    let via = top.stamped(
        host_differs.then_some(ip),
        wants_rport.then_some(conn.peer.port()),
    );
    msg.headers.remove_first_value(&HeaderName::Via);
    msg.headers.push_front(HeaderName::Via, via);
}

/// The listener a connection that a peer opened to this node came in on; `None` for one this
/// node opened (its local port is an ephemeral one that nobody can connect to).
fn listener_of(conn: Option<&ConnInfo>) -> Option<SocketAddr> {
    conn.filter(|c| c.inbound).map(|c| c.local)
}

fn record_route(iface: &OwnInterface, port: u16, token: Option<&FlowToken>) -> String {
    match token {
        Some(t) => format!("<sip:{t}@{}:{port};transport=tls;lr>", iface.fqdn),
        None => format!("<sip:{}:{port};transport=tls;lr>", iface.fqdn),
    }
}

/// A response to `req` carrying `reply`: the status, a Warning with the reason, extra
/// headers, and a To tag (8.2.6.2).
pub(crate) fn reply_message(req: &Message, reply: &Reply) -> Message {
    let mut resp = Message::response_to(req, reply.code, reason_phrase(reply.code));
    if let Some(w) = &reply.warning {
        resp.push_warning(w);
    }
    for (name, value) in &reply.headers {
        resp.headers.push(name.clone(), value.clone());
    }
    if reply.code > 100 {
        add_to_tag(&mut resp);
    }
    resp
}

fn add_to_tag(resp: &mut Message) {
    if let Some(to) = resp.headers.value(&HeaderName::To).cloned()
        && resp.to().is_ok_and(|t| t.tag().is_none())
    {
        let mut value = to.to_vec();
        value.extend_from_slice(format!(";tag={:x}", siplab_sip::random_u64()).as_bytes());
        resp.headers.set(HeaderName::To, value);
    }
}

/// CANCEL and the ACK of a non-2xx, built from the request they refer to (9.1, 17.1.1.3).
fn derived_request(req: &Message, method: Method, response: Option<&Message>) -> Message {
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
        .push(HeaderName::CSeq, format!("{seq} {method}"));
    for h in req.headers.get_all(&HeaderName::Route) {
        out.headers.push(HeaderName::Route, h.value.clone());
    }
    out.headers.push(HeaderName::ContentLength, "0");
    out
}
