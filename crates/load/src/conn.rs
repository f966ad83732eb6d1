//! One user's persistent TLS connection to the proxy, as one task: it writes what the
//! scheduler hands it, answers what the proxy relays to it (as a callee), follows its own
//! transactions to their final responses (as a caller), and times them out.
//!
//! The lab's `Transport` is not used here: it is a node's connection table and would share
//! one connection per peer address among all users, while every user of a load test needs
//! its own connection (its flow, as RFC 5626 calls it) under its own certificate.
//!
//! One task per connection reads, writes and keeps its transactions, so nothing is shared
//! between connections but the step counters; writes are batched per wake-up (everything
//! the scheduler queued and every answer to what was just read go out in one TLS write).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::BytesMut;
use siplab_sip::{Frame, Limits, Message, Method, StreamDecoder};
use siplab_transport::TlsConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::requests::{CallIds, Dialog, Local};
use crate::stats::{Failure, StepStats};
use crate::users::User;

/// One unit of offered load: when it was due and which step counts it.
#[derive(Debug, Clone)]
pub struct Unit {
    pub scheduled: Instant,
    pub stats: Arc<StepStats>,
}

/// What the scheduler asks a connection to send.
#[derive(Debug)]
pub enum Job {
    /// REGISTER this connection's user (the first time, or a refresh).
    Register(Unit),
    Message {
        to: Arc<str>,
        unit: Unit,
    },
    Call {
        to: Arc<str>,
        unit: Unit,
    },
}

impl Job {
    pub fn unit(&self) -> &Unit {
        match self {
            Job::Register(u) | Job::Message { unit: u, .. } | Job::Call { unit: u, .. } => u,
        }
    }
}

/// What the run shares with every connection.
#[derive(Debug)]
pub struct Shared {
    pub domain: String,
    pub salt: u32,
    pub timeout: Duration,
}

/// How a connection is reached by the scheduler.
pub type JobSender = mpsc::UnboundedSender<Job>;

/// RFC 5626 keep-alive: a double CRLF when a connection has been quiet this long, well
/// within the idle time-outs of proxies (Kamailio's TCP lifetime defaults to 120 s).
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Connects (TCP from `bind`, then mutual TLS checking `server_name`) and starts the
/// connection's task.
pub async fn connect(
    user: User,
    conn: u32,
    tls: TlsConfig,
    bind: IpAddr,
    proxy: SocketAddr,
    server_name: ServerName<'static>,
    shared: Arc<Shared>,
) -> Result<JobSender> {
    let socket = match bind {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .context("socket")?;
    socket
        .bind(SocketAddr::new(bind, 0))
        .with_context(|| format!("binding to {bind}"))?;
    let tcp: TcpStream = socket
        .connect(proxy)
        .await
        .with_context(|| format!("connecting to {proxy}"))?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let local = tcp.local_addr().context("local address")?;
    let stream = TlsConnector::from(tls.client)
        .connect(server_name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {proxy} as {}", user.aor))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let me = Conn {
        local: Local {
            user,
            host: local.to_string(),
            domain: shared.domain.clone(),
            salt: shared.salt,
            conn,
        },
        shared,
        next: 0,
        reg_cseq: 0,
        pending: HashMap::new(),
        order: VecDeque::new(),
        out: BytesMut::with_capacity(16 * 1024),
    };
    tokio::spawn(me.run(stream, rx));
    Ok(tx)
}

/// A transaction of ours waiting for its final response.
struct Pending {
    unit: Unit,
    sent: Instant,
    kind: Kind,
}

enum Kind {
    Register,
    Message,
    Invite(CallIds),
    /// A call's BYE; the call succeeds with its 2xx.
    Bye,
}

struct Conn {
    local: Local,
    shared: Arc<Shared>,
    /// Numbers branches, tags and Call-IDs of this connection.
    next: u64,
    reg_cseq: u32,
    pending: HashMap<u64, Pending>,
    /// Transactions in the order they were sent, with their deadlines: the front is the
    /// next to time out. Answered ones are dropped from the front as they come by.
    order: VecDeque<(Instant, u64)>,
    out: BytesMut,
}

impl Conn {
    async fn run(mut self, mut stream: TlsStream<TcpStream>, mut rx: mpsc::UnboundedReceiver<Job>) {
        let mut decoder = StreamDecoder::new(Limits::default());
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut deadline = pin!(tokio::time::sleep_until(Instant::now()));
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        let mut wrote_since_tick = false;
        let mut jobs_open = true;
        loop {
            if let Some(&(at, _)) = self.order.front()
                && at != deadline.deadline()
            {
                deadline.as_mut().reset(at);
            }
            tokio::select! {
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while let Some(frame) = decoder.decode(&mut buf) {
                            self.on_frame(frame);
                        }
                    }
                },
                job = rx.recv(), if jobs_open => match job {
                    Some(job) => {
                        self.on_job(job);
                        // Everything already queued goes out in the same write.
                        for _ in 0..256 {
                            match rx.try_recv() {
                                Ok(job) => self.on_job(job),
                                Err(_) => break,
                            }
                        }
                    }
                    // The run is over; keep answering until the process exits.
                    None => jobs_open = false,
                },
                () = &mut deadline, if !self.order.is_empty() => self.expire(),
                _ = keepalive.tick() => {
                    if !wrote_since_tick {
                        self.out.extend_from_slice(b"\r\n\r\n");
                    }
                    wrote_since_tick = false;
                }
            }
            self.forget_answered();
            if !self.out.is_empty() {
                wrote_since_tick = true;
                if stream.write_all(&self.out).await.is_err() || stream.flush().await.is_err() {
                    break;
                }
                self.out.clear();
            }
        }
        self.fail_all(&mut rx);
    }

    fn number(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn on_job(&mut self, job: Job) {
        let now = Instant::now();
        job.unit().stats.sending(job.unit().scheduled, now);
        let n = self.number();
        let (unit, kind) = match job {
            Job::Register(unit) => {
                self.reg_cseq += 1;
                self.local.register(&mut self.out, n, self.reg_cseq);
                (unit, Kind::Register)
            }
            Job::Message { to, unit } => {
                self.local.message(&mut self.out, n, &to);
                (unit, Kind::Message)
            }
            Job::Call { to, unit } => {
                let ids = self.local.invite(&mut self.out, n, &to);
                (unit, Kind::Invite(ids))
            }
        };
        self.track(n, now, unit, kind);
    }

    fn track(&mut self, n: u64, now: Instant, unit: Unit, kind: Kind) {
        self.order.push_back((now + self.shared.timeout, n));
        self.pending.insert(
            n,
            Pending {
                unit,
                sent: now,
                kind,
            },
        );
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame {
            Frame::Message(msg) if msg.is_request() => {
                if msg.method() != Some(Method::Ack) {
                    let n = self.number();
                    self.local.answer(&mut self.out, &msg, n);
                }
            }
            Frame::Message(msg) => self.on_response(msg),
            Frame::Ping => self.out.extend_from_slice(b"\r\n"),
            // Nothing a load test can do about bytes that do not parse but not answer them.
            Frame::Invalid { .. } => {}
        }
    }

    fn on_response(&mut self, resp: Message) {
        let Some(code) = resp.status() else { return };
        if code < 200 {
            return;
        }
        let Some(n) = self.local.transaction_of(&resp) else {
            return;
        };
        // Late (already timed out) or a retransmission: nothing waits for it.
        let Some(p) = self.pending.remove(&n) else {
            return;
        };
        let now = Instant::now();
        let stats = p.unit.stats.clone();
        match p.kind {
            Kind::Register | Kind::Message => {
                if code < 300 {
                    stats.answered(p.unit.scheduled, now);
                    stats.succeeded();
                } else {
                    stats.failed(Failure::Status { method: None, code });
                }
            }
            Kind::Invite(ids) => {
                if code >= 300 {
                    let to = resp.headers.value(&siplab_sip::HeaderName::To).cloned();
                    self.local.ack_failure(
                        &mut self.out,
                        n,
                        &ids,
                        to.as_deref().unwrap_or_default(),
                    );
                    return stats.failed(Failure::Status { method: None, code });
                }
                stats.answered(p.unit.scheduled, now);
                let Some(dialog) = Dialog::from_2xx(ids, &resp) else {
                    return stats.failed(Failure::Malformed("200 to INVITE without Contact"));
                };
                let ack = self.number();
                self.local.in_dialog(&mut self.out, ack, &dialog, "1 ACK");
                let bye = self.number();
                self.local.in_dialog(&mut self.out, bye, &dialog, "2 BYE");
                self.track(bye, now, p.unit, Kind::Bye);
            }
            Kind::Bye => {
                if code < 300 {
                    stats.torn_down(now.saturating_duration_since(p.sent));
                    stats.succeeded();
                } else {
                    stats.failed(Failure::Status {
                        method: Some("BYE"),
                        code,
                    });
                }
            }
        }
    }

    /// Drops answered transactions off the front of the deadline queue, so the timer only
    /// wakes for ones still waiting.
    fn forget_answered(&mut self) {
        while let Some(&(_, n)) = self.order.front() {
            if self.pending.contains_key(&n) {
                break;
            }
            self.order.pop_front();
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(at, n)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.pending.remove(&n) {
                let method = matches!(p.kind, Kind::Bye).then_some("BYE");
                p.unit.stats.failed(Failure::Timeout { method });
            }
        }
    }

    /// The connection is gone: whatever waited on it or was queued for it failed.
    fn fail_all(&mut self, rx: &mut mpsc::UnboundedReceiver<Job>) {
        for (_, p) in self.pending.drain() {
            p.unit.stats.failed(Failure::Transport);
        }
        rx.close();
        while let Ok(job) = rx.try_recv() {
            job.unit().stats.not_sent(Failure::Transport);
        }
    }
}
