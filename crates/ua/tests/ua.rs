//! The client against a tiny registrar and proxy on the real transport: signing in (with a
//! redirect, and again after the flow dies), answering what comes down the flow, and
//! messages and calls between two clients. Each test owns its 127.9.N.x addresses.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{OnRegister, Pki, Server, WAIT, resolve_one, status};
use siplab_sip::{ContactParams, HeaderName, Method};
use siplab_transport::Limits;
use siplab_ua::{ServerTried, Ua, UaError};

#[tokio::test]
async fn registers_over_one_flow_and_answers_what_comes_down_it() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.1.1", OnRegister::Accept).await;
    let ua = Ua::start(pki.client("alice@contoso.test", "127.9.1.101", &server))
        .await
        .unwrap();
    let reg = ua.wait_registered(WAIT).await.unwrap();
    assert_eq!(reg.server_name, "fe01.contoso.test");
    assert_eq!(reg.expires, 600);
    assert_eq!(reg.connection.local.ip().to_string(), "127.9.1.101");
    assert_eq!(
        reg.path,
        [format!("<sip:{};transport=tls;lr;ob>", server.addr)]
    );
    let via = ua.registered_via().unwrap();
    assert_eq!(via.status, Some(200));
    assert_eq!(via.servers.len(), 1);

    // The REGISTER as RFC 3261 and 5626 shape it.
    let (register, _) = server.registers().pop().unwrap();
    let text = String::from_utf8(register.to_bytes().to_vec()).unwrap();
    let local = reg.connection.local;
    assert!(text.starts_with(&format!(
        "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK"
    )));
    assert!(text.contains(";rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@contoso.test>;tag="));
    assert!(text.contains("\r\nTo: <sip:alice@contoso.test>\r\n"));
    assert!(text.contains("\r\nCSeq: 1 REGISTER\r\n"));
    assert!(text.contains(&format!(
        "\r\nContact: <sip:alice@{local};transport=tls;ob>;+sip.instance=\"<urn:uuid:"
    )));
    assert!(text.contains(
        ">\";reg-id=1;expires=600\r\nSupported: path, outbound\r\nContent-Length: 0\r\n\r\n"
    ));
    let contact = register.contacts().unwrap();
    let siplab_sip::Contact::Addr(contact) = &contact[0] else {
        panic!("a Contact address")
    };
    assert!(contact.outbound());
    assert_eq!(contact.reg_id(), Some(1));

    // A MESSAGE from further away: answered 200 with a To tag, recorded with its Vias.
    let far = "SIP/2.0/TLS 127.9.1.50:5061;branch=z9hG4bKfar;received=127.9.1.51;rport=5062";
    server
        .send_to("alice@contoso.test", "MESSAGE", &[far])
        .await;
    let resp = server.next_response().await;
    assert_eq!(status(&resp), 200);
    assert!(resp.to().unwrap().tag().is_some());
    let got = ua.next_received(WAIT).await.unwrap();
    assert_eq!(got.method, Method::Message);
    assert_eq!(
        (got.from.as_str(), got.to.as_str()),
        ("server@test", "alice@contoso.test")
    );
    let sent_by: Vec<_> = got.vias.iter().map(|v| v.sent_by.clone()).collect();
    assert_eq!(sent_by, [server.addr.to_string(), "127.9.1.50:5061".into()]);
    assert_eq!(got.vias[1].received.as_deref(), Some("127.9.1.51"));
    assert_eq!(got.vias[1].rport, Some(5062));
    assert_eq!(got.vias[1].host, "127.9.1.50");
    assert_eq!(got.record_route.len(), 1);

    for (method, expected) in [
        ("OPTIONS", 200),
        ("INFO", 200),
        ("NOTIFY", 200),
        ("BYE", 200),
        ("FOO", 405),
    ] {
        server.send_to("alice@contoso.test", method, &[]).await;
        let resp = server.next_response().await;
        assert_eq!(status(&resp), expected, "{method}");
        if expected == 405 {
            let allow = resp.headers.value(&HeaderName::Allow).unwrap();
            assert!(allow.starts_with(b"INVITE, ACK, CANCEL, BYE"));
        }
        assert_eq!(
            ua.next_received(WAIT).await.unwrap().method.as_str(),
            method
        );
    }
}

#[tokio::test]
async fn two_clients_exchange_a_message_and_a_call_through_the_proxy() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.2.1", OnRegister::Accept).await;
    let alice = Ua::start(pki.client("alice@contoso.test", "127.9.2.101", &server))
        .await
        .unwrap();
    let adam = Ua::start(pki.client("adam@contoso.test", "127.9.2.102", &server))
        .await
        .unwrap();
    let alice_local = alice.wait_registered(WAIT).await.unwrap().connection.local;

    let outcome = alice
        .send_message("adam@contoso.test", "hello")
        .await
        .unwrap();
    assert_eq!((outcome.status, outcome.reason.as_str()), (200, "OK"));
    let got = adam.next_received(WAIT).await.unwrap();
    assert_eq!(got.method, Method::Message);
    assert_eq!(got.from, "alice@contoso.test");
    assert_eq!(got.body, "hello");
    let sent_by: Vec<_> = got.vias.iter().map(|v| v.sent_by.clone()).collect();
    assert_eq!(sent_by, [server.addr.to_string(), alice_local.to_string()]);
    assert_eq!(got.vias[1].rport, Some(alice_local.port()));
    assert_eq!(got.vias[1].received, Some(alice_local.ip().to_string()));

    // Non-2xx is an answer, not an error.
    let outcome = alice
        .send_message("nobody@contoso.test", "hello?")
        .await
        .unwrap();
    assert_eq!(outcome.status, 404);

    // A call: INVITE rings and is answered, the ACK, an in-dialog MESSAGE and the BYE
    // follow the Record-Route.
    let mut call = alice.invite("adam@contoso.test").await.unwrap();
    assert!(call.is_established());
    assert_eq!(call.outcome().provisional, [180]);
    assert_eq!(
        call.route_set(),
        [format!("<sip:{};transport=tls;lr>", server.addr)]
    );
    let invite = adam.next_received(WAIT).await.unwrap();
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.record_route.len(), 1);
    let ack = adam.next_received(WAIT).await.unwrap();
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.call_id, invite.call_id);
    assert_eq!(ack.vias.len(), 2);
    assert_eq!(call.message("in the dialog").await.unwrap().status, 200);
    let msg = adam.next_received(WAIT).await.unwrap();
    assert_eq!(
        (msg.method, msg.body.as_str()),
        (Method::Message, "in the dialog")
    );
    assert_eq!(msg.call_id, invite.call_id);
    assert_eq!(call.bye().await.unwrap().status, 200);
    let bye = adam.next_received(WAIT).await.unwrap();
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.request.cseq().unwrap().seq, 3);

    // A call that fails has no dialog.
    let call = alice.invite("nobody@contoso.test").await.unwrap();
    assert_eq!(call.outcome().status, 404);
    assert!(matches!(
        call.bye().await,
        Err(UaError::NoDialog { status: 404 })
    ));
}

#[tokio::test]
async fn follows_a_redirect_and_binds_its_nat_address_towards_the_cloud() {
    let pki = Pki::new();
    let cloud = Server::start(
        &pki,
        "sipdir.online.lync.test",
        "127.9.3.2",
        OnRegister::Accept,
    )
    .await;
    let contact = format!(
        "<sip:sipdir.online.lync.test:{};transport=tls>",
        cloud.addr.port()
    );
    let front = Server::start(
        &pki,
        "fe01.contoso.test",
        "127.9.3.1",
        OnRegister::Redirect(contact),
    )
    .await;
    let mut cfg = pki.client("bella@contoso.test", "127.9.3.102", &front);
    cfg.resolver = resolve_one("sipdir.online.lync.test", cloud.addr);
    let cloud_ip = cloud.addr.ip();
    let nat = "127.9.3.202".parse().unwrap();
    cfg.source_for = Arc::new(move |ip| (ip == cloud_ip).then_some(nat));
    let ua = Ua::start(cfg).await.unwrap();

    let reg = ua.wait_registered(WAIT).await.unwrap();
    assert_eq!(reg.server_name, "sipdir.online.lync.test");
    assert_eq!(reg.connection.peer, cloud.addr);
    assert_eq!(reg.connection.local.ip(), nat);
    assert_eq!(
        reg.sign_in.servers,
        [
            ServerTried {
                name: "fe01.contoso.test".into(),
                addr: front.addr,
                status: Some(301),
            },
            ServerTried {
                name: "sipdir.online.lync.test".into(),
                addr: cloud.addr,
                status: Some(200),
            },
        ]
    );
    assert_eq!(ua.registered_via().unwrap(), reg.sign_in);
    let (front_reg, _) = &front.registers()[0];
    let (cloud_reg, _) = &cloud.registers()[0];
    // One registration (Call-ID) to wherever it ends up, with a rising CSeq.
    assert_eq!(front_reg.call_id().unwrap(), cloud_reg.call_id().unwrap());
    assert_eq!(cloud_reg.cseq().unwrap().seq, 2);
    // Requests now come from the cloud.
    cloud.send_to("bella@contoso.test", "MESSAGE", &[]).await;
    assert_eq!(status(&cloud.next_response().await), 200);
}

#[tokio::test]
async fn signs_in_again_after_the_server_closes_the_connection() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.4.1", OnRegister::Accept).await;
    let ua = Ua::start(pki.client("alice@contoso.test", "127.9.4.101", &server))
        .await
        .unwrap();
    let first = ua.wait_registered(WAIT).await.unwrap();
    server.transport.close_all();
    let again = ua.wait_reregistered(&first, WAIT).await.unwrap();
    assert_ne!(again.connection.local, first.connection.local);
    let registers = server.registers();
    assert_eq!(registers.len(), 2);
    assert_ne!(registers[0].1, registers[1].1);
    assert!(registers[1].0.cseq().unwrap().seq > registers[0].0.cseq().unwrap().seq);
    // The new flow carries requests for the user.
    server.send_to("alice@contoso.test", "MESSAGE", &[]).await;
    assert_eq!(status(&server.next_response().await), 200);
}

#[tokio::test]
async fn keep_alives_hold_the_flow_open_and_a_dead_flow_is_replaced() {
    let pki = Pki::new();
    // A server that closes connections idle for a second.
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let server = Server::start_with(
        &pki,
        "fe01.contoso.test",
        "127.9.5.1",
        OnRegister::Accept,
        limits,
    )
    .await;
    let mut cfg = pki.client("alice@contoso.test", "127.9.5.101", &server);
    cfg.keepalive = Duration::from_millis(200);
    let pinging = Ua::start(cfg).await.unwrap();
    let mut cfg = pki.client("adam@contoso.test", "127.9.5.102", &server);
    cfg.keepalive = Duration::from_secs(60);
    let silent = Ua::start(cfg).await.unwrap();
    let pinging_first = pinging.wait_registered(WAIT).await.unwrap();
    let silent_first = silent.wait_registered(WAIT).await.unwrap();

    let again = silent.wait_reregistered(&silent_first, WAIT).await.unwrap();
    assert_ne!(again.connection.id, silent_first.connection.id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = pinging.registration().unwrap();
    assert_eq!(still.connection.id, pinging_first.connection.id);
}

#[tokio::test]
async fn refreshes_before_the_binding_expires() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.8.1", OnRegister::Accept).await;
    let mut cfg = pki.client("alice@contoso.test", "127.9.8.101", &server);
    cfg.register_expires = 2;
    let ua = Ua::start(cfg).await.unwrap();
    let first = ua.wait_registered(WAIT).await.unwrap();
    assert_eq!(first.expires, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let registers = server.registers();
    assert!(registers.len() >= 2, "refreshed after half the lifetime");
    let (a, b) = (&registers[0].0, &registers[1].0);
    assert_eq!(registers[0].1, registers[1].1, "on the same flow");
    assert_eq!(a.call_id().unwrap(), b.call_id().unwrap());
    assert_eq!((a.cseq().unwrap().seq, b.cseq().unwrap().seq), (1, 2));
    assert_eq!(
        ua.registration().unwrap().connection.id,
        first.connection.id
    );
}

#[tokio::test]
async fn a_cancel_ends_a_ringing_invite() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.6.1", OnRegister::Accept).await;
    let mut cfg = pki.client("alice@contoso.test", "127.9.6.101", &server);
    cfg.ring = Duration::from_secs(30);
    let ua = Ua::start(cfg).await.unwrap();
    ua.wait_registered(WAIT).await.unwrap();

    let branch = server.send_to("alice@contoso.test", "INVITE", &[]).await;
    let ringing = server.next_response().await;
    assert_eq!(status(&ringing), 180);
    let tag = ringing.to().unwrap().tag().unwrap().to_owned();
    server
        .send_in("alice@contoso.test", "CANCEL", &branch, &[])
        .await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        let resp = server.next_response().await;
        answers.push((
            resp.cseq().unwrap().method,
            status(&resp),
            resp.to().unwrap().tag().map(str::to_owned),
        ));
    }
    answers.sort_by_key(|a| a.1);
    assert_eq!(answers[0].0, Method::Cancel);
    assert_eq!(answers[0].1, 200);
    assert_eq!((answers[1].0.clone(), answers[1].1), (Method::Invite, 487));
    assert_eq!(answers[1].2.as_deref(), Some(tag.as_str()));

    // No INVITE rings in that transaction any more.
    server
        .send_in("alice@contoso.test", "CANCEL", &branch, &[])
        .await;
    assert_eq!(status(&server.next_response().await), 481);
}

#[tokio::test]
async fn no_answer_is_a_timeout_and_no_server_is_an_error() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.7.1", OnRegister::Accept).await;
    let mut cfg = pki.client("alice@contoso.test", "127.9.7.101", &server);
    cfg.transaction_timeout = Duration::from_millis(300);
    let ua = Ua::start(cfg).await.unwrap();
    let error = ua.options("sip:blackhole@contoso.test").await.unwrap_err();
    assert!(
        matches!(error, UaError::Timeout { ref method, .. } if method == "OPTIONS"),
        "{error}"
    );

    let mut cfg = pki.client("adam@contoso.test", "127.9.7.102", &server);
    cfg.server = "127.9.7.2:9".parse().unwrap();
    let error = Ua::start(cfg).await.err().unwrap();
    assert!(matches!(error, UaError::Transport(_)), "{error}");
    // The wrong name for the server's certificate.
    let mut cfg = pki.client("adam@contoso.test", "127.9.7.102", &server);
    cfg.server_name = "sip.fabrikam.test".into();
    let error = Ua::start(cfg).await.err().unwrap();
    assert!(error.to_string().contains("TLS handshake"), "{error}");
}
