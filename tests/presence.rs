//! Presence (section 6, the article's "Präsenz-Status"): a SUBSCRIBE takes the way of a
//! message to the watched user but ends at the user's home server, which answers it and
//! sends the NOTIFYs back along the Record-Route set; the user's client never sees it.

mod common;

use common::Suite;

use std::time::Duration;

use siplab_runner::{Outcome, run_presence_rows};
use siplab_sip::Method;
use siplab_topology::At;

async fn row(slot: u8, id: u32) {
    let run = common::whole_lab(slot).await;
    let path = run.lab.path(id).cloned().expect("row");
    let rows = run_presence_rows(&run, &[path]).await;
    let r = &rows[0];
    assert_eq!(
        r.outcome,
        Outcome::Match,
        "row {id}: SUBSCRIBE at {} expected {:?} observed {:?}; NOTIFY expected {:?} observed {:?}; state {:?}",
        r.home,
        r.subscribe_expected,
        r.subscribe_observed,
        r.notify_expected,
        r.notify_observed,
        r.state
    );
    // The watched user's client saw no SUBSCRIBE.
    let target = run.client(&r.target).await.unwrap();
    while let Some(got) = target.next_received(Duration::ZERO).await {
        assert_ne!(
            got.method,
            Method::Subscribe,
            "the home server answers, not the client"
        );
    }
    run.sign_out_all().await;
}

rows! {
    Suite::PresenceRows, row:
    presence_01_a1i_to_a1i = 1;
    presence_02_a1i_to_a1e = 2;
    presence_05_a1i_to_b1e = 5;
    presence_09_a1i_to_a2i = 9;
    presence_10_a1i_to_a2e = 10;
    presence_13_a1i_to_b2e = 13;
    presence_15_b1e_to_a2i = 15;
    presence_17_b1e_to_b2e = 17;
}

#[tokio::test]
async fn presence_a_state_change_reaches_a_federated_watcher_and_offline_when_signed_out() {
    let run = common::whole_lab(Suite::Presence.slot(0)).await;
    // anna (fabrikam, A2i) watches alice (contoso, A1e): federation E2 <-> E1.
    run.place("alice@contoso.test", At::External).await.unwrap();
    run.place("anna@fabrikam.test", At::Internal).await.unwrap();
    let alice = run.client("alice@contoso.test").await.unwrap();
    let anna = run.client("anna@fabrikam.test").await.unwrap();
    let state_of = async |want: &str| loop {
        let got = anna
            .next_received(Duration::from_secs(5))
            .await
            .expect("a NOTIFY");
        if got.method == Method::Notify
            && siplab_sip::pidf_state(got.body.as_bytes()).as_deref() == Some(want)
        {
            return got;
        }
    };
    assert_eq!(
        anna.subscribe("alice@contoso.test", 600)
            .await
            .unwrap()
            .status,
        200
    );
    state_of("available").await;
    assert_eq!(alice.publish("busy").await.unwrap().status, 200);
    let n = state_of("busy").await;
    let names: Vec<String> = n
        .vias
        .iter()
        .map(|v| siplab_runner::name_of(&run.lab, &v.host))
        .collect();
    assert_eq!(
        names,
        ["R2", "E2i", "E1x", "R1"],
        "R1 notifies anna back along the route set"
    );
    // alice's last binding goes: R1 says offline for her.
    drop(alice);
    run.sign_out("alice@contoso.test").await;
    state_of("offline").await;
    run.sign_out_all().await;
}
