//! Mutual TLS as every hop of the lab speaks it: the lab CA is the only trust anchor, a
//! client certificate is required on every listener, and the peer's certificate names
//! (DNS, IP and SIP URI SANs) are handed up with every message it sends.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, KeyLogFile, RootCertStore, ServerConfig};

use crate::TransportError;

/// The server and client side of one identity (a node interface or a user).
#[derive(Clone)]
pub struct TlsConfig {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Builds both sides from PEM: the CA certificate, this identity's certificate (chain)
    /// and its private key. SSLKEYLOGFILE, when set, receives the session keys so that
    /// Wireshark can decrypt a capture of the lab.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<TlsConfig, TransportError> {
        let tls =
            |what: &str, e: &dyn std::fmt::Display| TransportError::Tls(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            let c = c.map_err(|e| tls("CA certificate", &e))?;
            roots.add(c).map_err(|e| tls("CA certificate", &e))?;
        }
        if roots.is_empty() {
            return Err(TransportError::Tls(
                "no CA certificate in the CA file".into(),
            ));
        }
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<_, _>>()
            .map_err(|e| tls("certificate", &e))?;
        if chain.is_empty() {
            return Err(TransportError::Tls(
                "no certificate in the certificate file".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls("private key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls("client verifier", &e))?;
        let key_log = Arc::new(KeyLogFile::new());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls("protocol versions", &e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| tls("server certificate", &e))?;
        server.key_log = key_log.clone();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| tls("protocol versions", &e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| tls("client certificate", &e))?;
        client.key_log = key_log;
        Ok(TlsConfig {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The same identity offering (as server) and asking for (as client) these ALPN
    /// protocols. SIP over TLS negotiates none, so a listener that offers one can tell a
    /// client asking for it (an HTTPS client: `http/1.1`) from a SIP client.
    pub fn with_alpn(&self, protocols: &[&[u8]]) -> TlsConfig {
        let protocols: Vec<Vec<u8>> = protocols.iter().map(|p| p.to_vec()).collect();
        let mut server = (*self.server).clone();
        server.alpn_protocols = protocols.clone();
        let mut client = (*self.client).clone();
        client.alpn_protocols = protocols;
        TlsConfig {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    }

    /// The same from files, with errors that name the file.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<TlsConfig, TransportError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| TransportError::Tls(format!("{}: {e}", p.display())))
        };
        TlsConfig::from_pem(&read(ca)?, &read(cert)?, &read(key)?)
    }
}

/// Who is at the other end, as its verified certificate says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// URI SANs: a user's certificate carries `sip:user@domain`.
    pub uris: Vec<String>,
}

impl PeerIdentity {
    /// The identity a TLS session's peer proved with its certificate; empty without one.
    pub fn of(session: &rustls::CommonState) -> PeerIdentity {
        session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(PeerIdentity::from_certificate)
            .unwrap_or_default()
    }

    /// Reads the SANs of the end-entity certificate. Only called on certificates rustls
    /// already verified; a SAN extension that still does not parse yields an empty identity.
    pub fn from_certificate(der: &CertificateDer<'_>) -> PeerIdentity {
        use x509_parser::prelude::*;
        let mut id = PeerIdentity::default();
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return id;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return id;
        };
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => id.dns_names.push(d.to_ascii_lowercase()),
                GeneralName::URI(u) => id.uris.push((*u).to_owned()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => id
                        .ips
                        .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => id
                        .ips
                        .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
        id
    }

    /// The SIP AOR (`user@domain`) of a user certificate.
    pub fn sip_aor(&self) -> Option<&str> {
        self.uris.iter().find_map(|u| u.strip_prefix("sip:"))
    }

    /// Whether the certificate names this host.
    pub fn names_host(&self, host: &str) -> bool {
        self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(host))
    }

    /// A short description for logs.
    pub fn describe(&self) -> String {
        match (self.uris.first(), self.dns_names.first()) {
            (Some(u), _) => u.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => "(no name)".into(),
        }
    }
}
