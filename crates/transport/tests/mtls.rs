//! The transport over real sockets: mutual TLS required, identities handed up, flows,
//! keep-alive pongs, and bad input answered without harming the connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::ServerName;
use siplab_pki::{LabCa, NodeIdentity, UserIdentity};
use siplab_transport::{Destination, Event, Limits, TlsConfig, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

const OPTIONS: &str = "OPTIONS sip:srv.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.8.0.2:5555;branch=z9hG4bK1\r\nFrom: <sip:alice@contoso.test>;tag=1\r\nTo: <sip:srv.test>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

struct Setup {
    ca: LabCa,
    server: Transport,
    server_events: Receiver<Event>,
    addr: SocketAddr,
}

async fn server(octet: u8) -> Setup {
    let (ca, server, mut lanes, addr) = server_with_lanes(octet, 1).await;
    Setup {
        ca,
        server,
        server_events: lanes.remove(0),
        addr,
    }
}

async fn server_with_lanes(
    octet: u8,
    lanes: usize,
) -> (LabCa, Transport, Vec<Receiver<Event>>, SocketAddr) {
    let ca = LabCa::generate().unwrap();
    let ip = format!("127.8.{octet}.1").parse().unwrap();
    let id = NodeIdentity {
        name: "srv".into(),
        dns_names: vec!["srv.test".into()],
        ips: vec![ip],
    };
    let cert = ca.issue_node(&id).unwrap();
    let tls = TlsConfig::from_pem(
        ca.cert_pem().as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let (server, server_events) = Transport::with_lanes(Limits::default(), lanes);
    server.add_interface("srv", ip, tls);
    let addr = server.listen("srv", SocketAddr::new(ip, 0)).await.unwrap();
    (ca, server, server_events, addr)
}

/// A client transport with `aor`'s certificate on `ip`, and where to reach the server.
fn user_client(
    ca: &LabCa,
    aor: &str,
    ip: &str,
    server: SocketAddr,
) -> (Transport, Receiver<Event>, Destination) {
    let (client, events) = Transport::new(Limits::default());
    client.add_interface("client", ip.parse().unwrap(), user_tls(ca, aor));
    let dest = Destination::Peer {
        interface: "client".into(),
        addr: server,
        server_name: "srv.test".into(),
    };
    (client, events, dest)
}

fn user_tls(ca: &LabCa, aor: &str) -> TlsConfig {
    let c = ca.issue_user(&UserIdentity { aor: aor.into() }).unwrap();
    TlsConfig::from_pem(
        ca.cert_pem().as_bytes(),
        c.cert_pem.as_bytes(),
        c.key_pem.as_bytes(),
    )
    .unwrap()
}

async fn next_message(
    rx: &mut Receiver<Event>,
) -> Option<(siplab_sip::Message, Arc<siplab_transport::ConnInfo>)> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .ok()??
        {
            Event::Message { msg, conn } => return Some((msg, conn)),
            Event::Closed { .. } => continue,
        }
    }
}

#[tokio::test]
async fn mutual_tls_hands_up_the_peer_identity_and_answers_down_the_flow() {
    let mut s = server(1).await;
    let (client, mut client_events, dest) =
        user_client(&s.ca, "alice@contoso.test", "127.8.1.2", s.addr);
    client
        .send(&dest, Bytes::from_static(OPTIONS.as_bytes()))
        .await
        .unwrap();

    let (msg, conn) = next_message(&mut s.server_events)
        .await
        .expect("server got the OPTIONS");
    assert_eq!(conn.identity.sip_aor(), Some("alice@contoso.test"));
    assert!(conn.inbound);
    assert_eq!(conn.peer.ip().to_string(), "127.8.1.2");
    let resp = siplab_sip::Message::response_to(&msg, 200, "OK");
    s.server
        .send(&Destination::Flow(conn.flow), resp.to_bytes())
        .await
        .unwrap();

    let (back, cconn) = next_message(&mut client_events)
        .await
        .expect("client got the answer");
    assert_eq!(back.status(), Some(200));
    assert!(cconn.identity.names_host("srv.test"));
    // The second send reuses the connection.
    client
        .send(&dest, Bytes::from_static(OPTIONS.as_bytes()))
        .await
        .unwrap();
    assert_eq!(client.connection_count(), 1);
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let mut s = server(2).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(s.ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    // With TLS 1.3 the client may think the handshake is done; the server refuses it anyway.
    if let Ok(mut tls) = connector
        .connect(ServerName::try_from("srv.test").unwrap(), tcp)
        .await
    {
        let _ = tls.write_all(OPTIONS.as_bytes()).await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("refused in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "no SIP answer to an unauthenticated client"
        );
    }
    let got = tokio::time::timeout(Duration::from_millis(300), s.server_events.recv()).await;
    assert!(got.is_err(), "nothing reached the layer above");
}

use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn pings_get_pongs_and_bad_requests_get_400_without_closing() {
    let s = server(3).await;
    let tls = user_tls(&s.ca, "adam@contoso.test");
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(tls.client)
        .connect(ServerName::try_from("srv.test").unwrap(), tcp)
        .await
        .unwrap();
    conn.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");

    let bad = "INVITE sip:x@srv.test SIP/7.0\r\nVia: SIP/2.0/TLS 127.8.3.2:1;branch=z9hG4bKbad\r\nCall-ID: bad\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    conn.write_all(bad.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("SIP/2.0 505 Version Not Supported\r\n"),
        "{text}"
    );
    assert!(text.contains("Warning: 399 siplab"), "{text}");
    // The connection still carries the next message.
    conn.write_all(b"\r\n\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");
}

/// One port, two protocols: a client that asks for `x-echo` by ALPN is handed to the echo
/// handler with its identity; a SIP client on the same port (no ALPN) stays SIP.
#[tokio::test]
async fn a_listener_hands_an_alpn_client_over_and_keeps_sip_clients() {
    let ca = LabCa::generate().unwrap();
    // Slot 181 of the topology: addresses no other test uses.
    let ip = "127.1.181.1".parse().unwrap();
    let cert = ca
        .issue_node(&NodeIdentity {
            name: "srv".into(),
            dns_names: vec!["srv.test".into()],
            ips: vec![ip],
        })
        .unwrap();
    let tls = TlsConfig::from_pem(
        ca.cert_pem().as_bytes(),
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
    )
    .unwrap();
    let (server, mut server_events) = Transport::new(Limits::default());
    server.add_interface("srv", ip, tls);
    let handler: siplab_transport::AlpnHandler = Arc::new(|mut tls, meta| {
        Box::pin(async move {
            let mut line = vec![0u8; 5];
            if tls.read_exact(&mut line).await.is_ok() {
                let who = meta.identity.sip_aor().unwrap_or("nobody").to_owned();
                let reply = format!(
                    "{} from {who} on {}",
                    String::from_utf8_lossy(&line),
                    meta.interface
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        })
    });
    let addr = server
        .listen_with_alpn("srv", SocketAddr::new(ip, 0), b"x-echo", handler)
        .await
        .unwrap();

    // The other protocol, asked for by ALPN.
    let alice = user_tls(&ca, "alice@contoso.test").with_alpn(&[b"x-echo"]);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut echo = tokio_rustls::TlsConnector::from(alice.client)
        .connect(ServerName::try_from("srv.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(echo.get_ref().1.alpn_protocol(), Some(&b"x-echo"[..]));
    echo.write_all(b"hello").await.unwrap();
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), echo.read_to_string(&mut reply))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(reply, "hello from alice@contoso.test on srv");

    // SIP on the same port, without ALPN.
    let (client, _client_events, dest) = user_client(&ca, "adam@contoso.test", "127.1.181.2", addr);
    client
        .send(&dest, Bytes::from_static(OPTIONS.as_bytes()))
        .await
        .unwrap();
    let (msg, conn) = next_message(&mut server_events).await.expect("SIP arrived");
    assert_eq!(msg.method(), Some(siplab_sip::Method::Options));
    assert_eq!(conn.identity.sip_aor(), Some("adam@contoso.test"));
    // Only the SIP connection is in the table; the handed-over one has ended.
    assert_eq!(server.connection_count(), 1);
}

#[tokio::test]
async fn each_call_id_keeps_to_one_lane_and_every_lane_hears_the_close() {
    let (ca, _server, mut lanes, addr) = server_with_lanes(9, 3).await;
    let (client, _client_events, dest) = user_client(&ca, "alice@contoso.test", "127.8.9.2", addr);
    let call_ids: Vec<String> = (0..6).map(|i| format!("lane-test-{i}")).collect();
    for round in 0..2 {
        for id in &call_ids {
            let msg = OPTIONS
                .replace("Call-ID: c1", &format!("Call-ID: {id}"))
                .replace("CSeq: 1", &format!("CSeq: {}", round + 1));
            client.send(&dest, Bytes::from(msg)).await.unwrap();
        }
    }
    // Which lanes each Call-ID arrived on, in the order it arrived there.
    let mut seen: Vec<(String, usize, u32)> = Vec::new();
    while seen.len() < 12 {
        let (lane, event) = next_on_any(&mut lanes).await.expect("all 12 arrive");
        let Event::Message { msg, .. } = event else {
            panic!("a connection closed early");
        };
        let id = String::from_utf8_lossy(msg.call_id().unwrap()).into_owned();
        seen.push((id, lane, msg.cseq().unwrap().seq));
    }
    for id in &call_ids {
        let on: Vec<_> = seen.iter().filter(|(i, ..)| i == id).collect();
        assert_eq!(on.len(), 2, "{id}: {seen:?}");
        assert_eq!(on[0].1, on[1].1, "{id} took two lanes: {seen:?}");
        assert_eq!((on[0].2, on[1].2), (1, 2), "{id} out of order: {seen:?}");
    }
    let mut used: Vec<usize> = seen.iter().map(|s| s.1).collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.len() > 1, "six Call-IDs all took lane {used:?}");

    client.close_all();
    // Every lane hears of the close, once, after the connection's messages on it: a
    // REGISTER still queued on one lane cannot bind to the flow after another lane has
    // already dropped it.
    for (i, lane) in lanes.iter_mut().enumerate() {
        let event = tokio::time::timeout(Duration::from_secs(5), lane.recv())
            .await
            .expect("the close is handed up in time")
            .expect("the lane is open");
        assert!(matches!(event, Event::Closed { .. }), "lane {i}: {event:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        lanes.iter_mut().all(|l| l.try_recv().is_err()),
        "one close per lane"
    );
}

/// The next event on any of `lanes`, and which lane it came on.
async fn next_on_any(lanes: &mut [Receiver<Event>]) -> Option<(usize, Event)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        for (i, lane) in lanes.iter_mut().enumerate() {
            if let Ok(event) = lane.try_recv() {
                return Some((i, event));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
