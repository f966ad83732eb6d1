//! What every server program shares: its command line, its logging, and running until
//! it is told to stop.

use std::path::PathBuf;

use siplab_proxy::ProxyConfig;
use siplab_topology::{Lab, Role};
use siplab_transport::hep::{self, HepTarget};
use tracing::info;

use crate::{Certs, NodeError, start_node};

/// `--topology FILE --node NAME [--certs DIR] [--slot N]`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The lab description (default: the built-in reference lab).
    #[arg(long)]
    pub topology: Option<PathBuf>,
    /// Which node of the topology this process is (R1, E1, ...).
    #[arg(long)]
    pub node: String,
    /// Where `siplab certs` wrote the certificates.
    #[arg(long, default_value = "certs")]
    pub certs: PathBuf,
    /// Run on the single-process (loopback) profile with this slot instead of the
    /// container addresses.
    #[arg(long)]
    pub slot: Option<u8>,
    /// Export every SIP message the node receives and sends, as HEPv3, to this collector
    /// `udp:IP:PORT` (sngrep -L, Homer, `siplab collect`) or `tcp:IP:PORT` (Homer,
    /// `siplab collect`; many packets per write, for less of the node's CPU).
    #[arg(long, value_name = "udp:IP:PORT")]
    pub hep: Option<HepTarget>,
}

/// How often a node logs its counters (when they changed).
pub const COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Messages waiting for the HEP exporter; beyond it they are dropped and counted, so a slow
/// or dead collector never holds SIP up.
pub const HEP_QUEUE: usize = 8192;

/// The whole `main` of a server program: its command line (`name`, what it is in `about`,
/// then [`ServerArgs`]), its logging, and [`serve`] for the roles it takes.
pub async fn server_main(
    name: &'static str,
    about: &'static str,
    roles: &[Role],
) -> Result<(), NodeError> {
    use clap::{Args, Command, FromArgMatches};
    let command = ServerArgs::augment_args(Command::new(name))
        .version(env!("CARGO_PKG_VERSION"))
        .about(about);
    let args = ServerArgs::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    init_tracing("info");
    serve(args, roles).await
}

/// Logs to stderr, filtered by RUST_LOG (else by `default`, e.g. "info").
pub fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal: a log file or pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Loads the topology, checks the node has a role this program serves, starts it and runs
/// until Ctrl-C or SIGTERM.
pub async fn serve(args: ServerArgs, roles: &[Role]) -> Result<(), NodeError> {
    let lab = match &args.topology {
        Some(p) => Lab::load(p),
        None => Lab::reference(),
    }
    .map_err(|e| NodeError::Topology(e.to_string()))?;
    let lab = match args.slot {
        Some(s) => lab.localized(s),
        None => lab,
    };
    let node = lab
        .node(&args.node)
        .ok_or_else(|| NodeError::UnknownNode(args.node.clone()))?;
    if !roles.contains(&node.role) {
        return Err(NodeError::Role {
            node: args.node.clone(),
            role: node.role.to_string(),
        });
    }
    let running = start_node(
        &lab,
        &args.node,
        &Certs::Dir(args.certs.clone()),
        ProxyConfig::default(),
    )
    .await?;
    if let Some(target) = args.hep {
        let sink = hep::start(target, HEP_QUEUE)
            .await
            .map_err(|e| NodeError::Hep(e.to_string()))?;
        running.capture_into(sink);
    }
    running.log_counters(COUNTERS_EVERY);
    for (iface, addr) in &running.listening {
        info!(%iface, %addr, "listening");
    }
    shutdown_signal().await;
    info!(node = %running.name, "stopping");
    running.drop_connections();
    Ok(())
}

/// Returns at Ctrl-C or SIGTERM (`docker stop`).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
