//! HEPv3 (the Homer Encapsulation Protocol, as sngrep `-L`, Homer's heplify-server and
//! Kamailio's siptrace speak it): each captured message in one UDP datagram of chunks, with
//! its real addresses and ports, the time, the node's capture agent id, the Call-ID as
//! correlation id and the message itself. The hop's reason travels in a chunk of siplab's
//! own vendor id, which collectors that do not know it skip (as they must).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::capture::{CaptureSink, Captured};
use crate::serve::serve_bounded;

/// The vendor id of siplab's own chunks (not one of the registered ones: 0 is generic,
/// 1 to 0x0f name FreeSWITCH, Kamailio, OpenSIPS and others).
pub const VENDOR: u16 = 0x5350;
/// siplab's chunk carrying the hop's reason, UTF-8.
pub const REASON_CHUNK: u16 = 0x0001;
/// siplab's chunk saying whether the capturing node sent the message (1) or received it
/// (0): HEP itself does not say, and a collector drawing a ladder needs to know.
pub const SENT_CHUNK: u16 = 0x0002;
/// HEP's protocol type for SIP.
const PROTO_SIP: u8 = 1;
/// What one UDP datagram can carry.
const MAX_DATAGRAM: usize = 65_507;

/// How a collector is reached: UDP (sngrep, Homer) or TCP (Homer's heplify-server), where
/// packets follow each other on one stream and many go in one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HepProto {
    Udp,
    Tcp,
}

/// A collector's address as the command line and the topology give it: `udp:IP:PORT` or
/// `tcp:IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepTarget {
    pub proto: HepProto,
    pub addr: SocketAddr,
}

impl HepTarget {
    pub fn udp(addr: SocketAddr) -> HepTarget {
        HepTarget {
            proto: HepProto::Udp,
            addr,
        }
    }
}

impl FromStr for HepTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "a HEP collector is given as udp:IP:PORT or tcp:IP:PORT";
        let (proto, addr) = match s.split_once(':') {
            Some(("udp", addr)) => (HepProto::Udp, addr),
            Some(("tcp", addr)) => (HepProto::Tcp, addr),
            _ => return Err(format!("{s:?}: {usage}")),
        };
        let addr = addr.parse().map_err(|e| format!("{s:?}: {e} ({usage})"))?;
        Ok(HepTarget { proto, addr })
    }
}

impl fmt::Display for HepTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.proto {
            HepProto::Udp => "udp",
            HepProto::Tcp => "tcp",
        };
        write!(f, "{proto}:{}", self.addr)
    }
}

/// One captured message as a HEPv3 packet; `None` when it cannot fit one datagram.
pub fn encode(ev: &Captured) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(ev.payload.len() + 160);
    encode_into(ev, &mut out).then_some(out)
}

/// Appends `ev` as a HEPv3 packet to `out`; false (and `out` as it was) when it cannot fit
/// one datagram.
fn encode_into(ev: &Captured, out: &mut Vec<u8>) -> bool {
    if ev.payload.len() > MAX_DATAGRAM {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(b"HEP3\0\0");
    let family: u8 = if ev.src.is_ipv4() { 2 } else { 10 };
    chunk(out, 0, 0x0001, &[family]);
    // The messages went over TCP (TLS); what is exported is the text TLS carried.
    chunk(out, 0, 0x0002, &[6]);
    match (ev.src.ip(), ev.dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            chunk(out, 0, 0x0003, &s.octets());
            chunk(out, 0, 0x0004, &d.octets());
        }
        (s, d) => {
            chunk(out, 0, 0x0005, &v6(s));
            chunk(out, 0, 0x0006, &v6(d));
        }
    }
    chunk(out, 0, 0x0007, &ev.src.port().to_be_bytes());
    chunk(out, 0, 0x0008, &ev.dst.port().to_be_bytes());
    let since = ev.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    // HEP's seconds field is 32 bits wide (until 2106).
    chunk(out, 0, 0x0009, &(since.as_secs() as u32).to_be_bytes());
    chunk(out, 0, 0x000a, &since.subsec_micros().to_be_bytes());
    chunk(out, 0, 0x000b, &[PROTO_SIP]);
    chunk(out, 0, 0x000c, &ev.agent.to_be_bytes());
    if let Some(call_id) = ev.call_id() {
        chunk(out, 0, 0x0011, call_id);
    }
    if let Some(reason) = &ev.reason {
        chunk(out, VENDOR, REASON_CHUNK, reason.as_bytes());
    }
    chunk(out, VENDOR, SENT_CHUNK, &[u8::from(ev.sent)]);
    chunk(out, 0, 0x000f, &ev.payload);
    let len = out.len() - start;
    match u16::try_from(len).ok().filter(|_| len <= MAX_DATAGRAM) {
        Some(len) => {
            out[start + 4..start + 6].copy_from_slice(&len.to_be_bytes());
            true
        }
        None => {
            out.truncate(start);
            false
        }
    }
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

/// Reads a HEPv3 packet back into the message it carries; `None` for anything that is not
/// a well-formed HEPv3 packet of a SIP message with its addresses, ports and agent id.
/// `node` names the capturing node by its agent id; a packet without siplab's direction
/// chunk (another program's) counts as sent by the agent.
pub fn decode(packet: &[u8], node: impl FnOnce(u32) -> Arc<str>) -> Option<Captured> {
    if packet.get(..4)? != b"HEP3" || usize::from(be16(packet, 4)?) != packet.len() {
        return None;
    }
    let (mut src, mut dst) = (None, None);
    let (mut sport, mut dport, mut secs, mut micros) = (None, None, 0u32, 0u32);
    let (mut agent, mut proto, mut payload, mut reason, mut sent) = (None, None, None, None, true);
    let mut rest = &packet[6..];
    while !rest.is_empty() {
        let (vendor, kind, len) = (be16(rest, 0)?, be16(rest, 2)?, usize::from(be16(rest, 4)?));
        let data = rest.get(6..len)?;
        rest = &rest[len..];
        match (vendor, kind) {
            (0, 0x0003) => src = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
            (0, 0x0004) => dst = Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
            (0, 0x0005) => src = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
            (0, 0x0006) => dst = Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
            (0, 0x0007) => sport = Some(u16::from_be_bytes(data.try_into().ok()?)),
            (0, 0x0008) => dport = Some(u16::from_be_bytes(data.try_into().ok()?)),
            (0, 0x0009) => secs = u32::from_be_bytes(data.try_into().ok()?),
            (0, 0x000a) => micros = u32::from_be_bytes(data.try_into().ok()?),
            (0, 0x000b) => proto = data.first().copied(),
            (0, 0x000c) => agent = Some(u32::from_be_bytes(data.try_into().ok()?)),
            (0, 0x000f) => payload = Some(Bytes::copy_from_slice(data)),
            (VENDOR, REASON_CHUNK) => reason = std::str::from_utf8(data).ok().map(Arc::from),
            (VENDOR, SENT_CHUNK) => sent = data.first() != Some(&0),
            _ => {}
        }
    }
    if proto != Some(PROTO_SIP) {
        return None;
    }
    let agent = agent?;
    Some(Captured {
        node: node(agent),
        agent,
        time: UNIX_EPOCH + Duration::new(secs.into(), micros.min(999_999) * 1_000),
        src: SocketAddr::new(src?, sport?),
        dst: SocketAddr::new(dst?, dport?),
        sent,
        payload: payload?,
        reason,
    })
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Sends captured messages to a HEP collector. A collector that is slow, full or not there
/// costs nothing but the packets: over UDP nothing waits for it; over TCP only the exporter
/// waits (a bounded time), while the nodes' captures queue before it and are dropped when
/// the queue is full. A packet not sent is counted (and logged at the first and every
/// 10,000th).
pub struct HepSender {
    target: HepTarget,
    link: Link,
    failed: u64,
}

enum Link {
    Udp(UdpSocket),
    /// Connected when the collector answers; tried again at `retry` after a failure.
    Tcp {
        stream: Option<TcpStream>,
        retry: Instant,
        buf: Vec<u8>,
    },
}

/// Packets sent with one system call.
const BATCH: usize = 64;
/// How long an exporter lets captures gather before it sends them: under load one wake-up
/// and a few system calls per this much traffic, not one per message.
const GATHER: Duration = Duration::from_millis(5);
/// How long a TCP collector may take to accept a connection or a write, and how long the
/// exporter waits before it tries a failed one again.
const TCP_PATIENCE: Duration = Duration::from_secs(1);

impl HepSender {
    pub async fn bind(target: HepTarget) -> std::io::Result<HepSender> {
        let link = match target.proto {
            HepProto::Udp => {
                let local: SocketAddr = match target.addr {
                    SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                    SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
                };
                let socket = UdpSocket::bind(local).await?;
                socket.connect(target.addr).await?;
                Link::Udp(socket)
            }
            // Connected at the first send: a collector started after the node is found.
            HepProto::Tcp => Link::Tcp {
                stream: None,
                retry: Instant::now(),
                buf: Vec::new(),
            },
        };
        info!(collector = %target, "exporting captured SIP as HEPv3");
        Ok(HepSender {
            target,
            link,
            failed: 0,
        })
    }

    /// Sends what it can of `events`; what cannot go now is dropped and counted.
    pub async fn send(&mut self, events: &[Captured]) {
        let lost = match &mut self.link {
            Link::Udp(socket) => {
                let packets: Vec<Vec<u8>> = events.iter().filter_map(encode).collect();
                let mut lost = events.len() - packets.len();
                for chunk in packets.chunks(BATCH) {
                    lost += chunk.len() - send_now(socket, chunk);
                }
                lost
            }
            Link::Tcp { stream, retry, buf } => {
                buf.clear();
                let encoded = events.iter().filter(|ev| encode_into(ev, buf)).count();
                let sent = write_tcp(self.target.addr, stream, retry, buf).await;
                events.len() - if sent { encoded } else { 0 }
            }
        };
        if lost > 0 {
            let before = self.failed;
            self.failed += lost as u64;
            if before / 10_000 != self.failed / 10_000 || before == 0 {
                warn!(failed = self.failed, collector = %self.target, "HEP packets not sent");
            }
        }
    }
}

/// Writes `buf` to the collector, connecting first when there is no connection (and the
/// last failure is `TCP_PATIENCE` old); true when it went.
async fn write_tcp(
    addr: SocketAddr,
    stream: &mut Option<TcpStream>,
    retry: &mut Instant,
    buf: &[u8],
) -> bool {
    if stream.is_none() && Instant::now() >= *retry {
        match tokio::time::timeout(TCP_PATIENCE, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                *stream = Some(s);
            }
            Ok(Err(e)) => debug!(%addr, error = %e, "HEP collector: no connection"),
            Err(_) => debug!(%addr, "HEP collector: no connection within a second"),
        }
        if stream.is_none() {
            // Only a failed attempt moves the next one: batches in between just go.
            *retry = Instant::now() + TCP_PATIENCE;
        }
    }
    let Some(s) = stream else {
        return false;
    };
    match tokio::time::timeout(TCP_PATIENCE, s.write_all(buf)).await {
        Ok(Ok(())) => true,
        _ => {
            // A write cut off half-way leaves the stream out of step: start a new one.
            *stream = None;
            *retry = Instant::now() + TCP_PATIENCE;
            false
        }
    }
}

/// One sendmmsg(2) without waiting; how many packets the kernel took.
fn send_now(socket: &UdpSocket, packets: &[Vec<u8>]) -> usize {
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
    // SAFETY: the socket is connected; every header points at one iovec, and every iovec
    // at a packet, all of which outlive the call.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            headers.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(sent).unwrap_or(0)
}

/// Starts exporting to `target`: returns the sink nodes capture into (holding at most
/// `capacity` messages the exporter has not sent yet).
pub async fn start(target: HepTarget, capacity: usize) -> std::io::Result<CaptureSink> {
    let sender = HepSender::bind(target).await?;
    let (sink, rx) = CaptureSink::new(capacity);
    tokio::spawn(export(sender, rx));
    Ok(sink)
}

async fn export(mut sender: HepSender, mut rx: mpsc::Receiver<Captured>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        tokio::time::sleep(GATHER).await;
        while let Ok(ev) = rx.try_recv() {
            batch.push(ev);
        }
        sender.send(&batch).await;
        batch.clear();
    }
}

/// HEP senders a collector serves at once over TCP.
const COLLECTOR_STREAMS: usize = 64;
/// How long a TCP sender may send nothing before the collector closes its stream (an
/// exporter of a quiet node reconnects when it has something again).
const SENDER_IDLE: Duration = Duration::from_secs(600);

/// A HEPv3 collector: receives packets on `addr` over UDP and TCP (the same port, as
/// heplify-server does) and records each SIP message in `sink`, the capturing node named by
/// `node` from its agent id. What is not a HEPv3 SIP packet is dropped (counted in the
/// debug log); a TCP sender whose stream does not parse is disconnected. Returns the bound
/// address (the UDP and TCP ports are the same).
pub async fn listen(
    addr: SocketAddr,
    sink: CaptureSink,
    node: Arc<dyn Fn(u32) -> Arc<str> + Send + Sync>,
) -> std::io::Result<SocketAddr> {
    let udp = UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    info!(%bound, "HEPv3 collector (UDP and TCP)");
    let (udp_sink, udp_node) = (sink.clone(), node.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        let mut ignored = 0u64;
        loop {
            let Ok((n, _)) = udp.recv_from(&mut buf).await else {
                continue;
            };
            match decode(&buf[..n], &*udp_node) {
                Some(ev) => udp_sink.record(ev),
                None => {
                    ignored += 1;
                    debug!(ignored, "HEP collector: not a HEPv3 SIP packet");
                }
            }
        }
    });
    serve_bounded(
        tcp,
        COLLECTOR_STREAMS,
        "HEP collector",
        move |stream, peer| {
            let (sink, node) = (sink.clone(), node.clone());
            async move {
                if let Err(why) = read_stream(stream, &sink, &*node).await {
                    debug!(%peer, %why, "HEP collector: sender gone");
                }
            }
        },
    );
    Ok(bound)
}

/// Reads HEPv3 packets one after the other from a TCP sender until it closes.
async fn read_stream(
    mut stream: TcpStream,
    sink: &CaptureSink,
    node: &(dyn Fn(u32) -> Arc<str> + Send + Sync),
) -> Result<(), String> {
    let mut packet = vec![0u8; 65_536];
    loop {
        // A sender that says nothing for this long gives its place to another.
        match tokio::time::timeout(SENDER_IDLE, stream.read_exact(&mut packet[..6])).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("idle".into()),
        }
        let len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
        if &packet[..4] != b"HEP3" || len < 6 {
            return Err("not a HEPv3 stream".into());
        }
        // A packet begun arrives whole within a bounded time.
        tokio::time::timeout(TCP_PATIENCE * 10, stream.read_exact(&mut packet[6..len]))
            .await
            .map_err(|_| "a packet cut off".to_string())?
            .map_err(|e| e.to_string())?;
        match decode(&packet[..len], node) {
            Some(ev) => sink.record(ev),
            None => debug!("HEP collector: not a HEPv3 SIP packet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

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
        assert_eq!(find(VENDOR, 2), Some(&[1u8][..]));
        assert_eq!(find(0, 0x0f), Some(&ev.payload[..]));

        let back = decode(&packet, |agent| Arc::from(format!("agent {agent}"))).unwrap();
        assert_eq!(&*back.node, "agent 7");
        assert_eq!(
            (back.agent, back.time, back.src, back.dst),
            (ev.agent, ev.time, ev.src, ev.dst)
        );
        assert_eq!(
            (back.sent, &back.payload, &back.reason),
            (ev.sent, &ev.payload, &ev.reason)
        );
        for cut in [0, 5, 6, 20, packet.len() - 1] {
            assert!(
                decode(&packet[..cut], |_| Arc::from("")).is_none(),
                "cut at {cut}"
            );
        }
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
    fn a_collector_is_udp_or_tcp_ip_port() {
        let addr: SocketAddr = "127.0.0.1:9060".parse().unwrap();
        assert_eq!("udp:127.0.0.1:9060".parse(), Ok(HepTarget::udp(addr)));
        let tcp = HepTarget {
            proto: HepProto::Tcp,
            addr,
        };
        assert_eq!("tcp:127.0.0.1:9060".parse(), Ok(tcp));
        assert_eq!(tcp.to_string(), "tcp:127.0.0.1:9060");
        for bad in ["127.0.0.1:9060", "udp:collector:9060", "sctp:127.0.0.1:1"] {
            assert!(bad.parse::<HepTarget>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_collector_reads_what_exporters_send_over_udp_and_tcp() {
        let (sink, mut rx) = CaptureSink::new(16);
        let names: Arc<dyn Fn(u32) -> Arc<str> + Send + Sync> =
            Arc::new(|agent| Arc::from(format!("N{agent}")));
        let bound = listen("127.0.0.1:0".parse().unwrap(), sink, names)
            .await
            .unwrap();
        for (proto, agent) in [(HepProto::Udp, 3), (HepProto::Tcp, 4)] {
            let mut sender = HepSender::bind(HepTarget { proto, addr: bound })
                .await
                .unwrap();
            let ev = |n: u8| Captured {
                node: "X".into(),
                agent,
                time: SystemTime::now(),
                src: "127.0.0.1:5061".parse().unwrap(),
                dst: "127.0.0.2:5062".parse().unwrap(),
                sent: n == 0,
                payload: Bytes::from(format!(
                    "OPTIONS sip:{n}@x SIP/2.0\r\nCall-ID: c{n}\r\n\r\n"
                )),
                reason: None,
            };
            sender.send(&[ev(0), ev(1)]).await;
            for n in 0..2u8 {
                let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                    .await
                    .expect("the collector got the packet")
                    .unwrap();
                assert_eq!(got.node.to_string(), format!("N{agent}"), "{proto:?}");
                assert_eq!(got.payload, ev(n).payload, "{proto:?}");
                assert_eq!(got.sent, n == 0, "{proto:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_tcp_exporter_finds_a_collector_that_comes_up_after_it() {
        // A free port, with nothing on it for now.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let mut sender = HepSender::bind(HepTarget {
            proto: HepProto::Tcp,
            addr,
        })
        .await
        .unwrap();
        let ev = Captured {
            node: "X".into(),
            agent: 1,
            time: SystemTime::now(),
            src: "127.0.0.1:5061".parse().unwrap(),
            dst: "127.0.0.2:5062".parse().unwrap(),
            sent: true,
            payload: Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\nCall-ID: late\r\n\r\n"),
            reason: None,
        };
        sender.send(std::slice::from_ref(&ev)).await;
        let (sink, mut rx) = CaptureSink::new(16);
        let names: Arc<dyn Fn(u32) -> Arc<str> + Send + Sync> = Arc::new(|_| Arc::from("N"));
        listen(addr, sink, names).await.unwrap();
        // Batches keep coming every 5 ms, as under load; one gets through after the pause.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let got = loop {
            sender.send(std::slice::from_ref(&ev)).await;
            if let Ok(got) = rx.try_recv() {
                break got;
            }
            assert!(std::time::Instant::now() < deadline, "never reconnected");
            tokio::time::sleep(GATHER).await;
        };
        assert_eq!(got.payload, ev.payload);
    }
}
