//! Where a user's client sits and how it finds its server: its placement's address (and NAT
//! address towards the internet), and discovery through the lab's DNS as real clients do
//! it (section 4), asking the DNS server on its own network from its own address, so that
//! the view of its network answers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use siplab_dns::discovery::{Discovery, LabResolver, discover};
use siplab_topology::{At, Lab, Placement};
use siplab_ua::UaConfig;

use crate::{Certs, NodeError};

/// The configuration of `aor`'s client sitting `at` its company's LAN or the internet, and
/// how discovery found its server.
pub async fn client_config(
    lab: &Lab,
    certs: &Certs,
    aor: &str,
    at: At,
) -> Result<(UaConfig, Discovery), NodeError> {
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
    let bind_ip = IpAddr::V4(place.address);
    let dns = LabResolver::for_source(lab, bind_ip)?;
    let found = discover(&dns, &domain.name).await?;
    let mut cfg = UaConfig::new(
        aor,
        bind_ip,
        found.server,
        &found.server_name,
        certs.user(aor)?,
    );
    let (lab_for_source, place_for_source) = (lab.clone(), place.clone());
    cfg.source_for = Arc::new(move |dst| {
        lab_for_source
            .source_for(&place_for_source, dst)
            .map(IpAddr::V4)
    });
    cfg.resolver = Arc::new(move |host, port| {
        let dns = dns.clone();
        Box::pin(async move { dns.resolve_sip(&host, port).await.ok() })
    });
    Ok((cfg, found))
}

/// Discovery's answer as one line: the server, and the record that led there.
pub fn describe(found: &Discovery) -> String {
    let server: SocketAddr = found.server;
    format!("{} ({server}) via {}", found.server_name, found.via)
}
