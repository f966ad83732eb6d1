//! HEPv3 (the Homer Encapsulation Protocol, as sngrep `-L`, Homer's heplify-server and
//! Kamailio's siptrace speak it): each captured message in one UDP datagram of chunks, with
//! its real addresses and ports, the time, the node's capture agent id, the Call-ID as
//! correlation id and the message itself. The hop's reason travels in a chunk of siplab's
//! own vendor id, which collectors that do not know it skip (as they must).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::capture::{CaptureSink, Captured};

/// The vendor id of siplab's own chunks (not one of the registered ones: 0 is generic,
/// 1 to 0x0f name FreeSWITCH, Kamailio, OpenSIPS and others).
pub const VENDOR: u16 = 0x5350;
/// siplab's chunk carrying the hop's reason, UTF-8.
pub const REASON_CHUNK: u16 = 0x0001;
/// HEP's protocol type for SIP.
const PROTO_SIP: u8 = 1;
/// What one UDP datagram can carry.
const MAX_DATAGRAM: usize = 65_507;

/// A collector's address as the command line and the topology give it: `udp:IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepTarget(pub SocketAddr);

impl FromStr for HepTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = s
            .strip_prefix("udp:")
            .ok_or_else(|| format!("{s:?}: a HEP collector is given as udp:IP:PORT"))?;
        addr.parse()
            .map(HepTarget)
            .map_err(|e| format!("{s:?}: {e} (a HEP collector is given as udp:IP:PORT)"))
    }
}

impl fmt::Display for HepTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp:{}", self.0)
    }
}

/// One captured message as a HEPv3 packet; `None` when it cannot fit one datagram.
pub fn encode(ev: &Captured) -> Option<Vec<u8>> {
    if ev.payload.len() > MAX_DATAGRAM {
        return None;
    }
    let mut out = Vec::with_capacity(ev.payload.len() + 160);
    out.extend_from_slice(b"HEP3\0\0");
    let family: u8 = if ev.src.is_ipv4() { 2 } else { 10 };
    chunk(&mut out, 0, 0x0001, &[family]);
    // The messages went over TCP (TLS); what is exported is the text TLS carried.
    chunk(&mut out, 0, 0x0002, &[6]);
    match (ev.src.ip(), ev.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(&mut out, 0, 0x0003, &s.octets());
            chunk(&mut out, 0, 0x0004, &d.octets());
        }
        (s, d) => {
            chunk(&mut out, 0, 0x0005, &v6(s));
            chunk(&mut out, 0, 0x0006, &v6(d));
        }
    }
    chunk(&mut out, 0, 0x0007, &ev.src.port().to_be_bytes());
    chunk(&mut out, 0, 0x0008, &ev.dst.port().to_be_bytes());
    let since = ev.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    // HEP's seconds field is 32 bits wide (until 2106).
    chunk(&mut out, 0, 0x0009, &(since.as_secs() as u32).to_be_bytes());
    chunk(&mut out, 0, 0x000a, &since.subsec_micros().to_be_bytes());
    chunk(&mut out, 0, 0x000b, &[PROTO_SIP]);
    chunk(&mut out, 0, 0x000c, &ev.agent.to_be_bytes());
    if let Some(call_id) = ev.call_id() {
        chunk(&mut out, 0, 0x0011, call_id);
    }
    if let Some(reason) = &ev.reason {
        chunk(&mut out, VENDOR, REASON_CHUNK, reason.as_bytes());
    }
    chunk(&mut out, 0, 0x000f, &ev.payload);
    let len = u16::try_from(out.len())
        .ok()
        .filter(|_| out.len() <= MAX_DATAGRAM)?;
    out[4..6].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn chunk(out: &mut Vec<u8>, vendor: u16, kind: u16, data: &[u8]) {
    // A chunk too long for its length field is left out (a payload that long makes the
    // whole packet too long, which `encode` refuses).
    let Ok(len) = u16::try_from(data.len() + 6) else {
        return;
    };
    out.extend_from_slice(&vendor.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// Sends captured messages to a HEP collector over UDP. A collector that is slow, full or
/// not there costs nothing but the packets: UDP does not wait for it, and a failed send is
/// counted (and logged at the first and every 10,000th).
pub struct HepSender {
    socket: UdpSocket,
    target: HepTarget,
    failed: AtomicU64,
}

/// Packets sent with one system call.
const BATCH: usize = 64;
/// How long an exporter lets captures gather before it sends them: under load one wake-up
/// and a few system calls per this much traffic, not one per message.
const GATHER: Duration = Duration::from_millis(5);

impl HepSender {
    pub async fn bind(target: HepTarget) -> std::io::Result<HepSender> {
        let local: SocketAddr = match target.0 {
            SocketAddr::V4(_) => "0.0.0.0:0",
            SocketAddr::V6(_) => "[::]:0",
        }
        .parse()
        .map_err(std::io::Error::other)?;
        let socket = UdpSocket::bind(local).await?;
        socket.connect(target.0).await?;
        info!(collector = %target, "exporting captured SIP as HEPv3");
        Ok(HepSender {
            socket,
            target,
            failed: AtomicU64::new(0),
        })
    }

    /// Sends what it can of `events` at once (sendmmsg); what the socket does not take
    /// now is dropped and counted.
    pub fn send(&self, events: &[Captured]) {
        let packets: Vec<Vec<u8>> = events.iter().filter_map(encode).collect();
        let mut lost = (events.len() - packets.len()) as u64;
        for chunk in packets.chunks(BATCH) {
            lost += (chunk.len() - self.send_now(chunk)) as u64;
        }
        if lost > 0 {
            let before = self.failed.fetch_add(lost, Ordering::Relaxed);
            if before / 10_000 != (before + lost) / 10_000 || before == 0 {
                warn!(failed = before + lost, collector = %self.target, "HEP packets not sent");
            }
        }
    }

    /// One sendmmsg(2) without waiting; how many packets the kernel took.
    fn send_now(&self, packets: &[Vec<u8>]) -> usize {
        let mut iovs: Vec<libc::iovec> = packets
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero msghdr is a valid empty one (no name, no control data).
                let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
                hdr.msg_iov = iov;
                hdr.msg_iovlen = 1;
                libc::mmsghdr {
                    msg_hdr: hdr,
                    msg_len: 0,
                }
            })
            .collect();
        // SAFETY: the socket is connected; every header points at one iovec, and every
        // iovec at a packet, all of which outlive the call.
        let sent = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                headers.as_mut_ptr(),
                headers.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        usize::try_from(sent).unwrap_or(0)
    }
}

/// Starts exporting to `target`: returns the sink nodes capture into (holding at most
/// `capacity` messages the exporter has not sent yet).
pub async fn start(target: HepTarget, capacity: usize) -> std::io::Result<CaptureSink> {
    let sender = HepSender::bind(target).await?;
    let (sink, rx) = CaptureSink::new(capacity);
    tokio::spawn(export(sender, rx));
    Ok(sink)
}

async fn export(sender: HepSender, mut rx: mpsc::Receiver<Captured>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        tokio::time::sleep(GATHER).await;
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        sender.send(&batch);
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;

    use super::*;

    /// The chunks of a packet: (vendor, type, data).
    fn chunks(packet: &[u8]) -> Vec<(u16, u16, &[u8])> {
        assert_eq!(&packet[..4], b"HEP3");
        assert_eq!(
            u16::from_be_bytes([packet[4], packet[5]]) as usize,
            packet.len()
        );
        let mut out = Vec::new();
        let mut rest = &packet[6..];
        while !rest.is_empty() {
            let field = |i: usize| u16::from_be_bytes([rest[i], rest[i + 1]]);
            let (vendor, kind, len) = (field(0), field(2), field(4) as usize);
            out.push((vendor, kind, &rest[6..len]));
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn a_captured_message_becomes_the_chunks_collectors_read() {
        let ev = Captured {
            node: "E1".into(),
            agent: 7,
            time: SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_000),
            src: "10.10.1.20:5061".parse().unwrap(),
            dst: "198.51.100.10:5061".parse().unwrap(),
            sent: true,
            payload: Bytes::from_static(
                b"MESSAGE sip:bob@fabrikam.test SIP/2.0\r\ni: abc@1 \r\nCSeq: 1 MESSAGE\r\n\r\nCall-ID: body",
            ),
            reason: Some(Arc::from("fabrikam.test: not ours")),
        };
        let packet = encode(&ev).unwrap();
        let c = chunks(&packet);
        let find = |v: u16, t: u16| c.iter().find(|x| x.0 == v && x.1 == t).map(|x| x.2);
        assert_eq!(find(0, 1), Some(&[2u8][..]));
        assert_eq!(find(0, 3), Some(&[10, 10, 1, 20][..]));
        assert_eq!(find(0, 4), Some(&[198, 51, 100, 10][..]));
        assert_eq!(find(0, 7), Some(&5061u16.to_be_bytes()[..]));
        assert_eq!(find(0, 9), Some(&1_700_000_000u32.to_be_bytes()[..]));
        assert_eq!(find(0, 0x0a), Some(&123_456u32.to_be_bytes()[..]));
        assert_eq!(find(0, 0x0b), Some(&[1u8][..]));
        assert_eq!(find(0, 0x0c), Some(&7u32.to_be_bytes()[..]));
        assert_eq!(
            find(0, 0x11),
            Some(&b"abc@1"[..]),
            "the header's, not the body's"
        );
        assert_eq!(find(VENDOR, 1), Some(&b"fabrikam.test: not ours"[..]));
        assert_eq!(find(0, 0x0f), Some(&ev.payload[..]));
    }

    #[test]
    fn a_message_too_big_for_a_datagram_is_not_encoded() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let ev = Captured {
            node: "R1".into(),
            agent: 1,
            time: SystemTime::now(),
            src: addr,
            dst: addr,
            sent: false,
            payload: Bytes::from(vec![b'x'; 70_000]),
            reason: None,
        };
        assert!(encode(&ev).is_none());
    }

    #[test]
    fn a_collector_is_udp_ip_port() {
        assert_eq!(
            "udp:127.0.0.1:9060".parse::<HepTarget>().unwrap().0,
            "127.0.0.1:9060".parse::<SocketAddr>().unwrap()
        );
        for bad in ["127.0.0.1:9060", "udp:collector:9060", "tcp:127.0.0.1:1"] {
            assert!(bad.parse::<HepTarget>().is_err(), "{bad}");
        }
    }
}
