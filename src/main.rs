//! `siplab`: the lab's own command. `siplab certs` writes the lab CA and every certificate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use siplab_pki::{CaStatus, NodeIdentity, UserIdentity};
use siplab_topology::Lab;

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
    /// Writes the lab CA, a certificate per node interface and one per user (PEM).
    Certs {
        /// Where to write them.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Make a new CA even when one exists (every old certificate stops being trusted).
        #[arg(long)]
        replace_ca: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let lab = match &cli.topology {
        Some(path) => Lab::load(path).with_context(|| format!("loading {}", path.display()))?,
        None => Lab::reference().context("the built-in reference lab")?,
    };
    match cli.command {
        Command::Certs { dir, replace_ca } => certs(&lab, &dir, replace_ca),
    }
}

/// Every interface gets its names and both profiles' addresses (containers and slot 0 of the
/// single-process lab); peers check the names, the addresses are there for people and tools.
fn certs(lab: &Lab, dir: &std::path::Path, replace_ca: bool) -> Result<()> {
    let local = lab.localized(0);
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
