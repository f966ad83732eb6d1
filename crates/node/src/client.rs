//! Where a user's client sits and how it finds its server: its placement's address (and NAT
//! address towards the internet), and discovery as real clients do it (section 4):
//! autodiscover, then the lab's DNS records, asking the DNS server on its own network from
//! its own address, so that the view of its network answers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_dns::discovery::{Discovery, LabResolver, discover};
use siplab_topology::{At, ClientPlace, Lab, Placement};
use siplab_ua::{SourceFor, UaConfig};

use crate::{Certs, NodeError};

/// How a client finds its server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discover {
    /// As real clients do: autodiscover over HTTPS first, then the DNS records. A cloud-hosted
    /// user is sent to the cloud by its company's autodiscover and registers there directly.
    Autodiscover,
    /// The DNS records only (SRV, then A): a cloud-hosted user registers with its company's
    /// front end first and is sent on by its SIP 301.
    DnsOnly,
}

/// The configuration of `aor`'s client sitting `at` its company's LAN or the internet, and
/// how discovery found its server.
pub async fn client_config(
    lab: &Lab,
    certs: &Certs,
    aor: &str,
    at: At,
    how: Discover,
) -> Result<(UaConfig, Discovery), NodeError> {
    let (place, domain) = place_of(lab, aor, at)?;
    let bind_ip = IpAddr::V4(place.address);
    let dns = LabResolver::for_source(lab, bind_ip)?;
    let tls = certs.user(aor)?;
    // Towards the internet a LAN client speaks from its NAT address.
    let source_for: SourceFor = {
        let (lab, place) = (lab.clone(), place.clone());
        Arc::new(move |dst| lab.source_for(&place, dst).map(IpAddr::V4))
    };
    let found = match how {
        Discover::Autodiscover => {
            // Every web listener of a profile has the same port (443, or its local mapping).
            let web_port = lab.interfaces().iter().find_map(|i| i.ports.web);
            let source = source_for.clone();
            let source = Arc::new(move |dst| source(dst).unwrap_or(bind_ip));
            siplab_autodiscover::Client::new(dns.clone(), &tls, web_port.unwrap_or(443), source)
                .discover(&domain.name)
                .await?
        }
        Discover::DnsOnly => discover(&dns, &domain.name).await?,
    };
    let mut cfg = UaConfig::new(aor, bind_ip, found.server, &found.server_name, tls);
    cfg.source_for = source_for;
    cfg.resolver = Arc::new(move |host, port| {
        let dns = dns.clone();
        Box::pin(async move { dns.resolve_sip(&host, port).await.ok() })
    });
    Ok((cfg, found))
}

/// Where `aor`'s client sits `at` its company's LAN or the internet, and the user's domain.
pub(crate) fn place_of<'l>(
    lab: &'l Lab,
    aor: &str,
    at: At,
) -> Result<(ClientPlace, &'l siplab_topology::Domain), NodeError> {
    let err = |what: String| NodeError::Client {
        aor: aor.to_owned(),
        what,
    };
    let user = lab
        .user(aor)
        .ok_or_else(|| err("not a user of the lab".into()))?;
    let domain = lab
        .domain(user.domain())
        .ok_or_else(|| err("its domain is not in the lab".into()))?;
    let placement = Placement {
        class: user.class,
        company: domain.company,
        at,
    };
    let place = lab
        .placements()
        .iter()
        .find(|p| p.name == placement)
        .ok_or_else(|| err(format!("no placement {placement}")))?
        .clone();
    Ok((place, domain))
}

/// Discovery's answer as one line: the server, and the record that led there.
pub fn describe(found: &Discovery) -> String {
    let server: SocketAddr = found.server;
    format!("{} ({server}) via {}", found.server_name, found.via)
}
