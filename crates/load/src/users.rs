//! Who the generator speaks as: callee and caller users, each with its own certificate, since
//! a proxy that checks the TLS identity against the AOR (siplab's front end does) would refuse
//! a REGISTER for one user over another user's connection.
//!
//! Certificates come from `--certs`: `users/<aor>.pem` and `.key` where written beforehand
//! (`--make-certs`, or `siplab certs` for topology users), otherwise issued in memory by the
//! lab CA whose key is `ca.key`. Both chain to the `ca.pem` the proxy trusts; issuing 10,000
//! ECDSA P-256 certificates in memory takes a few seconds on two cores, and writes no files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use siplab_pki::{IssuedCert, LabCa, UserIdentity, user_cert_paths};
use siplab_transport::TlsConfig;

use crate::cli::Args;

/// One user: the local part and the address of record.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub aor: String,
}

/// The callees (registered, answering) and the callers (sending), in that order.
pub struct Users {
    pub callees: Vec<User>,
    pub callers: Vec<User>,
}

impl Users {
    pub fn from_args(args: &Args) -> Result<Users> {
        let named = |names: &[String], prefix: &str, count: usize| -> Vec<User> {
            let names: Vec<String> = if names.is_empty() {
                (0..count).map(|i| format!("{prefix}{i}")).collect()
            } else {
                names.to_vec()
            };
            names
                .into_iter()
                .map(|name| User {
                    aor: format!("{name}@{}", args.domain),
                    name,
                })
                .collect()
        };
        let callees = named(&args.user_names, &args.user_prefix, args.users);
        let callers = named(&args.caller_names, &args.caller_prefix, args.callers);
        let mut seen = std::collections::HashSet::new();
        for u in callees.iter().chain(&callers) {
            if !seen.insert(u.aor.as_str()) {
                bail!(
                    "user {} is both a callee and a caller, or listed twice",
                    u.aor
                );
            }
        }
        Ok(Users { callees, callers })
    }

    pub fn all(&self) -> impl Iterator<Item = &User> {
        self.callees.iter().chain(&self.callers)
    }
}

/// Where each user's certificate came from, for the report.
pub struct Loaded {
    pub tls: Vec<TlsConfig>,
    pub from_files: usize,
    pub issued: usize,
    pub seconds: f64,
}

/// The TLS identity of every user, in the order of `users`, built on all cores.
pub fn load(dir: &Path, users: &[&User]) -> Result<Loaded> {
    let started = Instant::now();
    let ca_pem = std::fs::read(siplab_pki::ca_path(dir))
        .with_context(|| format!("reading {}", siplab_pki::ca_path(dir).display()))?;
    // Read once, and only when some user has no certificate file.
    let ca: OnceLock<Result<LabCa, String>> = OnceLock::new();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = users.len().div_ceil(threads).max(1);
    let results: Vec<Result<Vec<(TlsConfig, bool)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                let (ca, ca_pem) = (&ca, &ca_pem);
                s.spawn(move || {
                    part.iter()
                        .map(|u| one(dir, ca, ca_pem, u))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a certificate thread panicked")))
            })
            .collect()
    });
    let mut loaded = Loaded {
        tls: Vec::with_capacity(users.len()),
        from_files: 0,
        issued: 0,
        seconds: 0.0,
    };
    for part in results {
        for (tls, from_file) in part? {
            loaded.tls.push(tls);
            if from_file {
                loaded.from_files += 1;
            } else {
                loaded.issued += 1;
            }
        }
    }
    loaded.seconds = started.elapsed().as_secs_f64();
    Ok(loaded)
}

/// One user's identity; `true` when it came from files.
fn one(
    dir: &Path,
    ca: &OnceLock<Result<LabCa, String>>,
    ca_pem: &[u8],
    user: &User,
) -> Result<(TlsConfig, bool)> {
    let paths = user_cert_paths(dir, &user.aor);
    if paths.cert.is_file() {
        let tls = TlsConfig::from_files(&siplab_pki::ca_path(dir), &paths.cert, &paths.key)
            .with_context(|| format!("user {}", user.aor))?;
        return Ok((tls, true));
    }
    let ca = ca
        .get_or_init(|| LabCa::read(dir).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| {
            anyhow!(
                "no certificate {} for {}, and no lab CA to issue one ({e}); \
                 write them with --make-certs or give --certs the directory of ca.key",
                paths.cert.display(),
                user.aor
            )
        })?;
    let issued = issue(ca, user)?;
    let tls = TlsConfig::from_pem(
        ca_pem,
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .with_context(|| format!("user {}", user.aor))?;
    Ok((tls, false))
}

fn issue(ca: &LabCa, user: &User) -> Result<IssuedCert> {
    ca.issue_user(&UserIdentity {
        aor: user.aor.clone(),
    })
    .with_context(|| format!("issuing the certificate of {}", user.aor))
}

/// `--make-certs`: writes every user's certificate and key (owner-only) under `dir/users/`,
/// for targets or tools that want files; the proxy needs only `ca.pem`.
pub fn write(dir: &Path, users: &Users) -> Result<usize> {
    let ca = LabCa::read(dir).context("--make-certs needs the lab CA (ca.pem, ca.key)")?;
    let all: Vec<&User> = users.all().collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = all.len().div_ceil(threads).max(1);
    std::fs::create_dir_all(dir.join("users"))
        .with_context(|| format!("creating {}", dir.join("users").display()))?;
    std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .map(|part| {
                let ca = &ca;
                s.spawn(move || -> Result<()> {
                    for u in part {
                        let issued = issue(ca, u)?;
                        let paths = user_cert_paths(dir, &u.aor);
                        write_file(&paths.cert, &issued.cert_pem, 0o644)?;
                        write_file(&paths.key, &issued.key_pem, 0o600)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .unwrap_or_else(|_| Err(anyhow!("a certificate thread panicked")))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(all.len())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // Before the key goes in, also for a file that existed with wider permissions.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
