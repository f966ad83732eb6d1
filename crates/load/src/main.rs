//! `siplab-load`: an open-loop load generator for a SIP proxy over mutual TLS, siplab's front
//! end or Kamailio alike.
//!
//! N callee users register, each over its own persistent connection (RFC 5626 outbound), and
//! answer whatever reaches them; K caller connections send MESSAGEs, INVITE-ACK-BYE calls, or
//! (from the callees) REGISTER refreshes to random users at a fixed offered rate. Send times
//! are scheduled, never paced by answers, and latency runs from the scheduled time to the
//! final response, so a proxy that falls behind cannot hide it. Given the proxy's pid, each
//! step also reports the proxy's CPU time per request and its memory.
//!
//! - `cli`: the flags; `users`: the users and their certificates;
//! - `conn`: one user's connection (answers as callee, transactions as caller);
//! - `requests`: the requests and answers on the wire; `schedule`: the open loop;
//! - `stats`, `report`: what a step counts and says; `procfs`: the proxy's CPU and memory;
//! - `run`: the phases of a run.

mod cli;
mod conn;
mod procfs;
mod report;
mod requests;
mod run;
mod schedule;
mod stats;
mod users;

use anyhow::{Context, Result, bail};
use clap::Parser;

/// mimalloc, chosen by the program rather than a library it links: glibc's malloc and free
/// were 7 % of a front end's CPU while relaying, and connections and bindings take less
/// memory with mimalloc (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = cli::Args::parse();
    let users = users::Users::from_args(&args)?;
    if args.make_certs {
        let n = users::write(&args.certs, &users)?;
        println!(
            "{}: wrote the certificates of {n} users under users/",
            args.certs.display()
        );
        return Ok(());
    }
    let connecting = run::connecting(&args, &users);
    raise_fd_limit(connecting.len() as u64 + 64)?;
    let loaded = users::load(&args.certs, &connecting)?;
    let say = format!(
        "certificates: {} from {}, {} issued in memory by its CA, in {:.1} s",
        loaded.from_files,
        args.certs.display(),
        loaded.issued,
        loaded.seconds
    );
    if args.json {
        eprintln!("{say}");
    } else {
        println!("{say}");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(run::run(args, users, loaded.tls, threads))
}

/// Every user holds a socket: raises the soft limit on open files to the hard one, and
/// refuses to start when that is still too few (rather than failing half way through).
fn raise_fd_limit(needed: u64) -> Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur < needed && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    if lim.rlim_cur < needed {
        bail!(
            "{needed} open files are needed but the limit is {} (raise it: ulimit -n)",
            lim.rlim_cur
        );
    }
    Ok(())
}
