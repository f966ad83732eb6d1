//! Section 3 of the reference-lab spec, asked over the wire: every row of the table from each
//! of the four views, a querier's source address choosing the view.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use siplab_dns::discovery::LabResolver;
use siplab_dns::{DnsError, DnsServer, TTL};
use siplab_topology::{Lab, Purpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

/// The views in the table's column order, and who asks in each.
const VIEWS: [&str; 4] = ["contoso-lan", "fabrikam-lan", "internet", "cloud"];

/// What a cell of the table says.
#[derive(Clone, Copy)]
enum Cell {
    /// A records pointing at interfaces (`"CP1 CP2"`: one record each, in that order).
    A(&'static str),
    /// SRV priority weight port target, the port as the container profile writes it.
    Srv(u16, u16, u16, &'static str),
    /// Does not resolve: NXDOMAIN, or "(absent)".
    Nx,
}

use Cell::{A, Nx, Srv};

/// Section 3, contoso.test and the cloud's names, columns contoso-lan, fabrikam-lan, internet,
/// cloud.
fn table() -> Vec<(&'static str, [Cell; 4])> {
    let internal_pool = Srv(0, 0, 5061, "pool01.contoso.test");
    let client_edge = Srv(0, 0, 443, "sip.contoso.test");
    let federation = Srv(0, 0, 5061, "sip.contoso.test");
    vec![
        ("lyncdiscoverinternal.contoso.test", [A("R1"), Nx, Nx, Nx]),
        (
            "_sipinternaltls._tcp.contoso.test",
            [internal_pool, Nx, Nx, Nx],
        ),
        ("pool01.contoso.test", [A("R1 R1b"), Nx, Nx, Nx]),
        ("fe01.contoso.test", [A("R1"), Nx, Nx, Nx]),
        ("fe02.contoso.test", [A("R1b"), Nx, Nx, Nx]),
        ("edge01-int.contoso.test", [A("E1i"), Nx, Nx, Nx]),
        ("sip.contoso.test", [A("R1"), A("E1x"), A("E1x"), A("E1x")]),
        (
            "lyncdiscover.contoso.test",
            [Nx, A("E1x"), A("E1x"), A("E1x")],
        ),
        (
            "_sip._tls.contoso.test",
            [Nx, client_edge, client_edge, client_edge],
        ),
        ("_sipfederationtls._tcp.contoso.test", [federation; 4]),
        ("sipdir.online.lync.test", [A("CEx"); 4]),
        ("sipfed.online.lync.test", [A("CEx"); 4]),
        ("webdir.online.lync.test", [A("CEx"); 4]),
        ("sippool01.infra.lync.test", [Nx, Nx, Nx, A("CP1 CP2")]),
        ("cpfe01.infra.lync.test", [Nx, Nx, Nx, A("CP1")]),
        ("cpfe02.infra.lync.test", [Nx, Nx, Nx, A("CP2")]),
        // The cloud-only tenant: every public record leads to the cloud, in every view.
        ("lyncdiscover.northwind.test", [A("CEx"); 4]),
        (
            "_sipfederationtls._tcp.northwind.test",
            [Srv(0, 0, 5061, "sipfed.online.lync.test"); 4],
        ),
        (
            "_sip._tls.northwind.test",
            [Srv(0, 0, 443, "sipdir.online.lync.test"); 4],
        ),
        ("sipedge01.infra.lync.test", [Nx, Nx, Nx, A("CEi")]),
        (
            "ns.lab.test",
            [
                A("DNS-contoso"),
                A("DNS-fabrikam"),
                A("DNS-internet"),
                A("DNS-cloud"),
            ],
        ),
    ]
}

/// "fabrikam.test mirrors contoso.test with the two LAN columns swapped", but for contoso's
/// second front end, which fabrikam has no counterpart of (its pool has one member).
fn mirrored(lab: &Lab, row: &(&'static str, [Cell; 4])) -> Option<(String, [Cell; 4])> {
    let (name, cells) = row;
    let name = name.strip_suffix(".contoso.test")?;
    let mirror = |cell: Cell| match cell {
        A(interfaces) => A(leak(
            interfaces
                .split_whitespace()
                .map(|i| i.replace('1', "2"))
                .filter(|i| lab.interface(i).is_some())
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Srv(p, w, port, target) => Srv(p, w, port, leak(target.replace("contoso", "fabrikam"))),
        Nx => Nx,
    };
    let [contoso, fabrikam, internet, cloud] = cells.map(mirror);
    Some((
        format!("{name}.fabrikam.test"),
        [fabrikam, contoso, internet, cloud],
    ))
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// Who asks in a view: a client placement in the three client networks, CP1 in the cloud.
fn asker(lab: &Lab, view: &str) -> IpAddr {
    let placement = match view {
        "contoso-lan" => "A1i",
        "fabrikam-lan" => "A2i",
        "internet" => "A1e",
        _ => return lab.interface("CP1").unwrap().ip(),
    };
    IpAddr::V4(lab.placement(placement).unwrap().address)
}

/// The cell as the local profile must answer it.
fn expected(lab: &Lab, cell: Cell) -> Option<String> {
    match cell {
        A(interfaces) => Some(
            interfaces
                .split_whitespace()
                .map(|i| format!("A {}", lab.interface(i).unwrap().ip()))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Srv(priority, weight, port, target) => {
            let port = match port {
                443 => lab.interface("E1x").unwrap().ports.client.unwrap(),
                port => port,
            };
            Some(format!("SRV {priority} {weight} {port} {target}"))
        }
        Nx => None,
    }
}

/// What the resolver got, in the table's notation; NXDOMAIN as `None`.
async fn observed(resolver: &LabResolver, name: &str, cell: Cell) -> Option<String> {
    let result = match cell {
        Srv(..) => resolver.lookup_srv(name).await.map(|targets| {
            let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
            targets.join(", ")
        }),
        // A name that must not resolve is asked for the type the table would give it.
        Nx if name.starts_with('_') => resolver
            .lookup_srv(name)
            .await
            .map(|targets| format!("{targets:?}")),
        A(_) | Nx => resolver.lookup_a(name).await.map(|addresses| {
            let addresses: Vec<String> = addresses.iter().map(|a| format!("A {a}")).collect();
            addresses.join(", ")
        }),
    };
    match result {
        Ok(answer) => Some(answer),
        Err(DnsError::NotFound { .. }) => None,
        Err(error) => panic!("{name}: expected an answer or NXDOMAIN, got {error}"),
    }
}

#[tokio::test]
async fn every_row_of_section_3_from_every_view() {
    let lab = Lab::reference().unwrap().localized(230);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let rows = table();
    let mirrors: Vec<(String, [Cell; 4])> = rows
        .iter()
        .filter_map(|row| mirrored(&lab, row))
        .filter(|(_, cells)| !cells.iter().any(|c| matches!(c, A(""))))
        .collect();
    let all: Vec<(String, [Cell; 4])> = rows
        .iter()
        .map(|(name, cells)| (name.to_string(), *cells))
        .chain(mirrors)
        .collect();

    let mut failures = Vec::new();
    for (column, view) in VIEWS.iter().enumerate() {
        let resolver = LabResolver::for_source(&lab, asker(&lab, view)).unwrap();
        for (name, cells) in &all {
            let cell = cells[column];
            let got = observed(&resolver, name, cell).await;
            let want = expected(&lab, cell);
            let shown = got.as_deref().unwrap_or("NXDOMAIN");
            println!("{view:<13} {name:<38} {shown}");
            if got != want {
                failures.push(format!("{view}: {name}: want {want:?}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn foreign_names_are_refused_and_strangers_get_the_listeners_view() {
    let lab = Lab::reference().unwrap().localized(231);
    let dns = DnsServer::start(&lab).await.unwrap();
    assert_eq!(dns.addrs.len(), 4);

    // A name outside every zone.
    let a1i = LabResolver::for_source(&lab, asker(&lab, "contoso-lan")).unwrap();
    let error = a1i.lookup_a("www.example.com").await.unwrap_err();
    assert!(matches!(error, DnsError::Refused { .. }), "{error}");

    // A source address in none of the lab's networks (a client whose resolver speaks from
    // 127.0.0.1): answered from the view of the network whose listener it asked.
    let at = |listener: &str| {
        let server = lab
            .interface(listener)
            .unwrap()
            .socket(Purpose::Dns)
            .unwrap();
        LabResolver::new(server, "127.9.231.1".parse().unwrap()).unwrap()
    };
    let r1 = lab.interface("R1").unwrap().address;
    let e1x = lab.interface("E1x").unwrap().address;
    let on_lan = at("DNS-contoso")
        .lookup_a("sip.contoso.test")
        .await
        .unwrap();
    assert_eq!(on_lan, vec![r1], "the contoso-lan view");
    let outside = at("DNS-internet");
    assert_eq!(
        outside.lookup_a("sip.contoso.test").await.unwrap(),
        vec![e1x]
    );
    let error = outside.lookup_a("fe01.contoso.test").await.unwrap_err();
    assert!(matches!(error, DnsError::NotFound { .. }), "{error}");

    // A name with records of other types only, and an empty non-terminal: no data, not NXDOMAIN.
    let error = a1i.lookup_srv("sip.contoso.test").await.unwrap_err();
    assert!(matches!(error, DnsError::NoRecords { .. }), "{error}");
    let error = a1i.lookup_srv("_tcp.contoso.test").await.unwrap_err();
    assert!(matches!(error, DnsError::NoRecords { .. }), "{error}");

    dns.shutdown().await.unwrap();
}

/// Sends one query from `source` to `server`, over UDP or TCP, and returns the response.
async fn ask(
    source: IpAddr,
    server: SocketAddr,
    tcp: bool,
    name: &str,
    rtype: RecordType,
) -> Message {
    let mut query = Message::new(4711, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let bytes = query.to_vec().unwrap();
    let response = if tcp {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let length = u16::try_from(bytes.len()).unwrap().to_be_bytes();
        stream
            .write_all(&[&length[..], &bytes].concat())
            .await
            .unwrap();
        let length = stream.read_u16().await.unwrap();
        let mut response = vec![0; usize::from(length)];
        stream.read_exact(&mut response).await.unwrap();
        response
    } else {
        let socket = UdpSocket::bind(SocketAddr::new(source, 0)).await.unwrap();
        socket.send_to(&bytes, server).await.unwrap();
        let mut response = vec![0; 4096];
        let (length, from) = socket.recv_from(&mut response).await.unwrap();
        assert_eq!(from, server, "the answer comes from the address asked");
        response.truncate(length);
        response
    };
    Message::from_vec(&response).unwrap()
}

#[tokio::test]
async fn answers_are_authoritative_and_negative_ones_carry_the_soa() {
    let lab = Lab::reference().unwrap().localized(232);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let a1i = asker(&lab, "contoso-lan");
    let a1e = asker(&lab, "internet");
    let lan_dns = lab
        .interface("DNS-contoso")
        .unwrap()
        .socket(Purpose::Dns)
        .unwrap();
    let internet_dns = lab
        .interface("DNS-internet")
        .unwrap()
        .socket(Purpose::Dns)
        .unwrap();

    for tcp in [false, true] {
        let found = ask(a1i, lan_dns, tcp, "fe01.contoso.test.", RecordType::A).await;
        assert_eq!(found.metadata.response_code, ResponseCode::NoError);
        assert!(found.metadata.authoritative);
        assert_eq!(found.metadata.id, 4711);
        assert_eq!(found.answers.len(), 1);
        assert_eq!(found.answers[0].ttl, TTL);
        let r1 = lab.interface("R1").unwrap().ip();
        assert_eq!(
            found.answers[0].data,
            RData::A(match r1 {
                IpAddr::V4(ip) => ip.into(),
                IpAddr::V6(_) => unreachable!("the lab is IPv4"),
            })
        );

        // The same name from the internet: NXDOMAIN, authoritative, with the zone's SOA.
        let missing = ask(
            a1e,
            internet_dns,
            tcp,
            "pool01.contoso.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
        assert!(missing.metadata.authoritative);
        assert!(missing.answers.is_empty());
        let [soa] = &missing.authorities[..] else {
            panic!("one SOA in the authority section: {missing:?}");
        };
        let RData::SOA(soa_data) = &soa.data else {
            panic!("not an SOA: {soa:?}");
        };
        assert_eq!(soa.name.to_ascii(), "contoso.test.");
        assert_eq!(soa_data.mname.to_ascii(), "ns.lab.test.");
        assert_eq!(soa_data.minimum, TTL);
    }

    // The view follows the source address, not the address asked: a LAN client asking the
    // internet address of the server still gets the LAN view.
    let internal = ask(a1i, internet_dns, false, "sip.contoso.test.", RecordType::A).await;
    let r1 = lab.interface("R1").unwrap().ip();
    assert_eq!(format!("{}", internal.answers[0].data), r1.to_string());

    // SRV answers bring their targets' addresses along; the apex has SOA and NS.
    let srv = ask(
        a1i,
        lan_dns,
        false,
        "_sipinternaltls._tcp.contoso.test.",
        RecordType::SRV,
    )
    .await;
    // The pool's two members, R1 first.
    let r1b = lab.interface("R1b").unwrap().ip();
    let extra: Vec<String> = srv.additionals.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(extra, [r1.to_string(), r1b.to_string()]);
    let ns = ask(a1e, internet_dns, false, "fabrikam.test.", RecordType::NS).await;
    assert_eq!(format!("{}", ns.answers[0].data), "ns.lab.test.");
    let soa = ask(a1e, internet_dns, false, "lab.test.", RecordType::SOA).await;
    assert_eq!(soa.answers.len(), 1);
}

#[tokio::test]
async fn dig_sees_the_views_when_installed() {
    if Command::new("dig").arg("-v").output().is_err() {
        eprintln!("dig is not installed; skipped");
        return;
    }
    let lab = Lab::reference().unwrap().localized(233);
    let _dns = DnsServer::start(&lab).await.unwrap();
    let server = lab
        .interface("DNS-internet")
        .unwrap()
        .socket(Purpose::Dns)
        .unwrap();
    for (view, want) in [("contoso-lan", "R1"), ("internet", "E1x")] {
        let source = asker(&lab, view);
        let output = tokio::process::Command::new("dig")
            .args([
                &format!("@{}", server.ip()),
                "-p",
                &server.port().to_string(),
                "-b",
                &source.to_string(),
                "+short",
                "sip.contoso.test",
            ])
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            text.trim(),
            lab.interface(want).unwrap().ip().to_string(),
            "{view}"
        );
    }
}

#[tokio::test]
async fn a_stopped_server_frees_its_addresses() {
    let lab = Lab::reference().unwrap().localized(229);
    let a1e = LabResolver::for_source(&lab, asker(&lab, "internet")).unwrap();
    // After shutdown() the sockets are closed: the same addresses can be served again at once.
    for _ in 0..3 {
        let dns = DnsServer::start(&lab).await.unwrap();
        assert!(a1e.lookup_a("sip.contoso.test").await.is_ok());
        dns.shutdown().await.unwrap();
    }
    // Dropped, its tasks are aborted and their sockets closed as soon as the runtime gets to
    // them.
    drop(DnsServer::start(&lab).await.unwrap());
    let mut restarted = None;
    for _ in 0..50 {
        match DnsServer::start(&lab).await {
            Ok(dns) => {
                restarted = Some(dns);
                break;
            }
            Err(DnsError::Bind { .. }) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(error) => panic!("{error}"),
        }
    }
    assert!(
        restarted.is_some(),
        "the dropped server's addresses were never freed"
    );
}
