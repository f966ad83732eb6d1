//! The four sign-ins of section 4 (A1i, A1e, B1i, B1e), in a whole lab on loopback (slot 180):
//! through autodiscover, as real clients sign in, and through the DNS records alone. Through
//! autodiscover a cloud user is sent to the cloud by its company's service and registers
//! there at once; through the records it meets its front end's 301 first.

mod common;

use common::Suite;

use std::sync::Arc;
use std::time::Duration;

use siplab_dns::discovery::Discovery;
use siplab_node::{Certs, Discover, client_config};
use siplab_pki::LabCa;
use siplab_runner::LabRun;
use siplab_topology::{At, Lab, Purpose};
use siplab_ua::Ua;

const WAIT: Duration = Duration::from_secs(10);

/// Each step as `TYPE query -> answer`.
fn trail(found: &Discovery) -> Vec<String> {
    found
        .steps
        .iter()
        .map(|s| {
            let answer = s.answer.as_deref().unwrap_or("-");
            format!("{} {} -> {answer}", s.record_type, s.query)
        })
        .collect()
}

/// Signs `aor` in at `at`, found `how`; returns discovery and the servers registered with.
async fn sign_in(
    run: &LabRun,
    aor: &str,
    at: At,
    how: Discover,
) -> (Discovery, Vec<(String, Option<u16>)>) {
    let (cfg, found) = client_config(&run.lab, &run.certs, aor, at, how)
        .await
        .unwrap_or_else(|e| panic!("{aor}: {e}"));
    let ua = Ua::start(cfg)
        .await
        .unwrap_or_else(|e| panic!("{aor}: {e}"));
    let reg = ua
        .wait_registered(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{aor} registered: {e}"));
    let servers = reg
        .sign_in
        .servers
        .iter()
        .map(|s| (s.name.clone(), s.status))
        .collect();
    ua.shutdown().await;
    (found, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_sign_ins_through_autodiscover_and_through_the_dns_records() {
    let lab = Lab::reference()
        .unwrap()
        .localized(Suite::Autodiscover.slot(0));
    let certs = Certs::Authority(Arc::new(LabCa::generate().unwrap()));
    let run = LabRun::start(lab, certs).await.expect("lab starts");
    let web = run
        .lab
        .interface("E1x")
        .unwrap()
        .socket(Purpose::Web)
        .unwrap()
        .port();
    let pool = ("pool01.contoso.test".to_owned(), Some(200));
    let edge = ("sip.contoso.test".to_owned(), Some(200));
    let cloud = ("sipdir.online.lync.test".to_owned(), Some(200));
    let moved = |(name, _): &(String, Option<u16>)| (name.clone(), Some(301));

    // The four places, through autodiscover: a cloud user goes straight to the cloud.
    let cases = [
        (
            "alice@contoso.test",
            At::Internal,
            "lyncdiscoverinternal",
            &pool,
        ),
        ("adam@contoso.test", At::External, "lyncdiscover", &edge),
        (
            "bella@contoso.test",
            At::Internal,
            "lyncdiscoverinternal",
            &cloud,
        ),
        ("ben@contoso.test", At::External, "lyncdiscover", &cloud),
    ];
    for (aor, at, name, server) in cases {
        let (found, servers) = sign_in(&run, aor, at, Discover::Autodiscover).await;
        assert_eq!(
            found.via,
            format!("{name}.contoso.test (autodiscover)"),
            "{aor}: {:#?}",
            trail(&found)
        );
        assert_eq!(
            servers,
            std::slice::from_ref(server),
            "{aor}: no 301 on the way"
        );
    }
    // B1e's way in full: the edge's service sends it to the cloud's, which names sipdir.
    let (found, _) = sign_in(
        &run,
        "ben@contoso.test",
        At::External,
        Discover::Autodiscover,
    )
    .await;
    let root = |host: &str| {
        format!(
            "https://{host}:{web}/autodiscover/autodiscoverservice.svc/root?originalDomain=contoso.test"
        )
    };
    let user = |host: &str| {
        format!(
            "https://{host}:{web}/autodiscover/autodiscoverservice.svc/root/oauth/user?originalDomain=contoso.test"
        )
    };
    let e1x = run.lab.interface("E1x").unwrap().ip();
    let cex = run.lab.interface("CEx").unwrap().ip();
    assert_eq!(
        trail(&found),
        [
            "A lyncdiscoverinternal.contoso.test -> -".to_owned(),
            format!("A lyncdiscover.contoso.test -> A {e1x}"),
            format!(
                "GET {} -> user {}",
                root("lyncdiscover.contoso.test"),
                user("lyncdiscover.contoso.test")
            ),
            format!(
                "GET {} -> redirect {}",
                user("lyncdiscover.contoso.test"),
                root("webdir.online.lync.test")
            ),
            format!("A webdir.online.lync.test -> A {cex}"),
            format!(
                "GET {} -> user {}",
                root("webdir.online.lync.test"),
                user("webdir.online.lync.test")
            ),
            format!(
                "GET {} -> SipClientExternalAccess sipdir.online.lync.test:{web}",
                user("webdir.online.lync.test")
            ),
            format!("A sipdir.online.lync.test -> A {cex}"),
        ]
    );
    assert_eq!(
        found.server,
        run.lab
            .interface("CEx")
            .unwrap()
            .socket(Purpose::Client)
            .unwrap()
    );

    // The same places through the DNS records alone: the cloud users meet the 301.
    let cases = [
        (
            "alice@contoso.test",
            At::Internal,
            "_sipinternaltls._tcp",
            vec![pool.clone()],
        ),
        (
            "adam@contoso.test",
            At::External,
            "_sip._tls",
            vec![edge.clone()],
        ),
        (
            "bella@contoso.test",
            At::Internal,
            "_sipinternaltls._tcp",
            vec![moved(&pool), cloud.clone()],
        ),
        (
            "ben@contoso.test",
            At::External,
            "_sip._tls",
            vec![moved(&edge), cloud.clone()],
        ),
    ];
    for (aor, at, record, expected) in cases {
        let (found, servers) = sign_in(&run, aor, at, Discover::DnsOnly).await;
        assert_eq!(found.via, format!("{record}.contoso.test"), "{aor}");
        assert!(
            found.steps.iter().all(|s| s.record_type != "GET"),
            "{aor}: {:#?}",
            trail(&found)
        );
        assert_eq!(servers, expected, "{aor}");
    }

    // The runner's clients sign in through autodiscover too (company 2's B2e here).
    let report = run
        .place("bruno@fabrikam.test", At::External)
        .await
        .expect("B2e signs in")
        .expect("a new sign-in");
    assert_eq!(report.via, "lyncdiscover.fabrikam.test (autodiscover)");
    assert_eq!(report.servers, [cloud]);
    run.sign_out_all().await;
}

/// Autodiscover that leads nowhere is passed over, as real clients do: with the cloud down,
/// B1i's company still sends it to webdir, which does not answer, so the DNS records decide.
#[tokio::test]
async fn a_service_that_does_not_answer_leaves_it_to_the_dns_records() {
    let lab = Lab::reference()
        .unwrap()
        .localized(Suite::AutodiscoverDns.slot(0));
    let certs = Certs::Authority(Arc::new(LabCa::generate().unwrap()));
    let _dns = siplab_dns::DnsServer::start(&lab).await.expect("DNS");
    let _r1 = siplab_node::start_node(&lab, "R1", &certs, Default::default())
        .await
        .expect("R1 starts");
    let (_, found) = client_config(
        &lab,
        &certs,
        "bella@contoso.test",
        At::Internal,
        Discover::Autodiscover,
    )
    .await
    .unwrap();
    assert_eq!(found.via, "_sipinternaltls._tcp.contoso.test");
    let trail = trail(&found);
    let webdir_root = trail
        .iter()
        .position(|s| s.starts_with("GET https://webdir.online.lync.test:10443/"))
        .unwrap_or_else(|| panic!("{trail:#?}"));
    assert!(
        trail[webdir_root - 2].contains("-> redirect https://webdir"),
        "{trail:#?}"
    );
    assert!(
        trail[webdir_root].ends_with("-> -"),
        "no answer: {trail:#?}"
    );
    assert_eq!(
        trail[webdir_root + 1],
        "A lyncdiscover.contoso.test -> -",
        "{trail:#?}"
    );
}
