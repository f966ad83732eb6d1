//! The `siplab-dns` binary: its help, and a real run on slot 239 that answers from the view
//! of the asker and stops on SIGTERM.

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use siplab_dns::discovery::LabResolver;
use siplab_topology::Lab;

const BIN: &str = env!("CARGO_BIN_EXE_siplab-dns");

#[test]
fn help_names_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in ["--topology", "--slot"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[tokio::test]
async fn serves_until_sigterm() {
    let lab = Lab::reference().unwrap().localized(239);
    let child = tokio::process::Command::new(BIN)
        .args(["--slot", "239"])
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let a1i = lab.placement("A1i").unwrap().address;
    let resolver = LabResolver::for_source(&lab, IpAddr::V4(a1i)).unwrap();
    let r1 = lab.interface("R1").unwrap().ip();
    let mut answer = None;
    for _ in 0..50 {
        if let Ok(addresses) = resolver.lookup_a("sip.contoso.test").await {
            answer = addresses.first().copied().map(IpAddr::V4);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, Some(r1), "the LAN view of sip.contoso.test");

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert_eq!(log.matches("listening").count(), 4, "{log}");
    assert!(log.contains("shutting down"), "{log}");
}
