//! The service on a shared port, as an edge runs it: E1x's client listener of slot 182 hands
//! an HTTPS client (ALPN `http/1.1`) to autodiscover and keeps a SIP client (no ALPN) for SIP.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siplab_autodiscover::document::{AccessLocation, ROOT_PATH};
use siplab_autodiscover::{ALPN, AutodiscoverError, Client, Directory, handler};
use siplab_dns::discovery::LabResolver;
use siplab_pki::{LabCa, NodeIdentity, UserIdentity};
use siplab_sip::Method;
use siplab_topology::{Lab, Purpose};
use siplab_transport::{Destination, Event, Limits, TlsConfig, Transport};

/// Listed in the top-level tests' slot table (tests/common, `Suite::CrateAlpn`).
const SLOT: u8 = 182;

fn tls(ca: &LabCa, issued: siplab_pki::IssuedCert) -> TlsConfig {
    TlsConfig::from_pem(
        ca.cert_pem().as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
    )
    .unwrap()
}

fn user(ca: &LabCa, aor: &str) -> TlsConfig {
    tls(
        ca,
        ca.issue_user(&UserIdentity { aor: aor.into() }).unwrap(),
    )
}

#[tokio::test]
async fn an_https_get_and_a_sip_options_share_the_edges_client_port() {
    let lab = Lab::reference().unwrap().localized(SLOT);
    let ca = LabCa::generate().unwrap();
    let e1x = lab.interface("E1x").unwrap();
    let web = e1x.socket(Purpose::Web).unwrap();
    assert_eq!(Some(web), e1x.socket(Purpose::Client));
    let identity = lab
        .node_identities()
        .into_iter()
        .find(|i| i.interface == "E1x")
        .unwrap();
    let node_tls = tls(
        &ca,
        ca.issue_node(&NodeIdentity {
            name: "E1x".into(),
            dns_names: identity.dns_names,
            ips: vec![e1x.ip()],
        })
        .unwrap(),
    );
    let (edge, mut edge_events) = Transport::new(Limits::default());
    edge.add_interface("E1x", e1x.ip(), node_tls);
    let directory = Arc::new(Directory::for_node(&lab, "E1").unwrap());
    edge.listen_with_alpn("E1x", web, ALPN, handler(directory))
        .await
        .unwrap();

    // HTTPS: the user resource, for the user the certificate names.
    let a1e: IpAddr = lab.placement("A1e").unwrap().address.into();
    let client = |aor: &str| {
        Client::new(
            LabResolver::for_source(&lab, a1e).unwrap(),
            &user(&ca, aor),
            web.port(),
            Arc::new(move |_| a1e),
        )
    };
    let url = format!(
        "https://lyncdiscover.contoso.test:{}{ROOT_PATH}/oauth/user?originalDomain=contoso.test",
        web.port()
    );
    let doc = client("adam@contoso.test")
        .get(&url, e1x.ip())
        .await
        .unwrap();
    assert_eq!(doc.access_location, Some(AccessLocation::External));
    let (kind, access) = doc.sip_access().unwrap();
    assert_eq!(
        (kind, access.to_string()),
        (
            "SipClientExternalAccess",
            format!("sip.contoso.test:{}", web.port())
        )
    );
    // A user of another company is not homed here.
    let error = client("anna@fabrikam.test")
        .get(&url, e1x.ip())
        .await
        .unwrap_err();
    assert!(
        matches!(error, AutodiscoverError::Status { status: 404, .. }),
        "{error}"
    );
    // A SIP listener that offers no HTTP is no autodiscover service.
    let sip_only = e1x.socket(Purpose::Sip).unwrap();
    edge.listen("E1x", sip_only).await.unwrap();
    let url = format!(
        "https://lyncdiscover.contoso.test:{}{ROOT_PATH}",
        sip_only.port()
    );
    let error = client("adam@contoso.test")
        .get(&url, e1x.ip())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no ALPN http/1.1"), "{error}");

    // SIP on the same port as the GET: no ALPN, so it reaches the SIP layer.
    let (sip, _sip_events) = Transport::new(Limits::default());
    sip.add_interface("A1e", a1e, user(&ca, "adam@contoso.test"));
    let options = format!(
        "OPTIONS sip:sip.contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS {a1e}:5060;branch=z9hG4bKalpn\r\n\
         From: <sip:adam@contoso.test>;tag=1\r\nTo: <sip:sip.contoso.test>\r\nCall-ID: alpn\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let dest = Destination::Peer {
        interface: "A1e".into(),
        addr: web,
        server_name: "sip.contoso.test".into(),
    };
    sip.send(&dest, Bytes::from(options)).await.unwrap();
    let (msg, conn) = loop {
        match tokio::time::timeout(Duration::from_secs(5), edge_events.recv())
            .await
            .expect("SIP arrived in time")
            .expect("transport alive")
        {
            Event::Message { msg, conn } => break (msg, conn),
            Event::Closed { .. } => continue,
        }
    };
    assert_eq!(msg.method(), Some(Method::Options));
    assert_eq!(conn.local, web);
    assert_eq!(conn.peer.ip(), a1e);
    assert_eq!(conn.identity.sip_aor(), Some("adam@contoso.test"));
}
