//! The `siplab-client` binary: its help, and one real run against a stand-in front end on
//! R1's address of slot 200, checking the JSON lines it prints.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use bytes::Bytes;
use serde_json::Value;
use siplab_pki::{NodeIdentity, UserIdentity, ca_path, node_cert_paths, write_lab_certs};
use siplab_sip::{HeaderName, Message, Method, reason_phrase};
use siplab_topology::Lab;
use siplab_transport::{Destination, Event, Limits, TlsConfig, Transport};

const BIN: &str = env!("CARGO_BIN_EXE_siplab-client");
/// Listed in the top-level tests' slot table (tests/common, `Suite::CrateClient`).
const SLOT: u8 = 200;

#[test]
fn help_names_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for option in [
        "--topology",
        "--slot",
        "--certs",
        "--user",
        "--at",
        "--server",
        "--server-name",
        "--no-autodiscover",
        "--message-to",
        "--text",
        "--call",
        "--options",
        "--listen-for",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    let out = Command::new(BIN)
        .args(["--user", "alice@contoso.test", "--at", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Answers REGISTER with 200, then sends a MESSAGE of its own down the client's flow; any
/// other request gets 404.
async fn front_end(
    transport: Transport,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    addr: SocketAddr,
) {
    while let Some(event) = events.recv().await {
        let Event::Message { msg, conn } = event else {
            continue;
        };
        if !msg.is_request() {
            continue;
        }
        let flow = Destination::Flow(conn.flow);
        let register = msg.method() == Some(Method::Register);
        let code = if register { 200 } else { 404 };
        let mut resp = Message::response_to(&msg, code, reason_phrase(code));
        for c in msg.headers.get_all(&HeaderName::Contact) {
            resp.headers.push(HeaderName::Contact, c.value.clone());
        }
        transport.send(&flow, resp.to_bytes()).await.unwrap();
        if register {
            let text = format!(
                "MESSAGE sip:alice@contoso.test SIP/2.0\r\n\
                 Via: SIP/2.0/TLS {addr};branch=z9hG4bKfe1\r\n\
                 Via: SIP/2.0/TLS 127.3.{SLOT}.201:5555;branch=z9hG4bKa1e;rport=5555\r\n\
                 Max-Forwards: 69\r\nFrom: <sip:adam@contoso.test>;tag=a\r\n\
                 To: <sip:alice@contoso.test>\r\nCall-ID: cli-test\r\nCSeq: 1 MESSAGE\r\n\
                 Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nyo"
            );
            transport.send(&flow, Bytes::from(text)).await.unwrap();
        }
    }
}

/// R1's SIP socket in this slot: where the stand-in listens.
fn r1_socket() -> SocketAddr {
    let lab = Lab::reference().unwrap().localized(SLOT);
    let r1 = lab.interface("R1").unwrap();
    SocketAddr::new(r1.ip(), r1.ports.sip.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_sends_and_prints_what_it_receives() {
    let certs = tempfile::tempdir().unwrap();
    let r1 = r1_socket();
    write_lab_certs(
        certs.path(),
        &[NodeIdentity {
            name: "R1".into(),
            dns_names: vec!["fe01.contoso.test".into(), "pool01.contoso.test".into()],
            ips: vec![r1.ip()],
        }],
        &[UserIdentity {
            aor: "alice@contoso.test".into(),
        }],
        false,
    )
    .unwrap();
    let paths = node_cert_paths(certs.path(), "R1");
    let tls = TlsConfig::from_files(&ca_path(certs.path()), &paths.cert, &paths.key).unwrap();
    let (transport, events) = Transport::new(Limits::default());
    transport.add_interface("R1", r1.ip(), tls);
    transport.listen("R1", r1).await.unwrap();
    tokio::spawn(front_end(transport, events, r1));
    // The client finds R1 the way real clients do: through the lab's DNS.
    let _dns = siplab_dns::DnsServer::start(&Lab::reference().unwrap().localized(SLOT))
        .await
        .unwrap();

    let dir = certs.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["--slot", &SLOT.to_string(), "--certs"])
            .arg(dir)
            .args([
                "--user",
                "alice@contoso.test",
                "--at",
                "internal",
                "--no-autodiscover",
            ])
            .args(["--message-to", "adam@contoso.test", "--text", "hi"])
            .args(["--listen-for", "1"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}\n{stderr}");
    let found = &lines[0];
    assert_eq!(found["event"], "discovered");
    assert_eq!(found["via"], "_sipinternaltls._tcp.contoso.test");
    let lines = &lines[1..];

    let reg = &lines[0];
    assert_eq!(reg["event"], "registered");
    assert_eq!(reg["aor"], "alice@contoso.test");
    assert_eq!(reg["status"], 200);
    assert_eq!(reg["via_servers"][0]["name"], "pool01.contoso.test");
    assert_eq!(reg["via_servers"][0]["addr"], r1.to_string());
    let local: SocketAddr = reg["local"].as_str().unwrap().parse().unwrap();
    let a1i: IpAddr = format!("127.1.{SLOT}.101").parse().unwrap();
    assert_eq!(local.ip(), a1i, "bound to A1i's address");

    let resp = &lines[1];
    assert_eq!(resp["event"], "response");
    assert_eq!(
        (resp["method"].as_str(), resp["status"].as_u64()),
        (Some("MESSAGE"), Some(404))
    );

    let got = &lines[2];
    assert_eq!(got["event"], "received");
    assert_eq!(got["method"], "MESSAGE");
    assert_eq!(
        (got["from"].as_str(), got["to"].as_str()),
        (Some("adam@contoso.test"), Some("alice@contoso.test"))
    );
    assert_eq!(got["call_id"], "cli-test");
    assert_eq!(got["body"], "yo");
    let via: Vec<(String, Value)> = got["via"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["sent_by"].as_str().unwrap().to_owned(), v["name"].clone()))
        .collect();
    assert_eq!(
        via,
        [
            (r1.to_string(), Value::from("R1")),
            (format!("127.3.{SLOT}.201:5555"), Value::from("A1e")),
        ]
    );
}
