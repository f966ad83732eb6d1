//! One TLS connection: what is known about it, its writer (a bounded queue drained in
//! batches, so that many small messages become few TLS records and syscalls) and its reader
//! (framing with the codec under the read time-outs).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use siplab_sip::{Frame, Message, StreamDecoder, random_u64};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::time::{Duration, Instant};
use tracing::{debug, info, warn};

use crate::Limits;
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

/// Reads and frames until the peer closes, a time-out passes, or the stream breaks.
pub(crate) async fn reader<R: AsyncRead + Unpin>(
    mut r: R,
    info: Arc<ConnInfo>,
    tx: mpsc::Sender<Bytes>,
    close: Arc<Notify>,
    inner: Arc<Inner>,
    limits: Limits,
) {
    let mut decoder = StreamDecoder::new(limits.codec);
    // Allocated when a read needs it and let go when every byte in it has been handed up,
    // so an idle connection holds no read buffer.
    let mut buf = BytesMut::new();
    // When the message now in the buffer began: it must be complete within the read time-out.
    let mut partial_since: Option<Instant> = None;
    loop {
        let deadline = match partial_since {
            Some(t) => t + limits.message_read_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, r.read_buf(&mut buf)) => r,
            _ = close.notified() => return debug!("closed by this node"),
        };
        match read {
            Err(_) if partial_since.is_some() => {
                warn!(
                    buffered = buf.len(),
                    "message not complete within the read time-out; closing"
                );
                return;
            }
            Err(_) => {
                info!("idle time-out; closing");
                return;
            }
            Ok(Ok(0)) => {
                debug!("closed by peer");
                return;
            }
            Ok(Err(e)) => {
                debug!(error = %e, "read failed");
                return;
            }
            Ok(Ok(_)) => {}
        }
        let mut framed = false;
        while let Some(frame) = decoder.decode(&mut buf) {
            framed = true;
            match frame {
                Frame::Message(msg) => {
                    inner.on_message(&info, &msg);
                    if let Some(tap) = inner.tap.get() {
                        tap.record((info.peer, info.local), false, msg.to_bytes(), None);
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
                        return;
                    }
                }
                Frame::Ping => {
                    let _ = tx.try_send(Bytes::from_static(b"\r\n"));
                }
                Frame::Invalid { raw, error } => {
                    warn!(%error, bytes = raw.len(), "invalid message");
                    if let Some(resp) = Message::error_response(&raw, &error) {
                        let _ = tx.try_send(resp.to_bytes());
                    }
                    if error.breaks_stream() {
                        warn!("framing lost; closing the connection");
                        return;
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

#[cfg(test)]
mod tests {
    use super::FlowToken;

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
