//! `siplab-client`: one user's SIP client at one place of the lab. It binds the address of
//! its placement (A1e, B1i, ...), signs in where the topology says (the front end from the
//! LAN, the edge from the internet, wherever a redirect sends it), does what it is asked
//! (a MESSAGE, an OPTIONS, a call), then stays signed in and answers until Ctrl-C or
//! `--listen-for` ends. Each thing that happens is one JSON line on stdout; logs go to
//! stderr (RUST_LOG).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use siplab_dns::discovery::{Discovery, LabResolver};
use siplab_node::{Certs, Discover, client_config, init_tracing};
use siplab_topology::{At, Lab};
use siplab_ua::{Outcome, Received, Registration, SignIn, Ua, UaError};
use tracing::info;

/// mimalloc, chosen by the program rather than a library it links: glibc's malloc and free
/// were 7 % of a front end's CPU while relaying, and connections and bindings take less
/// memory with mimalloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "siplab-client",
    version,
    about = "One user's SIP client in the lab"
)]
struct Cli {
    /// The lab description (default: the built-in reference lab).
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Use the single-process (loopback) profile of this slot instead of the container one.
    #[arg(long)]
    slot: Option<u8>,
    /// Where `siplab certs` wrote the certificates.
    #[arg(long, default_value = "certs")]
    certs: PathBuf,
    /// The user (address of record), e.g. alice@contoso.test.
    #[arg(long)]
    user: String,
    /// Where the client sits: on its company's LAN or on the internet.
    #[arg(long, value_enum)]
    at: Place,
    /// Sign in here instead of where the topology says (HOST:PORT).
    #[arg(long, requires = "server_name")]
    server: Option<String>,
    /// The name the server's certificate must carry (with --server).
    #[arg(long, requires = "server")]
    server_name: Option<String>,
    /// Find the server through the DNS records alone, skipping autodiscover: a cloud-hosted
    /// user then registers with its company first and follows the 301 to the cloud.
    #[arg(long)]
    no_autodiscover: bool,
    /// Send a MESSAGE to this user.
    #[arg(long)]
    message_to: Option<String>,
    /// The text of the MESSAGE.
    #[arg(long, default_value = "hello", requires = "message_to")]
    text: String,
    /// Send the MESSAGE again every this many milliseconds until --listen-for ends (a steady
    /// load): each answer is a line with its number (`seq`) and the seconds since the
    /// first (`t`), the text gets " #seq", and the client waits for the last ones'
    /// answers before it ends.
    #[arg(long, value_name = "MS", requires = "message_to")]
    every: Option<u64>,
    /// Call this user (INVITE, ACK, then BYE once answered).
    #[arg(long)]
    call: Option<String>,
    /// Send an OPTIONS to this URI or user.
    #[arg(long)]
    options: Option<String>,
    /// Publish this presence state to the home server: available, busy or away.
    #[arg(long)]
    publish: Option<String>,
    /// Watch this user's presence: every NOTIFY is printed with its Via chain.
    #[arg(long)]
    watch: Option<String>,
    /// Stop after this many seconds of listening (default: run until Ctrl-C).
    #[arg(long)]
    listen_for: Option<u64>,
    /// Keep trying to sign in until it works (for a client that starts with the lab).
    #[arg(long)]
    retry: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Place {
    Internal,
    External,
}

#[tokio::main]
async fn main() -> Result<()> {
    init_tracing("info");
    let cli = Cli::parse();
    let lab = match &cli.topology {
        Some(path) => Lab::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Lab::reference().context("the built-in reference lab")?,
    };
    let lab = match cli.slot {
        Some(slot) => lab.localized(slot),
        None => lab,
    };
    let at = match cli.at {
        Place::Internal => At::Internal,
        Place::External => At::External,
    };
    let mut backoff = Duration::from_millis(200);
    let ua = loop {
        match sign_in(&lab, &cli, at).await {
            Ok(ua) => break ua,
            // A client that is to stay signed in waits for the lab to come up, as real
            // clients retry; a one-shot sender says at once that its request failed.
            Err(e) if cli.retry => {
                info!(error = %format!("{e:#}"), ?backoff, "sign-in failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                for (method, to) in [
                    ("MESSAGE", &cli.message_to),
                    ("INVITE", &cli.call),
                    ("OPTIONS", &cli.options),
                ] {
                    if let Some(to) = to {
                        emit(
                            &json!({"event": "response", "method": method, "to": to, "status": 503,
                            "reason": format!("Service Unavailable (sign-in failed: {e:#})")}),
                        );
                    }
                }
                return Err(e);
            }
        }
    };
    let mut current = ua.registration();
    emit(&registered(&ua, ua.registered_via(), current.as_ref()));

    let mut failed = false;
    if let Some(to) = cli.message_to.as_ref().filter(|_| cli.every.is_none()) {
        failed |= report("MESSAGE", to, ua.send_message(to, &cli.text).await);
    }
    if let Some(uri) = &cli.options {
        failed |= report("OPTIONS", uri, ua.options(uri).await);
    }
    if let Some(state) = &cli.publish {
        failed |= report("PUBLISH", &cli.user, ua.publish(state).await);
    }
    if let Some(target) = &cli.watch {
        failed |= report("SUBSCRIBE", target, ua.subscribe(target, 600).await);
    }
    if let Some(to) = &cli.call {
        match ua.invite(to).await {
            Ok(call) => {
                failed |= report("INVITE", to, Ok(call.outcome().clone()));
                if call.is_established() {
                    failed |= report("BYE", to, call.bye().await);
                }
            }
            Err(error) => failed |= report("INVITE", to, Err(error)),
        }
    }

    let stop = async {
        match cli.listen_for {
            Some(secs) => tokio::time::sleep(Duration::from_secs(secs)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let ua = Arc::new(ua);
    let mut steady = Steady::new(&cli);
    let mut every = cli.every.map(|ms| {
        let mut i = tokio::time::interval(Duration::from_millis(ms.max(1)));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    // Requests are answered by the client whether or not this loop reads them; it prints
    // them, and each new sign-in (after the flow died).
    const POLL: Duration = Duration::from_secs(3600);
    loop {
        let signed_in_again = async {
            match &current {
                Some(reg) => ua.wait_reregistered(reg, POLL).await,
                None => ua.wait_registered(POLL).await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            _ = next_tick(&mut every) => steady.send(&ua),
            Some(done) = steady.sends.join_next(), if !steady.sends.is_empty() => steady.answered(done),
            got = ua.next_received(POLL) => if let Some(got) = got {
                emit(&received(&lab, &got));
            },
            reg = signed_in_again => if let Ok(reg) = reg {
                emit(&registered(&ua, ua.registered_via(), Some(&reg)));
                current = Some(reg);
            },
        }
    }
    // Every MESSAGE of a steady load gets its line: the answers still to come are waited for.
    while let Some(done) = steady.sends.join_next().await {
        steady.answered(done);
    }
    if let Ok(ua) = Arc::try_unwrap(ua) {
        ua.shutdown().await;
    }
    if failed {
        bail!("a request got no final response");
    }
    Ok(())
}

/// The next steady send is due (never, without --every).
async fn next_tick(every: &mut Option<tokio::time::Interval>) {
    match every {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// `--every`: a MESSAGE every so often, each sent from a task of its own so that one waiting
/// for its answer does not hold the next back.
struct Steady {
    to: String,
    text: String,
    started: tokio::time::Instant,
    seq: u64,
    sends: tokio::task::JoinSet<Sent>,
}

impl Steady {
    fn new(cli: &Cli) -> Steady {
        Steady {
            to: cli.message_to.clone().unwrap_or_default(),
            text: cli.text.clone(),
            started: tokio::time::Instant::now(),
            seq: 0,
            sends: tokio::task::JoinSet::new(),
        }
    }

    fn send(&mut self, ua: &Arc<Ua>) {
        self.seq += 1;
        let (seq, ua, to) = (self.seq, ua.clone(), self.to.clone());
        let text = format!("{} #{seq}", self.text);
        let t = self.started.elapsed().as_secs_f64();
        self.sends.spawn(async move {
            let (at, sent) = (unix_now(), tokio::time::Instant::now());
            let result = ua.send_message(&to, &text).await;
            (seq, t, at, sent.elapsed().as_secs_f64(), result)
        });
    }

    /// Prints a sent MESSAGE's answer with its number, its time since the first, the
    /// wall-clock time it was sent (`at`, Unix seconds: containers share the host's clock)
    /// and how long its answer took (`ms`).
    fn answered(&self, done: Result<Sent, tokio::task::JoinError>) {
        let Ok((seq, t, at, took, result)) = done else {
            return;
        };
        let (mut line, _) = response_line("MESSAGE", &self.to, result);
        let ms = |secs: f64| (secs * 1e6).round() / 1e3;
        line["seq"] = json!(seq);
        line["t"] = json!(ms(t) / 1e3);
        line["at"] = json!(ms(at) / 1e3);
        line["ms"] = json!(ms(took));
        emit(&line);
    }
}

/// A steady MESSAGE: its number, when it went (since the first, and Unix time), how long
/// its answer took (seconds), its answer.
type Sent = (u64, f64, f64, f64, Result<Outcome, UaError>);

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Discovery, then REGISTER (following redirects).
async fn sign_in(lab: &Lab, cli: &Cli, at: At) -> Result<Ua> {
    let how = if cli.no_autodiscover {
        Discover::DnsOnly
    } else {
        Discover::Autodiscover
    };
    let certs = Certs::Dir(cli.certs.clone());
    let (mut cfg, found) = client_config(lab, &certs, &cli.user, at, how).await?;
    emit(&discovered(&found));
    if let (Some(server), Some(name)) = (&cli.server, &cli.server_name) {
        cfg.server = server_addr(lab, cfg.bind_ip, server).await?;
        cfg.server_name = name.clone();
    }
    info!(user = %cli.user, bind = %cfg.bind_ip, server = %cfg.server, name = %cfg.server_name, "starting");
    Ua::start(cfg)
        .await
        .with_context(|| format!("{} could not sign in", cli.user))
}

/// `HOST:PORT`, the host an address or a name the lab resolves from where the client sits.
async fn server_addr(lab: &Lab, source: IpAddr, text: &str) -> Result<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("--server {text:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--server {text:?}: bad port"))?;
    LabResolver::for_source(lab, source)?
        .resolve_sip(host, port)
        .await
        .with_context(|| format!("--server {text:?}"))
}

/// How discovery went (section 4): every record asked, in order, and where it led.
fn discovered(found: &Discovery) -> Value {
    let steps: Vec<Value> = found
        .steps
        .iter()
        .map(|s| json!({"query": s.query, "type": s.record_type, "answer": s.answer}))
        .collect();
    json!({
        "event": "discovered",
        "server": found.server.to_string(),
        "server_name": found.server_name,
        "via": found.via,
        "steps": steps,
    })
}

/// One event, one line.
fn emit(event: &Value) {
    println!("{event}");
}

fn registered(ua: &Ua, sign_in: Option<SignIn>, reg: Option<&Registration>) -> Value {
    let (servers, status, reason) = match sign_in {
        Some(s) => (s.servers, s.status, s.reason),
        None => (Vec::new(), None, String::new()),
    };
    let via_servers: Vec<Value> = servers
        .iter()
        .map(|s| json!({"name": s.name, "addr": s.addr.to_string(), "status": s.status}))
        .collect();
    json!({
        "event": "registered",
        "aor": ua.aor(),
        "via_servers": via_servers,
        "status": status,
        "reason": reason,
        "local": reg.map(|r| r.connection.local.to_string()),
        "contact": reg.map(|r| r.contact.clone()),
        "path": reg.map(|r| r.path.clone()).unwrap_or_default(),
    })
}

/// Prints what a request got; true when it got no final response at all.
fn report(method: &str, to: &str, result: Result<Outcome, UaError>) -> bool {
    let (line, failed) = response_line(method, to, result);
    emit(&line);
    failed
}

/// What a request got as one JSON line, and whether that was no final response at all. A
/// failure below SIP is reported as the status RFC 3261 section 8.1.3.1 gives it (a
/// transport error or a connection lost 503, no answer in time 408), marked `local`.
fn response_line(method: &str, to: &str, result: Result<Outcome, UaError>) -> (Value, bool) {
    let local = |status: u16, reason: &str, error: &UaError| {
        json!({
            "event": "response",
            "method": method,
            "to": to,
            "status": status,
            "reason": format!("{reason} ({error})"),
            "local": true,
        })
    };
    match result {
        Ok(outcome) => (
            json!({
                "event": "response",
                "method": method,
                "to": to,
                "status": outcome.status,
                "reason": outcome.reason,
                "provisional": outcome.provisional,
            }),
            false,
        ),
        Err(error @ (UaError::Transport(_) | UaError::NotConnected)) => {
            (local(503, "Service Unavailable", &error), false)
        }
        Err(error @ UaError::ConnectionLost { .. }) => {
            (local(503, "Service Unavailable", &error), true)
        }
        Err(error @ UaError::Timeout { .. }) => (local(408, "Request Timeout", &error), true),
        Err(error) => (
            json!({
                "event": "error",
                "method": method,
                "to": to,
                "error": error.to_string(),
            }),
            true,
        ),
    }
}

fn received(lab: &Lab, got: &Received) -> Value {
    let via: Vec<Value> = got
        .vias
        .iter()
        .map(|v| json!({"sent_by": v.sent_by, "name": lab.name_of_host(&v.host)}))
        .collect();
    json!({
        "event": "received",
        "method": got.method.as_str(),
        "from": got.from,
        "to": got.to,
        "call_id": got.call_id,
        "via": via,
        "route": got.route,
        "record_route": got.record_route,
        "body": got.body,
        "presence": siplab_sip::pidf_state(got.body.as_bytes()),
    })
}
