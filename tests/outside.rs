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

use common::{Suite, have_tool};

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
            let signal = |sig: &str| {
                let _ = Command::new("kill")
                    .args([sig, "--", &group])
                    .stderr(Stdio::null())
                    .status();
            };
            signal("-TERM");
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed() < STEP {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Whatever of the group is left (Kamailio's workers, say).
            signal("-KILL");
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
}

/// An outside client whose SIP trace the test reads.
trait Traced {
    /// The requests of `method` it received whose text holds `marker`.
    fn received(&self, method: &str, marker: &str) -> Vec<Message>;
}

impl Traced for Baresip {
    /// From its `-s` trace.
    fn received(&self, method: &str, marker: &str) -> Vec<Message> {
        requests_in(&self.output(), method, marker, |_| true)
    }
}

/// `ua` messages `to`, a user of `client`: the MESSAGE arrives with row `id`'s Via chain.
async fn message_to(lab: &Lab, ua: &Ua, to: &str, client: &impl Traced, id: u32) {
    let marker = format!("row-{id}-from-{}", ua.aor());
    let out = ua.send_message(to, &marker).await.expect("sent");
    assert_eq!(out.status, 200, "{out:?}");
    blocking(|| wait_for(&marker, || !client.received("MESSAGE", &marker).is_empty()));
    let msg = client.received("MESSAGE", &marker).remove(0);
    assert_eq!(chain(lab, &msg), row(lab, id), "row {id}");
}

/// `ua` calls `to`, a user of `client` answering by itself, and hangs up: INVITE, ACK and
/// BYE each arrive once with row `id`'s Via chain, and the BYE is answered 200.
async fn call_to(lab: &Lab, ua: &Ua, to: &str, client: &impl Traced, id: u32) {
    let call = ua.invite(to).await.expect("INVITE answered");
    assert!(call.is_established(), "{:?}", call.outcome());
    let out = call.bye().await.expect("BYE answered");
    assert_eq!(out.status, 200, "{out:?}");
    let call_id = String::from_utf8_lossy(out.response.call_id().unwrap()).into_owned();
    for method in ["INVITE", "ACK", "BYE"] {
        // A client's trace may be written a moment after it answered.
        let what = format!("{method} at {to}");
        blocking(|| wait_for(&what, || !client.received(method, &call_id).is_empty()));
        let got = client.received(method, &call_id);
        assert_eq!(got.len(), 1, "{what}");
        assert_eq!(chain(lab, &got[0]), row(lab, id), "{method}");
    }
}

/// The requests of `method` holding `marker` in a client's SIP trace: every message whose
/// start line stands on a line of its own, the line before it accepted by `incoming`. Only
/// the headers are kept (a trace may cut or wrap a body).
fn requests_in(
    trace: &str,
    method: &str,
    marker: &str,
    incoming: impl Fn(&str) -> bool,
) -> Vec<Message> {
    let lines: Vec<&str> = trace.lines().map(|l| l.trim_end_matches('\r')).collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let is_start = line.starts_with(&format!("{method} sip:")) && line.ends_with(" SIP/2.0");
        if !is_start || i == 0 || !incoming(lines[i - 1]) {
            continue;
        }
        let headers: Vec<&str> = lines[i..]
            .iter()
            .copied()
            .take_while(|l| !l.is_empty())
            .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
            .collect();
        let text = headers.join("\r\n");
        if !text.contains(marker) && !trace_body_after(&lines[i..], marker) {
            continue;
        }
        let msg = format!("{text}\r\nContent-Length: 0\r\n\r\n");
        if let Ok(m) = Message::parse(bytes::Bytes::from(msg)) {
            found.push(m);
        }
    }
    found
}

/// Whether the body right after a message's headers (up to the next empty line) holds `marker`.
fn trace_body_after(lines: &[&str], marker: &str) -> bool {
    lines
        .iter()
        .skip_while(|l| !l.is_empty())
        .skip(1)
        .take_while(|l| !l.is_empty())
        .any(|l| l.contains(marker))
}

/// One linphonec, driven through its standard input (its `run` script, as the README starts
/// it); what it prints goes to `out`, its SIP trace to `dir/log`.
struct Linphone {
    stdin: std::process::ChildStdin,
    out: PathBuf,
    dir: PathBuf,
}

impl Linphone {
    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("linphonec reads its commands");
        self.stdin.flush().unwrap();
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Traced for Linphone {
    /// From its log, where belle-sip writes what it received.
    fn received(&self, method: &str, marker: &str) -> Vec<Message> {
        let trace = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        // What one read brought is logged after "received [N] new bytes from"; a second
        // message in the same read follows the first one's end.
        requests_in(&trace, method, marker, |prev| {
            prev.contains("new bytes from") || prev.is_empty()
        })
    }
}

/// What the README's commands started: the baresips and linphonecs, by their folders.
#[derive(Default)]
struct Clients {
    baresip: Vec<(PathBuf, Baresip)>,
    linphone: Vec<(PathBuf, Linphone)>,
}

impl Clients {
    fn baresip(&self, dir: &str) -> &Baresip {
        let found = self.baresip.iter().find(|(d, _)| d.ends_with(dir));
        &found.unwrap_or_else(|| panic!("the README starts {dir}")).1
    }

    fn linphone(&mut self, dir: &str) -> Linphone {
        let i = self.linphone.iter().position(|(d, _)| d.ends_with(dir));
        let i = i.unwrap_or_else(|| panic!("the README starts {dir}"));
        self.linphone.remove(i).1
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
fn run_readme(heading: &str, dir: &Path, started: &mut Started) -> Clients {
    run_commands(&readme_commands(heading), 0, dir, started)
}

/// Builds the workspace's programs that `commands` start (`siplab-frontend`, ...), so that
/// they are there, and current, beside `siplab`: `cargo test` builds only the programs whose
/// own package has tests that run them.
fn build_programs(commands: &[String]) {
    let mut packages: Vec<&str> = Vec::new();
    for c in commands {
        let program = c.split_whitespace().next().unwrap_or_default();
        let package = match program {
            "siplab-dns" => "siplab-dnsd",
            p if p.starts_with("siplab-") => p,
            _ => continue,
        };
        if !packages.contains(&package) {
            packages.push(package);
        }
    }
    if packages.is_empty() {
        return;
    }
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.arg("build").current_dir(env!("CARGO_MANIFEST_DIR"));
    for p in &packages {
        cargo.args(["-p", p]);
    }
    let out = cargo.output().expect("cargo build");
    assert!(
        out.status.success(),
        "building {packages:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `commands` as [`run_readme`] does, numbering their logs from `first`.
fn run_commands(commands: &[String], first: usize, dir: &Path, started: &mut Started) -> Clients {
    build_programs(commands);
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
    let mut clients = Clients::default();
    for (i, line) in commands.iter().cloned().enumerate() {
        let i = i + first;
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
            .stdin(if background {
                Stdio::piped()
            } else {
                Stdio::null()
            })
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
        let stdin = child.stdin.take().expect("its standard input");
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
            clients.baresip.push((conf, Baresip { ctrl, log }));
        } else if let Some(args) = command.strip_prefix("sngrep ") {
            // Listening once the port is taken.
            let listen = args.split_whitespace().skip_while(|a| *a != "-L").nth(1);
            let addr: SocketAddr = listen
                .and_then(|l| l.strip_prefix("udp:"))
                .expect("sngrep -L udp:IP:PORT")
                .parse()
                .unwrap();
            wait_for("sngrep's HEP listener", || {
                alive();
                std::net::UdpSocket::bind(addr).is_err()
            });
        } else if [
            "siplab-dns ",
            "siplab-frontend ",
            "siplab-edge ",
            "siplab-cloudpool ",
        ]
        .iter()
        .any(|p| command.starts_with(p))
        {
            wait_for(&format!("`{command}` listening"), || {
                alive();
                let err = std::fs::read_to_string(&err_log).unwrap_or_default();
                err.contains("node up") || err.contains("listening (UDP and TCP)")
            });
        } else if command.starts_with("siplab-client ") {
            wait_for("siplab-client signed in", || {
                alive();
                std::fs::read_to_string(&log).is_ok_and(|o| o.contains(r#""event":"registered""#))
            });
        } else if command.starts_with("kamailio ") {
            wait_for("Kamailio's TLS listener", || {
                alive();
                TcpStream::connect(K3).is_ok()
            });
        } else if let Some(script) = command.split_whitespace().next()
            && script.ends_with("/run")
        {
            let conf = dir.join(script.trim_end_matches("/run"));
            wait_for("linphonec's log", || {
                alive();
                conf.join("log").exists()
            });
            let out = log;
            clients.linphone.push((
                conf.clone(),
                Linphone {
                    stdin,
                    out,
                    dir: conf,
                },
            ));
        }
    }
    clients
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
    let (adam, alice, bella) = (
        baresips.baresip("baresip-adam"),
        baresips.baresip("baresip-alice"),
        baresips.baresip("baresip-bella"),
    );
    let lab = Lab::reference().unwrap().localized(Suite::Readme.slot(0));
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
    let ben = signed_in(&lab, &certs, "ben@contoso.test", At::External).await;

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
    message_to(&lab, &ben, "adam@contoso.test", adam, 8).await;
    message_to(&lab, &ben, "alice@contoso.test", alice, 7).await;

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
    call_to(&lab, &ben, "alice@contoso.test", alice, 7).await;
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

/// siplab's own client of `aor` at `at`, signed in through the DNS records alone (a cloud
/// user follows its company's 301).
async fn signed_in(lab: &Lab, certs: &Certs, aor: &str, at: At) -> Ua {
    let (cfg, _) = client_config(lab, certs, aor, at, Discover::DnsOnly)
        .await
        .unwrap_or_else(|e| panic!("{aor}'s configuration: {e}"));
    let ua = Ua::start(cfg).await.expect("the client starts");
    ua.wait_registered(STEP).await.expect("signed in");
    ua
}

/// The next request other than a MESSAGE that `ua` receives (a client may still be
/// reporting the delivery of earlier messages, RFC 5438).
async fn dialog_request(ua: &Ua) -> siplab_ua::Received {
    loop {
        let got = common::received(ua).await;
        if got.method.to_string() != "MESSAGE" {
            return got;
        }
    }
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
    let lab = Lab::reference().unwrap().localized(Suite::Readme.slot(0));
    let certs_dir = work.path().join("certs");
    let certs = Certs::Dir(certs_dir.clone());
    let alice = signed_in(&lab, &certs, "alice@contoso.test", At::Internal).await;
    let ben = signed_in(&lab, &certs, "ben@contoso.test", At::External).await;
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
        chain(&["CEx", "CP2", "CEi", "E1x", "R1", "E1i", "K3x", &carol_at])
    );
    let out = ben
        .send_message("carol@tailspin.test", "from the cloud")
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let got = common::received(&carol).await;
    assert_eq!(
        names(&lab, &got),
        chain(&["K3x", "E1x", "R1", "E1i", "CEx", "CP2", "CEi", "B1e"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linphone_signs_in_messages_and_calls_through_the_lab() {
    if !have_tool("linphonec") {
        return;
    }
    let _slot = SLOT_0.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    let mut clients = blocking(|| run_readme("#### Linphone", work.path(), &mut started));
    let (mut adam, mut alice) = (
        clients.linphone("linphone-adam"),
        clients.linphone("linphone-alice"),
    );
    let lab = Lab::reference().unwrap().localized(Suite::Readme.slot(0));
    let certs = Certs::Dir(work.path().join("certs"));

    // Signed in, through the lab's DNS, the server's name checked.
    for (who, l) in [("adam", &mut adam), ("alice", &mut alice)] {
        let registered = format!("registered, identity=sip:{who}@contoso.test");
        blocking(|| {
            wait_for(&format!("linphone {who} registered"), || {
                l.command("status register");
                std::thread::sleep(Duration::from_millis(200));
                l.output().contains(&registered)
            })
        });
        l.command("soundcard use files");
    }
    let ben = signed_in(&lab, &certs, "ben@contoso.test", At::External).await;

    // Linphone to Linphone: rows 2 and 3.
    alice.command("chat sip:adam@contoso.test row-2-from-alice");
    adam.command("chat sip:alice@contoso.test row-3-from-adam");
    for (l, marker, id) in [
        (&adam, "row-2-from-alice", 2),
        (&alice, "row-3-from-adam", 3),
    ] {
        blocking(|| wait_for(marker, || !l.received("MESSAGE", marker).is_empty()));
        let msg = l.received("MESSAGE", marker).remove(0);
        assert_eq!(chain(&lab, &msg), row(&lab, id), "row {id}");
    }
    // siplab to Linphone: rows 8 and 7.
    message_to(&lab, &ben, "adam@contoso.test", &adam, 8).await;
    message_to(&lab, &ben, "alice@contoso.test", &alice, 7).await;
    // Linphone to siplab: rows 6 and 5. (Linphone also reports the delivery of ben's
    // messages, in MESSAGEs of its own: IMDN, RFC 5438.)
    for (l, id) in [(&mut adam, 6), (&mut alice, 5)] {
        let marker = format!("row-{id}-to-ben");
        l.command(&format!("chat sip:ben@contoso.test {marker}"));
        let mut got = common::received(&ben).await;
        for _ in 0..4 {
            if got.body == marker {
                break;
            }
            got = common::received(&ben).await;
        }
        assert_eq!(got.body, marker);
        assert_eq!(names(&lab, &got), row(&lab, id), "row {id}");
    }

    // A call from Linphone (adam) to siplab (ben): INVITE, ACK and BYE on row 6's path.
    adam.command("call sip:ben@contoso.test");
    let call = ben.next_call(STEP).await.expect("ben is called");
    assert!(call.is_established());
    let mut seen = vec![dialog_request(&ben).await, dialog_request(&ben).await];
    adam.command("terminate");
    seen.push(dialog_request(&ben).await);
    let methods: Vec<String> = seen.iter().map(|g| g.method.to_string()).collect();
    assert_eq!(methods, ["INVITE", "ACK", "BYE"]);
    for got in &seen {
        assert_eq!(names(&lab, got), row(&lab, 6), "{}", got.method);
    }

    // A call from siplab (ben) to Linphone (alice, answering by itself): row 7.
    call_to(&lab, &ben, "alice@contoso.test", &alice, 7).await;
    for l in [&mut adam, &mut alice] {
        l.command("quit");
    }
    ben.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_and_sngrep_show_a_client_s_message_as_it_passes() {
    if !have_tool("chromium") || !have_tool("sngrep") || !have_tool("tshark") {
        return;
    }
    let _slot = SLOT_0.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    let commands = readme_commands("## Seeing the paths: ladders, reasons, sngrep and a live page");
    let (setup, send) = commands.split_at(commands.len() - 1);
    blocking(|| run_commands(setup, 0, work.path(), &mut started));
    let up = std::fs::read_to_string(work.path().join("step0.log")).unwrap();
    let url = up
        .lines()
        .find_map(|l| l.strip_prefix("Live page: "))
        .expect("siplab up names its live page")
        .to_owned();
    // The page is open before the message is sent: what it shows came while it watched.
    let mut page =
        blocking(|| common::browser::Browser::open(&url, (1600, 900))).expect("chromium");
    blocking(|| {
        page.wait_for(
            "document.body.dataset.live === 'open'",
            Duration::from_secs(10),
        )
    });
    blocking(|| run_commands(send, setup.len(), work.path(), &mut started));
    let alice_log = work.path().join("step2.log");
    let call_id = blocking(|| {
        let mut call_id = String::new();
        wait_for("alice received the MESSAGE", || {
            let log = std::fs::read_to_string(&alice_log).unwrap_or_default();
            let received = log
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["event"] == "received");
            if let Some(v) = received {
                call_id = v["call_id"].as_str().unwrap_or_default().to_owned();
            }
            !call_id.is_empty()
        });
        call_id
    });
    let section = serde_json::json!(format!(
        "section[data-call-id={}]",
        serde_json::json!(call_id)
    ));
    let took = blocking(|| {
        page.wait_for(&format!("document.querySelectorAll({section} + ' .arrow.request').length === 3 && document.querySelectorAll({section} + ' .arrow.response').length === 3"), Duration::from_secs(5))
    });
    println!("the live page drew adam's MESSAGE within {took:?} of alice receiving it");
    let arrows = blocking(|| {
        page.eval(&format!("[...document.querySelectorAll({section} + ' .arrow.request')].map(a => [a.dataset.from, a.dataset.to])"))
    });
    assert_eq!(
        arrows,
        serde_json::json!([["A1i", "R1"], ["R1", "E1i"], ["E1x", "A1e"]])
    );
    // sngrep writes its pcap out when told to stop.
    let sngrep = &mut started.0[1];
    // SAFETY: kill(2) on the child's own pid.
    unsafe { libc::kill(sngrep.id() as i32, libc::SIGTERM) };
    let _ = sngrep.wait();
    let lab = Lab::reference().unwrap().localized(Suite::Readme.slot(0));
    let seen = common::tshark_sip(&work.path().join("out.pcap"), &call_id);
    let name = |addr: &str| name_of(&lab, addr.rsplit_once(':').unwrap().0);
    // Each hop once, in the order first seen (sender and receiver each export it).
    let mut hops: Vec<(String, String)> = Vec::new();
    for s in seen.iter().filter(|s| s.method == "MESSAGE") {
        let hop = (name(&s.src), name(&s.dst));
        if !hops.contains(&hop) {
            hops.push(hop);
        }
    }
    assert_eq!(
        hops,
        [
            ("A1i".into(), "R1".into()),
            ("R1".into(), "E1i".into()),
            ("E1x".into(), "A1e".into())
        ],
        "{seen:#?}"
    );
    assert!(
        seen.iter().filter(|s| s.status == "200").count() >= 3,
        "{seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_programs_run_one_by_one_as_the_readme_starts_them() {
    let _slot = SLOT_0.lock().await;
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    blocking(|| {
        run_readme(
            "## Running the programs one by one",
            work.path(),
            &mut started,
        )
    });
    // adam's MESSAGE answered, and alice got it by way of R1 and E1.
    let adam = std::fs::read_to_string(work.path().join("step5.log")).unwrap();
    assert!(adam.contains(r#""status":200"#), "{adam}");
    let alice_log = work.path().join("step4.log");
    blocking(|| {
        wait_for("alice received adam's MESSAGE", || {
            let log = std::fs::read_to_string(&alice_log).unwrap_or_default();
            log.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .any(|v| v["event"] == "received" && v["from"] == "adam@contoso.test")
        })
    });
    let log = std::fs::read_to_string(&alice_log).unwrap();
    let got: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "received")
        .unwrap();
    let names: Vec<&str> = got["via"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let lab = Lab::reference().unwrap();
    assert_eq!(names, row(&lab, 2), "{got}");
}
