//! A node's transport: its interfaces, listeners, connector and connection table.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use siplab_sip::{HeaderName, Host, Message};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::capture::Tap;
use crate::connection::{self, Conn, ConnInfo, ConnMeta, FlowToken};
use crate::quiet::Repeated;
use crate::sources::{PerSource, Sources};
use crate::tls::{PeerIdentity, TlsConfig};
use crate::{Limits, TransportError};

/// What the transport hands up.
#[derive(Debug)]
// `Closed` is rare; boxing every message instead would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// A message that framed and parsed (validation is the next layer's job).
    Message { msg: Message, conn: Arc<ConnInfo> },
    /// A connection is gone; flows on it are dead. Handed up on every lane, after the
    /// connection's messages on that lane.
    Closed { conn: Arc<ConnInfo> },
}

/// Where a message goes.
#[derive(Debug, Clone)]
pub enum Destination {
    /// Down a known connection (RFC 5626): the only way to reach a client.
    Flow(FlowToken),
    /// To a peer: over a connection already open to it (either direction, RFC 5923), or a
    /// new one from `interface`, checking that the peer's certificate names `server_name`.
    Peer {
        interface: Arc<str>,
        addr: SocketAddr,
        server_name: String,
    },
}

/// Serves one connection a listener handed over by ALPN (see
/// [`Transport::listen_with_alpn`]), for as long as it lasts.
pub type AlpnHandler = Arc<
    dyn Fn(
            tokio_rustls::server::TlsStream<TcpStream>,
            ConnMeta,
        ) -> Pin<Box<dyn Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The other protocol a listener offers, and who serves it.
struct Alpn {
    protocol: Vec<u8>,
    handler: AlpnHandler,
}

impl Alpn {
    /// Whether the client of `tls` asked for this protocol (SIP clients ask for none).
    fn chosen_by(&self, tls: &tokio_rustls::server::TlsStream<TcpStream>) -> bool {
        tls.get_ref().1.alpn_protocol() == Some(self.protocol.as_slice())
    }
}

struct Interface {
    ip: IpAddr,
    tls: TlsConfig,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Conn>,
    /// Peer addresses that reach a connection: where an outbound connection went, and the
    /// Via `alias` sent-by of inbound ones.
    by_addr: HashMap<SocketAddr, u64>,
    /// Destinations being connected to right now, so concurrent sends share one connect.
    connecting: HashMap<SocketAddr, Arc<Connecting>>,
}

pub(crate) struct Inner {
    limits: Limits,
    interfaces: Mutex<HashMap<Arc<str>, Interface>>,
    table: Mutex<Table>,
    /// One channel per lane: the messages of one Call-ID always take the same lane, so a
    /// node can process lanes in parallel and still keep a dialog's messages in order.
    lanes: Box<[mpsc::Sender<Event>]>,
    permits: Arc<Semaphore>,
    /// The process's descriptors, shared by every node in it ([`crate::descriptor_budget`]).
    process: Arc<Semaphore>,
    /// What each source address holds of the inbound connections.
    sources: Sources,
    next_id: AtomicU64,
    /// Where what this node receives and sends is captured, once it is told (off by default).
    pub(crate) tap: OnceLock<Tap>,
}

static ACCEPT_FAILED: Repeated = Repeated::new();
static SOURCE_FULL: Repeated = Repeated::new();
static AT_LIMIT: Repeated = Repeated::new();
static HANDSHAKE_FAILED: Repeated = Repeated::new();
static HANDSHAKE_TIMED_OUT: Repeated = Repeated::new();

/// A node's transport; cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

impl Transport {
    /// A transport and the channel its events arrive on.
    pub fn new(limits: Limits) -> (Transport, mpsc::Receiver<Event>) {
        let (transport, mut lanes) = Transport::with_lanes(limits, 1);
        let events = lanes.pop().expect("one lane was asked for");
        (transport, events)
    }

    /// A transport whose events arrive on `lanes` channels (at least one): each message on
    /// the lane of its Call-ID, and each `Closed` on every lane, behind the connection's
    /// messages there. The connection's reader hands a message straight to the task that
    /// processes its lane.
    pub fn with_lanes(limits: Limits, lanes: usize) -> (Transport, Vec<mpsc::Receiver<Event>>) {
        let lanes = lanes.max(1);
        let per_lane = (4096 / lanes).max(256);
        let (senders, receivers) = (0..lanes).map(|_| mpsc::channel(per_lane)).unzip();
        let inner = Inner {
            limits,
            interfaces: Mutex::new(HashMap::new()),
            table: Mutex::new(Table::default()),
            lanes: Vec::into_boxed_slice(senders),
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            process: process_permits(),
            sources: Sources::default(),
            next_id: AtomicU64::new(1),
            tap: OnceLock::new(),
        };
        (
            Transport {
                inner: Arc::new(inner),
            },
            receivers,
        )
    }

    /// Adds an interface: the local address connections from it are bound to, and its
    /// certificate (shown as server and as client).
    pub fn add_interface(&self, name: &str, ip: IpAddr, tls: TlsConfig) {
        lock(&self.inner.interfaces).insert(name.into(), Interface { ip, tls });
    }

    /// Listens on `addr` for the interface `name`; returns the bound address (port 0 picks one).
    pub async fn listen(&self, name: &str, addr: SocketAddr) -> Result<SocketAddr, TransportError> {
        self.accept_on(name, addr, None).await
    }

    /// Listens like [`Transport::listen`] and also offers `protocol` by ALPN: a connection
    /// whose client chooses it is handed to `handler`, one whose client asks for nothing (as
    /// SIP clients do) stays SIP. Two services thus share one port, as autodiscover over
    /// HTTPS (`http/1.1`) and clients' SIP share 443 on an edge. Handed-over connections
    /// count against the connection limit until the handler returns.
    pub async fn listen_with_alpn(
        &self,
        name: &str,
        addr: SocketAddr,
        protocol: &[u8],
        handler: AlpnHandler,
    ) -> Result<SocketAddr, TransportError> {
        let alpn = Alpn {
            protocol: protocol.to_vec(),
            handler,
        };
        self.accept_on(name, addr, Some(Arc::new(alpn))).await
    }

    async fn accept_on(
        &self,
        name: &str,
        addr: SocketAddr,
        alpn: Option<Arc<Alpn>>,
    ) -> Result<SocketAddr, TransportError> {
        let (iface, tls) = {
            let ifaces = lock(&self.inner.interfaces);
            let (k, i) = ifaces
                .get_key_value(name)
                .ok_or_else(|| TransportError::UnknownInterface(name.into()))?;
            (k.clone(), i.tls.clone())
        };
        let listen_err = |e: std::io::Error| TransportError::Listen {
            addr,
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(addr).await.map_err(listen_err)?;
        let bound = listener.local_addr().map_err(listen_err)?;
        let tls = match &alpn {
            Some(alpn) => tls.with_alpn(&[&alpn.protocol]),
            None => tls,
        };
        let acceptor = TlsAcceptor::from(tls.server);
        let inner = self.inner.clone();
        let span = info_span!("listener", iface = %iface, addr = %bound);
        tokio::spawn(
            async move {
                info!("listening (mutual TLS)");
                loop {
                    let (tcp, peer) = match listener.accept().await {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors (EMFILE, ENFILE) most likely: wait for some
                            // to be freed rather than spin, and say so once a second.
                            if let Some(repeated) = ACCEPT_FAILED.due() {
                                warn!(error = %e, repeated, "accept failed");
                            }
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    // SIP messages are small and each is written whole: no Nagle delay.
                    let _ = tcp.set_nodelay(true);
                    let Ok(slot) = inner.slot() else {
                        if let Some(repeated) = AT_LIMIT.due() {
                            warn!(%peer, node = inner.limits.max_connections, process = crate::descriptor_budget(), repeated, "connection limit reached; refusing");
                        }
                        continue;
                    };
                    let [open, handshaking, silent] = match inner.sources.admit(peer.ip(), &inner.limits) {
                        Ok(held) => held,
                        Err((held, limit)) => {
                            if let Some(repeated) = SOURCE_FULL.due() {
                                warn!(%peer, ?held, limit, repeated, "one address holds as many connections as its limit allows; refusing");
                            }
                            continue;
                        }
                    };
                    let (inner, acceptor, iface, alpn) = (inner.clone(), acceptor.clone(), iface.clone(), alpn.clone());
                    tokio::spawn(async move {
                        let hs = tokio::time::timeout(inner.limits.handshake_timeout, acceptor.accept(tcp)).await;
                        let tls = match hs {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                if let Some(repeated) = HANDSHAKE_FAILED.due() {
                                    warn!(%peer, error = %e, repeated, "TLS handshake failed");
                                }
                                return;
                            }
                            Err(_) => {
                                if let Some(repeated) = HANDSHAKE_TIMED_OUT.due() {
                                    warn!(%peer, repeated, "TLS handshake timed out");
                                }
                                return;
                            }
                        };
                        drop(handshaking);
                        let identity = PeerIdentity::of(tls.get_ref().1);
                        let local = tls.get_ref().0.local_addr().unwrap_or(bound);
                        if let Some(alpn) = alpn.filter(|a| a.chosen_by(&tls)) {
                            debug!(%peer, "handed over by ALPN");
                            let meta = ConnMeta { interface: iface, local, peer, identity };
                            // The slot and the source's open count are held until the
                            // handler is done with the connection; it is no silent SIP one.
                            drop(silent);
                            let _held = (slot, open);
                            return (alpn.handler)(tls, meta).await;
                        }
                        let slot = slot.inbound(open, silent);
                        inner.start(tokio_rustls::TlsStream::Server(tls), iface, local, peer, identity, true, slot);
                    });
                }
            }
            .instrument(span),
        );
        Ok(bound)
    }

    /// Captures every message this transport receives and sends into `tap` from now on
    /// (a transport is tapped once; a second tap is ignored).
    pub fn tap(&self, tap: Tap) {
        let _ = self.inner.tap.set(tap);
    }

    /// Whether what is sent is captured: a sender need work out its reason only then.
    pub fn tapped(&self) -> bool {
        self.inner.tap.get().is_some()
    }

    /// Sends serialized message bytes; returns the connection it went on.
    pub async fn send(
        &self,
        dest: &Destination,
        bytes: Bytes,
    ) -> Result<Arc<ConnInfo>, TransportError> {
        self.send_because(dest, bytes, None).await
    }

    /// Sends like [`Transport::send`]; a tapped transport captures the message with
    /// `reason`, why it goes where it goes.
    pub async fn send_because(
        &self,
        dest: &Destination,
        bytes: Bytes,
        reason: Option<Arc<str>>,
    ) -> Result<Arc<ConnInfo>, TransportError> {
        let Some(tap) = self.inner.tap.get() else {
            return self.send_untapped(dest, bytes).await;
        };
        let time = std::time::SystemTime::now();
        let info = self.send_untapped(dest, bytes.clone()).await?;
        tap.record(time, (info.local, info.peer), true, bytes, reason);
        Ok(info)
    }

    async fn send_untapped(
        &self,
        dest: &Destination,
        bytes: Bytes,
    ) -> Result<Arc<ConnInfo>, TransportError> {
        match dest {
            Destination::Flow(flow) => {
                let table = lock(&self.inner.table);
                let conn = table
                    .conns
                    .get(&flow.conn_id())
                    .filter(|c| c.info.flow == *flow)
                    .ok_or_else(|| TransportError::FlowGone(flow.to_string()))?;
                queue(conn, bytes)
            }
            Destination::Peer {
                interface,
                addr,
                server_name,
            } => {
                if let Some(info) = self.try_existing(*addr, &bytes)? {
                    return Ok(info);
                }
                // One connect per destination at a time: senders that come while it runs
                // wait for it and share its outcome, a connection or the error.
                let attempt = lock(&self.inner.table)
                    .connecting
                    .entry(*addr)
                    .or_default()
                    .clone();
                let _forget = ForgetAttempt {
                    inner: &self.inner,
                    addr: *addr,
                    attempt: attempt.clone(),
                };
                let id = attempt
                    .get_or_init(|| async {
                        let existing = {
                            let table = lock(&self.inner.table);
                            table
                                .by_addr
                                .get(addr)
                                .copied()
                                .filter(|id| table.conns.contains_key(id))
                        };
                        match existing {
                            Some(id) => Ok(id),
                            None => self.inner.connect(interface, *addr, server_name).await,
                        }
                    })
                    .await
                    .clone()?;
                let table = lock(&self.inner.table);
                let conn = table.conns.get(&id).ok_or(TransportError::Closed(*addr))?;
                queue(conn, bytes)
            }
        }
    }

    fn try_existing(
        &self,
        addr: SocketAddr,
        bytes: &Bytes,
    ) -> Result<Option<Arc<ConnInfo>>, TransportError> {
        let table = lock(&self.inner.table);
        match table.by_addr.get(&addr).and_then(|id| table.conns.get(id)) {
            Some(conn) => queue(conn, bytes.clone()).map(Some),
            None => Ok(None),
        }
    }

    /// The connection behind a flow token, while it lives.
    pub fn flow(&self, flow: &FlowToken) -> Option<Arc<ConnInfo>> {
        let table = lock(&self.inner.table);
        table
            .conns
            .get(&flow.conn_id())
            .filter(|c| c.info.flow == *flow)
            .map(|c| c.info.clone())
    }

    /// Sends an RFC 5626 keep-alive (CRLF CRLF; the peer answers CRLF) down `flow`, so that
    /// neither side's idle time-out closes a connection that must stay; not captured (it is
    /// no SIP message). False when the flow is gone or its queue is full.
    pub fn ping(&self, flow: &FlowToken) -> bool {
        let table = lock(&self.inner.table);
        table
            .conns
            .get(&flow.conn_id())
            .filter(|c| c.info.flow == *flow)
            .is_some_and(|c| queue(c, Bytes::from_static(b"\r\n\r\n")).is_ok())
    }

    /// Closes the connection behind `flow`, if it still lives; pending writes are flushed
    /// first.
    pub fn close(&self, flow: &FlowToken) {
        let table = lock(&self.inner.table);
        if let Some(conn) = table.conns.get(&flow.conn_id())
            && conn.info.flow == *flow
        {
            // Its reader ends, takes it out of the table and hands up `Event::Closed`.
            conn.close.notify_one();
        }
    }

    /// Closes every connection (the node is going away); pending writes are flushed first.
    pub fn close_all(&self) {
        let mut table = lock(&self.inner.table);
        for (_, conn) in table.conns.drain() {
            conn.close.notify_one();
        }
        table.by_addr.clear();
    }

    /// How many connections are open.
    pub fn connection_count(&self) -> usize {
        lock(&self.inner.table).conns.len()
    }
}

fn queue(conn: &Conn, bytes: Bytes) -> Result<Arc<ConnInfo>, TransportError> {
    let fin = connection::is_final(&bytes);
    conn.tx.try_send(bytes).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => TransportError::QueueFull(conn.info.peer),
        mpsc::error::TrySendError::Closed(_) => TransportError::Closed(conn.info.peer),
    })?;
    if fin {
        conn.answered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(conn.info.clone())
}

/// A connect under way to one address, shared by every sender that waits for it.
type Connecting = tokio::sync::OnceCell<Result<u64, TransportError>>;

/// Takes a finished connect attempt out of the table when the first of its senders is done
/// with it, so that the next sender to that address tries afresh. An attempt whose sender
/// went away before it finished stays; the next sender to that address runs it anew.
struct ForgetAttempt<'a> {
    inner: &'a Inner,
    addr: SocketAddr,
    attempt: Arc<Connecting>,
}

impl Drop for ForgetAttempt<'_> {
    fn drop(&mut self) {
        if !self.attempt.initialized() {
            return;
        }
        let mut table = lock(&self.inner.table);
        if table
            .connecting
            .get(&self.addr)
            .is_some_and(|a| Arc::ptr_eq(a, &self.attempt))
        {
            table.connecting.remove(&self.addr);
        }
    }
}

/// A poisoned lock only means another task panicked while holding it; the table itself is
/// still consistent (every update is a single insert or remove), so keep going.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The process's connection permits, one per descriptor it may spend on a connection.
fn process_permits() -> Arc<Semaphore> {
    static PROCESS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    PROCESS
        .get_or_init(|| Arc::new(Semaphore::new(crate::descriptor_budget())))
        .clone()
}

/// A connection's place under the node's limit and the process's (and, inbound, under its
/// source address's), held while it lives.
pub(crate) struct Slot {
    _node: OwnedSemaphorePermit,
    _process: OwnedSemaphorePermit,
    _source: Option<PerSource>,
    /// Until the connection's first message: taken by its reader.
    silent: Option<PerSource>,
}

impl Slot {
    /// The slot of an inbound connection, with what it holds of its source's limits.
    fn inbound(self, open: PerSource, silent: PerSource) -> Slot {
        Slot {
            _source: Some(open),
            silent: Some(silent),
            ..self
        }
    }
}

impl Inner {
    /// A place for one more connection, if the node's and the process's limits allow it.
    fn slot(&self) -> Result<Slot, TransportError> {
        let full = || TransportError::TooManyConnections(self.limits.max_connections);
        let node = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| full())?;
        let process = self
            .process
            .clone()
            .try_acquire_owned()
            .map_err(|_| full())?;
        Ok(Slot {
            _node: node,
            _process: process,
            _source: None,
            silent: None,
        })
    }

    async fn connect(
        self: &Arc<Self>,
        iface: &str,
        addr: SocketAddr,
        name: &str,
    ) -> Result<u64, TransportError> {
        let err = |reason: String| TransportError::Connect {
            addr,
            name: name.to_owned(),
            reason,
        };
        let (iface, ip, tls) = {
            let ifaces = lock(&self.interfaces);
            let (k, i) = ifaces
                .get_key_value(iface)
                .ok_or_else(|| TransportError::UnknownInterface(iface.into()))?;
            (k.clone(), i.ip, i.tls.clone())
        };
        let slot = self.slot()?;
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| err(e.to_string()))?;
        let socket = if ip.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| err(e.to_string()))?;
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| err(format!("bind {ip}: {e}")))?;
        let tcp: TcpStream =
            tokio::time::timeout(self.limits.connect_timeout, socket.connect(addr))
                .await
                .map_err(|_| err("connect timed out".into()))?
                .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().map_err(|e| err(e.to_string()))?;
        let tls = tokio::time::timeout(
            self.limits.handshake_timeout,
            TlsConnector::from(tls.client).connect(server_name, tcp),
        )
        .await
        .map_err(|_| err("TLS handshake timed out".into()))?
        .map_err(|e| err(format!("TLS handshake: {e}")))?;
        let identity = PeerIdentity::of(tls.get_ref().1);
        let id = self.start(
            tokio_rustls::TlsStream::Client(tls),
            iface,
            local,
            addr,
            identity,
            false,
            slot,
        );
        // Only while it lives: a peer that closed at once has been removed already, and an
        // entry left behind would send every later request to a connection that is gone.
        let mut table = lock(&self.table);
        if table.conns.contains_key(&id) {
            table.by_addr.insert(addr, id);
        }
        Ok(id)
    }

    /// Registers a connection and starts its reader and writer.
    #[allow(clippy::too_many_arguments)]
    fn start(
        self: &Arc<Self>,
        stream: tokio_rustls::TlsStream<TcpStream>,
        interface: Arc<str>,
        local: SocketAddr,
        peer: SocketAddr,
        identity: PeerIdentity,
        inbound: bool,
        mut slot: Slot,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ConnInfo {
            id,
            flow: FlowToken::new(id),
            interface,
            local,
            peer,
            identity,
            inbound,
        });
        let (tx, rx) = mpsc::channel(self.limits.write_queue);
        let close = Arc::new(tokio::sync::Notify::new());
        let answered = Arc::new(AtomicU64::new(0));
        let conn = Conn {
            info: info.clone(),
            tx: tx.clone(),
            answered: answered.clone(),
            close: close.clone(),
            alias: None,
        };
        lock(&self.table).conns.insert(id, conn);
        let span =
            info_span!("conn", id, iface = %info.interface, %peer, who = %info.identity.describe());
        let (r, w) = tokio::io::split(stream);
        tokio::spawn(
            connection::writer(w, rx, close.clone(), self.limits.write_timeout)
                .instrument(span.clone()),
        );
        let inner = self.clone();
        tokio::spawn(
            async move {
                debug!(inbound, "connection up");
                let parts = connection::ReaderParts {
                    info: info.clone(),
                    tx,
                    close,
                    answered,
                };
                connection::reader(r, parts, inner.clone(), inner.limits, slot.silent.take()).await;
                inner.remove(&info);
                drop(slot);
                // On every lane, behind the connection's messages there.
                for lane in inner.lanes.iter() {
                    let _ = lane.send(Event::Closed { conn: info.clone() }).await;
                }
            }
            .instrument(span),
        );
        id
    }

    fn remove(&self, info: &ConnInfo) {
        let mut table = lock(&self.table);
        let alias = table.conns.remove(&info.id).and_then(|c| c.alias);
        for addr in [Some(info.peer), alias].into_iter().flatten() {
            if table.by_addr.get(&addr) == Some(&info.id) {
                table.by_addr.remove(&addr);
            }
        }
        debug!("connection removed");
    }

    /// The lane of a message: by a hash of its Call-ID (all messages without one share a
    /// lane; the next layer refuses them).
    pub(crate) fn lane_of(&self, msg: &Message) -> &mpsc::Sender<Event> {
        if self.lanes.len() == 1 {
            return &self.lanes[0];
        }
        let mut h = DefaultHasher::new();
        msg.headers.value(&HeaderName::CallId).hash(&mut h);
        &self.lanes[(h.finish() % self.lanes.len() as u64) as usize]
    }

    /// RFC 5923: a request whose top Via carries `alias` offers its connection for requests
    /// back to its sent-by, so a node that already holds a connection to a peer sends over it.
    /// Only for an address the peer's certificate names (RFC 5923 section 5: a connection
    /// must not be reused for a name it was not authenticated for), and one per connection.
    pub(crate) fn on_message(&self, info: &ConnInfo, msg: &Message) {
        if !info.inbound || !msg.is_request() {
            return;
        }
        let Some(via) = msg.headers.get(&HeaderName::Via) else {
            return;
        };
        if memchr::memmem::find(&via.value, b"alias").is_none() {
            return;
        }
        let Ok(via) = msg.top_via() else { return };
        let (true, Host::Ip(ip), Some(port)) = (via.params.contains("alias"), &via.host, via.port)
        else {
            return;
        };
        if !info.identity.ips.contains(ip) {
            return debug!(%ip, "alias for an address the certificate does not name; ignored");
        }
        let addr = SocketAddr::new(*ip, port);
        let mut guard = lock(&self.table);
        let table = &mut *guard;
        let Some(conn) = table.conns.get_mut(&info.id) else {
            return;
        };
        // Taken only where no other connection reaches the address already, so the one alias
        // a connection may hold is not spent on nothing.
        if conn.alias.is_none()
            && let std::collections::hash_map::Entry::Vacant(slot) = table.by_addr.entry(addr)
        {
            slot.insert(info.id);
            conn.alias = Some(addr);
        }
    }
}
