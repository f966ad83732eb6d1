//! Rows 1 to 4 of the reference's path table (section 5), on the wire: R1 and E1 as real
//! servers on loopback, clients on the LAN and on the internet, and the Via chain the
//! receiving client observed, by interface name and by address.

mod common;

use common::{TestLab, received};
use siplab_topology::At;

async fn row(slot: u8, id: u32, from: At, to: At) {
    let lab = TestLab::start(slot, &["R1", "E1"]).await;
    let sender = lab.client("alice@contoso.test", from).await;
    let receiver = lab.client("adam@contoso.test", to).await;
    let outcome = sender
        .send_message("adam@contoso.test", &format!("row {id}"))
        .await
        .expect("MESSAGE answered");
    assert_eq!(outcome.status, 200, "{outcome:?}");
    let got = received(&receiver).await;
    assert_eq!(got.body, format!("row {id}"));
    let chain = lab.chain(&got.vias);
    println!(
        "row {id}: receiver saw Via {chain:?} = {:?}",
        got.vias.iter().map(|v| &v.sent_by).collect::<Vec<_>>()
    );
    assert_eq!(
        chain,
        lab.expected_chain(id),
        "row {id}: the Via chain the receiver saw"
    );
    lab.assert_addresses(&got.vias);
    let vias = got.request.vias().expect("Vias parse");
    for v in &vias[..vias.len() - 1] {
        assert!(
            v.has_rfc3261_branch(),
            "a proxy's Via has a fresh z9hG4bK branch: {v}"
        );
    }
}

#[tokio::test]
async fn path_01_a1i_to_a1i() {
    row(11, 1, At::Internal, At::Internal).await;
}

#[tokio::test]
async fn path_02_a1i_to_a1e() {
    row(12, 2, At::Internal, At::External).await;
}

#[tokio::test]
async fn path_03_a1e_to_a1i() {
    row(13, 3, At::External, At::Internal).await;
}

#[tokio::test]
async fn path_04_a1e_to_a1e() {
    row(14, 4, At::External, At::External).await;
}
