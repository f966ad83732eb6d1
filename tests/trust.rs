//! The trust boundary of section 7 under attack: a client (or a federation peer) with a
//! valid lab certificate tries to act for another user, through every way in - E1's client
//! port, E1's internal interface, R1 directly from the LAN, the cloud edge, and federation.
//! Each attempt ends in a 403 whose Warning names the check, or in the request being
//! handled as the certificate's own user; adam's requests keep reaching adam alone.

mod common;

use common::Suite;

use std::time::Duration;

use common::{RawClient, TestLab, WAIT, received, warning};
use siplab_sip::{HeaderName, Message};
use siplab_topology::{At, Purpose};
use siplab_ua::Ua;

/// A request by hand: `{ip}` is the sender's address; `extra` goes before Content-Length.
fn request(method: &str, uri: &str, from: &str, to: &str, call_id: &str, extra: &str) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {{ip}}:5070;branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from}>;tag=a1\r\nTo: <sip:{to}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// A REGISTER of `to` with a contact at the sender's address.
fn register(from: &str, to: &str, call_id: &str, extra: &str) -> String {
    let contact = format!(
        "Contact: <sip:{}@{{ip}}:5070;transport=tls;ob>\r\n",
        user(to)
    );
    request(
        "REGISTER",
        "sip:contoso.test",
        from,
        to,
        call_id,
        &format!("{contact}{extra}"),
    )
}

/// A MESSAGE from `from` to `to`.
fn message(from: &str, to: &str, call_id: &str, extra: &str) -> String {
    request("MESSAGE", &format!("sip:{to}"), from, to, call_id, extra)
}

const ADAM: &str = "adam@contoso.test";
const ALICE: &str = "alice@contoso.test";
const AS_ADAM: &str = "P-Asserted-Identity: <sip:adam@contoso.test>\r\n";

/// adam's binding at R1 (`lab.nodes[0]`) and, when he signed in through E1, the flow token
/// of his connection there (his Path's user part).
fn adams_binding(lab: &TestLab) -> (siplab_proxy::Binding, String) {
    let b = lab.nodes[0].location.lookup(ADAM).expect("adam signed in");
    let token = b
        .path()
        .first()
        .and_then(|p| p.trim_start_matches("<sip:").split('@').next())
        .unwrap_or_default()
        .to_owned();
    (b, token)
}

/// `client` tries to register adam with `extra` headers: refused with a Warning naming
/// every one of `words`.
async fn register_as_adam(
    client: &mut RawClient,
    from: &str,
    id: &str,
    extra: &str,
    words: &[&str],
) {
    let resp = ask(client, &register(from, ADAM, id, extra)).await;
    assert_refused(&resp, words);
}

fn user(aor: &str) -> &str {
    aor.split('@').next().unwrap_or(aor)
}

/// `<sip:HOST:PORT;transport=tls;lr>` for the SIP listener of `interface`, with `user`.
fn route_to(lab: &TestLab, interface: &str, user: Option<&str>) -> String {
    let i = lab.lab.interface(interface).expect("interface");
    let port = i.ports.sip.expect("SIP port");
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    format!("<sip:{user}{}:{port};transport=tls;lr>", i.fqdns[0])
}

/// Sends `text` and returns the final response.
async fn ask(client: &mut RawClient, text: &str) -> Message {
    client.send(text).await;
    client.final_response().await
}

/// Asserts a 403 whose Warning contains every one of `words`.
fn assert_refused(resp: &Message, words: &[&str]) {
    let w = warning(resp);
    assert_eq!(
        resp.status(),
        Some(403),
        "{}",
        String::from_utf8_lossy(&resp.to_bytes())
    );
    for word in words {
        assert!(w.contains(word), "Warning {w:?} lacks {word:?}");
    }
}

/// The P-Asserted-Identity a received request carries, if any.
fn asserted(msg: &Message) -> Option<String> {
    msg.headers
        .value(&HeaderName::PAssertedIdentity)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// adam's one binding at R1 is still his own client's: the flow (or Path) he signed in on.
fn assert_adams_binding_is_his(lab: &TestLab, before: &siplab_proxy::Binding) {
    let (now, _) = adams_binding(lab);
    assert_eq!(now.path(), before.path(), "adam's Path changed");
    assert_eq!(
        now.contact().to_string(),
        before.contact().to_string(),
        "adam's contact changed"
    );
}

/// A MESSAGE from `sender` reaches adam's own client, and nothing reaches the attacker.
async fn adam_still_gets_his_messages(sender: &Ua, adam: &Ua, attacker: &mut RawClient) {
    let out = sender
        .send_message("adam@contoso.test", "for adam only")
        .await
        .expect("sent");
    assert_eq!(out.status, 200, "{out:?}");
    let got = received(adam).await;
    assert_eq!(got.body, "for adam only");
    let stolen = tokio::time::timeout(
        Duration::from_millis(300),
        attacker.next(|m| m.is_request()),
    )
    .await;
    assert!(stolen.is_err(), "the attacker received {:?}", stolen.ok());
}

/// The attack of the issue, step by step, through E1's client port: alice signs in as
/// herself, then registers as adam with a pre-loaded Route to R1, a forged
/// P-Asserted-Identity and the Path E1 gave her.
#[tokio::test]
async fn through_the_edge_a_client_cannot_register_or_route_as_another_user() {
    let lab = TestLab::start(Suite::Trust.slot(0), &["R1", "E1"]).await;
    let adam = lab.client(ADAM, At::External).await;
    let (adams, adam_token) = adams_binding(&lab);
    let sender = lab.client(ALICE, At::Internal).await;

    let mut mallory = RawClient::new(&lab, ALICE, At::External).await;
    let own = ask(&mut mallory, &register(ALICE, ALICE, "own", "")).await;
    assert_eq!(own.status(), Some(200));
    let path = own
        .headers
        .value(&HeaderName::Path)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .expect("E1's Path");

    let fe01 = route_to(&lab, "R1", None);
    let forged =
        format!("Route: {fe01}\r\n{AS_ADAM}P-Preferred-Identity: <sip:{ADAM}>\r\nPath: {path}\r\n");
    // 1. The REGISTER, and the same with From set to adam too.
    let refusal = ["REGISTER for adam@contoso.test", ALICE];
    register_as_adam(&mut mallory, ALICE, "steal1", &forged, &refusal).await;
    register_as_adam(&mut mallory, ADAM, "steal2", &forged, &refusal).await;
    assert_adams_binding_is_his(&lab, &adams);

    // 2. Her own REGISTER with the forged headers is hers alone: E1's Path, her flow.
    let resp = ask(&mut mallory, &register(ALICE, ALICE, "own2", &forged)).await;
    assert_eq!(resp.status(), Some(200));
    let hers = lab.nodes[0].location.lookup(ALICE).expect("alice bound");
    assert!(
        hers.path().iter().all(|p| !p.contains(&adam_token)),
        "{:?}",
        hers.path()
    );

    // 3. A request as adam, and requests routed around the front end.
    let resp = ask(&mut mallory, &message(ADAM, ADAM, "as-adam", "")).await;
    assert_refused(&resp, &["From adam@contoso.test", ALICE]);
    let to_his_flow = format!("Route: {}\r\n", route_to(&lab, "E1i", Some(&adam_token)));
    let resp = ask(
        &mut mallory,
        &message(ALICE, ADAM, "his-flow", &to_his_flow),
    )
    .await;
    assert_refused(&resp, &["client's connection"]);
    let around = format!(
        "Route: {}\r\nRoute: <sip:sip.fabrikam.test:5061;transport=tls;lr>\r\n",
        route_to(&lab, "E1x", Some("x"))
    );
    let resp = ask(&mut mallory, &message(ALICE, ADAM, "around", &around)).await;
    assert_refused(&resp, &["routed only to", "sip.fabrikam.test"]);

    // 4. Her forged P-Asserted-Identity never reaches the callee: E1 asserts hers.
    let no_path = forged.replace("Path", "X-Path");
    let resp = ask(&mut mallory, &message(ALICE, ADAM, "pai", &no_path)).await;
    assert_eq!(resp.status(), Some(200));
    let got = received(&adam).await;
    assert_eq!(got.from, ALICE);
    assert_eq!(
        asserted(&got.request).as_deref(),
        Some("<sip:alice@contoso.test>")
    );
    let preferred = got.request.headers.value(&HeaderName::PPreferredIdentity);
    assert!(preferred.is_none(), "{preferred:?}");

    adam_still_gets_his_messages(&sender, &adam, &mut mallory).await;
}

/// A LAN client may also reach E1's internal interface with its certificate: the edge holds
/// it to the same rules.
#[tokio::test]
async fn through_the_edges_internal_interface_the_same_rules_hold() {
    let lab = TestLab::start(Suite::Trust.slot(1), &["R1", "E1"]).await;
    let adam = lab.client(ADAM, At::Internal).await;
    let (adams, _) = adams_binding(&lab);
    let sender = lab.client(ALICE, At::External).await;
    let mut mallory = RawClient::towards(&lab, ALICE, At::Internal, "E1i", Purpose::Sip).await;
    let forged = format!("Route: {}\r\n{AS_ADAM}", route_to(&lab, "R1", None));
    let refusal = ["REGISTER for adam@contoso.test", ALICE];
    register_as_adam(&mut mallory, ALICE, "e1i", &forged, &refusal).await;
    assert_adams_binding_is_his(&lab, &adams);
    adam_still_gets_his_messages(&sender, &adam, &mut mallory).await;
}

/// Straight at R1 from the LAN, and round through E1's internal interface back to R1: the
/// front end checks the certificate itself and strips what a client asserted.
#[tokio::test]
async fn at_the_front_end_a_client_cannot_act_for_another_user() {
    let lab = TestLab::start(Suite::Trust.slot(2), &["R1", "E1"]).await;
    let adam = lab.client(ADAM, At::Internal).await;
    let (adams, _) = adams_binding(&lab);
    let sender = lab.client(ALICE, At::External).await;
    let mut mallory = RawClient::new(&lab, ALICE, At::Internal).await;
    let round = format!(
        "Route: {}\r\nRoute: {}\r\n{AS_ADAM}",
        route_to(&lab, "E1i", None),
        route_to(&lab, "R1", None)
    );
    let refusal = ["REGISTER for adam@contoso.test", ALICE];
    register_as_adam(&mut mallory, ALICE, "lan1", &round, &refusal).await;
    // Her own AOR round the edge: R1 gets it from E1 with nothing asserted, so it is not
    // hers to register that way either.
    let resp = ask(&mut mallory, &register(ALICE, ALICE, "lan2", &round)).await;
    assert_refused(&resp, &["without a user identity"]);
    assert_adams_binding_is_his(&lab, &adams);

    // A MESSAGE as adam, and one with a forged P-Asserted-Identity, round the edge too.
    let resp = ask(&mut mallory, &message(ADAM, ADAM, "lan3", "")).await;
    assert_refused(&resp, &["From adam@contoso.test", ALICE]);
    for (id, extra) in [("lan4", AS_ADAM), ("lan5", &round)] {
        let resp = ask(&mut mallory, &message(ALICE, ADAM, id, extra)).await;
        assert_eq!(resp.status(), Some(200), "{id}");
        let got = received(&adam).await;
        assert_eq!(got.from, ALICE);
        assert_ne!(
            asserted(&got.request).as_deref(),
            Some("<sip:adam@contoso.test>"),
            "{id}: the forged identity reached the callee"
        );
    }
    adam_still_gets_his_messages(&sender, &adam, &mut mallory).await;
}

/// The cloud edge and the cloud pool: one hosted user's certificate cannot sign in, or
/// assert itself, as another hosted user.
#[tokio::test]
async fn through_the_cloud_edge_a_hosted_user_cannot_act_for_another() {
    const BELLA: &str = "bella@contoso.test";
    const BEN: &str = "ben@contoso.test";
    let lab = TestLab::start(Suite::Trust.slot(3), &["R1", "E1", "CE", "CP2"]).await;
    let bella = lab.client(BELLA, At::External).await;
    let mut mallory = RawClient::towards(&lab, BEN, At::External, "CEx", Purpose::Client).await;
    let pool = format!(
        "Route: {}\r\nP-Asserted-Identity: <sip:{BELLA}>\r\n",
        route_to(&lab, "CP2", None)
    );
    let resp = ask(&mut mallory, &register(BEN, BELLA, "ce1", &pool)).await;
    assert_refused(&resp, &["REGISTER for bella@contoso.test", BEN]);
    let bellas = lab.nodes[3].location.lookup(BELLA).unwrap();
    assert!(bellas.path().iter().all(|p| p.contains("sipedge01")));

    let resp = ask(&mut mallory, &message(BELLA, BELLA, "ce2", "")).await;
    assert_refused(&resp, &["From bella@contoso.test", BEN]);
    let resp = ask(&mut mallory, &message(BEN, BELLA, "ce3", &pool)).await;
    assert_eq!(resp.status(), Some(200));
    let got = received(&bella).await;
    assert_eq!(got.from, BEN);
    assert_eq!(
        asserted(&got.request).as_deref(),
        Some("<sip:ben@contoso.test>")
    );
}

/// A federation peer (fabrikam's edge, with its own valid certificate) cannot register a
/// contoso user, route to a client's flow, or assert an identity at contoso's edge.
#[tokio::test]
async fn a_federation_peer_cannot_act_for_a_user_of_ours() {
    use siplab_transport::{Destination, Event, Limits, Transport};
    const ANNA: &str = "anna@fabrikam.test";
    let lab = TestLab::start(Suite::Trust.slot(4), &["R1", "E1"]).await;
    let adam = lab.client(ADAM, At::External).await;
    let (adams, adam_token) = adams_binding(&lab);
    // The peer is E2's external interface, with E2's certificate (E2 itself is not started).
    let e2x = lab.lab.interface("E2x").unwrap();
    let e1x = lab.lab.interface("E1x").unwrap();
    let (t, mut events) = Transport::new(Limits::default());
    t.add_interface(
        "E2x",
        e2x.ip(),
        lab.certs.interface(&lab.lab, "E2x").unwrap(),
    );
    let dest = Destination::Peer {
        interface: "E2x".into(),
        addr: e1x.socket(Purpose::Sip).unwrap(),
        server_name: "sip.contoso.test".into(),
    };
    let mut ask = async |text: String| {
        let text = text.replace("{ip}", &e2x.ip().to_string());
        t.send(&dest, bytes::Bytes::from(text)).await.expect("sent");
        loop {
            match tokio::time::timeout(WAIT, events.recv()).await {
                Ok(Some(Event::Message { msg, .. })) if msg.status().is_some_and(|s| s >= 200) => {
                    return msg;
                }
                Ok(Some(_)) => continue,
                _ => panic!("no answer"),
            }
        }
    };
    let forged = format!("Route: {}\r\n{AS_ADAM}", route_to(&lab, "R1", None));
    let resp = ask(register(ANNA, ADAM, "fed1", &forged)).await;
    assert_refused(
        &resp,
        &["REGISTER for adam@contoso.test", "without a user identity"],
    );
    assert_adams_binding_is_his(&lab, &adams);

    let to_his_flow = format!("Route: {}\r\n", route_to(&lab, "E1x", Some(&adam_token)));
    let resp = ask(message(ANNA, ADAM, "fed2", &to_his_flow)).await;
    assert_refused(&resp, &["client's connection"]);
    let resp = ask(message(ANNA, ADAM, "fed3", &forged)).await;
    assert_eq!(resp.status(), Some(200));
    let got = received(&adam).await;
    assert_eq!(got.from, ANNA);
    assert_eq!(asserted(&got.request), None, "nothing asserted for a peer");
}
