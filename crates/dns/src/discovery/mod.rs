//! How a client finds its server (section 4, the article's "Anmeldung") and how an edge finds
//! a federation partner (section 5), both by asking the lab's DNS the way the real products do.

mod resolver;

use std::net::{IpAddr, SocketAddr};

pub use resolver::{LabResolver, SrvTarget};

use crate::error::DnsError;

/// SIP over TLS to a pool or an edge's SIP port (section 1: 5061), where the `sipinternal` and
/// `sip` fallbacks lead; the same in both profiles.
const SIP_PORT: u16 = 5061;

/// Where sign-in discovery led, and the way there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// Every question asked, in order, with its answer: the client's side of section 4's table.
    pub steps: Vec<Step>,
    /// Where to open the TLS connection.
    pub server: SocketAddr,
    /// The name looked up for it (an SRV target or an A name): the server's certificate must
    /// carry it.
    pub server_name: String,
    /// The record that led there, e.g. `_sipinternaltls._tcp.contoso.test`.
    pub via: String,
}

/// One question of a discovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The name asked for, or the URL of an autodiscover request.
    pub query: String,
    /// `A` or `SRV`; `GET` for an autodiscover request.
    pub record_type: &'static str,
    /// What it resolved to (`A 127.1.0.10`, `SRV 0 0 5061 pool01.contoso.test`, `redirect
    /// https://...`); `None` when the asker's view has no such record (NXDOMAIN, or no record
    /// of the type), or the autodiscover service gave no usable answer.
    pub answer: Option<String>,
}

/// The autodiscover names of a domain, `<name>.<domain>`, in the order clients try them:
/// the internal one first, since only a client on the LAN resolves it.
pub const AUTODISCOVER_NAMES: [&str; 2] = ["lyncdiscoverinternal", "lyncdiscover"];

/// Finds the SIP server of `domain` for the client that `resolver` asks for through DNS
/// alone, trying in the order real clients do and stopping at the first hit:
///
/// 1. `lyncdiscoverinternal.<domain>` and `lyncdiscover.<domain>` (A): where the autodiscover
///    web service runs. DNS alone cannot ask it, so a hit is only reported in
///    [`Discovery::steps`] and discovery goes on, as a real client does when autodiscover
///    does not answer (the autodiscover crate asks the service first, then comes here).
/// 2. and 3.: [`discover_by_records`].
///
/// A name that does not resolve is an answer, recorded as a step; a failure to get any answer
/// (timeout, refusal) ends discovery with that error.
pub async fn discover(resolver: &LabResolver, domain: &str) -> Result<Discovery, DnsError> {
    let mut steps = Vec::new();
    for autodiscover in AUTODISCOVER_NAMES {
        a_step(resolver, &format!("{autodiscover}.{domain}"), &mut steps).await?;
    }
    discover_by_records(resolver, domain, steps).await
}

/// The SIP records of sign-in discovery, after whatever `steps` already asked:
///
/// 2. `_sipinternaltls._tcp.<domain>`, then `_sip._tls.<domain>` (SRV), each target resolved
///    by its A record.
/// 3. The A records `sipinternal.<domain>` and `sip.<domain>` on the SIP port (5061), then
///    `sipexternal.<domain>` on the client port (443).
pub async fn discover_by_records(
    resolver: &LabResolver,
    domain: &str,
    mut steps: Vec<Step>,
) -> Result<Discovery, DnsError> {
    for service in ["_sipinternaltls._tcp", "_sip._tls"] {
        let via = format!("{service}.{domain}");
        for target in srv_step(resolver, &via, &mut steps).await? {
            if let Some(ip) = a_step(resolver, &target.target, &mut steps).await? {
                return Ok(Discovery {
                    steps,
                    server: SocketAddr::new(ip, target.port),
                    server_name: target.target,
                    via,
                });
            }
        }
    }
    let fallbacks = [
        ("sipinternal", SIP_PORT),
        ("sip", SIP_PORT),
        ("sipexternal", resolver.client_port),
    ];
    for (host, port) in fallbacks {
        let name = format!("{host}.{domain}");
        if let Some(ip) = a_step(resolver, &name, &mut steps).await? {
            return Ok(Discovery {
                steps,
                server: SocketAddr::new(ip, port),
                server_name: name.clone(),
                via: name,
            });
        }
    }
    let tried: Vec<String> = steps
        .iter()
        .map(|step| format!("{} {}", step.query, step.record_type))
        .collect();
    Err(DnsError::NotDiscovered {
        domain: domain.to_owned(),
        tried: tried.join(", "),
    })
}

/// Where an edge sends a request for federated `domain` (section 5, "Why each hop happens"):
/// the first target of `_sipfederationtls._tcp.<domain>` that resolves, as its host name (the
/// peer's certificate must carry it), port and address.
pub async fn federation_target(
    resolver: &LabResolver,
    domain: &str,
) -> Result<(String, u16, SocketAddr), DnsError> {
    let mut last_miss = None;
    for target in resolver
        .lookup_srv(&format!("_sipfederationtls._tcp.{domain}"))
        .await?
    {
        match resolver.first_address(&target.target).await {
            Ok(ip) => {
                let address = SocketAddr::new(IpAddr::V4(ip), target.port);
                return Ok((target.target, target.port, address));
            }
            Err(error) if error.is_not_found() => last_miss = Some(error),
            Err(error) => return Err(error),
        }
    }
    // lookup_srv returns at least one target, so a miss was recorded.
    Err(last_miss.unwrap_or_else(|| DnsError::NoRecords {
        name: format!("_sipfederationtls._tcp.{domain}"),
        record_type: "SRV",
    }))
}

/// Asks for the A record of `name` and records the step; `None` if there is none.
pub async fn a_step(
    resolver: &LabResolver,
    name: &str,
    steps: &mut Vec<Step>,
) -> Result<Option<IpAddr>, DnsError> {
    let addresses = found(resolver.lookup_a(name).await)?;
    steps.push(Step {
        query: name.to_owned(),
        record_type: "A",
        answer: addresses.as_ref().map(|addresses| {
            let answers: Vec<String> = addresses.iter().map(|ip| format!("A {ip}")).collect();
            answers.join(", ")
        }),
    });
    Ok(addresses
        .and_then(|addresses| addresses.first().copied())
        .map(IpAddr::V4))
}

/// Asks for SRV record `name` and records the step; no targets if there is none.
async fn srv_step(
    resolver: &LabResolver,
    name: &str,
    steps: &mut Vec<Step>,
) -> Result<Vec<SrvTarget>, DnsError> {
    let targets = found(resolver.lookup_srv(name).await)?;
    steps.push(Step {
        query: name.to_owned(),
        record_type: "SRV",
        answer: targets.as_ref().map(|targets| {
            let answers: Vec<String> = targets.iter().map(ToString::to_string).collect();
            answers.join(", ")
        }),
    });
    Ok(targets.unwrap_or_default())
}

/// Turns "no such record" into `None`, keeping real failures as errors.
fn found<T>(result: Result<T, DnsError>) -> Result<Option<T>, DnsError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error),
    }
}
