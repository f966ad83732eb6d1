//! The trust rules of section 7 at the edges: a spoofed From domain gets 403, a certificate
//! from another CA does not even get a TLS session.

mod common;

use common::Suite;

use std::sync::Arc;

use bytes::Bytes;
use siplab_node::Certs;
use siplab_pki::LabCa;
use siplab_runner::LabRun;
use siplab_transport::{Destination, Event, Limits, Transport};

const SPOOFED: &str = "MESSAGE sip:anna@fabrikam.test SIP/2.0\r\nVia: SIP/2.0/TLS {ip}:5061;branch=z9hG4bKspoof\r\nMax-Forwards: 70\r\nFrom: <sip:mallory@example.test>;tag=1\r\nTo: <sip:anna@fabrikam.test>\r\nCall-ID: spoof\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n";

/// Sends `text` to E2's federation port as E1's external interface, with `tls` as identity.
async fn as_e1_to_e2(
    run: &LabRun,
    tls: siplab_transport::TlsConfig,
    text: &str,
) -> Result<siplab_sip::Message, String> {
    let e1x = run.lab.interface("E1x").unwrap();
    let e2x = run.lab.interface("E2x").unwrap();
    let (t, mut events) = Transport::new(Limits::default());
    t.add_interface("E1x", e1x.ip(), tls);
    let dest = Destination::Peer {
        interface: "E1x".into(),
        addr: e2x.socket(siplab_topology::Purpose::Sip).unwrap(),
        server_name: "sip.fabrikam.test".into(),
    };
    t.send(
        &dest,
        Bytes::from(text.replace("{ip}", &e1x.ip().to_string())),
    )
    .await
    .map_err(|e| e.to_string())?;
    loop {
        match tokio::time::timeout(common::WAIT, events.recv()).await {
            Ok(Some(Event::Message { msg, .. })) if msg.status().is_some_and(|s| s >= 200) => {
                return Ok(msg);
            }
            Ok(Some(_)) => continue,
            _ => return Err("no answer".into()),
        }
    }
}

#[tokio::test]
async fn a_federated_request_with_a_spoofed_from_domain_is_refused() {
    let run = common::whole_lab(Suite::Federation.slot(0)).await;
    let tls = run.certs.interface(&run.lab, "E1x").unwrap();
    let resp = as_e1_to_e2(&run, tls.clone(), SPOOFED)
        .await
        .expect("answered");
    assert_eq!(resp.status(), Some(403));
    let warning = common::warning(&resp);
    assert!(
        warning.contains("example.test") && warning.contains("sip.contoso.test"),
        "{warning}"
    );
    // The same peer with its own domain in From is let through (to a user who is not there).
    let honest = SPOOFED.replace("mallory@example.test", "alice@contoso.test");
    let resp = as_e1_to_e2(&run, tls, &honest).await.expect("answered");
    assert_eq!(
        resp.status(),
        Some(480),
        "accepted and routed to R2, where anna is not signed in"
    );
}

#[tokio::test]
async fn a_peer_with_a_certificate_from_another_ca_is_refused_at_the_handshake() {
    let run = common::whole_lab(Suite::Federation.slot(1)).await;
    let stranger = LabCa::generate().unwrap();
    let tls = Certs::Authority(Arc::new(stranger))
        .interface(&run.lab, "E1x")
        .unwrap();
    let err = as_e1_to_e2(&run, tls, SPOOFED)
        .await
        .expect_err("no TLS session");
    assert!(err.contains("TLS handshake"), "{err}");
}
