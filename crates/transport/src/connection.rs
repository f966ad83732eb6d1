//! One TLS connection: what is known about it, its writer (a bounded queue drained in
//! batches, so that many small messages become few TLS records and syscalls) and its reader
//! (framing with the codec under the read time-outs).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use siplab_sip::{Frame, Message, StreamDecoder, random_u64};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::Limits;
use crate::quiet::Repeated;
use crate::sources::PerSource;
use crate::tls::PeerIdentity;
use crate::transport::{Event, Inner};

/// An RFC 5626 flow token: names one connection so that a request can later be sent back
/// down that very connection. It holds the connection number and a random part, so that it
/// cannot be guessed from another.
///
/// It is two numbers, not text, so that keeping one (in every binding of a registrar) and
/// copying one (with every request to a user) costs no allocation; on the wire it is
/// `<id in hex>x<random part in 16 hex digits>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowToken {
    id: u64,
    nonce: u64,
}

impl FlowToken {
    pub(crate) fn new(id: u64) -> FlowToken {
        FlowToken {
            id,
            nonce: random_u64(),
        }
    }

    /// Reads a token as this type writes it; `None` for text that is not one (which could
    /// name no flow anyway).
    pub fn parse(text: &str) -> Option<FlowToken> {
        let (id, nonce) = text.split_once('x')?;
        // from_str_radix alone would also take a sign.
        let hex = |t: &str| match t.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => u64::from_str_radix(t, 16).ok(),
            false => None,
        };
        Some(FlowToken {
            id: hex(id)?,
            nonce: hex(nonce)?,
        })
    }

    pub(crate) fn conn_id(&self) -> u64 {
        self.id
    }
}

impl fmt::Display for FlowToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}x{:016x}", self.id, self.nonce)
    }
}

/// Everything known about a connection, handed up with every message from it.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub flow: FlowToken,
    /// The node interface it belongs to (its local side).
    pub interface: Arc<str>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub identity: PeerIdentity,
    /// Accepted from a peer (true) or opened by this node (false).
    pub inbound: bool,
}

/// What is known about a connection a listener handed to another protocol by ALPN: it is
/// not SIP, so it has no flow and is not in the connection table.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    /// The node interface whose listener accepted it.
    pub interface: Arc<str>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub identity: PeerIdentity,
}

/// The table's handle on a live connection.
pub(crate) struct Conn {
    pub(crate) info: Arc<ConnInfo>,
    pub(crate) tx: mpsc::Sender<Bytes>,
    /// Final responses queued for it: a reader that stops early waits for as many as it
    /// handed up requests.
    pub(crate) answered: Arc<AtomicU64>,
    /// Tells the reader to stop; the writer then flushes, says close_notify and ends.
    pub(crate) close: Arc<Notify>,
    /// The address it stands for besides its peer's (RFC 5923 alias), at most one.
    pub(crate) alias: Option<SocketAddr>,
}

/// At most this much of what waits in a connection's queue goes into one write.
const BATCH_LIMIT: usize = 64 * 1024;

/// Drains the queue: a message alone is written as it is; several waiting are joined, up to
/// 64 KiB, and written as one buffer (few TLS records and syscalls). Nothing is kept between
/// writes, so an idle connection holds no write buffer. A write that fails or that the peer
/// does not take within `timeout` closes the connection (the reader is told to stop).
pub(crate) async fn writer<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Bytes>,
    close: Arc<Notify>,
    timeout: Duration,
) {
    while let Some(first) = rx.recv().await {
        let batch;
        let out: &[u8] = match rx.try_recv() {
            Err(_) => &first,
            Ok(second) => {
                let mut joined = BytesMut::with_capacity(16 * 1024);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&second);
                while joined.len() < BATCH_LIMIT {
                    match rx.try_recv() {
                        Ok(more) => joined.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                batch = joined;
                &batch
            }
        };
        let written = tokio::time::timeout(timeout, async {
            w.write_all(out).await?;
            w.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                debug!(error = %e, "write failed; closing");
                return close.notify_one();
            }
            Err(_) => {
                warn!("the peer took no data within the write time-out; closing");
                return close.notify_one();
            }
        }
    }
    // Every sender is gone: the connection is being closed. Say so to the peer (close_notify).
    let _ = tokio::time::timeout(timeout, w.shutdown()).await;
}

/// Room made in the read buffer before each read.
const READ_CHUNK: usize = 4 * 1024;

/// Whether queued bytes are a final response (a status line of 2xx to 6xx).
pub(crate) fn is_final(bytes: &[u8]) -> bool {
    bytes.len() > 9 && bytes.starts_with(b"SIP/2.0 ") && (b'2'..=b'6').contains(&bytes[8])
}

/// What a reader shares with the rest of its connection.
pub(crate) struct ReaderParts {
    pub info: Arc<ConnInfo>,
    pub tx: mpsc::Sender<Bytes>,
    pub close: Arc<Notify>,
    pub answered: Arc<AtomicU64>,
}

/// Invalid messages (a flood of them makes one line a second).
static INVALID: Repeated = Repeated::new();

/// Reads and frames until the peer closes, a time-out passes, or the stream breaks; then,
/// unless this node closed it, waits (up to the linger time) until every request it handed
/// up has its final response queued, so that what came before the end is answered.
pub(crate) async fn reader<R: AsyncRead + Unpin>(
    r: R,
    parts: ReaderParts,
    inner: Arc<Inner>,
    limits: Limits,
    // An inbound connection must send its first message within its own time-out, and until
    // then counts against its source's silent connections.
    mut awaiting_first: Option<PerSource>,
) {
    let mut requests = 0u64;
    let why = read(
        r,
        &parts,
        &inner,
        limits,
        (&mut requests, &mut awaiting_first),
    )
    .await;
    if why == End::ClosedHere {
        return;
    }
    let deadline = Instant::now() + limits.linger;
    while parts.answered.load(Ordering::Relaxed) < requests && Instant::now() < deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            _ = parts.close.notified() => return,
        }
    }
    let unanswered = requests.saturating_sub(parts.answered.load(Ordering::Relaxed));
    debug!(requests, unanswered, "reading ended; closing");
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// This node closed the connection: nothing more is sent.
    ClosedHere,
    /// The peer closed, the stream broke, or a time-out passed.
    Peer,
}

async fn read<R: AsyncRead + Unpin>(
    mut r: R,
    parts: &ReaderParts,
    inner: &Arc<Inner>,
    limits: Limits,
    (requests, awaiting_first): (&mut u64, &mut Option<PerSource>),
) -> End {
    let ReaderParts {
        info, tx, close, ..
    } = parts;
    let first_by = Instant::now() + limits.first_message_timeout;
    let mut decoder = StreamDecoder::new(limits.codec);
    // Allocated when a read needs it and let go when every byte in it has been handed up,
    // so an idle connection holds no read buffer.
    let mut buf = BytesMut::new();
    // When the message now in the buffer began: it must be complete within the read time-out.
    let mut partial_since: Option<Instant> = None;
    loop {
        let deadline = match partial_since {
            Some(t) => t + limits.message_read_timeout,
            None if awaiting_first.is_some() => first_by.min(Instant::now() + limits.idle_timeout),
            None => Instant::now() + limits.idle_timeout,
        };
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, r.read_buf(&mut buf)) => r,
            _ = close.notified() => {
                debug!("closed by this node");
                return End::ClosedHere;
            }
        };
        match read {
            Err(_) if partial_since.is_some() => {
                debug!(
                    buffered = buf.len(),
                    "message not complete within the read time-out; closing"
                );
                return End::Peer;
            }
            Err(_) if awaiting_first.is_some() => {
                debug!("no first message in time; closing");
                return End::Peer;
            }
            Err(_) => {
                debug!("idle time-out; closing");
                return End::Peer;
            }
            Ok(Ok(0)) => {
                debug!("closed by peer");
                return End::Peer;
            }
            Ok(Err(e)) => {
                debug!(error = %e, "read failed");
                return End::Peer;
            }
            Ok(Ok(_)) => {}
        }
        let mut framed = false;
        while let Some(frame) = decoder.decode(&mut buf) {
            framed = true;
            match frame {
                Frame::Message(msg) => {
                    *awaiting_first = None;
                    inner.on_message(info, &msg);
                    if let Some(tap) = inner.tap.get() {
                        let now = std::time::SystemTime::now();
                        let wire = decoder.last_message().clone();
                        tap.record(now, (info.peer, info.local), false, wire, None);
                    }
                    // What gets a final response: any request but an ACK.
                    if msg.is_request() && msg.method() != Some(siplab_sip::Method::Ack) {
                        *requests += 1;
                    }
                    if inner
                        .lane_of(&msg)
                        .send(Event::Message {
                            msg,
                            conn: info.clone(),
                        })
                        .await
                        .is_err()
                    {
                        return End::ClosedHere;
                    }
                }
                Frame::Ping => {
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Frame::Invalid { raw, error } => {
                    let answer = Message::error_response(&raw, &error);
                    let lost = error.breaks_stream();
                    if let Some(repeated) = INVALID.due() {
                        let answered = answer.as_ref().and_then(Message::status);
                        warn!(%error, bytes = raw.len(), ?answered, lost, repeated, "invalid message");
                    }
                    // Answered where a Via can be read; a message that cannot even be
                    // answered is no SIP peer's, and the connection ends with it.
                    let Some(resp) = answer else {
                        return End::Peer;
                    };
                    *requests += 1;
                    let _ = queue_answer(tx, &parts.answered, resp.to_bytes());
                    if lost {
                        return End::Peer;
                    }
                }
            }
        }
        // The time-out runs from when the message still in the buffer began: a read that
        // completed a message starts the next one's clock.
        partial_since = match (buf.is_empty(), partial_since) {
            (true, _) => {
                buf = BytesMut::new();
                None
            }
            (false, Some(t)) if !framed => Some(t),
            (false, _) => Some(Instant::now()),
        };
    }
}

/// Queues an answer the reader gives itself, counted like any final response.
fn queue_answer(tx: &mpsc::Sender<Bytes>, answered: &AtomicU64, bytes: Bytes) -> bool {
    let fin = is_final(&bytes);
    let queued = tx.try_send(bytes).is_ok();
    if queued && fin {
        answered.fetch_add(1, Ordering::Relaxed);
    }
    queued
}

#[cfg(test)]
mod tests {
    use super::{FlowToken, is_final};

    #[test]
    fn final_responses_are_told_from_provisional_ones_and_requests() {
        assert!(is_final(b"SIP/2.0 200 OK\r\n"));
        assert!(is_final(b"SIP/2.0 404 Not Found\r\n"));
        assert!(!is_final(b"SIP/2.0 100 Trying\r\n"));
        assert!(!is_final(b"MESSAGE sip:a@b SIP/2.0\r\n"));
        assert!(!is_final(b"\r\n"));
    }

    #[test]
    fn a_flow_token_reads_back_as_written() {
        let token = FlowToken::new(0x2a);
        let text = token.to_string();
        assert!(text.starts_with("2ax") && text.len() == 3 + 16, "{text}");
        assert_eq!(FlowToken::parse(&text), Some(token));
    }

    #[test]
    fn text_that_is_no_flow_token_is_none() {
        for text in [
            "",
            "x",
            "2a",
            "2ax",
            "x1",
            "2ax+1",
            "zzx1",
            "1x11111111111111111",
        ] {
            assert_eq!(FlowToken::parse(text), None, "{text:?}");
        }
    }
}
