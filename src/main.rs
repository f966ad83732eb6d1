//! `siplab`: the lab's own command. `siplab run` starts the whole lab in this process and
//! shows every path of the reference on the wire; `siplab up` keeps it running;
//! `siplab certs` writes the lab CA and every certificate.

use std::path::PathBuf;
use std::sync::Arc;

mod compose;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use siplab_node::Certs;
use siplab_pki::{CaStatus, LabCa, NodeIdentity, UserIdentity};
use siplab_runner::{LabRun, Outcome, Report, Wire, run_presence_rows, run_rows};
use siplab_transport::hep::HepTarget;

/// Messages `siplab run` keeps for its report (a run captures about 10,000).
const CAPTURE_KEPT: usize = 200_000;
/// Messages `siplab up` keeps (the live page shows the latest calls only).
const LIVE_KEPT: usize = 10_000;
use siplab_topology::{Lab, Purpose, Role};

/// mimalloc, chosen by the program rather than a library it links: glibc's malloc and free
/// were 7 % of a front end's CPU while relaying, and connections and bindings take less
/// memory with mimalloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "siplab",
    version,
    about = "A real SIP lab: two hybrid companies, their edges and a cloud pool"
)]
struct Cli {
    /// The lab description (default: the built-in reference lab, deploy/lab.toml).
    #[arg(long, global = true)]
    topology: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints the docker-compose file of the lab, generated from the topology.
    Compose,
    /// Small checks that work inside the lab's containers (which have no shell): health
    /// checks and the segmentation test.
    #[command(subcommand)]
    Probe(Probe),
    /// Starts the whole lab on loopback, runs every path of the reference (and its mirror)
    /// and prints what the article says next to what the receiver's Via headers showed.
    Run {
        /// The loopback slot (third octet of every address); the article's question runs
        /// in a second lab on the next slot.
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// Print the rows as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Only the 18 rows of the article, without the mirrored ones.
        #[arg(long)]
        no_mirrors: bool,
        /// Also write the paths as pictures: DIR/index.html (one self-contained page, every
        /// row's ladder with each hop's reason) and DIR/rows/<row>.svg and .mmd.
        #[arg(long, value_name = "DIR")]
        report: Option<PathBuf>,
        #[command(flatten)]
        hep: HepArg,
    },
    /// Load along rows of the path table in the one-process lab: MESSAGEs at fixed offered
    /// rates (open loop), achieved rate and latency per row, to compare a long path with a
    /// short one measured in the same run.
    Bench {
        #[arg(long, default_value_t = 1)]
        slot: u8,
        /// The rows to load, in the order given.
        #[arg(long, value_delimiter = ',', default_value = "1,17")]
        rows: Vec<u32>,
        /// Offered MESSAGEs per second, one step each.
        #[arg(long, value_delimiter = ',', default_value = "200,500,1000")]
        rates: Vec<u32>,
        /// Seconds per step.
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
    /// Starts the whole lab on loopback and keeps it running for clients to use.
    Up {
        #[arg(long, default_value_t = 0)]
        slot: u8,
        /// The certificates (written there first, keeping an existing CA), so that outside
        /// clients can use a user's certificate and trust the lab's CA.
        #[arg(long, default_value = "certs")]
        certs: PathBuf,
        /// Serve the live page here (http://ADDR/): every call's ladder as it happens.
        #[arg(long, value_name = "ADDR")]
        web: Option<std::net::SocketAddr>,
        #[command(flatten)]
        hep: HepArg,
    },
    /// A HEPv3 collector serving the live page: draws what the lab's programs in other
    /// processes or containers export (`--hep`) as `siplab up --web` draws its own nodes.
    Collect {
        /// Where HEPv3 arrives, over UDP and TCP on the same port.
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:9060")]
        listen: std::net::SocketAddr,
        /// Serve the live page here (http://ADDR/).
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8080")]
        web: std::net::SocketAddr,
    },
    /// Writes a configuration directory for an outside SIP client, so that it signs in as a
    /// lab user from one place: `baresip -f DIR`, or `DIR/run` for linphonec (the
    /// certificates come from `siplab certs`).
    ClientConfig {
        /// The client program: baresip or linphone (linphonec).
        #[arg(value_parser = ["baresip", "linphone"])]
        client: String,
        /// The user it signs in as, e.g. adam@contoso.test.
        user: String,
        /// Where it sits: internal (its company's LAN) or external (the internet).
        #[arg(long)]
        at: siplab_topology::At,
        /// The loopback slot the lab runs on (`siplab up --slot`); without it, the container
        /// profile's addresses.
        #[arg(long)]
        slot: Option<u8>,
        #[arg(long, default_value = "certs")]
        certs: PathBuf,
        /// Where baresip's ctrl_tcp module listens for commands.
        #[arg(long, default_value = "127.0.0.1:4444")]
        ctrl: std::net::SocketAddr,
        /// Sign in through DNS alone, even a cloud-hosted user (who then meets its company's
        /// 301, which baresip does not follow).
        #[arg(long)]
        dns_only: bool,
        /// The directory to write.
        dir: PathBuf,
    },
    /// Writes the lab CA, a certificate per node interface and one per user (PEM).
    Certs {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Make a new CA even when one exists (every old certificate stops being trusted).
        #[arg(long)]
        replace_ca: bool,
        /// The loopback slot whose addresses the certificates carry beside the container
        /// profile's (`siplab up --slot` writes its own slot's).
        #[arg(long, default_value_t = 0)]
        slot: u8,
    },
}

/// `--hep udp:IP:PORT`: where every node exports what it receives and sends, as HEPv3.
#[derive(clap::Args)]
struct HepArg {
    /// Export every SIP message of every node as HEPv3 to this collector: `udp:IP:PORT`
    /// (sngrep -L, Homer, `siplab collect`) or `tcp:IP:PORT` (Homer, `siplab collect`).
    #[arg(long, value_name = "udp:IP:PORT")]
    hep: Option<HepTarget>,
}

#[derive(Subcommand)]
enum Probe {
    /// Opens a TCP connection (exit status 0 when it opens within the time-out).
    Connect {
        addr: std::net::SocketAddr,
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
    /// Asks the lab's DNS server on the source address's network (exit status 0 when the
    /// name resolves).
    Dns {
        name: String,
        /// The address to ask from: it picks the view.
        #[arg(long)]
        source: std::net::IpAddr,
        #[arg(long, default_value = "A")]
        r#type: String,
    },
}

async fn probe(lab: &Lab, p: Probe) -> Result<()> {
    match p {
        Probe::Connect { addr, timeout } => {
            let t = std::time::Duration::from_secs(timeout);
            match tokio::time::timeout(t, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(_)) => println!("{addr}: open"),
                Ok(Err(e)) => anyhow::bail!("{addr}: {e}"),
                Err(_) => anyhow::bail!("{addr}: no answer within {timeout} s"),
            }
        }
        Probe::Dns {
            name,
            source,
            r#type,
        } => {
            let dns = siplab_dns::discovery::LabResolver::for_source(lab, source)?;
            let answer = match r#type.to_ascii_uppercase().as_str() {
                "SRV" => dns
                    .lookup_srv(&name)
                    .await
                    .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
                _ => dns
                    .lookup_a(&name)
                    .await
                    .map(|r| r.iter().map(|a| format!("A {a}")).collect()),
            };
            match answer {
                Ok(records) => println!("{name}: {}", records.join(", ")),
                Err(e) => anyhow::bail!("{name}: {e}"),
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let lab = match &cli.topology {
        Some(path) => Lab::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Lab::reference().context("the built-in reference lab")?,
    };
    match cli.command {
        Command::Certs {
            dir,
            replace_ca,
            slot,
        } => certs(&lab, &dir, replace_ca, slot),
        Command::Compose => {
            print!("{}", compose::compose(&lab));
            Ok(())
        }
        Command::Probe(p) => probe(&lab, p).await,
        Command::Collect { listen, web } => collect(lab, listen, web).await,
        Command::Run {
            slot,
            json,
            no_mirrors,
            report,
            hep,
        } => run(lab, slot, json, no_mirrors, report, hep.hep).await,
        Command::Bench {
            slot,
            rows,
            rates,
            duration,
        } => bench(lab.localized(slot), &rows, &rates, duration).await,
        Command::ClientConfig {
            client,
            user,
            at,
            slot,
            certs,
            ctrl,
            dns_only,
            dir,
        } => {
            let lab = slot.map_or(lab.clone(), |s| lab.localized(s));
            let setup = siplab_node::OutsideSetup {
                aor: user,
                at,
                ctrl,
                dns_only,
            };
            let (written, start) = if client == "linphone" {
                let w = siplab_node::write_linphone(&lab, &certs, &setup, &dir)?;
                (w, format!("{}/run", dir.display()))
            } else {
                let w = siplab_node::write_baresip(&lab, &certs, &setup, &dir)?;
                (w, format!("baresip -f {}", dir.display()))
            };
            println!(
                "{}: {client} configuration for {} ({} files); start it with: {start}",
                dir.display(),
                setup.aor,
                written.len(),
            );
            Ok(())
        }
        Command::Up {
            slot,
            certs: dir,
            web,
            hep,
        } => {
            certs(&lab, &dir, false, slot)?;
            up(lab.localized(slot), dir, web, hep.hep).await
        }
    }
}

/// The whole lab on `slot`, and on `slot + 1` its variant for the article's question.
async fn run(
    reference: Lab,
    slot: u8,
    json: bool,
    no_mirrors: bool,
    report: Option<PathBuf>,
    hep: Option<HepTarget>,
) -> Result<()> {
    siplab_node::init_tracing("warn");
    let started = std::time::Instant::now();
    let lab = reference.localized(slot);
    let certs = Certs::Authority(Arc::new(LabCa::generate().context("making the lab CA")?));
    let run = LabRun::start(lab.clone(), certs.clone())
        .await
        .context("starting the lab")?;
    let wire = match report.is_some() || hep.is_some() {
        true => Some(Wire::attach(&run.nodes, hep, CAPTURE_KEPT).await?),
        false => None,
    };
    let sign_ins = run
        .sign_in_everyone()
        .await
        .context("signing the users in")?;
    let paths = if no_mirrors {
        lab.paths().to_vec()
    } else {
        lab.paths_with_mirrors()
    };
    let rows = run_rows(&run, &paths).await;
    let presence = run_presence_rows(&run, &paths).await;
    let evidence = siplab_runner::article_evidence(&run, &rows).await;
    run.sign_out_all().await;
    if let (Some(dir), Some(wire)) = (&report, &wire) {
        wire.settle().await;
        let report = Report {
            lab: &lab,
            sign_ins: &sign_ins,
            rows: &rows,
            presence: &presence,
        };
        let index = report
            .write(dir, &wire.events())
            .with_context(|| format!("writing the report to {}", dir.display()))?;
        eprintln!("report: {}", index.display());
    }
    let question = siplab_runner::article_question(&reference, slot.wrapping_add(1), certs).await;
    let matched = rows.iter().filter(|r| r.outcome == Outcome::Match).count();
    let presence_matched = presence
        .iter()
        .filter(|r| r.outcome == Outcome::Match)
        .count();
    if json {
        let all = serde_json::json!({
            "sign_ins": sign_ins,
            "rows": rows,
            "presence": presence,
            "article": evidence,
            "question": question,
        });
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        print!("{}", siplab_runner::sign_in_table(&sign_ins));
        print!("{}", siplab_runner::table(&rows));
        print!("\n{}", siplab_runner::presence_table(&presence));
        if let Some(evidence) = &evidence {
            print!("\n{}", siplab_runner::evidence_table(evidence));
        }
        if let Some(question) = &question {
            print!("\n{}", siplab_runner::question_table(question));
        }
        println!(
            "\n{matched} of {} message rows and {presence_matched} of {} presence rows match the article \
             ({:.1} s, every hop mutual TLS on loopback).",
            rows.len(),
            presence.len(),
            started.elapsed().as_secs_f64()
        );
    }
    let shown = evidence
        .as_ref()
        .is_none_or(|e| e.capture == Outcome::Match && e.route == Outcome::Match)
        && question
            .as_ref()
            .is_none_or(|q| q.outcome == Outcome::Match);
    if matched != rows.len() || presence_matched != presence.len() || !shown {
        std::process::exit(1);
    }
    Ok(())
}

async fn bench(lab: Lab, rows: &[u32], rates: &[u32], secs: u64) -> Result<()> {
    siplab_node::init_tracing("error");
    let certs = Certs::Authority(Arc::new(LabCa::generate().context("making the lab CA")?));
    let run = LabRun::start(lab.clone(), certs)
        .await
        .context("starting the lab")?;
    println!(
        "{:<16} {:>4} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9}",
        "row", "hops", "offered/s", "achieved/s", "ok", "failed", "p50 ms", "p99 ms"
    );
    for &rate in rates {
        for &id in rows {
            let path = lab.path(id).with_context(|| format!("no row {id}"))?;
            let f =
                siplab_runner::path_load(&run, path, rate, std::time::Duration::from_secs(secs))
                    .await?;
            println!(
                "{:<16} {:>4} {:>9.0} {:>9.0} {:>7} {:>7} {:>9.2} {:>9.2}",
                f.scenario,
                f.hops,
                f.offered_per_s,
                f.achieved_per_s,
                f.ok,
                f.failed,
                f.p50_ms,
                f.p99_ms
            );
        }
    }
    run.sign_out_all().await;
    Ok(())
}

async fn up(
    lab: Lab,
    dir: PathBuf,
    web: Option<std::net::SocketAddr>,
    hep: Option<HepTarget>,
) -> Result<()> {
    siplab_node::init_tracing("info");
    let run = LabRun::start(lab.clone(), Certs::Dir(dir.clone()))
        .await
        .context("starting the lab")?;
    for node in &run.nodes {
        node.log_counters(siplab_node::COUNTERS_EVERY);
    }
    if web.is_some() || hep.is_some() {
        let wire = Wire::attach(&run.nodes, hep, LIVE_KEPT).await?;
        if let Some(addr) = web {
            let bound = siplab_runner::serve_live(lab.clone(), &wire, addr).await?;
            println!("Live page: http://{bound}/");
        }
        if let Some(target) = hep {
            println!("HEPv3 export of every node to {target}");
        }
    }
    println!("DNS (the view follows the querier's source address):");
    for addr in &run.dns.addrs {
        println!("  {addr}");
    }
    println!("SIP over mutual TLS:");
    for node in &run.nodes {
        for (iface, addr) in &node.listening {
            let names = lab
                .interface(iface)
                .map(|i| i.fqdns.join(", "))
                .unwrap_or_default();
            println!("  {:<4} {:<4} {addr:<18} {names}", node.name, iface);
        }
    }
    for node in lab.nodes().iter().filter(|n| n.role == Role::Partner) {
        for i in lab.interfaces_of(node.name.as_str()) {
            println!(
                "Partner {} ({}): not run by siplab; its server belongs at {} as {}, \
                 certificate {}/nodes/{}.pem",
                node.name,
                node.domain.as_deref().unwrap_or_default(),
                i.socket(Purpose::Sip)
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                i.fqdns.join(", "),
                dir.display(),
                i.name
            );
        }
    }
    println!(
        "Client certificates: {0}/users/<aor>.pem and .key, trusting {0}/ca.pem",
        dir.display()
    );
    println!(
        "For example: siplab-client --slot {} --user alice@contoso.test --at external",
        lab.slot().unwrap_or(0)
    );
    println!("lab up; Ctrl-C stops it");
    siplab_node::shutdown_signal().await;
    Ok(())
}

async fn collect(lab: Lab, listen: std::net::SocketAddr, web: std::net::SocketAddr) -> Result<()> {
    siplab_node::init_tracing("info");
    let (wire, bound) = Wire::collect(&lab, listen, LIVE_KEPT)
        .await
        .with_context(|| format!("listening for HEPv3 on {listen}"))?;
    let page = siplab_runner::serve_live(lab, &wire, web)
        .await
        .with_context(|| format!("serving the live page on {web}"))?;
    println!("HEPv3 collector on udp:{bound} and tcp:{bound}; live page: http://{page}/");
    siplab_node::shutdown_signal().await;
    Ok(())
}

/// Every interface gets its names and both profiles' addresses (containers and `slot` of the
/// single-process lab); peers check the names, the addresses are there for people and tools
/// (and for clients that check an address SAN).
fn certs(lab: &Lab, dir: &std::path::Path, replace_ca: bool, slot: u8) -> Result<()> {
    let local = lab.localized(slot);
    let nodes: Vec<NodeIdentity> = lab
        .node_identities()
        .into_iter()
        .map(|id| {
            let mut ips = vec![id.address];
            if let Some(l) = local.interface(id.interface.as_str()) {
                ips.push(l.ip());
            }
            NodeIdentity {
                name: id.interface.to_string(),
                dns_names: id.dns_names,
                ips,
            }
        })
        .collect();
    let users: Vec<UserIdentity> = lab
        .users()
        .iter()
        .map(|u| UserIdentity { aor: u.aor.clone() })
        .collect();
    let summary = siplab_pki::write_lab_certs(dir, &nodes, &users, replace_ca)
        .with_context(|| format!("writing certificates to {}", dir.display()))?;
    let ca = match summary.ca {
        CaStatus::Created => "created a new lab CA",
        CaStatus::Kept => "kept the existing lab CA",
    };
    println!(
        "{}: {ca}; {} node and {} user certificates ({} files written)",
        dir.display(),
        nodes.len(),
        users.len(),
        summary.written.len()
    );
    Ok(())
}
