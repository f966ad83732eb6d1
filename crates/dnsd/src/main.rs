//! `siplab-dns [--topology FILE] [--slot N]`: the lab's DNS server, ns.lab.test (section 3 of
//! the reference-lab spec), on the DNS node's address in every network until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use siplab_dns::DnsServer;
use siplab_topology::Lab;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

#[derive(Parser)]
#[command(
    version,
    about = "siplab DNS: the lab's authoritative server, answering each network from its own view"
)]
struct Cli {
    /// The lab description (default: the built-in reference lab).
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Run on the single-process (loopback) profile with this slot instead of the container
    /// addresses.
    #[arg(long)]
    slot: Option<u8>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The servers' logging: RUST_LOG or info, colour only at a terminal.
    siplab_node::init_tracing("info");

    let cli = Cli::parse();
    let lab = match &cli.topology {
        Some(path) => Lab::load(path)?,
        None => Lab::reference()?,
    };
    let lab = match cli.slot {
        Some(slot) => lab.localized(slot),
        None => lab,
    };
    let mut dns = DnsServer::start(&lab).await?;
    for addr in &dns.addrs {
        info!(%addr, "ns.lab.test listening (UDP and TCP)");
    }

    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    tokio::select! {
        error = dns.stopped() => return Err(error.into()),
        interrupted = tokio::signal::ctrl_c() => interrupted.context("cannot watch for Ctrl-C")?,
        _ = terminate.recv() => {}
    }
    info!("shutting down");
    dns.shutdown().await?;
    Ok(())
}
