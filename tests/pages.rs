//! Seeing the paths with the tools people use: the live page (`siplab up --web`) in a real
//! browser draws a message's ladder as it passes, and the nodes' HEPv3 export, received by
//! Debian's sngrep and read back from its pcap with tshark, has row 17's MESSAGE on every
//! hop with its real addresses. Without chromium, sngrep or tshark a test says it skipped,
//! and fails under `SIPLAB_REQUIRE_TOOLS=1`.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::Duration;

use common::browser::Browser;
use common::{Suite, TestLab, have_tool};
use serde_json::json;
use siplab_topology::At;
use siplab_transport::hep::{self, HepTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_draws_a_message_as_it_passes() {
    let t = TestLab::start(Suite::Pages.slot(0), &["R1", "E1"]).await;
    let wire = siplab_runner::Wire::attach(&t.nodes, None, 1000)
        .await
        .unwrap();
    let addr = siplab_runner::serve_live(t.lab.clone(), &wire, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{addr}/");
    // The browser is driven from a thread of its own: its calls block.
    let (opened_tx, opened) = tokio::sync::oneshot::channel();
    let (call_tx, call_rx) = std::sync::mpsc::channel::<String>();
    let browser = std::thread::spawn(move || {
        let Some(mut page) = Browser::open(&url, (1600, 900)) else {
            let _ = opened_tx.send(false);
            return None;
        };
        page.wait_for(
            "document.body.dataset.live === 'open'",
            Duration::from_secs(10),
        );
        let _ = opened_tx.send(true);
        let call_id = call_rx.recv().ok()?;
        let section = format!("section[data-call-id={}]", json!(call_id));
        let took = page.wait_for(
            &format!(
                "document.querySelectorAll({s} + ' .arrow.request').length === 3 && document.querySelectorAll({s} + ' .arrow.response').length === 3",
                s = json!(section)
            ),
            Duration::from_secs(5),
        );
        let arrows = page.eval(&format!(
            "[...document.querySelectorAll({} + ' .arrow')].map(a => [a.dataset.from, a.dataset.to, a.dataset.label])",
            json!(section)
        ));
        let hidden = page.eval(&format!(
            "f.value='nobody@nowhere.test'; apply(); document.querySelector({}).classList.contains('hidden')",
            json!(section)
        ));
        page.eval("f.value=''; apply(); true");
        page.screenshot(
            &section,
            &Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages/live.png"),
        );
        Some((took, arrows, hidden))
    });
    if !opened.await.unwrap_or(false) {
        return;
    }
    // Opened first, then sent: what the page shows came while it watched.
    let alice = t.client("alice@contoso.test", At::External).await;
    let adam = t.client("adam@contoso.test", At::Internal).await;
    let sent = adam
        .send_message("alice@contoso.test", "watch this")
        .await
        .unwrap();
    assert_eq!(sent.status, 200);
    let got = alice
        .next_received(common::WAIT)
        .await
        .expect("alice got it");
    call_tx.send(got.call_id.clone()).unwrap();
    let (took, arrows, hidden) = tokio::task::spawn_blocking(move || browser.join().unwrap())
        .await
        .unwrap()
        .expect("the browser saw the call");
    println!("the live page drew the MESSAGE {took:?} after it was answered");
    let arrows = arrows.as_array().unwrap().clone();
    // A1i -> R1 -> E1i, then E1x -> A1e; and the 200s back.
    let requests: Vec<_> = arrows.iter().filter(|a| a[2] == json!("MESSAGE")).collect();
    assert_eq!(requests.len(), 3, "{arrows:#?}");
    assert_eq!(requests[0][0], json!("A1i"));
    assert_eq!(requests[2][1], json!("A1e"));
    assert!(
        arrows.iter().any(|a| a[2] == json!("200 OK")),
        "{arrows:#?}"
    );
    assert_eq!(hidden, json!(true), "the filter hides other users' calls");
}

/// The collector's address: the test's own loopback address, outside every lab network.
fn collector(slot: u8) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 9, slot, 1).into(), 9060)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sngrep_receives_row_17_on_every_hop_over_hep() {
    if !have_tool("sngrep") || !have_tool("tshark") {
        return;
    }
    let slot = Suite::Hep.slot(0);
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("out.pcap");
    let target = HepTarget::udp(collector(slot));
    // As the issue runs it: sngrep with no interface, no UI, listening for HEP, to a pcap.
    let mut sngrep = Command::new("sngrep")
        .args(["-N", "-q", "-L", &target.to_string(), "-O"])
        .arg(&pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sngrep");
    let nodes = ["R1", "E1", "R2", "E2", "CE", "CP1", "CP2"];
    let t = TestLab::start(slot, &nodes).await;
    for node in &t.nodes {
        // Each node its own exporter, as each program with --hep has.
        node.capture_into(hep::start(target, siplab_node::HEP_QUEUE).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let path = t.lab.path(17).unwrap().clone();
    let bruno = t.client("bruno@fabrikam.test", path.to.at).await;
    let ben = t.client("ben@contoso.test", path.from.at).await;
    let sent = ben
        .send_message("bruno@fabrikam.test", "row 17")
        .await
        .unwrap();
    assert_eq!(sent.status, 200);
    let got = bruno
        .next_received(common::WAIT)
        .await
        .expect("bruno got it");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SAFETY: kill(2) on the child's own pid: SIGTERM makes sngrep close its pcap.
    unsafe { libc::kill(sngrep.id() as i32, libc::SIGTERM) };
    let status = sngrep.wait().unwrap();
    assert!(pcap.is_file(), "sngrep wrote no pcap ({status})");
    let seen = common::tshark_sip(&pcap, &got.call_id);
    // Each hop's MESSAGE once per capturing node (the sender's and the receiver's); as hops:
    let hops: BTreeSet<(&str, &str)> = seen
        .iter()
        .filter(|s| s.method == "MESSAGE")
        .map(|s| (s.src.as_str(), s.dst.as_str()))
        .collect();
    let senders: BTreeSet<String> = hops
        .iter()
        .map(|(src, _)| t.name_of(src.rsplit_once(':').unwrap().0))
        .collect();
    let article: BTreeSet<String> = path.hops[..path.hops.len() - 1]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(hops.len(), 13, "{seen:#?}");
    assert_eq!(senders, article, "{seen:#?}");
    let answers = seen.iter().filter(|s| s.status == "200").count();
    assert!(answers >= 13, "{seen:#?}");
}
