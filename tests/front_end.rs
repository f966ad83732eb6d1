//! The front end and edge of company 1 beyond the four paths: sign-in through the edge,
//! the redirect of a cloud user, the answers a registrar and proxy owe, dialogs along the
//! Record-Route path, and a client that loses its connection and signs in again.

mod common;

use common::Suite;

use std::time::Duration;

use common::{RawClient, TestLab, WAIT, exchange, received, warning};
use siplab_proxy::ProxyConfig;
use siplab_sip::{HeaderName, Message, Method};
use siplab_topology::At;
use siplab_transport::Event;

#[tokio::test]
async fn register_through_the_edge_stores_its_path_and_the_200_comes_back() {
    let lab = TestLab::start(Suite::FrontEnd.slot(0), &["R1", "E1"]).await;
    let alice = lab.client("alice@contoso.test", At::External).await;
    let reg = alice.registration().expect("registered");
    // The 200 came back to the client through E1 with E1's Path.
    assert_eq!(reg.path.len(), 1, "{reg:?}");
    assert!(
        reg.path[0].contains("edge01-int.contoso.test"),
        "{:?}",
        reg.path
    );
    assert!(reg.path[0].contains(";lr") && reg.path[0].contains(";ob"));
    // R1 stored the binding with that Path, its flow token naming alice's connection at E1.
    let binding = lab.nodes[0]
        .location
        .lookup("alice@contoso.test")
        .expect("binding at R1");
    assert_eq!(binding.path().len(), 1);
    assert_eq!(*binding.path()[0], reg.path[0]);
    let token = binding.path()[0]
        .split('@')
        .next()
        .unwrap()
        .trim_start_matches("<sip:");
    assert!(
        lab.nodes[1]
            .transport
            .flow(&siplab_transport::FlowToken::parse(token).expect("a flow token"))
            .is_some(),
        "the Path's flow token names a live flow at E1"
    );
}

#[tokio::test]
async fn a_cloud_user_is_redirected_to_the_cloud() {
    let lab = TestLab::start(Suite::FrontEnd.slot(1), &["R1", "E1"]).await;
    let register = "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5070;branch=z9hG4bKb1i;rport\r\nMax-Forwards: 70\r\nFrom: <sip:bella@contoso.test>;tag=1\r\nTo: <sip:bella@contoso.test>\r\nCall-ID: b1i-301\r\nCSeq: 1 REGISTER\r\nContact: <sip:bella@{ip}:5070;transport=tls;ob>\r\nContent-Length: 0\r\n\r\n";
    // B1i, on the LAN, straight at R1.
    let resp = exchange(&lab, "bella@contoso.test", At::Internal, register).await;
    assert_eq!(
        resp.status(),
        Some(301),
        "{}",
        String::from_utf8_lossy(&resp.to_bytes())
    );
    let contact = resp.contacts().unwrap();
    assert_eq!(contact.len(), 1);
    let expected = format!(
        "sip:sipdir.online.lync.test:{};transport=tls",
        lab.lab.interface("CEx").unwrap().ports.client.unwrap()
    );
    assert!(
        matches!(&contact[0], siplab_sip::Contact::Addr(a) if a.uri.to_string() == expected),
        "{contact:?}"
    );
    // B1e, from the internet: the 301 comes back through E1.
    let resp = exchange(
        &lab,
        "ben@contoso.test",
        At::External,
        &register.replace("bella", "ben"),
    )
    .await;
    assert_eq!(resp.status(), Some(301));
}

/// amber is homed on R1b, R1's fellow member of pool01.contoso.test, where the pool's
/// records lead first: her own client is sent on with Skype for Business Server's 301 and
/// registers at R1b; through E1 the REGISTER is proxied there instead.
#[tokio::test]
async fn a_user_of_the_other_pool_member_is_sent_to_her_home_server() {
    const AMBER: &str = "amber@contoso.test";
    let lab = TestLab::start(Suite::FrontEnd.slot(11), &["R1", "R1b", "E1"]).await;
    let register = "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5070;branch=z9hG4bKamb;rport\r\nMax-Forwards: 70\r\nFrom: <sip:amber@contoso.test>;tag=1\r\nTo: <sip:amber@contoso.test>\r\nCall-ID: amber-301\r\nCSeq: 1 REGISTER\r\nContact: <sip:amber@{ip}:5070;transport=tls;ob>\r\nContent-Length: 0\r\n\r\n";
    let resp = exchange(&lab, AMBER, At::Internal, register).await;
    let text = String::from_utf8_lossy(&resp.to_bytes()).into_owned();
    assert!(
        text.starts_with("SIP/2.0 301 Redirect request to Home Server\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Contact: <sip:fe02.contoso.test:5061;transport=tls>;q=0.7\r\n"),
        "{text}"
    );
    assert!(lab.nodes[0].location.lookup(AMBER).is_none());

    // Her client follows it and registers at R1b.
    let inside = lab.client(AMBER, At::Internal).await;
    let servers: Vec<(String, Option<u16>)> = inside
        .registered_via()
        .expect("signed in")
        .servers
        .into_iter()
        .map(|s| (s.name, s.status))
        .collect();
    assert_eq!(
        servers,
        [
            ("pool01.contoso.test".to_owned(), Some(301)),
            ("fe02.contoso.test".to_owned(), Some(200)),
        ]
    );
    assert!(lab.nodes[1].location.lookup(AMBER).is_some());
    assert!(lab.nodes[0].location.lookup(AMBER).is_none());
    inside.shutdown().await;

    // From the internet, through E1 (which enters the pool at R1): proxied to R1b, with E1's Path.
    let outside = lab.client(AMBER, At::External).await;
    let binding = lab.nodes[1].location.lookup(AMBER).expect("bound at R1b");
    assert!(
        binding
            .path()
            .iter()
            .any(|p| p.contains("edge01-int.contoso.test"))
    );
    assert!(lab.nodes[0].location.lookup(AMBER).is_none());
    outside.shutdown().await;
}

#[tokio::test]
async fn unknown_users_get_404_and_absent_ones_480() {
    let lab = TestLab::start(Suite::FrontEnd.slot(2), &["R1", "E1"]).await;
    let alice = lab.client("alice@contoso.test", At::Internal).await;
    let out = alice
        .send_message("nobody@contoso.test", "hello?")
        .await
        .unwrap();
    assert_eq!(out.status, 404, "{out:?}");
    let out = alice
        .send_message("adam@contoso.test", "are you there?")
        .await
        .unwrap();
    assert_eq!(out.status, 480, "{out:?}");
}

#[tokio::test]
async fn max_forwards_zero_gets_483() {
    let lab = TestLab::start(Suite::FrontEnd.slot(3), &["R1", "E1"]).await;
    let _adam = lab.client("adam@contoso.test", At::Internal).await;
    let msg = "MESSAGE sip:adam@contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5071;branch=z9hG4bKmf0;rport\r\nMax-Forwards: 0\r\nFrom: <sip:alice@contoso.test>;tag=1\r\nTo: <sip:adam@contoso.test>\r\nCall-ID: mf0\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";
    let resp = exchange(&lab, "alice@contoso.test", At::Internal, msg).await;
    assert_eq!(resp.status(), Some(483));
    // Through the edge, the edge itself answers once Max-Forwards runs out.
    let resp = exchange(&lab, "alice@contoso.test", At::External, msg).await;
    assert_eq!(resp.status(), Some(483));
}

#[tokio::test]
async fn a_register_for_someone_else_is_forbidden() {
    let lab = TestLab::start(Suite::FrontEnd.slot(4), &["R1", "E1"]).await;
    let register = "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5072;branch=z9hG4bKsteal;rport\r\nMax-Forwards: 70\r\nFrom: <sip:adam@contoso.test>;tag=1\r\nTo: <sip:adam@contoso.test>\r\nCall-ID: steal\r\nCSeq: 1 REGISTER\r\nContact: <sip:adam@{ip}:5072;transport=tls>\r\nContent-Length: 0\r\n\r\n";
    // alice's certificate, adam's AOR: directly at R1 and through E1 (which asserts alice).
    for at in [At::Internal, At::External] {
        let resp = exchange(&lab, "alice@contoso.test", at, register).await;
        assert_eq!(resp.status(), Some(403), "{at:?}");
        assert!(
            warning(&resp).contains("alice@contoso.test"),
            "{}",
            warning(&resp)
        );
        assert!(lab.nodes[0].location.lookup("adam@contoso.test").is_none());
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = TestLab::start(Suite::FrontEnd.slot(5), &["R1"]).await;
    let cfg = lab.config("alice@contoso.test", At::Internal).await;
    let siplab_node::Certs::Authority(ca) = &lab.certs else {
        unreachable!()
    };
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let no_cert = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(cfg.server).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(cfg.server_name.clone()).unwrap();
    if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(no_cert))
        .connect(name, tcp)
        .await
    {
        let _ = tls
            .write_all(b"OPTIONS sip:fe01.contoso.test SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .await;
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(WAIT, tls.read(&mut buf))
            .await
            .expect("refused in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "no SIP answer without a client certificate"
        );
    }
}

#[tokio::test]
async fn an_invite_dialog_keeps_to_the_record_route_path() {
    let lab = TestLab::start(Suite::FrontEnd.slot(6), &["R1", "E1"]).await;
    let alice = lab.client("alice@contoso.test", At::External).await;
    let adam = lab.client("adam@contoso.test", At::Internal).await;
    let e1_connections = lab.nodes[1].transport.connection_count();
    let call = alice
        .invite("adam@contoso.test")
        .await
        .expect("INVITE answered");
    assert!(call.is_established(), "{:?}", call.outcome());
    let invite = received(&adam).await;
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(lab.chain(&invite.vias), lab.expected_chain(3));
    // R1 recorded once; E1 twice, one entry per interface (RFC 5658), each an FQDN with lr.
    let rr = &invite.record_route;
    assert_eq!(rr.len(), 3, "{rr:?}");
    assert!(
        rr[0].contains("fe01.contoso.test")
            && rr[1].contains("edge01-int.contoso.test")
            && rr[2].contains("sip.contoso.test"),
        "{rr:?}"
    );
    assert!(rr.iter().all(|r| r.contains(";lr")));
    // E1's entry towards alice names the client port she connected to, not federation's 5061.
    let client_port = lab.lab.interface("E1x").unwrap().ports.client.unwrap();
    assert!(
        rr[2].contains(&format!("sip.contoso.test:{client_port};")),
        "{rr:?}"
    );
    // The ACK and the BYE follow the route set: the same hops as the INVITE.
    let ack = received(&adam).await;
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(lab.chain(&ack.vias), lab.expected_chain(3));
    let out = call.bye().await.expect("BYE answered");
    assert_eq!(out.status, 200);
    let bye = received(&adam).await;
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(lab.chain(&bye.vias), lab.expected_chain(3));
    assert_eq!(
        bye.request.headers.get_all(&HeaderName::Route).count(),
        0,
        "every proxy removed its own Route"
    );
    // alice's ACK and BYE rode the connection she registered on (RFC 5626): no new one.
    assert_eq!(lab.nodes[1].transport.connection_count(), e1_connections);
}

#[tokio::test]
async fn a_client_whose_connection_drops_signs_in_again() {
    let lab = TestLab::start(Suite::FrontEnd.slot(7), &["R1", "E1"]).await;
    let alice = lab.client("alice@contoso.test", At::Internal).await;
    let adam = lab.client("adam@contoso.test", At::External).await;
    let before = alice.registration().unwrap();
    let adam_before = adam.registration().unwrap();
    // R1 and E1 lose every connection, as after a restart.
    lab.nodes[0].drop_connections();
    lab.nodes[1].drop_connections();
    alice
        .wait_reregistered(&before, WAIT)
        .await
        .expect("alice signed in again");
    adam.wait_reregistered(&adam_before, WAIT)
        .await
        .expect("adam signed in again");
    let out = adam
        .send_message("alice@contoso.test", "back")
        .await
        .unwrap();
    assert_eq!(out.status, 200);
    assert_eq!(received(&alice).await.body, "back");
}

#[tokio::test]
async fn a_request_its_callee_never_answers_gets_408_when_timer_f_fires() {
    let config = ProxyConfig {
        timer_b: Duration::from_secs(1),
        ..ProxyConfig::default()
    };
    let lab = TestLab::start_with(Suite::FrontEnd.slot(8), &["R1"], config).await;
    let mut silent = silent_alice(&lab).await;
    let started = tokio::time::Instant::now();
    let resp = exchange(&lab, "alice@contoso.test", At::Internal, TO_ALICE).await;
    assert_eq!(resp.status(), Some(408), "{resp:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before Timer F"
    );
    assert!(
        warning(&resp).contains("no final response"),
        "{}",
        warning(&resp)
    );
    // The MESSAGE did reach the silent client.
    let mut delivered = false;
    while let Ok(Some(ev)) =
        tokio::time::timeout(Duration::from_millis(200), silent.events.recv()).await
    {
        if let Event::Message { msg, .. } = ev {
            delivered |= msg.method() == Some(Method::Message);
        }
    }
    assert!(delivered, "R1 relayed the MESSAGE to the registered client");
}

/// A MESSAGE to alice, from alice's other device.
const TO_ALICE: &str = "MESSAGE sip:alice@contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5071;branch=z9hG4bKsilent2\r\nMax-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag=2\r\nTo: <sip:alice@contoso.test>\r\nCall-ID: silent-msg\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";

/// alice's client registered with R1, connected and silent: it answers nothing it receives.
async fn silent_alice(lab: &TestLab) -> RawClient {
    let mut silent = RawClient::new(lab, "alice@contoso.test", At::Internal).await;
    silent.send("REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5070;branch=z9hG4bKsilent1\r\nMax-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag=1\r\nTo: <sip:alice@contoso.test>\r\nCall-ID: silent-reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{ip}:5070;transport=tls;ob>\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(silent.final_response().await.status(), Some(200));
    silent
}

#[tokio::test]
async fn a_full_transaction_table_answers_503_with_retry_after() {
    let config = ProxyConfig {
        max_transactions: 1,
        timer_b: Duration::from_secs(2),
        ..ProxyConfig::default()
    };
    let lab = TestLab::start_with(Suite::FrontEnd.slot(9), &["R1"], config).await;
    let mut silent = silent_alice(&lab).await;
    // The first MESSAGE waits on the silent client and holds the only transaction.
    let first = RawClient::new(&lab, "alice@contoso.test", At::Internal).await;
    first.send(TO_ALICE).await;
    silent.next(|m| m.method() == Some(Method::Message)).await;
    let second = TO_ALICE
        .replace("silent-msg", "silent-msg-2")
        .replace("silent2", "silent3");
    let resp = exchange(&lab, "alice@contoso.test", At::Internal, &second).await;
    assert_eq!(resp.status(), Some(503), "{resp:?}");
    assert_eq!(
        resp.headers
            .value(&HeaderName::new("Retry-After"))
            .map(|v| &v[..]),
        Some(&b"5"[..])
    );
}

#[tokio::test]
async fn a_cancelled_invite_ends_with_the_callees_487_not_the_answer_to_the_cancel() {
    let lab = TestLab::start(Suite::FrontEnd.slot(10), &["R1"]).await;
    let mut callee = silent_alice(&lab).await;
    let mut caller = RawClient::new(&lab, "alice@contoso.test", At::Internal).await;
    caller.send(INVITE_ALICE).await;
    let (invite, to_r1) = callee.next(|m| m.method() == Some(Method::Invite)).await;
    let mut ringing = Message::response_to(&invite, 180, "Ringing");
    ringing
        .headers
        .set(HeaderName::To, "<sip:alice@contoso.test>;tag=callee");
    callee.answer(&to_r1, &ringing).await;
    caller.next(|m| m.status() == Some(180)).await;

    caller
        .send(
            &INVITE_ALICE
                .replacen("INVITE", "CANCEL", 1)
                .replace("1 INVITE", "1 CANCEL"),
        )
        .await;
    let (cancelled, _) = caller.next(|m| m.status().is_some_and(|s| s >= 200)).await;
    assert_eq!(
        cancelled.status(),
        Some(200),
        "R1 answers the CANCEL itself"
    );
    assert_eq!(cancelled.cseq().unwrap().method, Method::Cancel);

    // R1's own CANCEL reaches the callee with the INVITE's branch; the callee answers it and
    // ends the INVITE with 487.
    let (cancel, _) = callee.next(|m| m.method() == Some(Method::Cancel)).await;
    callee
        .answer(&to_r1, &Message::response_to(&cancel, 200, "OK"))
        .await;
    let mut terminated = Message::response_to(&invite, 487, "Request Terminated");
    terminated
        .headers
        .set(HeaderName::To, "<sip:alice@contoso.test>;tag=callee");
    callee.answer(&to_r1, &terminated).await;

    let final_answer = caller.final_response().await;
    assert_eq!(final_answer.status(), Some(487), "{final_answer:?}");
    assert_eq!(final_answer.cseq().unwrap().method, Method::Invite);
    // R1 acknowledges the 487 hop by hop.
    callee.next(|m| m.method() == Some(Method::Ack)).await;
}

/// An INVITE to alice, from alice's other device.
const INVITE_ALICE: &str = "INVITE sip:alice@contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5072;branch=z9hG4bKcancelme\r\nMax-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag=3\r\nTo: <sip:alice@contoso.test>\r\nCall-ID: cancel-call\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{ip}:5072;transport=tls>\r\nContent-Length: 0\r\n\r\n";
