//! What a user agent is told: who it is, where it sits, where it signs in, and its timers.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use siplab_transport::{Limits, TlsConfig};

/// Turns the host and port of a redirect target (`sipdir.online.lync.test`, 443) into an
/// address to connect to (a DNS look-up, so asynchronous); `None` when it does not resolve.
pub type Resolver = Arc<
    dyn Fn(
            String,
            u16,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<SocketAddr>> + Send>>
        + Send
        + Sync,
>;

/// The local address to bind towards a server's address, when it is not the client's own:
/// a client on a company LAN reaches the internet through its NAT address.
pub type SourceFor = Arc<dyn Fn(IpAddr) -> Option<IpAddr> + Send + Sync>;

/// One user at one place, and the server it signs in to first.
#[derive(Clone)]
pub struct UaConfig {
    /// The address of record, `alice@contoso.test`; its certificate carries `sip:<aor>`.
    pub aor: String,
    /// The client's own address; every connection is bound to it (ephemeral port) unless
    /// `source_for` names another.
    pub bind_ip: IpAddr,
    pub source_for: SourceFor,
    /// Where to sign in, and the name its certificate must carry.
    pub server: SocketAddr,
    pub server_name: String,
    /// The user's certificate (client side) and the lab CA it trusts.
    pub tls: TlsConfig,
    /// How often an RFC 5626 keep-alive (CRLF CRLF) goes down the flow, so that the edge
    /// and the client notice a dead connection and NAT bindings stay open.
    pub keepalive: Duration,
    /// Resolves redirect targets (a 301 from a front end names the cloud's sipdir).
    pub resolver: Resolver,
    /// The registration lifetime asked for; the client refreshes before the granted one ends.
    pub register_expires: u32,
    /// How long a client transaction waits for its final response: 64*T1 (Timer B and F)
    /// in RFC 3261; tests shorten it.
    pub transaction_timeout: Duration,
    /// How long an incoming INVITE rings (180) before it is answered (200); a CANCEL in
    /// that time ends it with 487.
    pub ring: Duration,
    /// Limits of the client's own transport.
    pub limits: Limits,
}

impl UaConfig {
    /// A client with the lab's usual timers: keep-alive every 30 s, registrations of 600 s,
    /// transactions of 32 s, INVITEs answered at once, no redirect target resolving.
    pub fn new(
        aor: &str,
        bind_ip: IpAddr,
        server: SocketAddr,
        server_name: &str,
        tls: TlsConfig,
    ) -> UaConfig {
        UaConfig {
            aor: aor.to_owned(),
            bind_ip,
            source_for: Arc::new(|_| None),
            server,
            server_name: server_name.to_owned(),
            tls,
            keepalive: Duration::from_secs(30),
            resolver: Arc::new(|_, _| Box::pin(async { None })),
            register_expires: 600,
            transaction_timeout: Duration::from_secs(32),
            ring: Duration::ZERO,
            limits: Limits::default(),
        }
    }

    /// The address to bind for a connection to `server`.
    pub(crate) fn source(&self, server: SocketAddr) -> IpAddr {
        (self.source_for)(server.ip()).unwrap_or(self.bind_ip)
    }
}

impl fmt::Debug for UaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UaConfig")
            .field("aor", &self.aor)
            .field("bind_ip", &self.bind_ip)
            .field("server", &self.server)
            .field("server_name", &self.server_name)
            .field("keepalive", &self.keepalive)
            .field("register_expires", &self.register_expires)
            .field("transaction_timeout", &self.transaction_timeout)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}
