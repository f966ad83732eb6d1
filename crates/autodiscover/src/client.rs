//! Signing in as real clients do (section 4): autodiscover first, the DNS records after.
//!
//! For `lyncdiscoverinternal.<domain>`, then `lyncdiscover.<domain>`, whichever resolves: GET
//! the service's root, follow its `user` link, and any `redirect` (a cloud-hosted user's
//! company sends it to the cloud's service), until a user resource names the SIP access for
//! the side the service sees the client on. Only when neither name leads there do the SRV
//! and A records decide ([`siplab_dns::discovery::discover_by_records`]). Every question
//! and every GET is a step of the [`Discovery`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1;
use hyper::header::{ACCEPT, HOST};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use siplab_dns::DnsError;
use siplab_dns::discovery::{
    AUTODISCOVER_NAMES, Discovery, LabResolver, Step, a_step, discover_by_records,
};
use siplab_transport::TlsConfig;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;
use tracing::{debug, info, warn};

use crate::AutodiscoverError;
use crate::document::{Document, MEDIA_TYPE, SipAccess, authority, root_url};
use crate::server::ALPN;

/// Redirects followed in one discovery: a loop of services sending each other on must end.
const MAX_REDIRECTS: usize = 3;

/// GETs in one discovery: a root and a user resource per service visited.
const MAX_REQUESTS: usize = 2 * (MAX_REDIRECTS + 1);

/// One GET, connecting included. The lab's services answer from memory nearby, so anything
/// slower is a service that is not there.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest document read; an autodiscover answer is a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// The local address to bind towards a server's address (a LAN client reaches the internet
/// from its NAT address).
pub type SourceFor = Arc<dyn Fn(IpAddr) -> IpAddr + Send + Sync>;

/// One user's autodiscover client: its DNS view, its certificate, where it binds.
#[derive(Clone)]
pub struct Client {
    resolver: LabResolver,
    tls: Arc<ClientConfig>,
    web_port: u16,
    source_for: SourceFor,
}

/// Where an autodiscover document leads.
enum Next {
    /// The user is homed elsewhere: that service's root.
    Redirect(String),
    /// A root's link to the user resource.
    User(String),
    /// The SIP access for the client's side, by its name in the document.
    Access(&'static str, SipAccess),
}

/// As a discovery step reports it: `redirect https://...`, `SipClientExternalAccess
/// sipdir.online.lync.test:443`.
impl std::fmt::Display for Next {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Next::Redirect(href) => write!(f, "redirect {href}"),
            Next::User(href) => write!(f, "user {href}"),
            Next::Access(kind, access) => write!(f, "{kind} {access}"),
        }
    }
}

impl Client {
    /// A client asking `resolver`'s DNS view, showing `tls`'s certificate (which names the
    /// user to the service), reaching services on `web_port` (443, or the single-process
    /// profile's mapping) from the address `source_for` picks.
    pub fn new(
        resolver: LabResolver,
        tls: &TlsConfig,
        web_port: u16,
        source_for: SourceFor,
    ) -> Client {
        Client {
            resolver,
            tls: tls.with_alpn(&[ALPN]).client,
            web_port,
            source_for,
        }
    }

    /// Finds the SIP server of `domain`: autodiscover first, then the DNS records. A service
    /// that does not answer, or answers nothing usable, is a step like a name that does not
    /// resolve; only a DNS failure (no answer at all) ends discovery with an error.
    pub async fn discover(&self, domain: &str) -> Result<Discovery, DnsError> {
        let mut steps = Vec::new();
        for name in AUTODISCOVER_NAMES {
            let host = format!("{name}.{domain}");
            let Some(ip) = a_step(&self.resolver, &host, &mut steps).await? else {
                continue;
            };
            let root = root_url(&authority(&host, self.web_port), domain);
            let Some(access) = self.follow(root, (host.clone(), ip), &mut steps).await? else {
                continue;
            };
            let Some(server) = a_step(&self.resolver, &access.fqdn, &mut steps).await? else {
                continue;
            };
            info!(%domain, %access, via = %host, "autodiscovered");
            return Ok(Discovery {
                steps,
                server: SocketAddr::new(server, access.port),
                server_name: access.fqdn,
                via: format!("{host} (autodiscover)"),
            });
        }
        discover_by_records(&self.resolver, domain, steps).await
    }

    /// Follows links from `url` until a user resource names the SIP access; `None` when the
    /// services on the way do not lead there. `known` is a host already resolved.
    async fn follow(
        &self,
        mut url: String,
        mut known: (String, IpAddr),
        steps: &mut Vec<Step>,
    ) -> Result<Option<SipAccess>, DnsError> {
        let mut redirects = 0;
        for _ in 0..MAX_REQUESTS {
            let host = url
                .parse::<Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_owned));
            let ip = match host {
                Some(host) if host == known.0 => known.1,
                Some(host) => match a_step(&self.resolver, &host, steps).await? {
                    Some(ip) => {
                        known = (host, ip);
                        ip
                    }
                    None => return Ok(None),
                },
                None => {
                    warn!(%url, "not a URL; autodiscover gives up here");
                    return Ok(None);
                }
            };
            let next = match self.get(&url, ip).await {
                Ok(document) => next(&document),
                Err(error) => {
                    warn!(%error, "autodiscover gave no answer");
                    None
                }
            };
            let next = match next {
                Some(Next::Redirect(_)) if redirects == MAX_REDIRECTS => {
                    warn!(%url, "too many redirects");
                    None
                }
                next => next,
            };
            steps.push(Step {
                query: url,
                record_type: "GET",
                answer: next.as_ref().map(ToString::to_string),
            });
            match next {
                Some(Next::Redirect(href)) => {
                    redirects += 1;
                    url = href;
                }
                Some(Next::User(href)) => url = href,
                Some(Next::Access(_, access)) => return Ok(Some(access)),
                None => return Ok(None),
            }
        }
        warn!("autodiscover went on for too long; giving up");
        Ok(None)
    }

    /// GETs the autodiscover document at `url` from the service at `ip`, over mutual TLS
    /// with the user's certificate and ALPN `http/1.1`.
    pub async fn get(&self, url: &str, ip: IpAddr) -> Result<Document, AutodiscoverError> {
        let failed = |reason: String| AutodiscoverError::Get {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url
            .parse()
            .ok()
            .filter(|u: &Uri| u.scheme_str() == Some("https"))
            .ok_or_else(|| AutodiscoverError::Url(url.to_owned()))?;
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&uri, ip))
            .await
            .map_err(|_| failed(format!("no answer within {REQUEST_TIMEOUT:?}")))?
            .map_err(failed)?;
        if status != StatusCode::OK {
            return Err(AutodiscoverError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        serde_json::from_slice(&body).map_err(|source| AutodiscoverError::Json {
            url: url.to_owned(),
            source,
        })
    }

    /// One request on a connection of its own.
    async fn exchange(&self, uri: &Uri, ip: IpAddr) -> Result<(StatusCode, Bytes), String> {
        let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
            return Err("no host".into());
        };
        let addr = SocketAddr::new(ip, uri.port_u16().unwrap_or(443));
        let source = (self.source_for)(ip);
        let socket = match ip {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| e.to_string())?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let tcp = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
        if tls.get_ref().1.alpn_protocol() != Some(ALPN) {
            return Err(format!(
                "{addr} does not serve HTTP here (no ALPN http/1.1)"
            ));
        }
        let (mut sender, connection) = http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "autodiscover connection failed");
            }
        });
        let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(HOST, authority.as_str())
            .header(ACCEPT, MEDIA_TYPE)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}

/// Where a document leads: a redirect before anything else (the user is homed elsewhere),
/// then SIP access, then the user resource of a root.
fn next(document: &Document) -> Option<Next> {
    if let Some(redirect) = &document.links.redirect {
        return Some(Next::Redirect(redirect.href.clone()));
    }
    if let Some((kind, access)) = document.sip_access() {
        return Some(Next::Access(kind, access.clone()));
    }
    let user = document.links.user.as_ref()?;
    Some(Next::User(user.href.clone()))
}
