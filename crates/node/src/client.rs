//! Where a user's client sits and signs in, read off the topology: its placement's address
//! (and NAT address towards the internet), and its server: the front end from the LAN, the
//! edge's internet interface from outside. (Discovery through DNS replaces the server
//! choice with what the records say, in the order of section 4.)

use std::sync::Arc;

use siplab_topology::{At, Lab, Placement};
use siplab_ua::UaConfig;

use crate::{Certs, LabResolver, NodeError};

/// The client configuration of `aor` sitting `at` its company's LAN or the internet.
pub fn client_config(lab: &Lab, certs: &Certs, aor: &str, at: At) -> Result<UaConfig, NodeError> {
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
    let (server_if, port) = match at {
        At::Internal => {
            let iface = lab.interfaces_of(domain.frontend.as_str()).next();
            (iface, iface.and_then(|i| i.ports.sip))
        }
        At::External => {
            let iface = lab
                .interfaces_of(domain.edge.as_str())
                .find(|i| i.ports.client.is_some());
            (iface, iface.and_then(|i| i.ports.client))
        }
    };
    let (Some(server_if), Some(port)) = (server_if, port) else {
        return Err(err("no server interface to sign in to".into()));
    };
    let server_name = server_if
        .fqdns
        .first()
        .cloned()
        .ok_or_else(|| err("server without a name".into()))?;
    let bind_ip = std::net::IpAddr::V4(place.address);
    let mut cfg = UaConfig::new(
        aor,
        bind_ip,
        std::net::SocketAddr::new(server_if.ip(), port),
        &server_name,
        certs.user(aor)?,
    );
    let (lab_for_source, place_for_source) = (lab.clone(), place.clone());
    cfg.source_for = Arc::new(move |dst| {
        lab_for_source
            .source_for(&place_for_source, dst)
            .map(std::net::IpAddr::V4)
    });
    let resolver = LabResolver::new(lab.clone(), bind_ip);
    cfg.resolver = Arc::new(move |host, port| resolver.resolve(host, Some(port)).ok());
    Ok(cfg)
}
