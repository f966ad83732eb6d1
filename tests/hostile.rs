//! What a careless or hostile peer sends, and what it gets: every well-formed request ahead
//! of bytes that cannot be framed is answered before the connection closes (RFC 4475
//! `dblreq` over TLS), and a message that cannot even be answered ends its connection at
//! once instead of leaving it open with no answer.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{RawClient, Suite, TestLab};
use siplab_topology::At;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

/// A mutual-TLS connection to R1 with alice's certificate, from her LAN address.
async fn connect(lab: &TestLab) -> TlsStream<tokio::net::TcpStream> {
    try_connect(lab, None)
        .await
        .expect("TLS with alice's certificate")
}

/// A mutual-TLS connection to R1 with alice's certificate from her LAN address (or from
/// `from`), or why there is none (R1 closed it at accept, say).
async fn try_connect(
    lab: &TestLab,
    from: Option<std::net::IpAddr>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    let cfg = lab.config("alice@contoso.test", At::Internal).await;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.unwrap_or(cfg.bind_ip), 0))?;
    let tcp = socket.connect(cfg.server).await?;
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(cfg.tls.client.clone());
    match tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::other("no handshake within 5 s")),
    }
}

/// Whether R1 takes a connection from `from` now: a refused one is closed at accept, so
/// its handshake fails; a taken one may still be closed later, so it must also answer.
async fn taken(
    lab: &TestLab,
    from: Option<std::net::IpAddr>,
) -> Option<TlsStream<tokio::net::TcpStream>> {
    let mut tls = try_connect(lab, from).await.ok()?;
    (!answer_to_options(&mut tls, "probe").await.is_empty()).then_some(tls)
}

/// Sends an OPTIONS on `tls` and returns the status line of what comes back ("" if the
/// connection closes or nothing comes within 5 s).
async fn answer_to_options(tls: &mut TlsStream<tokio::net::TcpStream>, tag: &str) -> String {
    let options = format!(
        "OPTIONS sip:fe01.contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{tag}\r\n\
         From: <sip:alice@contoso.test>;tag={tag}\r\nTo: <sip:fe01.contoso.test>\r\nCall-ID: {tag}@1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    if tls.write_all(options.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

/// Everything the node sends until it closes the connection; the time that took.
async fn until_closed(tls: &mut TlsStream<tokio::net::TcpStream>) -> (String, Duration) {
    let start = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "still open after 10 s; got {}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
    (String::from_utf8_lossy(&all).into_owned(), start.elapsed())
}

/// The status lines of the responses in `text`, each with its CSeq.
fn answers(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for msg in text.split("SIP/2.0 ").skip(1) {
        let status = msg.lines().next().unwrap_or_default().to_owned();
        let cseq = msg
            .lines()
            .find_map(|l| l.strip_prefix("CSeq: "))
            .unwrap_or_default()
            .to_owned();
        out.push((status, cseq));
    }
    out
}

#[tokio::test]
async fn both_requests_of_dblreq_are_answered_before_the_close() {
    let lab = TestLab::start(Suite::Hostile.slot(0), &["R1"]).await;
    let mut tls = connect(&lab).await;
    let dblreq = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/testdata/rfc4475/dblreq.dat"
    ))
    .expect("RFC 4475 dblreq");
    // In one write: the REGISTER, the INVITE, and what follows it, which on a stream is the
    // start of a next message that is none.
    tls.write_all(&dblreq).await.unwrap();
    let (text, took) = until_closed(&mut tls).await;
    let answers = answers(&text);
    let finals = |method: &str| {
        answers
            .iter()
            .filter(|(status, cseq)| cseq.ends_with(method) && !status.starts_with('1'))
            .count()
    };
    assert_eq!(finals("REGISTER"), 1, "{text}");
    assert_eq!(finals("INVITE"), 1, "{text}");
    assert!(
        took < Duration::from_secs(3),
        "closed after the answers, not held open: {took:?}"
    );
}

#[tokio::test]
async fn a_message_that_cannot_be_answered_ends_its_connection_at_once() {
    let lab = TestLab::start(Suite::Hostile.slot(1), &["R1"]).await;
    // A start line without a SIP version and no Via: nothing to answer to.
    let mut tls = connect(&lab).await;
    tls.write_all(b"OPTIONS sip:fe01.contoso.test\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let (text, took) = until_closed(&mut tls).await;
    assert!(text.is_empty(), "{text}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test]
async fn too_many_headers_get_an_error_answer_and_the_close() {
    let lab = TestLab::start(Suite::Hostile.slot(2), &["R1"]).await;
    let mut tls = connect(&lab).await;
    let mut msg = String::from(
        "OPTIONS sip:fe01.contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.1.164.101:5061;branch=z9hG4bKmany\r\n\
         From: <sip:alice@contoso.test>;tag=1\r\nTo: <sip:fe01.contoso.test>\r\nCall-ID: many@1\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n",
    );
    for i in 0..140 {
        msg.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    msg.push_str("Content-Length: 0\r\n\r\n");
    tls.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut buf))
        .await
        .expect("an answer, not silence")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 4"), "{text}");
    assert!(text.contains("Warning: 399"), "{text}");
}

#[tokio::test]
async fn a_binding_whose_flow_died_goes_with_the_edge_s_430() {
    let lab = TestLab::start(Suite::Hostile.slot(3), &["R1", "E1"]).await;
    // alice signs in through E1 from the internet on a connection of her own, then it dies
    // without a sign-out: R1 keeps her binding, reached through E1's Path.
    let cfg = lab.config("alice@contoso.test", At::External).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(cfg.bind_ip, 0)).unwrap();
    let tcp = socket.connect(cfg.server).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone()).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg.tls.client.clone())
        .connect(name, tcp)
        .await
        .unwrap();
    let register = format!(
        "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKdies1;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag=dies\r\nTo: <sip:alice@contoso.test>\r\n\
         Call-ID: dies@{ip}\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@{local};transport=tls;ob>;+sip.instance=\"<urn:uuid:00000000-0000-4000-8000-000000000430>\";reg-id=1\r\n\
         Supported: path, outbound\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
        ip = local.ip()
    );
    tls.write_all(register.as_bytes()).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    drop(tls);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let adam = lab.client("adam@contoso.test", At::Internal).await;
    let first = adam
        .send_message("alice@contoso.test", "are you there?")
        .await
        .unwrap();
    // E1 has no flow for her and answers R1 430; R1 drops the binding and tells adam 480.
    assert_eq!(first.status, 480, "{} {}", first.status, first.reason);
    let warning = first
        .response
        .headers
        .value(&siplab_sip::HeaderName::new("Warning"));
    assert!(
        warning.is_some_and(|w| String::from_utf8_lossy(w).contains("binding dropped")),
        "{warning:?}"
    );
    // The binding is gone: she is not signed in now, and R1 says so.
    let second = adam
        .send_message("alice@contoso.test", "hello?")
        .await
        .unwrap();
    assert_eq!(second.status, 480, "{} {}", second.status, second.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_s_flood_gets_503_and_costs_the_others_nothing() {
    // A low rate, so that a test can exceed it: 20 a second, 20 at once.
    let config = siplab_proxy::ProxyConfig {
        rate: siplab_proxy::RateLimit {
            per_second: 20.0,
            burst: 20.0,
        },
        ..siplab_proxy::ProxyConfig::default()
    };
    let lab = TestLab::start_with(Suite::Hostile.slot(4), &["R1"], config).await;
    let alice = lab.client("alice@contoso.test", At::Internal).await;
    let adam = lab.client("adam@contoso.test", At::Internal).await;
    let (mut ok, mut refused) = (0, 0);
    for i in 0..60 {
        let o = alice
            .send_message("adam@contoso.test", &format!("flood {i}"))
            .await
            .unwrap();
        match o.status {
            200 => ok += 1,
            503 => {
                let retry = o
                    .response
                    .headers
                    .value(&siplab_sip::HeaderName::new("Retry-After"));
                assert_eq!(
                    retry.map(|v| v.to_vec()),
                    Some(b"1".to_vec()),
                    "503 says when"
                );
                refused += 1;
            }
            other => panic!("flood {i}: {other} {}", o.reason),
        }
    }
    // The burst less alice's REGISTER, and what the rate refilled meanwhile.
    assert!((18..=30).contains(&ok), "{ok} passed, {refused} refused");
    assert_eq!(ok + refused, 60, "every request answered");
    // adam, on the same node, is not touched by alice's flood.
    let o = adam
        .send_message("alice@contoso.test", "still there?")
        .await
        .unwrap();
    assert_eq!(o.status, 200, "{} {}", o.status, o.reason);
}

#[tokio::test]
async fn one_address_holds_no_more_connections_than_its_limits_allow() {
    let lab = TestLab::start_limited(
        Suite::Hostile.slot(5),
        &["R1"],
        "max_connections_per_source = 3\nmax_silent_per_source = 2",
    )
    .await;
    let alice = None;
    // Two connections that say nothing: a third from the address is refused at accept.
    let mut first = connect(&lab).await;
    let mut second = connect(&lab).await;
    let refused = Instant::now();
    assert!(
        try_connect(&lab, alice).await.is_err(),
        "a third silent one"
    );
    assert!(refused.elapsed() < Duration::from_secs(2), "closed at once");
    // Another address has limits of its own.
    let own = lab.config("alice@contoso.test", At::Internal).await.bind_ip;
    let std::net::IpAddr::V4(v4) = own else {
        panic!("{own}")
    };
    let other = std::net::Ipv4Addr::from(u32::from(v4) + 1);
    assert!(
        taken(&lab, Some(other.into())).await.is_some(),
        "another address ({other}) beside {own}"
    );
    // Once the first has sent a message, it is no longer silent: room for one more.
    assert!(
        answer_to_options(&mut first, "first")
            .await
            .starts_with("SIP/2.0 ")
    );
    let mut third = taken(&lab, alice)
        .await
        .expect("one silent again, three open");
    // Three open now, none silent: the fourth meets the limit on open connections.
    assert!(
        answer_to_options(&mut second, "second")
            .await
            .starts_with("SIP/2.0 ")
    );
    assert!(try_connect(&lab, alice).await.is_err(), "a fourth open one");
    // A connection that goes frees its place.
    drop(third.shutdown().await);
    drop(third);
    let mut again = None;
    for _ in 0..50 {
        again = taken(&lab, alice).await;
        if again.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a place again once one closed");
}

#[tokio::test]
async fn one_connection_s_requests_in_progress_are_bounded() {
    let lab = TestLab::start_limited(
        Suite::Hostile.slot(6),
        &["R1"],
        "max_connection_transactions = 2",
    )
    .await;
    // adam signs in by hand and does not answer what comes to him until told to.
    let mut adam = RawClient::new(&lab, "adam@contoso.test", At::Internal).await;
    adam.send(
        "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5061;branch=z9hG4bKslow1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:adam@contoso.test>;tag=slow\r\nTo: <sip:adam@contoso.test>\r\n\
         Call-ID: slow@{ip}\r\nCSeq: 1 REGISTER\r\nContact: <sip:adam@{ip}:5061;transport=tls>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(adam.final_response().await.status(), Some(200));
    // Three MESSAGEs from alice in one write on one connection: two go on to adam and stay
    // in progress; the third is answered 503 at once.
    let mut alice = connect(&lab).await;
    let message = |i: u32| {
        format!(
            "MESSAGE sip:adam@contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKbusy{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag=busy\r\nTo: <sip:adam@contoso.test>\r\n\
             Call-ID: busy{i}@1\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
    };
    let three: String = (1..=3).map(message).collect();
    alice.write_all(three.as_bytes()).await.unwrap();
    let mut buf = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), alice.read(&mut buf))
        .await
        .expect("the third is answered at once")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("SIP/2.0 503"), "{text}");
    assert!(text.contains("Call-ID: busy3@1"), "{text}");
    assert!(text.contains("Retry-After: 1"), "{text}");
    assert!(text.contains("in progress on this connection"), "{text}");
    // The two reach adam; he answers one: it ends, and alice's next request goes on.
    let is_message = |m: &siplab_sip::Message| m.method() == Some(siplab_sip::Method::Message);
    let call_id = |m: &siplab_sip::Message| {
        let id = m.headers.value(&siplab_sip::HeaderName::CallId);
        id.map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let (one, conn) = adam.next(is_message).await;
    let (other, _) = adam.next(is_message).await;
    let mut both = [call_id(&one), call_id(&other)];
    both.sort();
    assert_eq!(both, ["busy1@1", "busy2@1"]);
    adam.answer(&conn, &siplab_sip::Message::response_to(&one, 200, "OK"))
        .await;
    let n = tokio::time::timeout(Duration::from_secs(5), alice.read(&mut buf))
        .await
        .expect("the answer relayed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200"));
    alice.write_all(message(4).as_bytes()).await.unwrap();
    let (fourth, _) = adam.next(is_message).await;
    assert_eq!(
        call_id(&fourth),
        "busy4@1",
        "the answered one's place is free again"
    );
}
