//! The reference's path table (section 5) on the wire, row by row, each test in a lab of its
//! own: rows 1 to 4 with R1 and E1 alone, rows 5 to 18 with the whole lab (DNS, both
//! companies, the cloud). The receiving client's Via chain must be the article's path, by
//! interface name and by address.

mod common;

use common::Suite;

use siplab_runner::{Outcome, run_rows};

use common::{TestLab, received};

/// Rows 1 to 4: alice to adam, both of R1, placed where the path table says.
async fn row(slot: u8, id: u32) {
    let lab = TestLab::start(slot, &["R1", "E1"]).await;
    let path = lab.lab.path(id).cloned().expect("row");
    let sender = lab.client("alice@contoso.test", path.from.at).await;
    let receiver = lab.client("adam@contoso.test", path.to.at).await;
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

rows! {
    Suite::SiteRows, row:
    path_01_a1i_to_a1i = 1;
    path_02_a1i_to_a1e = 2;
    path_03_a1e_to_a1i = 3;
    path_04_a1e_to_a1e = 4;
}

async fn whole_row(slot: u8, id: u32) {
    let run = common::whole_lab(slot).await;
    let path = run.lab.path(id).cloned().expect("row");
    let rows = run_rows(&run, &[path]).await;
    let r = &rows[0];
    assert_eq!(
        r.outcome,
        Outcome::Match,
        "row {id}: expected {:?}, observed {:?}",
        r.expected,
        r.observed
    );
    run.sign_out_all().await;
}

rows! {
    Suite::WholeRows, whole_row:
    path_05_a1i_to_b1e = 5;
    path_06_a1e_to_b1e = 6;
    path_07_b1e_to_a1i = 7;
    path_08_b1e_to_a1e = 8;
    path_09_a1i_to_a2i = 9;
    path_10_a1i_to_a2e = 10;
    path_11_a1e_to_a2i = 11;
    path_12_a1e_to_a2e = 12;
    path_13_a1i_to_b2e = 13;
    path_14_a1e_to_b2e = 14;
    path_15_b1e_to_a2i = 15;
    path_16_b1e_to_a2e = 16;
    path_17_b1e_to_b2e = 17;
    path_18_b1e_to_b1e = 18;
}
