//! The layout of `certs/`, and writing the whole set into it.
//!
//! ```text
//! ca.pem, ca.key                     the lab CA
//! nodes/<name>.pem, nodes/<name>.key one per node interface (R1, E1i, E1x, ...)
//! users/<aor>.pem, users/<aor>.key   one per user (alice@contoso.test, ...)
//! ```
//!
//! Certificates end in `.pem` and private keys (PEM too) in `.key`, so that
//! `openssl verify -CAfile ca.pem nodes/*.pem users/*.pem` picks up certificates only.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{IssuedCert, LabCa, NodeIdentity, PkiError, UserIdentity};

const NODES: &str = "nodes";
const USERS: &str = "users";

/// Where one identity's certificate and private key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The CA certificate under `dir`: what every node and client trusts.
pub fn ca_path(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The CA private key under `dir`; only [`write_lab_certs`] needs it.
fn ca_key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// The certificate and key of node interface `name` (`E1x`, `CP1`, ...) under `dir`.
pub fn node_cert_paths(dir: &Path, name: &str) -> CertPaths {
    cert_paths(&dir.join(NODES), name)
}

/// The certificate and key of user `aor` (`alice@contoso.test`) under `dir`.
pub fn user_cert_paths(dir: &Path, aor: &str) -> CertPaths {
    cert_paths(&dir.join(USERS), aor)
}

fn cert_paths(folder: &Path, stem: &str) -> CertPaths {
    CertPaths {
        cert: folder.join(format!("{stem}.pem")),
        key: folder.join(format!("{stem}.key")),
    }
}

/// What [`write_lab_certs`] did with the CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaStatus {
    /// A new CA was made and written: every peer must trust the new `ca.pem`.
    Created,
    /// The CA on disk was reused, so `ca.pem` that peers already trust stays valid.
    Kept,
}

/// What [`write_lab_certs`] did, for the command to report.
#[derive(Debug)]
pub struct WriteSummary {
    pub ca: CaStatus,
    /// Every file written, CA files first when the CA was created.
    pub written: Vec<PathBuf>,
    /// Certificates and keys of identities no longer in the lab, removed so that no stale
    /// certificate (perhaps from a replaced CA) lingers among the current ones.
    pub removed: Vec<PathBuf>,
}

impl LabCa {
    /// Loads the CA that [`write_lab_certs`] wrote under `dir`; errors name the file.
    pub fn read(dir: &Path) -> Result<Self, PkiError> {
        let cert_path = ca_path(dir);
        let key_path = ca_key_path(dir);
        Self::load(
            &read(&cert_path)?,
            &cert_path.display().to_string(),
            &read(&key_path)?,
            &key_path.display().to_string(),
        )
    }
}

/// Writes the lab's whole certificate set under `dir` (see the module doc for the layout).
///
/// An existing CA (`ca.pem` and `ca.key`) is kept unless `replace_ca`, so that re-running
/// does not invalidate what peers already trust; leaf certificates are always issued anew.
/// Everything is issued in memory before the first file is written, so a bad identity leaves
/// the previous set whole. Key files are readable by their owner only (mode 0600 on unix).
pub fn write_lab_certs(
    dir: &Path,
    nodes: &[NodeIdentity],
    users: &[UserIdentity],
    replace_ca: bool,
) -> Result<WriteSummary, PkiError> {
    refuse_duplicates(nodes.iter().map(NodeIdentity::label))?;
    refuse_duplicates(users.iter().map(UserIdentity::label))?;

    let (ca, status) = open_or_create_ca(dir, replace_ca)?;
    let mut leaves: Vec<(CertPaths, IssuedCert)> = Vec::with_capacity(nodes.len() + users.len());
    for node in nodes {
        leaves.push((node_cert_paths(dir, &node.name), ca.issue_node(node)?));
    }
    for user in users {
        leaves.push((user_cert_paths(dir, &user.aor), ca.issue_user(user)?));
    }

    for folder in [dir.join(NODES), dir.join(USERS)] {
        fs::create_dir_all(&folder).map_err(|source| PkiError::Io {
            path: folder,
            source,
        })?;
    }
    let mut written = Vec::new();
    if status == CaStatus::Created {
        let (cert, key) = (ca_path(dir), ca_key_path(dir));
        write_file(&cert, ca.cert_pem(), false)?;
        write_file(&key, &ca.key_pem(), true)?;
        written.extend([cert, key]);
    }
    for (paths, issued) in leaves {
        write_file(&paths.cert, &issued.cert_pem, false)?;
        write_file(&paths.key, &issued.key_pem, true)?;
        written.extend([paths.cert, paths.key]);
    }

    let mut removed = Vec::new();
    for folder in [dir.join(NODES), dir.join(USERS)] {
        removed.extend(remove_stale(&folder, &written)?);
    }
    Ok(WriteSummary {
        ca: status,
        written,
        removed,
    })
}

/// Two identities of one name would overwrite each other's files.
fn refuse_duplicates(labels: impl Iterator<Item = String>) -> Result<(), PkiError> {
    let mut seen = HashSet::new();
    for label in labels {
        if !seen.insert(label.clone()) {
            return Err(PkiError::Identity {
                identity: label,
                reason: "appears twice, and both would write the same files",
            });
        }
    }
    Ok(())
}

/// Keeps a complete CA on disk unless asked to replace it; refuses half of one.
fn open_or_create_ca(dir: &Path, replace_ca: bool) -> Result<(LabCa, CaStatus), PkiError> {
    let (cert, key) = (ca_path(dir), ca_key_path(dir));
    if replace_ca {
        return Ok((LabCa::generate()?, CaStatus::Created));
    }
    match (exists(&cert)?, exists(&key)?) {
        (true, true) => Ok((LabCa::read(dir)?, CaStatus::Kept)),
        (false, false) => Ok((LabCa::generate()?, CaStatus::Created)),
        (true, false) => Err(PkiError::IncompleteCa {
            present: cert,
            missing: key,
        }),
        (false, true) => Err(PkiError::IncompleteCa {
            present: key,
            missing: cert,
        }),
    }
}

/// Removes the certificates and keys in `folder` that this run did not write.
fn remove_stale(folder: &Path, written: &[PathBuf]) -> Result<Vec<PathBuf>, PkiError> {
    let io_error = |source| PkiError::Io {
        path: folder.to_owned(),
        source,
    };
    let mut removed = Vec::new();
    for entry in fs::read_dir(folder).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        let ours = path
            .extension()
            .is_some_and(|ext| ext == "pem" || ext == "key");
        if ours && path.is_file() && !written.contains(&path) {
            fs::remove_file(&path).map_err(|source| PkiError::Io {
                path: path.clone(),
                source,
            })?;
            removed.push(path);
        }
    }
    removed.sort();
    Ok(removed)
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    path.try_exists().map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path`; a `private` file is made owner-only before the key goes in.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), PkiError> {
    let io_error = |source| PkiError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_error)?;
    if private {
        restrict_to_owner(&file).map_err(io_error)?;
    }
    file.write_all(contents.as_bytes()).map_err(io_error)
}

/// Mode 0600, also for a key file that existed with wider permissions.
#[cfg(unix)]
fn restrict_to_owner(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
}

/// Elsewhere the platform's default permissions stand.
#[cfg(not(unix))]
fn restrict_to_owner(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::testing::{alice, cex, e1x};

    fn write(dir: &Path, replace_ca: bool) -> WriteSummary {
        write_lab_certs(dir, &[e1x(), cex()], &[alice()], replace_ca).unwrap()
    }

    #[test]
    fn writes_the_whole_set_where_the_path_helpers_say() {
        let dir = tempfile::tempdir().unwrap();
        let summary = write(dir.path(), false);
        assert_eq!(summary.ca, CaStatus::Created);
        assert!(summary.removed.is_empty());

        let e1x = node_cert_paths(dir.path(), "E1x");
        let alice = user_cert_paths(dir.path(), "alice@contoso.test");
        assert_eq!(e1x.cert, dir.path().join("nodes/E1x.pem"));
        assert_eq!(alice.key, dir.path().join("users/alice@contoso.test.key"));
        let mut expected = vec![ca_path(dir.path()), ca_key_path(dir.path())];
        for paths in [e1x, node_cert_paths(dir.path(), "CEx"), alice] {
            expected.extend([paths.cert, paths.key]);
        }
        assert_eq!(summary.written, expected);
        assert!(expected.iter().all(|path| path.is_file()));
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_owner_only_even_if_they_existed_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let key = node_cert_paths(dir.path(), "E1x").key;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        write(dir.path(), false);
        for path in [ca_key_path(dir.path()), key] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
    }

    #[test]
    fn rerunning_keeps_the_ca_and_reissues_the_leaves() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let ca_before = fs::read(ca_path(dir.path())).unwrap();
        let leaf = node_cert_paths(dir.path(), "E1x").cert;
        let leaf_before = fs::read(&leaf).unwrap();

        let summary = write(dir.path(), false);
        assert_eq!(summary.ca, CaStatus::Kept);
        assert!(!summary.written.contains(&ca_path(dir.path())));
        assert_eq!(fs::read(ca_path(dir.path())).unwrap(), ca_before);
        assert_ne!(fs::read(&leaf).unwrap(), leaf_before);
    }

    #[test]
    fn replace_ca_makes_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let ca_before = fs::read(ca_path(dir.path())).unwrap();
        let summary = write(dir.path(), true);
        assert_eq!(summary.ca, CaStatus::Created);
        assert_ne!(fs::read(ca_path(dir.path())).unwrap(), ca_before);
    }

    #[test]
    fn certificates_of_identities_gone_from_the_lab_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let summary = write_lab_certs(dir.path(), &[e1x()], &[], false).unwrap();
        let cex = node_cert_paths(dir.path(), "CEx");
        let alice = user_cert_paths(dir.path(), "alice@contoso.test");
        let mut expected = vec![cex.cert, cex.key, alice.cert, alice.key];
        expected.sort();
        let mut removed = summary.removed;
        removed.sort();
        assert_eq!(removed, expected);
        assert!(expected.iter().all(|path| !path.exists()));
        assert!(node_cert_paths(dir.path(), "E1x").cert.is_file());
    }

    #[test]
    fn half_a_ca_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        fs::remove_file(ca_key_path(dir.path())).unwrap();
        let err = write_lab_certs(dir.path(), &[e1x()], &[], false).unwrap_err();
        assert!(matches!(err, PkiError::IncompleteCa { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert_eq!(write(dir.path(), true).ca, CaStatus::Created);
    }

    #[test]
    fn a_corrupt_ca_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        fs::write(ca_key_path(dir.path()), "not a key").unwrap();
        let err = write_lab_certs(dir.path(), &[e1x()], &[], false).unwrap_err();
        assert!(matches!(err, PkiError::CaKey { .. }), "{err}");
        assert!(err.to_string().contains("ca.key"), "{err}");
    }

    #[test]
    fn a_bad_identity_leaves_the_previous_set_untouched() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let leaf = node_cert_paths(dir.path(), "E1x").cert;
        let before = fs::read(&leaf).unwrap();
        let bad = NodeIdentity {
            name: "../escape".into(),
            ..cex()
        };
        assert!(write_lab_certs(dir.path(), &[e1x(), bad], &[], false).is_err());
        assert!(write_lab_certs(dir.path(), &[e1x(), e1x()], &[], false).is_err());
        assert_eq!(fs::read(&leaf).unwrap(), before);
    }

    #[test]
    fn reading_a_missing_ca_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = LabCa::read(dir.path()).unwrap_err();
        assert!(matches!(err, PkiError::Io { .. }));
        assert!(err.to_string().ends_with("ca.pem"), "{err}");
    }

    /// What `nodes/*.pem` matches in a shell: the certificates of `folder`, not the keys.
    fn pem_files(folder: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "pem"))
            .collect();
        files.sort();
        files
    }

    /// The checks `certs/README.md` tells people to run, with its globs.
    #[test]
    fn openssl_verifies_every_leaf_for_its_purpose() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false);
        let nodes = pem_files(&dir.path().join(NODES));
        let users = pem_files(&dir.path().join(USERS));
        assert_eq!((nodes.len(), users.len()), (2, 1));
        let everyone = [nodes.clone(), users.clone()].concat();
        let checks = [
            ("any", everyone),
            ("sslserver", nodes.clone()),
            ("sslclient", nodes),
            ("sslclient", users),
        ];
        for (purpose, leaves) in checks {
            let output = Command::new("openssl")
                .args(["verify", "-purpose", purpose, "-CAfile"])
                .arg(ca_path(dir.path()))
                .args(&leaves)
                .output();
            let output = match output {
                Ok(output) => output,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    eprintln!("skipped: no openssl command on this machine");
                    return;
                }
                Err(e) => panic!("running openssl: {e}"),
            };
            assert!(
                output.status.success(),
                "openssl verify -purpose {purpose}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
