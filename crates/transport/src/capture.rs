//! Capturing what a node receives and sends, as plain text after TLS, for a collector: the
//! runner's report and live page in this process, or a HEPv3 collector over UDP (sngrep,
//! Homer, [`crate::hep`]). Off unless a node is given a [`Tap`]; when on, capturing never
//! waits: a full queue drops the event and counts it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::warn;

/// One SIP message as a node saw it on one of its connections.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The node that captured it (R1, E1, ...), and its capture agent id.
    pub node: Arc<str>,
    pub agent: u32,
    pub time: SystemTime,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// The node sent it (true) or received it (false).
    pub sent: bool,
    pub payload: Bytes,
    /// Why the node sent it where it did (section 5), for a request it forwarded or an
    /// answer it gave itself.
    pub reason: Option<Arc<str>>,
}

impl Captured {
    /// The message's Call-ID (the header or its compact form `i`), trimmed.
    pub fn call_id(&self) -> Option<&[u8]> {
        call_id(&self.payload)
    }
}

/// The Call-ID of a SIP message's text (`Call-ID` or its compact form `i`), trimmed: a walk
/// over the header lines that stops at the first Call-ID or at the end of the headers (it
/// runs for every message exported, so it looks at a line's first byte before its name).
fn call_id(msg: &[u8]) -> Option<&[u8]> {
    let mut rest = &msg[memchr::memchr(b'\n', msg)? + 1..];
    loop {
        let end = memchr::memchr(b'\n', rest)?;
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if matches!(line[0], b'C' | b'c' | b'I' | b'i')
            && let Some(colon) = memchr::memchr(b':', line)
        {
            let name = line[..colon].trim_ascii();
            if name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i") {
                return Some(line[colon + 1..].trim_ascii());
            }
        }
        rest = &rest[end + 1..];
    }
}

/// Where captured messages go: a bounded queue read by one consumer. Cheap to clone; one is
/// shared by the nodes of a process.
#[derive(Debug, Clone)]
pub struct CaptureSink {
    tx: mpsc::Sender<Captured>,
    dropped: Arc<AtomicU64>,
}

impl CaptureSink {
    /// A sink holding at most `capacity` events its consumer has not taken yet, and the
    /// consumer's end.
    pub fn new(capacity: usize) -> (CaptureSink, mpsc::Receiver<Captured>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = CaptureSink {
            tx,
            dropped: Arc::default(),
        };
        (sink, rx)
    }

    /// Hands an event to the consumer, or drops it when the queue is full (the consumer is
    /// behind, or gone): counted, and logged at the first drop and then at every 10,000th.
    pub fn record(&self, event: Captured) {
        if self.tx.try_send(event).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped % 10_000 == 1 {
                warn!(dropped, "capture queue full: captured messages dropped");
            }
        }
    }

    /// Events waiting for the consumer.
    pub fn pending(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// A node's side of a sink: who it is, and where its captures go.
#[derive(Debug, Clone)]
pub struct Tap {
    pub node: Arc<str>,
    pub agent: u32,
    pub sink: CaptureSink,
}

impl Tap {
    /// Records a message seen at `time` (a send's from before it was queued, so that the
    /// next hop's capture of it is never earlier).
    pub(crate) fn record(
        &self,
        time: SystemTime,
        (src, dst): (SocketAddr, SocketAddr),
        sent: bool,
        payload: Bytes,
        reason: Option<Arc<str>>,
    ) {
        self.sink.record(Captured {
            node: self.node.clone(),
            agent: self.agent,
            time,
            src,
            dst,
            sent,
            payload,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Captured {
        let addr: SocketAddr = "127.0.0.1:5061".parse().unwrap();
        Captured {
            node: "R1".into(),
            agent: 1,
            time: SystemTime::now(),
            src: addr,
            dst: addr,
            sent: true,
            payload: Bytes::from_static(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            reason: None,
        }
    }

    #[test]
    fn the_call_id_is_the_header_s_in_either_form() {
        let cases: [(&[u8], Option<&[u8]>); 5] = [
            (
                b"MESSAGE sip:a SIP/2.0\r\nVia: x\r\nCall-ID:  abc@h \r\n\r\n",
                Some(b"abc@h"),
            ),
            (b"SIP/2.0 200 OK\r\nCSeq: 1 X\r\ni:c2\r\n\r\n", Some(b"c2")),
            (
                b"MESSAGE sip:a SIP/2.0\r\nContact: <sip:x>\r\n\r\nCall-ID: body",
                None,
            ),
            (b"MESSAGE sip:a SIP/2.0\r\nCall-Info: y\r\n", None),
            (b"no line end", None),
        ];
        for (msg, want) in cases {
            assert_eq!(call_id(msg), want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn a_full_sink_drops_and_counts_instead_of_waiting() {
        let (sink, mut rx) = CaptureSink::new(2);
        for _ in 0..5 {
            sink.record(event());
        }
        assert_eq!(sink.dropped(), 3);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
    }
}
