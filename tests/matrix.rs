//! Every row of the path table and its mirror, in one lab on loopback: the Via chain each
//! receiver observed is the one the article describes (and, for the lab's own rows 19 to 25,
//! the one its capture shows).

mod common;

use common::Suite;

use std::sync::Arc;

use siplab_node::Certs;
use siplab_pki::LabCa;
use siplab_runner::{LabRun, Outcome, run_rows};
use siplab_topology::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_rows_and_their_mirrors_match_the_article() {
    let lab = Lab::reference().unwrap().localized(Suite::Matrix.slot(0));
    let certs = Certs::Authority(Arc::new(LabCa::generate().unwrap()));
    let run = LabRun::start(lab.clone(), certs).await.expect("lab starts");
    let rows = run_rows(&run, &lab.paths_with_mirrors()).await;
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome != Outcome::Match)
        .map(|r| {
            format!(
                "{}: expected {:?}, observed {:?} ({:?})",
                r.scenario, r.expected, r.observed, r.outcome
            )
        })
        .collect();
    for r in &rows {
        println!("{:<16} {:?} -> {:?}", r.scenario, r.observed, r.outcome);
    }
    // Section 5's 18 rows and their mirrors, the cloud-only tenant's rows 19 to 23 and
    // contoso's pool's 24 and 25.
    assert_eq!(rows.len(), 43);
    assert!(bad.is_empty(), "{bad:#?}");
    run.sign_out_all().await;
}
