//! The committed docker-compose.yml is what `siplab compose` writes from the topology, so
//! the containers sit exactly where deploy/lab.toml says.

use std::process::Command;

#[test]
fn docker_compose_yml_is_generated_from_the_topology() {
    let out = Command::new(env!("CARGO_BIN_EXE_siplab"))
        .arg("compose")
        .output()
        .expect("run siplab");
    assert!(out.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .unwrap();
    assert!(
        committed == String::from_utf8_lossy(&out.stdout),
        "docker-compose.yml is stale: run `cargo run --bin siplab -- compose > docker-compose.yml`"
    );
    // Every placement's client and every node is there, at its address.
    for name in [
        "siplab-r1",
        "siplab-e1",
        "siplab-ce",
        "siplab-r1b",
        "siplab-cp1",
        "siplab-cp2",
        "siplab-b3e",
        "siplab-dns",
        "siplab-a1i",
        "siplab-b2e",
    ] {
        assert!(
            committed.contains(&format!("container_name: {name}\n")),
            "{name}"
        );
    }
    assert!(
        committed.contains("ipv4_address: 203.0.113.11"),
        "E1x on the internet"
    );
}
