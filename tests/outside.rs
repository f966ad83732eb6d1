//! baresip, an outside SIP client, in the lab: the README's commands run as they stand
//! ("Pointing an outside SIP client at the lab": `siplab certs`, `siplab up`, `siplab
//! client-config baresip`, `baresip -f`), then MESSAGEs and calls in both directions between
//! baresip and siplab's own clients, each receiver's Via chain asserted against the path
//! table, and a cloud user's 301 as baresip sees it.
//!
//! It needs Debian's baresip; without it the test says it skipped, unless
//! `SIPLAB_REQUIRE_TOOLS=1` (as `.ci/run` sets), where a missing tool fails it. It owns
//! loopback slot 0, the README's, and the ctrl_tcp ports 4444 to 4446.

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

/// The shell commands of the README's section on outside clients, in order.
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../README.md");
    let start = readme
        .find("### Pointing an outside SIP client at the lab")
        .expect("the README's outside-client section");
    let section = &readme[start..];
    let section = &section[..section[4..].find("\n## ").map_or(section.len(), |e| e + 4)];
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

/// The programs the test started; every one is killed when the test ends, however it ends.
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
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

/// Runs the README's commands in `dir`, in order: a command ending in `&` is started and
/// waited for (`siplab up` until it says the lab is up, baresip until its ctrl_tcp listens).
fn run_readme(dir: &Path, started: &mut Started) -> Vec<(PathBuf, Baresip)> {
    let bin = Path::new(env!("CARGO_BIN_EXE_siplab")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut baresips = Vec::new();
    for (i, line) in readme_commands().into_iter().enumerate() {
        let (command, background) = match line.strip_suffix('&') {
            Some(c) => (c.trim().to_owned(), true),
            None => (line.clone(), false),
        };
        let log = dir.join(format!("step{i}.log"));
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec {command}"))
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
        if command.starts_with("siplab up") {
            wait_for("siplab up", || {
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
            wait_for("baresip's ctrl_tcp", || TcpStream::connect(ctrl).is_ok());
            baresips.push((conf, Baresip { ctrl, log }));
        }
    }
    baresips
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_signs_in_messages_and_calls_through_the_lab() {
    if !have_tool("baresip") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut started = Started(Vec::new());
    let baresips = blocking(|| run_readme(work.path(), &mut started));
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
