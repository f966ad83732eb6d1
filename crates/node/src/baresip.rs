//! A ready-made configuration directory for baresip (Debian's 1.0), the outside SIP client the
//! lab is tested with: `baresip -f DIR` then signs in as one lab user from one place, over
//! mutual TLS with the user's certificate, asking the lab's DNS server of that place's
//! network, so that it finds its server the way a standard client does (RFC 3263:
//! `_sips._tcp.<domain>`).
//!
//! What baresip needs that siplab's own client does not:
//! - its modules listed (it loads none it is not told to), and audio devices that need no
//!   sound card (aubridge as both source and player), or it ends every call at once;
//! - its certificate and key in one PEM file;
//! - `net_interface` set to the place's address, or its SDP offers the host's own address;
//! - for a cloud-hosted user, the cloud edge as outbound proxy: baresip does not follow the
//!   `301` a company's front end answers such a user's REGISTER with.
//!
//! baresip speaks from 127.0.0.1 whatever `sip_listen` says (only its listener is bound
//! there), which is why the lab's DNS answers a query from outside every lab network from
//! the view of the listener it was sent to.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use siplab_topology::{At, Lab, Purpose, UserClass};

use crate::NodeError;
use crate::client::place_of;

/// Where Debian installs baresip's modules.
pub const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// What a baresip configuration is made for.
#[derive(Debug, Clone)]
pub struct BaresipSetup {
    pub aor: String,
    pub at: At,
    /// Where baresip's `ctrl_tcp` module listens for commands (JSON in netstrings).
    pub ctrl: SocketAddr,
    /// Sign in through DNS alone, even for a cloud-hosted user (who then meets the 301).
    pub dns_only: bool,
}

/// Writes `config`, `accounts`, `contacts`, `cert.pem` (certificate and key) and `ca.pem`
/// into `out` for `setup.aor` at `setup.at` in `lab` (either profile), from the certificates
/// `siplab certs` wrote into `certs`. Returns the files written.
pub fn write_baresip(
    lab: &Lab,
    certs: &Path,
    setup: &BaresipSetup,
    out: &Path,
) -> Result<Vec<PathBuf>, NodeError> {
    let err = |what: String| NodeError::Client {
        aor: setup.aor.clone(),
        what,
    };
    let (place, domain) = place_of(lab, &setup.aor, setup.at)?;
    let dns = lab
        .interfaces_of("DNS")
        .find(|i| i.network == place.network)
        .and_then(|i| i.socket(Purpose::Dns))
        .ok_or_else(|| err(format!("no DNS listener on {}", place.network)))?;
    let user = lab
        .user(&setup.aor)
        .ok_or_else(|| err("not a user of the lab".into()))?;
    // A cloud-hosted user signs in at the cloud edge, where its company's 301 would send it.
    let outbound = match (user.class, setup.dns_only) {
        (UserClass::B, false) => {
            let redirect = lab
                .node(domain.frontend.as_str())
                .and_then(|n| n.cloud_redirect.as_ref())
                .ok_or_else(|| err(format!("{} has no cloud redirect", domain.frontend)))?;
            format!(";outbound=\"{}\"", redirect.uri())
        }
        _ => String::new(),
    };
    let pem = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| NodeError::Certificate {
            who: setup.aor.clone(),
            reason: format!("{}: {e} (run `siplab certs` first)", path.display()),
        })
    };
    let paths = siplab_pki::user_cert_paths(certs, &setup.aor);
    let cert = pem(&paths.cert)? + &pem(&paths.key)?;
    let ca = pem(&siplab_pki::ca_path(certs))?;

    // baresip reads the files from wherever it is started.
    let out = &std::path::absolute(out).map_err(|e| err(format!("{}: {e}", out.display())))?;
    let cert_file = out.join("cert.pem");
    let ca_file = out.join("ca.pem");
    let config = format!(
        "# baresip as {aor}, {at} ({place}), written by `siplab client-config baresip`.\n\
         poll_method      epoll\n\
         sip_listen       {addr}:5060\n\
         sip_certificate  {cert}\n\
         sip_cafile       {ca}\n\
         net_interface    {addr}\n\
         dns_server       {dns}\n\
         call_local_timeout 120\n\
         audio_player     aubridge,lab\n\
         audio_source     aubridge,lab\n\
         audio_alert      aubridge,lab\n\
         module_path      {MODULE_PATH}\n\
         module           g711.so\n\
         module           aubridge.so\n\
         module_tmp       uuid.so\n\
         module_tmp       account.so\n\
         module_app       menu.so\n\
         module_app       contact.so\n\
         module_app       ctrl_tcp.so\n\
         ctrl_tcp_listen  {ctrl}\n",
        aor = setup.aor,
        at = setup.at,
        place = place.name,
        addr = place.address,
        cert = cert_file.display(),
        ca = ca_file.display(),
        ctrl = setup.ctrl,
    );
    let account = format!(
        "<sip:{};transport=tls>;regint=600;answermode=auto{outbound}\n",
        setup.aor
    );
    let mut contacts = String::new();
    for u in lab.users().iter().filter(|u| u.aor != setup.aor) {
        let name = u.aor.split('@').next().unwrap_or(&u.aor);
        let _ = writeln!(contacts, "\"{name}\" <sip:{}>", u.aor);
    }
    let files = [
        (out.join("config"), config),
        (out.join("accounts"), account),
        (out.join("contacts"), contacts),
        (cert_file, cert),
        (ca_file, ca),
    ];
    std::fs::create_dir_all(out).map_err(|e| err(format!("{}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        written.push(path);
    }
    // cert.pem holds the private key.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&written[3], std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("{}: {e}", written[3].display())))?;
    Ok(written)
}
