//! The container test: the lab of docker-compose.yml, its segmented networks, and every
//! row of the path table across the containers, asserted against the same expected data
//! as the single-process lab. It needs a Docker engine, so it is ignored by default;
//! `.ci/run` runs it when there is one:
//!
//!     cargo test --release --test containers -- --ignored --nocapture
//!
//! Senders are one-shot `siplab-client` runs inside the sender's container (its network, its
//! address, discovery through the lab's DNS); receivers are the long-running client of the
//! receiver's container, whose log holds one JSON line per request received, or, for a row
//! that names a receiver other than its place's resident, a client of its own started there.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use siplab_runner::{Outcome, Row, table};
use siplab_topology::{At, Lab, Path, Placement};

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn container(place: Placement) -> String {
    format!("siplab-{}", place.to_string().to_ascii_lowercase())
}

fn at(place: Placement) -> &'static str {
    match place.at {
        At::Internal => "internal",
        At::External => "external",
    }
}

/// JSON lines of a process's output (log lines and other text are skipped).
fn events(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs a one-shot client in `place`'s container as `user`, sending a MESSAGE.
fn send(place: Placement, user: &str, to: &str, text: &str) -> Option<Value> {
    let out = run(
        "docker",
        &[
            "exec",
            &container(place),
            "siplab-client",
            "--user",
            user,
            "--at",
            at(place),
            "--certs",
            "/certs",
            "--message-to",
            to,
            "--text",
            text,
            "--listen-for",
            "0",
        ],
    );
    events(&out.stdout)
        .into_iter()
        .find(|e| e["event"] == "response")
}

/// The request with this body that the client of `place` logged, waiting a little for it.
fn received(place: Placement, body: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let out = run("docker", &["logs", &container(place)]);
        if let Some(e) = events(&out.stdout)
            .into_iter()
            .find(|e| e["event"] == "received" && e["body"] == body)
        {
            return Some(e);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A client of a row's named receiver, listening in its place's container.
struct Listener {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Listener {
    /// Starts it and waits until it has signed in.
    fn start(place: Placement, user: &str) -> Option<Listener> {
        let mut child = Command::new("docker")
            .args(["exec", &container(place), "siplab-client", "--user", user])
            .args(["--at", at(place), "--certs", "/certs", "--listen-for", "4"])
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        let signed_in = lines.by_ref().map_while(Result::ok).any(|l| {
            serde_json::from_str::<Value>(&l)
                .is_ok_and(|e| e["event"] == "registered" && e["status"] == 200)
        });
        signed_in.then_some(Listener { child, lines })
    }

    /// The request with this body it received, once its listening time is over and it
    /// has signed out (so the next row's client of the same user finds no stale binding).
    fn received(mut self, body: &str) -> Option<Value> {
        let events: Vec<Value> = self
            .lines
            .by_ref()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect();
        let _ = self.child.wait();
        events
            .into_iter()
            .find(|e| e["event"] == "received" && e["body"] == body)
    }
}

fn registrations(place: Placement) -> usize {
    let out = run("docker", &["logs", &container(place)]);
    events(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "registered" && e["status"] == 200)
        .count()
}

fn row(lab: &Lab, path: &Path, tag: &str) -> Row {
    let mut r = Row::pending(lab, path);
    let (sender, receiver) = (r.sender.clone(), r.receiver.clone());
    let text = format!("{tag} row {}", r.scenario);
    let listener = match &path.receiver {
        Some(aor) => match Listener::start(path.to, aor) {
            Some(l) => Some(l),
            None => {
                r.outcome = Outcome::Failed(format!("{aor} did not sign in at {}", path.to));
                return r;
            }
        },
        None => None,
    };
    match send(path.from, &sender, &receiver, &text) {
        Some(resp) if resp["status"] == 200 => {}
        other => {
            r.outcome = Outcome::Failed(format!("sender got {other:?}"));
            return r;
        }
    }
    let got = match listener {
        Some(l) => l.received(&text),
        None => received(path.to, &text),
    };
    let Some(got) = got else {
        r.outcome = Outcome::Failed("the receiver logged nothing".into());
        return r;
    };
    for v in got["via"].as_array().into_iter().flatten() {
        r.observed
            .push(v["name"].as_str().unwrap_or("?").to_owned());
        r.observed_addresses
            .push(v["sent_by"].as_str().unwrap_or("?").to_owned());
    }
    r.outcome = if r.observed == r.expected {
        Outcome::Match
    } else {
        Outcome::Mismatch
    };
    r
}

/// Brings the lab down when the test ends, passed or not.
struct Teardown;

impl Drop for Teardown {
    fn drop(&mut self) {
        let _ = run("deploy/down", &[]);
    }
}

#[test]
#[ignore = "needs a Docker engine; .ci/run runs it when there is one"]
fn the_lab_in_containers() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let _down = Teardown;
    let started = Instant::now();
    let up = Command::new("deploy/up").status().expect("deploy/up");
    assert!(up.success(), "deploy/up failed");
    println!(
        "deploy/up: lab built and every client signed in after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let lab = Lab::reference().unwrap();
    let tag = format!("{:x}", std::process::id());
    let rows: Vec<Row> = lab
        .paths_with_mirrors()
        .iter()
        .map(|p| row(&lab, p, &tag))
        .collect();
    print!("{}", table(&rows));
    let bad: Vec<&Row> = rows
        .iter()
        .filter(|r| r.outcome != Outcome::Match)
        .collect();
    println!(
        "{} of {} rows match the article across the containers",
        rows.len() - bad.len(),
        rows.len()
    );
    assert!(bad.is_empty(), "{bad:#?}");

    // Sign-in through autodiscover: B1e asked lyncdiscover.contoso.test, was redirected to the
    // cloud's service and registered with sipdir directly.
    let b1e: Placement = "B1e".parse().unwrap();
    let logs = run("docker", &["logs", &container(b1e)]);
    let found = events(&logs.stdout)
        .into_iter()
        .find(|e| e["event"] == "discovered")
        .expect("B1e's discovery");
    assert!(
        found["via"]
            .as_str()
            .is_some_and(|v| v.contains("autodiscover")),
        "{found}"
    );
    assert_eq!(found["server_name"], "sipdir.online.lync.test", "{found}");
    println!(
        "autodiscover: B1e signed in via {} at {}",
        found["via"], found["server_name"]
    );

    // Federated presence: anna (fabrikam, LAN) watches alice (contoso, LAN); R1 answers and
    // its NOTIFY comes back along the Record-Route set (row 9 mirrored).
    let row9m = lab
        .paths_with_mirrors()
        .into_iter()
        .find(|p| p.id == 9 && p.mirrored)
        .unwrap();
    let (_, notify_expected) = siplab_runner::presence_vias(&lab, &row9m, "R1").unwrap();
    let a2i: Placement = "A2i".parse().unwrap();
    let out = run(
        "docker",
        &[
            "exec",
            &container(a2i),
            "siplab-client",
            "--user",
            "anna@fabrikam.test",
            "--at",
            "internal",
            "--certs",
            "/certs",
            "--watch",
            "alice@contoso.test",
            "--listen-for",
            "2",
        ],
    );
    let notify = events(&out.stdout)
        .into_iter()
        .find(|e| e["event"] == "received" && e["method"] == "NOTIFY")
        .expect("a NOTIFY for anna");
    let chain: Vec<String> = notify["via"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["name"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(chain, notify_expected, "NOTIFY along the route set");
    assert_eq!(notify["presence"], "available");
    println!(
        "presence across federation: NOTIFY {} with Vias {chain:?}",
        notify["presence"]
    );

    // Segmentation: from the internet, no front end and no cloud pool can even be connected to,
    // and the internet view of the DNS hides the internal names.
    let a1e: Placement = "A1e".parse().unwrap();
    let from_internet = container(a1e);
    for target in ["R1", "R1b", "R2", "CP1", "CP2"] {
        let i = lab.interfaces_of(target).next().unwrap();
        let addr = format!("{}:{}", i.address, i.ports.sip.unwrap());
        let out = run(
            "docker",
            &[
                "exec",
                &from_internet,
                "siplab",
                "probe",
                "connect",
                &addr,
                "--timeout",
                "2",
            ],
        );
        assert!(
            !out.status.success(),
            "{target} ({addr}) must be unreachable from the internet"
        );
        println!("segmentation: {from_internet} -> {target} {addr}: unreachable");
    }
    let source = lab.placement("A1e").unwrap().address.to_string();
    let dns = |name: &str| {
        run(
            "docker",
            &[
                "exec",
                &from_internet,
                "siplab",
                "probe",
                "dns",
                name,
                "--source",
                &source,
            ],
        )
    };
    for hidden in [
        "pool01.contoso.test",
        "lyncdiscoverinternal.contoso.test",
        "sippool01.infra.lync.test",
    ] {
        assert!(
            !dns(hidden).status.success(),
            "{hidden} must not resolve in the internet view"
        );
        println!("segmentation: {hidden} does not resolve from the internet");
    }
    assert!(dns("sip.contoso.test").status.success());

    // E1 goes away: A1e's messages fail with an error response; E1 comes back: A1e signs in
    // again by itself and its messages flow.
    let a1i: Placement = "A1i".parse().unwrap();
    let (adam, alice) = ("adam@contoso.test", "alice@contoso.test");
    let before = registrations(a1e);
    assert!(run("docker", &["stop", "siplab-e1"]).status.success());
    let failed =
        send(a1e, adam, alice, &format!("{tag} while E1 is down")).expect("an answer, not silence");
    assert_eq!(failed["status"], 503, "{failed}");
    println!(
        "E1 stopped: A1e's MESSAGE got {} {}",
        failed["status"], failed["reason"]
    );
    assert!(run("docker", &["start", "siplab-e1"]).status.success());
    let restarted = Instant::now();
    while registrations(a1e) <= before {
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "A1e did not sign in again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "E1 started: A1e signed in again by itself after {:.1} s",
        restarted.elapsed().as_secs_f64()
    );
    let text = format!("{tag} after E1 is back");
    let ok = send(a1e, adam, alice, &text).expect("answered");
    assert_eq!(ok["status"], 200, "{ok}");
    let got = received(a1i, &text).expect("A1i got A1e's message");
    println!("A1e -> A1i flows again");

    // The collector container drew that MESSAGE from the nodes' HEP export: its live page's
    // ladder has the request's hops through E1 and R1, each with its reason.
    let call_id = got["call_id"].as_str().expect("a Call-ID");
    let collector = lab.collector().expect("the lab's collector");
    let web = collector
        .addresses
        .iter()
        .find(|a| {
            lab.network_of((**a).into())
                .is_some_and(|n| n.name == "internet")
        })
        .expect("on the internet");
    let ladder = live_ladder(&format!("{web}:{}", collector.web_port), call_id)
        .unwrap_or_else(|| panic!("the live page at {web} has no ladder of {call_id}"));
    // The SSE line is JSON: the SVG's quotes are escaped. A request arrow's reason is empty
    // for the client's own first hop only.
    let requests: Vec<&str> = ladder
        .split(r#"class=\"arrow request"#)
        .skip(1)
        .map(|a| a.split_once('>').map_or(a, |(attributes, _)| attributes))
        .collect();
    let reasoned = requests
        .iter()
        .filter(|a| !a.contains(r#"data-reason=\"\""#))
        .count();
    assert!(
        requests.len() >= 3 && ladder.contains("E1x") && ladder.contains("R1"),
        "{ladder}"
    );
    assert!(
        reasoned >= 2,
        "E1's and R1's hops carry their reason: {ladder}"
    );
    println!(
        "collector: the live page drew {call_id} with {} request arrows ({reasoned} with a \
         reason) from the nodes' HEP",
        requests.len()
    );

    chaos(&lab);
}

/// Statuses a request may end with while nodes die and come back: it went through, or the
/// caller was told it could not (a time-out, the user not reachable now, a node down).
const ACCOUNTED: [u64; 4] = [200, 408, 480, 503];

/// The chaos run: steady MESSAGEs along rows 12 and 17 (between them every node but E2's
/// partner side: E1, R1, E2, R2, CE, CP1, CP2) while E1, R2, CE and CP1 are killed (SIGKILL)
/// and started again in turn. Every MESSAGE sent must end with one final status of
/// [`ACCOUNTED`], none lost and none twice; the clients sign in again by themselves; the
/// time from each node's start until a MESSAGE through it succeeds again is printed.
fn chaos(lab: &Lab) {
    const BOUNCED: [&str; 4] = ["E1", "R2", "CE", "CP1"];
    const DOWN: Duration = Duration::from_secs(2);
    const AFTER: Duration = Duration::from_secs(10);
    let rows: Vec<Path> = [12, 17]
        .iter()
        .map(|id| lab.path(*id).unwrap().clone())
        .collect();
    let listen = 4 + BOUNCED.len() as u64 * (DOWN + AFTER).as_secs() + 2;
    let senders: Vec<(Path, Child)> = rows
        .into_iter()
        .map(|path| {
            let (from, to) = lab.parties(&path).unwrap();
            let child = Command::new("docker")
                .args([
                    "exec",
                    &container(path.from),
                    "siplab-client",
                    "--user",
                    &from.aor,
                ])
                .args([
                    "--at",
                    at(path.from),
                    "--certs",
                    "/certs",
                    "--message-to",
                    &to.aor,
                ])
                .args([
                    "--text",
                    "chaos",
                    "--every",
                    "100",
                    "--listen-for",
                    &listen.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker exec");
            (path, child)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let mut bounces = Vec::new();
    for node in BOUNCED {
        let name = format!("siplab-{}", node.to_ascii_lowercase());
        let killed = unix();
        assert!(
            run("docker", &["kill", &name]).status.success(),
            "docker kill {name}"
        );
        std::thread::sleep(DOWN);
        assert!(
            run("docker", &["start", &name]).status.success(),
            "docker start {name}"
        );
        bounces.push((node, killed, unix()));
        std::thread::sleep(AFTER);
    }
    println!("chaos: {BOUNCED:?} killed and started in turn; every MESSAGE accounted for:");
    let mut answers: Vec<(Path, Vec<Value>)> = Vec::new();
    for (path, child) in senders {
        let out = child.wait_with_output().expect("the sender ends");
        let lines: Vec<Value> = events(&out.stdout)
            .into_iter()
            .filter(|e| e["event"] == "response" && e["seq"].is_u64())
            .collect();
        let mut seqs: Vec<u64> = lines.iter().filter_map(|e| e["seq"].as_u64()).collect();
        seqs.sort_unstable();
        let n = seqs.len() as u64;
        assert!(n > 100, "row {}: only {n} MESSAGEs", path.scenario());
        assert_eq!(
            seqs,
            (1..=n).collect::<Vec<_>>(),
            "row {}: each MESSAGE once",
            path.scenario()
        );
        let bad: Vec<&Value> = lines
            .iter()
            .filter(|e| !e["status"].as_u64().is_some_and(|s| ACCOUNTED.contains(&s)))
            .collect();
        assert!(bad.is_empty(), "row {}: {bad:#?}", path.scenario());
        let mut by_status = std::collections::BTreeMap::new();
        for e in &lines {
            let local = if e["local"] == true {
                " (the client's own)"
            } else {
                ""
            };
            *by_status
                .entry(format!("{}{local}", e["status"]))
                .or_insert(0) += 1;
        }
        println!("  row {}: {n} MESSAGEs, {by_status:?}", path.scenario());
        answers.push((path, lines));
    }
    println!(
        "  node  MESSAGEs through it that failed  carried again after its start (s)  longest answer (s)"
    );
    for (node, killed, started) in bounces {
        let passes = |p: &Path| {
            p.interfaces().any(|i| {
                lab.interface(i.as_str())
                    .is_some_and(|i| i.node.as_str() == node)
            })
        };
        let window = |e: &&Value| {
            e["at"]
                .as_f64()
                .is_some_and(|at| at >= killed && at < started + AFTER.as_secs_f64())
        };
        let (mut failed, mut recovered, mut longest) = (0, 0.0f64, 0.0f64);
        for (_, lines) in answers.iter().filter(|(p, _)| passes(p)) {
            let seen: Vec<&Value> = lines.iter().filter(window).collect();
            let at = |e: &Value| e["at"].as_f64().unwrap_or_default();
            let last_failure = seen
                .iter()
                .filter(|e| e["status"] != 200)
                .map(|e| at(e))
                .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))));
            failed += seen.iter().filter(|e| e["status"] != 200).count();
            longest = seen
                .iter()
                .filter_map(|e| e["ms"].as_f64())
                .fold(longest, f64::max);
            if let Some(last) = last_failure {
                let back = seen
                    .iter()
                    .filter(|e| e["status"] == 200 && at(e) > last)
                    .map(|e| at(e))
                    .fold(f64::INFINITY, f64::min);
                assert!(
                    back.is_finite(),
                    "nothing went through {node} again after its start"
                );
                recovered = recovered.max(back - started);
            }
        }
        println!(
            "  {node:<5} {failed:>6} {:>6.1} {:>6.1}",
            recovered.max(0.0),
            longest / 1e3
        );
    }
}

/// The live page's SSE event of `call_id` (its JSON line), waiting up to 5 s for it.
fn live_ladder(addr: &str, call_id: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).ok()?;
    tcp.set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    write!(tcp, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let (mut seen, mut buf) = (Vec::new(), [0u8; 65_536]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = format!(r#""call_id":"{call_id}""#);
    while Instant::now() < deadline {
        if let Ok(n) = tcp.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        // Whole lines only: the last read may have cut one.
        let mut whole = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
        if let Some(line) = whole.rfind(|l| l.contains(&wanted)) {
            return Some(line.trim_end().to_owned());
        }
    }
    None
}
