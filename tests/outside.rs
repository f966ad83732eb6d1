//! Outside SIP software in the lab, each driven by the README's commands as they stand:
//!
//! - baresip ("Pointing an outside SIP client at the lab": `siplab certs`, `siplab up`,
//!   `siplab client-config baresip`, `baresip -f`): MESSAGEs and calls in both directions
//!   between baresip and siplab's own clients, each receiver's Via chain asserted against the
//!   path table, and a cloud user's 301 as baresip sees it;
//! - Kamailio as a federated company of its own ("A federation partner of your own"):
//!   MESSAGEs between its user and alice, and ben in the cloud, both ways over mutual TLS,
//!   and E1 refusing a Kamailio whose certificate names another host.
//!
//! Each needs its Debian package; without it the test says it skipped, unless
//! `SIPLAB_REQUIRE_TOOLS=1` (as `.ci/run` sets), where a missing tool fails it. The tests own
//! loopback slot 0, the README's (one at a time: [`SLOT_0`]), and the ctrl_tcp ports 4444 to
//! 4446.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siplab_node::{Certs, Discover, client_config};
use siplab_runner::{expected_vias, name_of};
use siplab_sip::Message;
use siplab_topology::{At, Lab};
use siplab_ua::Ua;

/// How long a step may take: a sign-in over several TLS hops, a call set up.
const STEP: Duration = Duration::from_secs(20);

/// K3x in the loopback profile's slot 0: where the README's Kamailio listens.
const K3: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 3, 0, 40)),
    5061,
);

/// Whether `tool` is on the PATH; when it is not, says so, and fails under
/// `SIPLAB_REQUIRE_TOOLS=1`.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var("SIPLAB_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} is not installed and SIPLAB_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIPPED: {tool} is not installed (apt-get install {tool})");
    }
    found
}

/// The shell commands of the README's section `heading` (up to the next heading), in order.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find(&format!("{heading}\n"))
        .unwrap_or_else(|| panic!("the README's section {heading:?}"));
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in section.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            l if in_sh && !l.is_empty() => commands.push(l.to_owned()),
            _ => {}
        }
    }
    commands
}

/// The README's slot is one lab at a time.
static SLOT_0: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The programs the test started, each in a process group of its own; every group is ended
/// (SIGTERM, then SIGKILL) when the test ends, however it ends, the last started first (a
/// client signs out while its server still answers).
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in self.0.iter_mut().rev() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed() < STEP {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
            let _ = child.wait();
        }
    }
}

/// Polls `ready` every 100 ms until it holds or `STEP` has passed.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < STEP, "{what}: not within {STEP:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One baresip, driven through its ctrl_tcp module (JSON in netstrings), and what it printed.
struct Baresip {
    ctrl: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Sends one command and returns the `data` of its response (events before it are skipped).
    fn command(&self, command: &str, params: &str) -> String {
        let mut s = TcpStream::connect(self.ctrl).expect("baresip's ctrl_tcp");
        s.set_read_timeout(Some(STEP)).unwrap();
        let json = serde_json::json!({"command": command, "params": params, "token": "t"});
        let body = json.to_string();
        write!(s, "{}:{body},", body.len()).unwrap();
        loop {
            let mut len = Vec::new();
            let mut byte = [0u8; 1];
            while s.read_exact(&mut byte).is_ok() && byte[0] != b':' {
                len.push(byte[0]);
            }
            let n: usize = String::from_utf8_lossy(&len).parse().expect("a netstring");
            let mut frame = vec![0u8; n + 1];
            s.read_exact(&mut frame).expect("a whole netstring");
            let v: serde_json::Value = serde_json::from_slice(&frame[..n]).expect("JSON");
            if v["response"] == true {
                return v["data"].as_str().unwrap_or_default().to_owned();
            }
        }
    }

    /// What baresip printed so far, without its colour codes.
    fn output(&self) -> String {
        let raw = std::fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&raw);
        let mut plain = String::with_capacity(text.len());
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // ESC [ ... m
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                plain.push(c);
            }
        }
        plain
    }

    /// Makes the contact module's current contact `aor` (for `message`).
    fn select_contact(&self, aor: &str) {
        // The list does not wrap: back to its start, then forward.
        let current = format!("> {}", aor.split('@').next().unwrap_or(aor));
        if self.command("contacts", "").contains(&current) {
            return;
        }
        for step in ["contact_prev", "contact_next"] {
            for _ in 0..16 {
                if self.command(step, "").contains(aor) {
                    return;
                }
            }
        }
        panic!("no contact {aor}");
    }

    /// The requests of `method` baresip received (its `-s` trace) whose text holds `marker`.
    fn received(&self, method: &str, marker: &str) -> Vec<Message> {
        let out = self.output();
        out.split("\n#\n")
            .filter_map(|block| {
                // "TLS from -> to", then the message.
                let (_, msg) = block.split_once('\n')?;
                let msg = msg.trim_start();
                (msg.starts_with(&format!("{method} ")) && msg.contains(marker)).then_some(msg)
            })
            .filter_map(|msg| {
                let msg = msg.replace("\r\n", "\n").replace('\n', "\r\n");
                Message::parse(bytes::Bytes::from(msg)).ok()
            })
            .collect()
    }
}

/// Runs `f`, which waits on baresip or sleeps, without holding up the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// The Via chain of a request, by the lab's names, top first.
fn chain(lab: &Lab, msg: &Message) -> Vec<String> {
    let checked = msg.clone().validate().expect("a valid request");
    checked
        .vias
        .iter()
        .map(|v| name_of(lab, &v.host.to_string()))
        .collect()
}

fn row(lab: &Lab, id: u32) -> Vec<String> {
    expected_vias(lab.path(id).expect("row"))
}

/// Runs the commands of the README's section `heading` in `dir` (where `deploy` is the
/// repository's), in order: a command ending in `&` is started and waited for (`siplab up`
/// until it says the lab is up, baresip until its ctrl_tcp listens, Kamailio until K3's port
/// does); any other must succeed.
fn run_readme(heading: &str, dir: &Path, started: &mut Started) -> Vec<(PathBuf, Baresip)> {
    let bin = Path::new(env!("CARGO_BIN_EXE_siplab")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let deploy = dir.join("deploy");
    if !deploy.exists() {
        std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy"), deploy)
            .unwrap();
    }
    let mut baresips = Vec::new();
    for (i, line) in readme_commands(heading).into_iter().enumerate() {
        let (command, background) = match line.strip_suffix('&') {
            Some(c) => (c.trim().to_owned(), true),
            None => (line.clone(), false),
        };
        let log = dir.join(format!("step{i}.log"));
        let mut cmd = Command::new("bash");
        // A background program replaces its shell, so that ending its group ends it.
        let script = if background {
            format!("exec {command}")
        } else {
            command.clone()
        };
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("PATH", &path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join(format!("step{i}.err"))).unwrap());
        if !background {
            let status = cmd.status().expect("bash");
            let err = std::fs::read_to_string(dir.join(format!("step{i}.err"))).unwrap_or_default();
            assert!(status.success(), "`{line}` failed: {err}");
            continue;
        }
        started.0.push(cmd.spawn().expect("started"));
        let err_log = dir.join(format!("step{i}.err"));
        let child = started.0.last_mut().expect("just started");
        // Waiting for a program that has already ended would only time out.
        let mut alive = || {
            let ended = child.try_wait().ok().flatten();
            let err = || std::fs::read_to_string(&err_log).unwrap_or_default();
            assert!(ended.is_none(), "`{line}` ended ({ended:?}): {}", err());
        };
        if command.starts_with("siplab up") {
            wait_for("siplab up", || {
                alive();
                std::fs::read_to_string(&log).is_ok_and(|o| o.contains("lab up"))
            });
        } else if let Some(conf) = command.strip_prefix("baresip -f ") {
            let conf = dir.join(conf.split_whitespace().next().unwrap());
            let config = std::fs::read_to_string(conf.join("config")).expect("its config");
            let ctrl: SocketAddr = config
                .lines()
                .find_map(|l| l.strip_prefix("ctrl_tcp_listen"))
                .expect("a ctrl_tcp listener")
                .trim()
                .parse()
                .unwrap();
            wait_for("baresip's ctrl_tcp", || {
                alive();
                TcpStream::connect(ctrl).is_ok()
            });
            baresips.push((conf, Baresip { ctrl, log }));
        } else if command.starts_with("kamailio ") {
            wait_for("Kamailio's TLS listener", || {
                alive();
                TcpStream::connect(K3).is_ok()
            });
        }
    }
    baresips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_signs_in_messages_and_calls_through_the_lab() {
    if !have_tool("baresip") {
        return;
    }
    let _slot = SLOT_0.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    let baresips = blocking(|| {
        run_readme(
            "### Pointing an outside SIP client at the lab",
            work.path(),
            &mut started,
        )
    });
    let by_dir = |name: &str| {
        &baresips
            .iter()
            .find(|(d, _)| d.ends_with(name))
            .unwrap_or_else(|| panic!("the README starts {name}"))
            .1
    };
    let (adam, alice, bella) = (
        by_dir("baresip-adam"),
        by_dir("baresip-alice"),
        by_dir("baresip-bella"),
    );
    let lab = Lab::reference().unwrap().localized(0);
    let certs = Certs::Dir(work.path().join("certs"));

    // Signed in: adam through E1 (A1e), alice at R1 (A1i), each found by RFC 3263 DNS.
    for (who, b) in [("adam", adam), ("alice", alice)] {
        blocking(|| {
            wait_for(&format!("baresip {who} registered"), || {
                b.output()
                    .contains(&format!("{who}@contoso.test: {{0/TLS/v4}} 200 OK"))
            })
        });
    }
    // The cloud user pointed at its company meets the front end's 301, and stays there.
    blocking(|| {
        wait_for("bella's 301", || {
            bella.output().contains("301 Moved Permanently")
        })
    });
    assert!(
        !bella
            .output()
            .contains("bella@contoso.test: {0/TLS/v4} 200 OK")
    );

    // siplab's own client: ben, a cloud user on the internet (through his company's 301).
    let (cfg, _) = client_config(
        &lab,
        &certs,
        "ben@contoso.test",
        At::External,
        Discover::DnsOnly,
    )
    .await
    .expect("ben's configuration");
    let ben = Ua::start(cfg).await.expect("ben starts");
    ben.wait_registered(STEP).await.expect("ben signed in");

    // MESSAGE, baresip to baresip: rows 2 and 3.
    blocking(|| {
        alice.select_contact("adam@contoso.test");
        alice.command("message", "row-2-from-alice");
        adam.select_contact("alice@contoso.test");
        adam.command("message", "row-3-from-adam");
    });
    for (b, marker, id) in [(adam, "row-2-from-alice", 2), (alice, "row-3-from-adam", 3)] {
        blocking(|| wait_for(marker, || !b.received("MESSAGE", marker).is_empty()));
        let msg = b.received("MESSAGE", marker).remove(0);
        assert_eq!(chain(&lab, &msg), row(&lab, id), "row {id}");
    }

    // MESSAGE, siplab to baresip: rows 8 (B1e -> A1e) and 7 (B1e -> A1i).
    for (to, b, id) in [
        ("adam@contoso.test", adam, 8),
        ("alice@contoso.test", alice, 7),
    ] {
        let marker = format!("row-{id}-from-ben");
        let out = ben.send_message(to, &marker).await.expect("sent");
        assert_eq!(out.status, 200, "{out:?}");
        blocking(|| wait_for(&marker, || !b.received("MESSAGE", &marker).is_empty()));
        let msg = b.received("MESSAGE", &marker).remove(0);
        assert_eq!(chain(&lab, &msg), row(&lab, id), "row {id}");
    }

    // MESSAGE, baresip to siplab: rows 6 (A1e -> B1e) and 5 (A1i -> B1e).
    for (b, id) in [(adam, 6), (alice, 5)] {
        let marker = format!("row-{id}-to-ben");
        blocking(|| {
            b.select_contact("ben@contoso.test");
            b.command("message", &marker);
        });
        let got = common::received(&ben).await;
        assert_eq!(got.body, marker);
        assert_eq!(
            got.vias
                .iter()
                .map(|v| name_of(&lab, &v.host))
                .collect::<Vec<_>>(),
            row(&lab, id),
            "row {id}"
        );
    }

    // A call from baresip (adam, A1e) to siplab (ben): INVITE, ACK and BYE on row 6's path.
    blocking(|| {
        adam.command("dial", "sip:ben@contoso.test");
    });
    let call = ben.next_call(STEP).await.expect("ben is called");
    assert!(call.is_established());
    let mut seen = Vec::new();
    for method in ["INVITE", "ACK"] {
        let got = common::received(&ben).await;
        assert_eq!(got.method.to_string(), method);
        seen.push(got);
    }
    blocking(|| {
        adam.command("hangup", "");
    });
    seen.push(common::received(&ben).await);
    for got in &seen {
        let names: Vec<String> = got.vias.iter().map(|v| name_of(&lab, &v.host)).collect();
        assert_eq!(names, row(&lab, 6), "{}", got.method);
    }
    assert_eq!(seen[2].method.to_string(), "BYE");

    // A call from siplab (ben) to baresip (alice, A1i, answering by itself): row 7.
    let call = ben
        .invite("alice@contoso.test")
        .await
        .expect("INVITE answered");
    assert!(call.is_established(), "{:?}", call.outcome());
    let out = call.bye().await.expect("BYE answered");
    assert_eq!(out.status, 200, "{out:?}");
    let call_id = String::from_utf8_lossy(out.response.call_id().unwrap()).into_owned();
    for method in ["INVITE", "ACK", "BYE"] {
        let got = alice.received(method, &call_id);
        assert_eq!(got.len(), 1, "{method} at baresip alice");
        assert_eq!(chain(&lab, &got[0]), row(&lab, 7), "{method}");
    }
    ben.shutdown().await;
    drop(started);
}

/// A client of a tailspin.test user, signed in at Kamailio (K3) with a certificate the lab CA
/// issues for it, from an internet address of its own; Kamailio's certificate must name
/// `server_name`.
async fn tailspin_user(lab: &Lab, certs: &Path, aor: &str, server_name: &str) -> Ua {
    let ca = siplab_pki::LabCa::read(certs).expect("the lab CA");
    let issued = ca
        .issue_user(&siplab_pki::UserIdentity { aor: aor.into() })
        .expect("a user certificate");
    let tls = siplab_transport::TlsConfig::from_pem(
        ca.cert_pem().as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .expect("TLS identity");
    let k3x = lab.interface("K3x").expect("K3x");
    let cfg = siplab_ua::UaConfig::new(
        aor,
        "127.3.0.41".parse().unwrap(),
        k3x.socket(siplab_topology::Purpose::Sip).unwrap(),
        server_name,
        tls,
    );
    let ua = Ua::start(cfg).await.expect("the tailspin client starts");
    ua.wait_registered(STEP)
        .await
        .expect("registered at Kamailio");
    ua
}

/// The Via chain a siplab client received, by the lab's names.
fn names(lab: &Lab, got: &siplab_ua::Received) -> Vec<String> {
    got.vias.iter().map(|v| name_of(lab, &v.host)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_is_a_federated_company_of_its_own() {
    if !have_tool("kamailio") {
        return;
    }
    let _slot = SLOT_0.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    blocking(|| {
        run_readme(
            "### A federation partner of your own",
            work.path(),
            &mut started,
        )
    });
    let lab = Lab::reference().unwrap().localized(0);
    let certs_dir = work.path().join("certs");
    let certs = Certs::Dir(certs_dir.clone());
    let sign_in = async |aor: &str, at: At| {
        let (cfg, _) = client_config(&lab, &certs, aor, at, Discover::DnsOnly)
            .await
            .expect("configuration");
        let ua = Ua::start(cfg).await.expect("starts");
        ua.wait_registered(STEP).await.expect("signed in");
        ua
    };
    let alice = sign_in("alice@contoso.test", At::Internal).await;
    let ben = sign_in("ben@contoso.test", At::External).await;
    let carol = tailspin_user(&lab, &certs_dir, "carol@tailspin.test", "sip.tailspin.test").await;
    let carol_at = "127.3.0.41".to_owned();
    let chain = |hops: &[&str]| hops.iter().map(|h| h.to_string()).collect::<Vec<_>>();

    // carol -> alice (on contoso's LAN), and back.
    let out = carol
        .send_message("alice@contoso.test", "from tailspin")
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let got = common::received(&alice).await;
    assert_eq!(names(&lab, &got), chain(&["R1", "E1i", "K3x", &carol_at]));
    let out = alice
        .send_message("carol@tailspin.test", "to tailspin")
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let got = common::received(&carol).await;
    assert_eq!(got.body, "to tailspin");
    assert_eq!(names(&lab, &got), chain(&["K3x", "E1x", "R1", "A1i"]));

    // carol -> ben (cloud-hosted): in through contoso's edge and front end, out to the
    // hosting provider; and back, through the hybrid partner as rows 15 to 17 go.
    let out = carol
        .send_message("ben@contoso.test", "to the cloud")
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let got = common::received(&ben).await;
    assert_eq!(
        names(&lab, &got),
        chain(&["CEx", "CP", "CEi", "E1x", "R1", "E1i", "K3x", &carol_at])
    );
    let out = ben
        .send_message("carol@tailspin.test", "from the cloud")
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let got = common::received(&carol).await;
    assert_eq!(
        names(&lab, &got),
        chain(&["K3x", "E1x", "R1", "E1i", "CEx", "CP", "CEi", "B1e"])
    );
    carol.shutdown().await;

    // The same Kamailio with a lab certificate for another name: E1 refuses what it relays
    // (section 7), and says why.
    let kamailio = started.0.pop().expect("Kamailio was started last");
    drop(Started(vec![kamailio]));
    let ca = siplab_pki::LabCa::read(&certs_dir).unwrap();
    let wrong = ca
        .issue_node(&siplab_pki::NodeIdentity {
            name: "wrong".into(),
            dns_names: vec!["sip.wrong.test".into()],
            ips: vec!["127.3.0.40".parse().unwrap()],
        })
        .unwrap();
    let k3 = work.path().join("k3");
    std::fs::write(k3.join("cert.pem"), &wrong.cert_pem).unwrap();
    std::fs::write(k3.join("key.pem"), &wrong.key_pem).unwrap();
    let line = readme_commands("### A federation partner of your own")
        .into_iter()
        .find(|l| l.starts_with("kamailio "))
        .unwrap();
    let mut cmd = Command::new("bash");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.arg("-c")
        .arg(format!("exec {}", line.trim_end_matches('&').trim()))
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    started.0.push(cmd.spawn().unwrap());
    blocking(|| wait_for("Kamailio again", || TcpStream::connect(K3).is_ok()));
    let carol = tailspin_user(&lab, &certs_dir, "carol@tailspin.test", "sip.wrong.test").await;
    let out = carol
        .send_message("alice@contoso.test", "as someone else")
        .await
        .unwrap();
    assert_eq!(out.status, 403, "{out:?}");
    let warning = common::warning(&out.response);
    assert!(
        warning.contains("sip.wrong.test") && warning.contains("tailspin.test"),
        "{warning}"
    );
    carol.shutdown().await;
    for ua in [alice, ben] {
        ua.shutdown().await;
    }
}
