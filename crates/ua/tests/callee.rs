//! The callee's side of a dialog, through the tiny record-routing proxy: the call it
//! answered comes out of `next_call`, its requests take the Record-Route (in order) to the
//! caller's Contact, a BYE from either side ends the dialog on both, and requests in a
//! dialog the client does not know are answered 481. Each test owns its 127.9.N.x addresses.

mod common;

use common::{OnRegister, Pki, Server, WAIT, status};
use siplab_sip::{HeaderName, Method};
use siplab_ua::{Call, Ua, UaError};

/// alice calls adam through `server`; returns both calls once adam has seen the ACK.
async fn call(server: &Server, alice: &Ua, adam: &Ua) -> (Call, Call) {
    let caller = alice.invite("adam@contoso.test").await.unwrap();
    assert!(caller.is_established(), "{:?}", caller.outcome());
    let callee = adam.next_call(WAIT).await.expect("adam's side of the call");
    assert_eq!(
        adam.next_received(WAIT).await.unwrap().method,
        Method::Invite
    );
    assert_eq!(adam.next_received(WAIT).await.unwrap().method, Method::Ack);
    let rr = [format!("<sip:{};transport=tls;lr>", server.addr)];
    assert_eq!(caller.route_set(), rr);
    assert_eq!(callee.route_set(), rr);
    (caller, callee)
}

async fn clients(pki: &Pki, server: &Server, net: u8) -> (Ua, Ua) {
    let alice = Ua::start(pki.client("alice@contoso.test", &format!("127.9.{net}.101"), server))
        .await
        .unwrap();
    let adam = Ua::start(pki.client("adam@contoso.test", &format!("127.9.{net}.102"), server))
        .await
        .unwrap();
    (alice, adam)
}

#[tokio::test]
async fn the_callee_sends_in_the_dialog_and_hangs_up() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.9.1", OnRegister::Accept).await;
    let (alice, adam) = clients(&pki, &server, 9).await;
    let alice_local = alice.wait_registered(WAIT).await.unwrap().connection.local;
    let adam_local = adam.wait_registered(WAIT).await.unwrap().connection.local;
    let (mut caller, mut callee) = call(&server, &alice, &adam).await;
    assert_eq!(callee.call_id(), caller.call_id());
    assert_eq!(callee.outcome().status, 200);
    assert_eq!(callee.outcome().provisional, [180]);
    let callee_tag = caller
        .outcome()
        .response
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_owned();
    assert_eq!(
        callee.outcome().response.to().unwrap().tag(),
        Some(callee_tag.as_str())
    );

    // The callee's MESSAGE goes to the caller's Contact along the route set.
    assert_eq!(callee.message("from adam").await.unwrap().status, 200);
    let got = alice.next_received(WAIT).await.unwrap();
    assert_eq!(
        (got.method, got.body.as_str()),
        (Method::Message, "from adam")
    );
    assert_eq!(
        (got.from.as_str(), got.to.as_str()),
        ("adam@contoso.test", "alice@contoso.test")
    );
    assert_eq!(got.call_id, caller.call_id());
    assert_eq!(
        got.request.request_uri().unwrap().to_string(),
        format!("sip:alice@{alice_local};transport=tls;ob")
    );
    assert!(
        got.route.is_empty(),
        "the proxy removed its Route: {:?}",
        got.route
    );
    let sent_by: Vec<_> = got.vias.iter().map(|v| v.sent_by.clone()).collect();
    assert_eq!(sent_by, [server.addr.to_string(), adam_local.to_string()]);
    assert_eq!(got.request.from().unwrap().tag(), Some(callee_tag.as_str()));
    let caller_tag = got.request.to().unwrap().tag().unwrap().to_owned();
    assert_eq!(
        caller.outcome().response.from().unwrap().tag(),
        Some(caller_tag.as_str())
    );
    assert_eq!(got.request.cseq().unwrap().seq, 1);

    // The caller still sends in the same dialog.
    assert_eq!(caller.message("from alice").await.unwrap().status, 200);
    let got = adam.next_received(WAIT).await.unwrap();
    assert_eq!(
        (got.method, got.body.as_str()),
        (Method::Message, "from alice")
    );
    assert_eq!(got.request.cseq().unwrap().seq, 2);

    // The callee hangs up; the caller's dialog is over.
    assert_eq!(callee.bye().await.unwrap().status, 200);
    let bye = alice.next_received(WAIT).await.unwrap();
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.request.cseq().unwrap().seq, 2);
    assert_eq!(bye.request.headers.get_all(&HeaderName::Route).count(), 0);
    assert!(!caller.is_established());
    let error = caller.message("too late").await.unwrap_err();
    assert!(
        matches!(error, UaError::DialogEnded { ref method, .. } if method == "MESSAGE"),
        "{error}"
    );
    assert!(matches!(
        caller.bye().await,
        Err(UaError::DialogEnded { .. })
    ));
}

#[tokio::test]
async fn a_bye_from_the_caller_ends_the_callee_dialog() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.10.1", OnRegister::Accept).await;
    let (alice, adam) = clients(&pki, &server, 10).await;
    let (caller, mut callee) = call(&server, &alice, &adam).await;
    assert_eq!(caller.bye().await.unwrap().status, 200);
    assert_eq!(adam.next_received(WAIT).await.unwrap().method, Method::Bye);
    assert!(!callee.is_established());
    let error = callee.message("after the BYE").await.unwrap_err();
    assert!(matches!(error, UaError::DialogEnded { .. }), "{error}");
    assert!(error.to_string().contains("has ended"), "{error}");
}

#[tokio::test]
async fn requests_in_an_unknown_dialog_get_481_and_an_invite_without_contact_400() {
    let pki = Pki::new();
    let server = Server::start(&pki, "fe01.contoso.test", "127.9.11.1", OnRegister::Accept).await;
    let ua = Ua::start(pki.client("alice@contoso.test", "127.9.11.101", &server))
        .await
        .unwrap();
    ua.wait_registered(WAIT).await.unwrap();
    let request = |method: &str, to_tag: &str, contact: &str| {
        format!(
            "{method} sip:alice@contoso.test SIP/2.0\r\n\
             Via: SIP/2.0/TLS {};branch=z9hG4bK{method}{to_tag}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:server@test>;tag=s1\r\n\
             To: <sip:alice@contoso.test>{to_tag}\r\nCall-ID: unknown@test\r\n\
             CSeq: 7 {method}\r\n{contact}Content-Length: 0\r\n\r\n",
            server.addr
        )
    };
    for method in ["BYE", "MESSAGE", "INFO"] {
        server
            .send_text("alice@contoso.test", &request(method, ";tag=gone", ""))
            .await;
        let resp = server.next_response().await;
        assert_eq!(status(&resp), 481, "{method}");
        assert_eq!(resp.to().unwrap().tag(), Some("gone"));
    }
    // Outside a dialog the same requests are answered as before.
    server
        .send_text("alice@contoso.test", &request("BYE", "", ""))
        .await;
    assert_eq!(status(&server.next_response().await), 200);
    // An INVITE the client could not send back to cannot make a dialog.
    server
        .send_text("alice@contoso.test", &request("INVITE", "", ""))
        .await;
    let resp = server.next_response().await;
    assert_eq!(status(&resp), 400);
    let warning = resp.headers.value(&HeaderName::new("Warning")).unwrap();
    assert!(String::from_utf8_lossy(warning).contains("Contact"));
    assert!(ua.next_call(std::time::Duration::ZERO).await.is_none());
}
