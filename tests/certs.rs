//! `siplab certs` writes a full set that `openssl verify` accepts, and keeps its CA on a re-run.

mod common;

use std::path::Path;
use std::process::Command;

fn siplab(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_siplab"))
        .args(args)
        .output()
        .expect("run siplab");
    assert!(
        out.status.success(),
        "siplab {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn certs_writes_a_verifiable_set_and_keeps_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert!(siplab(&["certs", "--dir", d]).contains("created a new lab CA"));
    let ca = std::fs::read(dir.path().join("ca.pem")).unwrap();
    assert!(siplab(&["certs", "--dir", d]).contains("kept the existing lab CA"));
    assert_eq!(std::fs::read(dir.path().join("ca.pem")).unwrap(), ca);

    let leaves: Vec<String> = ["nodes", "users"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.path().join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let lab = siplab_topology::Lab::reference().unwrap();
    assert_eq!(
        leaves.len(),
        lab.interfaces().len() + lab.users().len(),
        "one per node interface (the partner's K3x too) and one per user"
    );
    assert!(leaves.iter().any(|l| l.ends_with("K3x.pem")), "{leaves:?}");
    if !common::have_tool("openssl") {
        return;
    }
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", &format!("{d}/ca.pem")])
        .args(&leaves)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let san = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(Path::new(d).join("users/alice@contoso.test.pem"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&san.stdout).contains("URI:sip:alice@contoso.test"));

    // For another slot, the interfaces carry that slot's addresses (and the containers').
    assert!(siplab(&["certs", "--dir", d, "--slot", "5"]).contains("kept the existing lab CA"));
    let san = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(Path::new(d).join("nodes/E1x.pem"))
        .output()
        .unwrap();
    let san = String::from_utf8_lossy(&san.stdout);
    assert!(
        san.contains("DNS:sip.contoso.test")
            && san.contains("IP Address:127.3.5.11")
            && san.contains("IP Address:203.0.113.11"),
        "{san}"
    );
}
