//! Section 6 of the reference, "a dialog always stays on the established channel", for the
//! federation and hybrid rows 9 to 17 of the path table: a whole lab per row (its own slot),
//! the row's sender calls its receiver, and the ACK, a MESSAGE each way inside the dialog and
//! the BYE all pass the nodes the INVITE passed, because every proxy Record-Routed it (an
//! edge twice, once per interface, RFC 5658) and removed its own Route again on the way.
//!
//! Requests from the callee back to the caller take the same nodes in the opposite order,
//! each leaving from its other interface (`siplab_runner::reversed`).

mod common;

use common::Suite;

use std::sync::Arc;
use std::time::Duration;

use siplab_node::Certs;
use siplab_pki::LabCa;
use siplab_runner::{LabRun, expected_vias, name_of};
use siplab_sip::Method;
use siplab_topology::{Hop, Lab, Path};
use siplab_ua::{Received, Ua, UaError};

/// How long a request may take to arrive, across up to a dozen TLS hops set up on demand.
const WAIT: Duration = Duration::from_secs(15);

/// Who hangs up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bye {
    Caller,
    Callee,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_09_a1i_to_a2i() {
    dialog_row(Suite::Dialogs.slot(9), 9, Bye::Callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_10_a1i_to_a2e() {
    dialog_row(Suite::Dialogs.slot(10), 10, Bye::Caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_11_a1e_to_a2i() {
    dialog_row(Suite::Dialogs.slot(11), 11, Bye::Callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_12_a1e_to_a2e() {
    dialog_row(Suite::Dialogs.slot(12), 12, Bye::Caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_13_a1i_to_b2e() {
    dialog_row(Suite::Dialogs.slot(13), 13, Bye::Callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_14_a1e_to_b2e() {
    dialog_row(Suite::Dialogs.slot(14), 14, Bye::Caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_15_b1e_to_a2i() {
    dialog_row(Suite::Dialogs.slot(15), 15, Bye::Callee).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_16_b1e_to_a2e() {
    dialog_row(Suite::Dialogs.slot(16), 16, Bye::Caller).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialog_17_b1e_to_b2e() {
    dialog_row(Suite::Dialogs.slot(17), 17, Bye::Callee).await;
}

/// The reverse of the ways a node is named in a path: the way back passes the same nodes in
/// the opposite order, and a node with two interfaces sends from the other one (E1 received
/// on E1x, so it sent from E1i; on the way back it receives on E1i and sends from E1x).
#[test]
fn reverse_path_swaps_each_edge_interface_and_keeps_the_rest() {
    let lab = Lab::reference().unwrap();
    let names = |hops: &[Hop]| hops.iter().map(ToString::to_string).collect::<Vec<_>>();
    let row = |id| lab.path(id).unwrap();
    assert_eq!(
        names(&siplab_runner::reversed(&lab, &row(2).hops)),
        ["A1e", "E1i", "R1", "A1i"]
    );
    assert_eq!(
        names(&siplab_runner::reversed(&lab, &row(17).hops)),
        [
            "B2e", "CEi", "CP1", "CEx", "E2i", "R2", "E2x", "E1i", "R1", "E1x", "CEi", "CP2",
            "CEx", "B1e"
        ]
    );
}

/// The Record-Route the callee sees on the INVITE, top first, by interface: each proxy adds
/// the interface it sends from on top, an edge first the one it received on (RFC 5658), so
/// from the callee's end the last proxy comes first, its sending interface above its
/// receiving one.
fn expected_record_route(lab: &Lab, path: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for name in path.interfaces().collect::<Vec<_>>().into_iter().rev() {
        names.push(name.to_string());
        let other = siplab_runner::other_interface(lab, name);
        if other != *name {
            names.push(other.to_string());
        }
    }
    names
}

/// The path as the callee's requests take it, for `expected_vias`.
fn reversed(lab: &Lab, path: &Path) -> Path {
    Path {
        id: path.id,
        mirrored: path.mirrored,
        from: path.to,
        to: path.from,
        hops: siplab_runner::reversed(lab, &path.hops),
        receiver: None,
        mirrorable: path.mirrorable,
    }
}

async fn dialog_row(slot: u8, id: u32, bye: Bye) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let lab = Lab::reference().unwrap().localized(slot);
    let certs = Certs::Authority(Arc::new(LabCa::generate().unwrap()));
    let run = LabRun::start(lab, certs).await.expect("lab starts");
    let lab = &run.lab;
    let path = lab.path(id).cloned().expect("row");

    // The row's parties, placed where the path table says (the MESSAGE outside a dialog
    // on the same path is tests/paths.rs's and tests/matrix.rs's to assert).
    let (sender, receiver) = lab.parties(&path).expect("row parties");
    for (aor, place) in [(&sender.aor, path.from), (&receiver.aor, path.to)] {
        run.place(aor, place.at).await.expect("placed");
    }
    let caller = run.client(&sender.aor).await.expect("sender's client");
    let callee = run.client(&receiver.aor).await.expect("receiver's client");
    for ua in [&caller, &callee] {
        while ua.next_received(Duration::ZERO).await.is_some() {}
    }
    let forward = expected_vias(&path);
    let backward = expected_vias(&reversed(lab, &path));
    println!("row {id}: forward {forward:?}, backward {backward:?}");

    // The INVITE takes the row's path; every proxy recorded the route.
    let mut out = caller.invite(&receiver.aor).await.expect("INVITE answered");
    assert!(out.is_established(), "row {id}: {:?}", out.outcome());
    let mut back = callee.next_call(WAIT).await.expect("the callee's call");
    let invite = next(&callee, Method::Invite, id).await;
    assert_chain(lab, "INVITE", id, &invite, &forward);
    let rr: Vec<String> = invite
        .record_route
        .iter()
        .map(|r| siplab_runner::name_of_route(lab, r))
        .collect();
    assert_eq!(
        rr,
        expected_record_route(lab, &path),
        "row {id}: Record-Route of the INVITE {:#?}",
        invite.record_route
    );
    assert!(invite.record_route.iter().all(|r| r.contains(";lr")));
    assert_eq!(back.route_set(), invite.record_route.as_slice());
    assert_eq!(back.call_id(), invite.call_id);

    // The ACK for the 2xx, along the route set.
    let ack = next(&callee, Method::Ack, id).await;
    assert_chain(lab, "ACK", id, &ack, &forward);

    // A MESSAGE each way inside the dialog.
    let sent = out
        .message("caller to callee")
        .await
        .expect("MESSAGE answered");
    assert_eq!(sent.status, 200, "row {id}: {sent:?}");
    let got = next(&callee, Method::Message, id).await;
    assert_eq!(got.body, "caller to callee");
    assert_eq!(got.call_id, invite.call_id);
    assert_chain(lab, "MESSAGE caller->callee", id, &got, &forward);

    let sent = back
        .message("callee to caller")
        .await
        .expect("MESSAGE answered");
    assert_eq!(sent.status, 200, "row {id}: {sent:?}");
    let got = next(&caller, Method::Message, id).await;
    assert_eq!(got.body, "callee to caller");
    assert_eq!(got.call_id, invite.call_id);
    assert_chain(lab, "MESSAGE callee->caller", id, &got, &backward);

    // The BYE, and the dialog is over on both sides.
    let (hangs_up, mut hung_up, receiver, chain, what) = match bye {
        Bye::Caller => (out, back, &callee, &forward, "BYE caller->callee"),
        Bye::Callee => (back, out, &caller, &backward, "BYE callee->caller"),
    };
    let sent = hangs_up.bye().await.expect("BYE answered");
    assert_eq!(sent.status, 200, "row {id}: {sent:?}");
    let got = next(receiver, Method::Bye, id).await;
    assert_chain(lab, what, id, &got, chain);
    assert!(!hung_up.is_established());
    assert!(matches!(
        hung_up.message("after the BYE").await,
        Err(UaError::DialogEnded { .. })
    ));
    // The runner signs out only the clients nobody else holds.
    drop((caller, callee));
    run.sign_out_all().await;
}

/// The next request `ua` received, which must be a `method`.
async fn next(ua: &Ua, method: Method, id: u32) -> Received {
    let got = ua
        .next_received(WAIT)
        .await
        .unwrap_or_else(|| panic!("row {id}: {} received no {method}", ua.aor()));
    assert_eq!(
        got.method,
        method,
        "row {id}: {} received {got:?}",
        ua.aor()
    );
    got
}

/// The request came the `expected` way (its Vias by name, top first) and no Route is left:
/// every proxy removed its own.
fn assert_chain(lab: &Lab, what: &str, id: u32, got: &Received, expected: &[String]) {
    let names: Vec<String> = got.vias.iter().map(|v| name_of(lab, &v.host)).collect();
    let addresses: Vec<&str> = got.vias.iter().map(|v| v.sent_by.as_str()).collect();
    println!("row {id}: {what}: {names:?}");
    assert_eq!(
        names, expected,
        "row {id}: {what}: Vias {addresses:?}, Record-Route {:?}",
        got.record_route
    );
    assert!(
        got.route.is_empty(),
        "row {id}: {what} arrived with Route {:?}",
        got.route
    );
}
