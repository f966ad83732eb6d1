//! siplab-load against siplab's own front end (R1), started in this process on loopback
//! slots 240-244 with a topology that has the load's users: every scenario must run clean at
//! a modest rate, and a proxy that refuses the users must stop the run with the reason.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use siplab_node::{Certs, RunningNode, start_node};
use siplab_pki::LabCa;
use siplab_proxy::ProxyConfig;
use siplab_topology::Lab;

const LAB: &str = include_str!("../../../deploy/lab.toml");

/// The reference lab with `users` more class A users of contoso.test (user0, user1, ...).
fn lab_with_users(users: usize, slot: u8) -> Lab {
    let mut text = LAB.to_owned();
    for i in 0..users {
        text.push_str(&format!(
            "\n[[user]]\naor = \"user{i}@contoso.test\"\nclass = \"A\"\nhome = \"R1\"\n"
        ));
    }
    Lab::from_toml_str(&text)
        .expect("the reference lab with load users")
        .localized(slot)
}

struct FrontEnd {
    _node: RunningNode,
    addr: SocketAddr,
    certs: tempfile::TempDir,
    slot: u8,
}

/// R1 of `lab`, and a directory holding its CA (ca.pem, ca.key) for the generator.
async fn front_end(lab: &Lab, slot: u8) -> FrontEnd {
    let ca = LabCa::generate().expect("a lab CA");
    let certs = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(siplab_pki::ca_path(certs.path()), ca.cert_pem()).expect("ca.pem");
    std::fs::write(certs.path().join("ca.key"), ca.key_pem()).expect("ca.key");
    let node = start_node(
        lab,
        "R1",
        &Certs::Authority(Arc::new(ca)),
        ProxyConfig::default(),
    )
    .await
    .expect("R1 starts");
    let addr = node.listening[0].1;
    FrontEnd {
        _node: node,
        addr,
        certs,
        slot,
    }
}

/// Runs the generator against `fe` with `extra` flags; its exit status and JSON lines.
async fn load(fe: &FrontEnd, extra: &[&str]) -> (bool, Vec<Value>, String) {
    let mut args: Vec<String> = vec![
        "--proxy".into(),
        fe.addr.to_string(),
        "--server-name".into(),
        "fe01.contoso.test".into(),
        "--certs".into(),
        fe.certs.path().display().to_string(),
        "--bind".into(),
        format!("127.1.{}.101", fe.slot),
        "--pid".into(),
        std::process::id().to_string(),
        "--timeout".into(),
        "5".into(),
        "--threads".into(),
        "1".into(),
        "--json".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_siplab-load"))
            .args(&args)
            .output()
            .expect("siplab-load runs")
    })
    .await
    .expect("the generator's thread");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect();
    (output.status.success(), lines, stderr)
}

fn phase<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["phase"] == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:#?}"))
}

/// A step (or sign-in) in which every unit succeeded, with the proxy's memory.
fn assert_clean(step: &Value, sent: u64) {
    assert_eq!(step["sent"], sent, "{step:#}");
    assert_eq!(step["successes"], sent, "{step:#}");
    assert!(
        step["failures"].as_object().is_some_and(|f| f.is_empty()),
        "{step:#}"
    );
    assert!(step["achieved_rate"].as_f64().unwrap() > 0.0, "{step:#}");
    assert!(
        step["latency_ms"]["p99"].as_f64().unwrap() > 0.0,
        "{step:#}"
    );
    assert!(step["proxy"]["rss_kib"].as_u64().unwrap() > 0, "{step:#}");
}

/// A step long enough (over a second) for CPU figures: the proxy's cost per unit.
fn assert_costed(step: &Value) {
    assert!(
        step["proxy"]["cpu_us_per_unit"].as_f64().unwrap() > 0.0,
        "{step:#}"
    );
    assert!(
        step["generator"]["cores"].as_f64().unwrap() > 0.0,
        "{step:#}"
    );
}

const STEP: &[&str] = &["--rates", "100,200", "--duration", "1.5", "--warmup", "0.2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_random_registered_users() {
    let fe = front_end(&lab_with_users(20, 240), 240).await;
    let mut args = vec!["--users", "20", "--callers", "3", "--scenario", "message"];
    args.extend(STEP);
    let (ok, lines, stderr) = load(&fe, &args).await;
    assert!(ok, "{stderr}");
    assert_eq!(phase(&lines, "connect")["connections"], 23);
    assert_clean(phase(&lines, "sign-in"), 20);
    let steps: Vec<&Value> = lines.iter().filter(|l| l["phase"] == "step").collect();
    assert_eq!(steps.len(), 2, "{stderr}");
    assert_clean(steps[0], 150);
    assert_clean(steps[1], 300);
    assert_costed(steps[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_through_with_ack_and_bye_along_the_record_route() {
    let fe = front_end(&lab_with_users(10, 241), 241).await;
    let mut args = vec!["--users", "10", "--callers", "2", "--scenario", "call"];
    args.extend(STEP);
    let (ok, lines, stderr) = load(&fe, &args).await;
    assert!(ok, "{stderr}");
    let step = lines
        .iter()
        .rfind(|l| l["phase"] == "step")
        .expect("a step");
    assert_clean(step, 300);
    assert_costed(step);
    assert!(
        step["bye_latency_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{step:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callees_refresh_their_registrations() {
    let fe = front_end(&lab_with_users(10, 242), 242).await;
    let mut args = vec!["--users", "10", "--scenario", "register"];
    args.extend(STEP);
    let (ok, lines, stderr) = load(&fe, &args).await;
    assert!(ok, "{stderr}");
    assert_eq!(phase(&lines, "connect")["connections"], 10);
    let step = lines
        .iter()
        .rfind(|l| l["phase"] == "step")
        .expect("a step");
    assert_clean(step, 300);
    assert_costed(step);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_only_reports_the_memory_per_user() {
    let fe = front_end(&lab_with_users(50, 243), 243).await;
    let (ok, lines, stderr) = load(&fe, &["--users", "50", "--scenario", "register-only"]).await;
    assert!(ok, "{stderr}");
    assert_clean(phase(&lines, "sign-in"), 50);
    let memory = phase(&lines, "memory");
    assert_eq!(memory["users"], 50);
    assert!(
        memory["registered"]["rss_kib"].as_u64().unwrap() > 0,
        "{memory:#}"
    );
    assert!(memory["bytes_per_user_rss"].is_number(), "{memory:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_the_proxy_does_not_know_stop_the_run_with_the_reason() {
    let fe = front_end(&lab_with_users(0, 244), 244).await;
    let (ok, lines, stderr) = load(&fe, &["--users", "3", "--scenario", "message"]).await;
    assert!(!ok);
    assert_eq!(phase(&lines, "sign-in")["failures"]["404"], 3, "{stderr}");
    assert!(stderr.contains("only 0 of 3 users registered"), "{stderr}");
}

/// The callees by name: the reference lab's own users, as the smoke test against a
/// siplab-frontend started from the command line uses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_users_by_name() {
    let fe = front_end(&lab_with_users(0, 245), 245).await;
    let args = [
        "--user-names",
        "alice",
        "--caller-names",
        "adam",
        "--scenario",
        "message",
        "--rates",
        "50",
        "--duration",
        "1",
        "--warmup",
        "0",
    ];
    let (ok, lines, stderr) = load(&fe, &args).await;
    assert!(ok, "{stderr}");
    assert_clean(phase(&lines, "step"), 50);
}
