//! Ready-made configuration for the outside SIP clients the lab is tested with, Debian's
//! baresip 1.0 and Linphone 5.1 (`linphonec`): each signs in as one lab user from one place,
//! over mutual TLS with the user's certificate, asking the lab's DNS server of that place's
//! network, so that it finds its server the way a standard client does.
//!
//! Both speak from 127.0.0.1 whatever they bind their listener to, which is why the lab's DNS
//! answers a query from outside every lab network from the view of the listener it was sent
//! to. Neither follows the `301` a company's front end answers a cloud-hosted user's REGISTER
//! with, so a cloud user is pointed at the cloud edge, where that 301 would send it.
//!
//! What baresip needs that siplab's own client does not:
//! - its modules listed (it loads none it is not told to), and audio devices that need no
//!   sound card (aubridge as both source and player), or it ends every call at once;
//! - its certificate and key in one PEM file;
//! - `net_interface` set to the place's address, or its SDP offers the host's own address.
//!
//! What Linphone needs:
//! - a DNS server it can be given only through `/etc/resolv.conf` (which takes a port as
//!   `nameserver [addr]:port`): `run` bind-mounts the generated one in a mount namespace of
//!   its own (`unshare -m`, as root);
//! - a database folder and a HOME of its own, or its core never starts;
//! - the server by name and port (it checks the certificate's name against the URI's host,
//!   and cannot match an IP-address SAN); `soundcard use files` before a call.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use siplab_topology::{At, ClientPlace, CloudRedirect, Lab, Purpose, UserClass};

use crate::NodeError;
use crate::client::place_of;

/// Where Debian installs baresip's modules.
const MODULE_PATH: &str = "/usr/lib/baresip/modules";

/// What a configuration is made for.
#[derive(Debug, Clone)]
pub struct OutsideSetup {
    pub aor: String,
    pub at: At,
    /// Where baresip's `ctrl_tcp` module listens for commands (JSON in netstrings).
    pub ctrl: SocketAddr,
    /// Sign in through DNS alone, even for a cloud-hosted user (who then meets the 301).
    pub dns_only: bool,
}

/// What both clients are configured from: the place, its DNS listener, the server, the PEM
/// texts.
struct Prepared {
    place: ClientPlace,
    dns: SocketAddr,
    /// The cloud edge's client listener, for a cloud-hosted user (unless DNS only).
    cloud: Option<CloudRedirect>,
    /// The server by name and port: the edge's client listener from outside, the front end
    /// inside, the cloud edge for a cloud user.
    server: (String, u16),
    cert: String,
    key: String,
    ca: String,
}

fn prepare(lab: &Lab, certs: &Path, setup: &OutsideSetup) -> Result<Prepared, NodeError> {
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
    let cloud = match (user.class, setup.dns_only) {
        (UserClass::B, false) => Some(
            lab.cloud_redirect(domain)
                .cloned()
                .ok_or_else(|| err(format!("no cloud redirect for {}", domain.name)))?,
        ),
        _ => None,
    };
    // A node's listener by its name, or a pool's by the pool's name on a member's port.
    let listener = |node: &str, purpose: Purpose| {
        let pool = lab.pool(node).map(|p| p.fqdn.clone());
        lab.members(node)
            .iter()
            .flat_map(|n| lab.interfaces_of(n.name.as_str()))
            .find_map(|i| {
                let name = pool.clone().or_else(|| i.fqdns.first().cloned())?;
                Some((name, i.ports.get(purpose)?))
            })
            .ok_or_else(|| err(format!("{node} has no {purpose:?} listener")))
    };
    let server = match (&cloud, setup.at) {
        (Some(c), _) => (c.host.clone(), c.port),
        (None, at) => {
            let (node, purpose) = match at {
                At::External => (&domain.edge, Purpose::Client),
                At::Internal => (&domain.frontend, Purpose::Sip),
            };
            let node = node
                .as_ref()
                .ok_or_else(|| err(format!("{} has no servers of its own", domain.name)))?;
            listener(node.as_str(), purpose)?
        }
    };
    let pem = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| NodeError::Certificate {
            who: setup.aor.clone(),
            reason: format!("{}: {e} (run `siplab certs` first)", path.display()),
        })
    };
    let paths = siplab_pki::user_cert_paths(certs, &setup.aor);
    Ok(Prepared {
        place,
        dns,
        cloud,
        server,
        cert: pem(&paths.cert)?,
        key: pem(&paths.key)?,
        ca: pem(&siplab_pki::ca_path(certs))?,
    })
}

/// Writes `files` into `out` (made if need be); the ones named in `private` readable by the
/// owner only. Returns the paths written.
fn write_files(
    aor: &str,
    out: &Path,
    files: Vec<(PathBuf, String)>,
    private: &[&str],
) -> Result<Vec<PathBuf>, NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |what: String| NodeError::Client {
        aor: aor.to_owned(),
        what,
    };
    std::fs::create_dir_all(out).map_err(|e| err(format!("{}: {e}", out.display())))?;
    let mut written = Vec::new();
    for (path, text) in files {
        std::fs::write(&path, text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mode = if private.contains(&name) {
            Some(0o600)
        } else if name == "run" {
            Some(0o755)
        } else {
            None
        };
        if let Some(mode) = mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| err(format!("{}: {e}", path.display())))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// Where the files go, absolute: the clients read them from wherever they are started.
fn absolute(aor: &str, out: &Path) -> Result<PathBuf, NodeError> {
    std::path::absolute(out).map_err(|e| NodeError::Client {
        aor: aor.to_owned(),
        what: format!("{}: {e}", out.display()),
    })
}

/// Writes `config`, `accounts`, `contacts`, `cert.pem` (certificate and key) and `ca.pem`
/// into `out` for `setup.aor` at `setup.at` in `lab` (either profile), from the certificates
/// `siplab certs` wrote into `certs`. Returns the files written.
pub fn write_baresip(
    lab: &Lab,
    certs: &Path,
    setup: &OutsideSetup,
    out: &Path,
) -> Result<Vec<PathBuf>, NodeError> {
    let p = prepare(lab, certs, setup)?;
    let place = &p.place;
    let outbound = p
        .cloud
        .as_ref()
        .map(|c| format!(";outbound=\"{}\"", c.uri()))
        .unwrap_or_default();
    let cert = p.cert.clone() + &p.key;
    let ca = p.ca.clone();
    let dns = p.dns;
    let out = &absolute(&setup.aor, out)?;
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
    let files = vec![
        (out.join("config"), config),
        (out.join("accounts"), account),
        (out.join("contacts"), contacts),
        (cert_file, cert),
        (ca_file, ca),
    ];
    write_files(&setup.aor, out, files, &["cert.pem"])
}

/// Writes `linphonerc`, `resolv.conf` (the DNS listener of the place's network), `cert.pem`,
/// `key.pem`, `ca.pem` and `run` into `out`: `out/run` starts linphonec as `setup.aor` at
/// `setup.at`, reading commands from its standard input.
pub fn write_linphone(
    lab: &Lab,
    certs: &Path,
    setup: &OutsideSetup,
    out: &Path,
) -> Result<Vec<PathBuf>, NodeError> {
    let p = prepare(lab, certs, setup)?;
    let out = &absolute(&setup.aor, out)?;
    let (host, port) = &p.server;
    let at = |name: &str| out.join(name).display().to_string();
    let rc = format!(
        "# linphonec as {aor}, {at_} ({place}), written by `siplab client-config linphone`.\n\
         [sip]\n\
         sip_port=0\n\
         sip_tcp_port=0\n\
         sip_tls_port=-1\n\
         bind_address={addr}\n\
         use_ipv6=0\n\
         ipv6_migration_done=1\n\
         root_ca={ca}\n\
         verify_server_certs=1\n\
         verify_server_cn=1\n\
         client_cert_chain={cert}\n\
         client_cert_key={key}\n\
         default_proxy=0\n\
         [net]\n\
         dns_srv_enabled=1\n\
         [rtp]\n\
         audio_rtp_port=40100-40200\n\
         [storage]\n\
         uri={db}\n\
         call_logs_db_uri={calls}\n\
         zrtp_secrets_db_uri={zrtp}\n\
         [proxy_0]\n\
         reg_identity=sip:{aor}\n\
         reg_proxy=<sip:{host}:{port};transport=tls>\n\
         reg_route=<sip:{host}:{port};transport=tls;lr>\n\
         reg_expires=600\n\
         reg_sendregister=1\n\
         publish=0\n",
        aor = setup.aor,
        at_ = setup.at,
        place = p.place.name,
        addr = p.place.address,
        ca = at("ca.pem"),
        cert = at("cert.pem"),
        key = at("key.pem"),
        db = at("linphone.db"),
        calls = at("call-history.db"),
        zrtp = at("zrtp-secrets.db"),
    );
    let resolv = format!("nameserver [{}]:{}\n", p.dns.ip(), p.dns.port());
    let run = format!(
        "#!/bin/sh\n\
         # linphonec as {aor}, asking the lab's DNS ({dns}) through a resolv.conf of its own,\n\
         # bind-mounted in a mount namespace of its own (root only). Commands on stdin.\n\
         dir='{dir}'\n\
         mkdir -p \"$dir/home\"\n\
         exec unshare -m sh -c 'mount --bind \"$0/resolv.conf\" /etc/resolv.conf && \
         HOME=\"$0/home\" TERM=dumb exec linphonec -c \"$0/linphonerc\" -d 4 -l \"$0/log\" \"$@\"' \
         \"$dir\" \"$@\"\n",
        aor = setup.aor,
        dns = p.dns,
        dir = out.display(),
    );
    let files = vec![
        (out.join("linphonerc"), rc),
        (out.join("resolv.conf"), resolv),
        (out.join("cert.pem"), p.cert),
        (out.join("key.pem"), p.key),
        (out.join("ca.pem"), p.ca),
        (out.join("run"), run),
    ];
    write_files(&setup.aor, out, files, &["key.pem"])
}
