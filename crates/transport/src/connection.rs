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
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::Limits;
use crate::tls::PeerIdentity;
use crate::transport::{Event, Inner};

/// An RFC 5626 flow token: names one connection so that a request can later be sent back
/// down that very connection. It holds the connection number and a random part, so that it
/// cannot be guessed from another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowToken(String);

impl FlowToken {
    pub(crate) fn new(id: u64) -> FlowToken {
        FlowToken(format!("{id:x}x{:016x}", random_u64()))
    }

    /// Accepts any text; an unknown token simply finds no flow.
    pub fn from_text(text: &str) -> FlowToken {
        FlowToken(text.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn conn_id(&self) -> Option<u64> {
        let (id, _) = self.0.split_once('x')?;
        u64::from_str_radix(id, 16).ok()
    }
}

impl fmt::Display for FlowToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
}

/// Drains the queue: takes what is waiting, up to 64 KiB, and writes it as one buffer.
pub(crate) async fn writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::with_capacity(16 * 1024);
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if let Err(e) = w.write_all(&batch).await {
            debug!(error = %e, "write failed");
            return;
        }
        if let Err(e) = w.flush().await {
            debug!(error = %e, "flush failed");
            return;
        }
        batch.clear();
    }
    // Every sender is gone: the connection is being closed. Say so to the peer (close_notify).
    let _ = w.shutdown().await;
}

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
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // When the message now in the buffer began: it must be complete within the read time-out.
    let mut partial_since: Option<Instant> = None;
    loop {
        let deadline = match partial_since {
            Some(t) => t + limits.message_read_timeout,
            None => Instant::now() + limits.idle_timeout,
        };
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
        while let Some(frame) = decoder.decode(&mut buf) {
            match frame {
                Frame::Message(msg) => {
                    inner.on_message(&info, &msg);
                    if inner
                        .events
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
        partial_since = match (buf.is_empty(), partial_since) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => Some(Instant::now()),
        };
    }
}
