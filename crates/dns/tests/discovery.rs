//! Section 4 (signing in) and the edges' federation look-up of section 5, against the real
//! server: each client discovers from its own address, so from its own view.

use std::net::{IpAddr, SocketAddr};

use siplab_dns::discovery::{Discovery, LabResolver, discover, federation_target};
use siplab_dns::{DnsError, DnsServer};
use siplab_topology::{Lab, Purpose};

fn resolver_at(lab: &Lab, placement: &str) -> LabResolver {
    let address = lab.placement(placement).unwrap().address;
    LabResolver::for_source(lab, IpAddr::V4(address)).unwrap()
}

fn a(lab: &Lab, interface: &str) -> Option<String> {
    Some(format!("A {}", lab.interface(interface).unwrap().ip()))
}

/// A pool's A records as the view of `placement` holds them, in order (R1 and R1b for
/// contoso's pool01, R2 for fabrikam's).
fn pool_members(lab: &Lab, placement: &str, pool: &str) -> Option<String> {
    let place = lab.placement(placement).unwrap();
    let view = lab.view_for(place.address.into()).unwrap();
    let addresses: Vec<String> = view
        .lookup(pool)
        .filter_map(|r| match &r.data {
            siplab_topology::RecordData::A(i) => {
                Some(format!("A {}", lab.interface(i.as_str())?.ip()))
            }
            _ => None,
        })
        .collect();
    Some(addresses.join(", "))
}

/// The steps as `(query, type, answer)`, for whole-list comparison.
fn steps(discovery: &Discovery) -> Vec<(String, &'static str, Option<String>)> {
    discovery
        .steps
        .iter()
        .map(|step| (step.query.clone(), step.record_type, step.answer.clone()))
        .collect()
}

fn step(
    query: &str,
    record_type: &'static str,
    answer: Option<String>,
) -> (String, &'static str, Option<String>) {
    (query.to_owned(), record_type, answer)
}

/// An internal client (A1i, B1i, and company 2's mirror): autodiscover's internal name is
/// there and reported, then `_sipinternaltls` leads to the pool.
async fn assert_internal(lab: &Lab, placement: &str, company: u8) {
    let domain = &lab.company_domain(company).unwrap().name;
    let pool = format!("R{company}");
    let resolver = resolver_at(lab, placement);
    let discovery = discover(&resolver, domain).await.unwrap();
    let pool_name = format!("pool01.{domain}");
    assert_eq!(
        steps(&discovery),
        [
            step(
                &format!("lyncdiscoverinternal.{domain}"),
                "A",
                a(lab, &pool)
            ),
            step(&format!("lyncdiscover.{domain}"), "A", None),
            step(
                &format!("_sipinternaltls._tcp.{domain}"),
                "SRV",
                Some(format!("SRV 0 0 5061 {pool_name}"))
            ),
            step(&pool_name, "A", pool_members(lab, placement, &pool_name)),
        ],
        "{placement}"
    );
    let r = lab.interface(&pool).unwrap();
    assert_eq!(
        discovery.server,
        r.socket(Purpose::Sip).unwrap(),
        "{placement}"
    );
    assert_eq!(discovery.server_name, pool_name);
    assert_eq!(discovery.via, format!("_sipinternaltls._tcp.{domain}"));
}

/// An external client (A1e, B1e, and the mirror): the internal names fail, `lyncdiscover` is
/// there and reported, `_sip._tls` leads to the edge's client port.
async fn assert_external(lab: &Lab, placement: &str, company: u8) {
    let domain = &lab.company_domain(company).unwrap().name;
    let edge = format!("E{company}x");
    let resolver = resolver_at(lab, placement);
    let discovery = discover(&resolver, domain).await.unwrap();
    let edge_name = format!("sip.{domain}");
    let client_port = lab.interface(&edge).unwrap().ports.client.unwrap();
    assert_eq!(client_port, 10443, "443 in the container profile");
    assert_eq!(
        steps(&discovery),
        [
            step(&format!("lyncdiscoverinternal.{domain}"), "A", None),
            step(&format!("lyncdiscover.{domain}"), "A", a(lab, &edge)),
            step(&format!("_sipinternaltls._tcp.{domain}"), "SRV", None),
            step(
                &format!("_sip._tls.{domain}"),
                "SRV",
                Some(format!("SRV 0 0 {client_port} {edge_name}"))
            ),
            step(&edge_name, "A", a(lab, &edge)),
        ],
        "{placement}"
    );
    let e = lab.interface(&edge).unwrap();
    assert_eq!(
        discovery.server,
        e.socket(Purpose::Client).unwrap(),
        "{placement}"
    );
    assert_eq!(discovery.server_name, edge_name);
    assert_eq!(discovery.via, format!("_sip._tls.{domain}"));
}

#[tokio::test]
async fn internal_clients_find_their_pool() {
    let lab = Lab::reference().unwrap().localized(234);
    let _dns = DnsServer::start(&lab).await.unwrap();
    // B1i finds R1 as A1i does: the 301 to the cloud is SIP's business.
    for (placement, company) in [("A1i", 1), ("B1i", 1), ("A2i", 2), ("B2i", 2)] {
        assert_internal(&lab, placement, company).await;
    }
}

#[tokio::test]
async fn external_clients_find_their_edge() {
    let lab = Lab::reference().unwrap().localized(235);
    let _dns = DnsServer::start(&lab).await.unwrap();
    for (placement, company) in [("A1e", 1), ("B1e", 1), ("A2e", 2), ("B2e", 2)] {
        assert_external(&lab, placement, company).await;
    }
}

#[tokio::test]
async fn edges_find_federation_partners_on_the_internet() {
    let lab = Lab::reference().unwrap().localized(236);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let e1x = LabResolver::for_source(&lab, lab.interface("E1x").unwrap().ip()).unwrap();
    let (host, port, address) = federation_target(&e1x, "fabrikam.test").await.unwrap();
    assert_eq!((host.as_str(), port), ("sip.fabrikam.test", 5061));
    assert_eq!(
        address,
        lab.interface("E2x").unwrap().socket(Purpose::Sip).unwrap()
    );

    // The cloud edge's way to a hybrid tenant's on-prem edge, from the internet too.
    let cex = LabResolver::for_source(&lab, lab.interface("CEx").unwrap().ip()).unwrap();
    let (host, _, address) = federation_target(&cex, "contoso.test").await.unwrap();
    assert_eq!(host, "sip.contoso.test");
    assert_eq!(
        address,
        lab.interface("E1x").unwrap().socket(Purpose::Sip).unwrap()
    );

    // A domain without the record is a "not found", which an edge answers with a SIP error.
    let error = federation_target(&e1x, "lab.test").await.unwrap_err();
    assert!(matches!(error, DnsError::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn discovery_ends_with_the_names_tried() {
    let lab = Lab::reference().unwrap().localized(237);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let a1e = resolver_at(&lab, "A1e");
    let error = discover(&a1e, "lab.test").await.unwrap_err();
    let DnsError::NotDiscovered { tried, .. } = &error else {
        panic!("{error}");
    };
    assert!(tried.ends_with("sipexternal.lab.test A"), "{tried}");
    // A domain outside the lab's zones is not an answer but a refusal, and says so.
    let error = discover(&a1e, "example.com").await.unwrap_err();
    assert!(matches!(error, DnsError::Refused { .. }), "{error}");
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let lab = Lab::reference().unwrap().localized(238);
    let dns = DnsServer::start(&lab).await.unwrap();
    let a1e = resolver_at(&lab, "A1e");
    let sip = a1e.resolve_sip("sip.contoso.test", 5061).await.unwrap();
    assert_eq!(
        sip,
        lab.interface("E1x").unwrap().socket(Purpose::Sip).unwrap()
    );
    let missing = a1e.lookup_a("pool01.contoso.test").await.unwrap_err();
    assert!(matches!(missing, DnsError::NotFound { .. }), "{missing}");
    dns.shutdown().await.unwrap();

    // With the server gone, what was asked is still known, positive and negative alike ...
    assert_eq!(
        a1e.resolve_sip("sip.contoso.test", 5061).await.unwrap(),
        sip
    );
    let missing = a1e.lookup_a("pool01.contoso.test").await.unwrap_err();
    assert!(matches!(missing, DnsError::NotFound { .. }), "{missing}");
    // ... and what was not cannot be.
    let error = a1e.lookup_a("sipdir.online.lync.test").await.unwrap_err();
    assert!(matches!(error, DnsError::Lookup { .. }), "{error}");

    // Address literals need no DNS at all.
    let literal: SocketAddr = "127.3.238.11:5061".parse().unwrap();
    assert_eq!(
        a1e.resolve_sip("127.3.238.11", 5061).await.unwrap(),
        literal
    );
}

#[tokio::test]
async fn without_srv_records_the_a_fallbacks_are_tried() {
    // The reference lab without `_sip._tls.contoso.test`: an external client runs out of SRV
    // records and falls back to the A records, `sipinternal` first.
    let reference = include_str!("../../../deploy/lab.toml");
    let text: String = reference
        .lines()
        .filter(|line| !line.contains("\"_sip._tls.contoso.test\""))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(
        text.len(),
        reference.len() + 1,
        "the record was in the file"
    );
    let lab = Lab::from_toml_str(&text).unwrap().localized(228);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let discovery = discover(&resolver_at(&lab, "A1e"), "contoso.test")
        .await
        .unwrap();
    let tail: Vec<_> = steps(&discovery).into_iter().skip(3).collect();
    assert_eq!(
        tail,
        [
            step("_sip._tls.contoso.test", "SRV", None),
            step("sipinternal.contoso.test", "A", None),
            step("sip.contoso.test", "A", a(&lab, "E1x")),
        ]
    );
    let e1x = lab.interface("E1x").unwrap();
    assert_eq!(discovery.server, e1x.socket(Purpose::Sip).unwrap());
    assert_eq!(discovery.server_name, "sip.contoso.test");
    assert_eq!(discovery.via, "sip.contoso.test");
}
