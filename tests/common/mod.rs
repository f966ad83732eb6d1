//! A lab on loopback for one test: its own slot (so its own addresses), a CA made for it,
//! the nodes it needs, and clients placed as the spec names them.

#![allow(dead_code)] // each test file uses part of this

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use siplab_node::{Certs, Discover, RunningNode, client_config, start_node};
use siplab_pki::LabCa;
use siplab_proxy::ProxyConfig;
use siplab_topology::{At, Lab};
use siplab_ua::{Received, Ua, UaConfig, ViaHop};

pub mod browser;

/// One SIP message as tshark reads it from a pcap: source and destination (`IP:port`),
/// method (requests) and status (responses).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub src: String,
    pub dst: String,
    pub method: String,
    pub status: String,
}

/// The SIP messages of `call_id` in `pcap` (as sngrep writes HEP: UDP frames, read as SIP by
/// tshark's heuristic dissector), in order.
pub fn tshark_sip(pcap: &std::path::Path, call_id: &str) -> Vec<Seen> {
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["--enable-heuristic", "sip_udp", "-Y"])
        .arg(format!("sip.Call-ID == \"{call_id}\""))
        .args(["-T", "fields", "-E", "separator=,"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "udp.srcport",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
        ])
        .args(["-e", "sip.Method", "-e", "sip.Status-Code"])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f.len() == 6).then(|| Seen {
                src: format!("{}:{}", f[0], f[1]),
                dst: format!("{}:{}", f[2], f[3]),
                method: f[4].to_owned(),
                status: f[5].to_owned(),
            })
        })
        .collect()
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Whether `tool` is on the PATH; when it is not, says so, and fails under
/// `SIPLAB_REQUIRE_TOOLS=1`.
pub fn have_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        assert!(
            std::env::var("SIPLAB_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{tool} is not installed and SIPLAB_REQUIRE_TOOLS=1"
        );
        // The Debian package, where its name is not the program's (.ci/run installs these).
        let package = match tool {
            "linphonec" => "linphone-cli",
            other => other,
        };
        eprintln!("SKIPPED: {tool} is not installed (apt-get install {package})");
    }
    found
}

/// Every test's loopback slot (its own addresses, `Lab::localized`), allocated here so that
/// no two tests that may run at once share one: a suite owns `len` slots from `first`, and a
/// test takes one of them with [`Suite::slot`]. Overlapping suites do not compile.
#[derive(Debug, Clone, Copy)]
pub enum Suite {
    /// The README's own slots, one test at a time: tests/outside.rs on the first, tests/run.rs
    /// `siplab run` on both (its second lab, for the article's question, on the next).
    Readme,
    /// Rows 1 to 4 with R1 and E1 only (tests/paths.rs), slot by row.
    SiteRows,
    /// tests/front_end.rs, one slot per test.
    FrontEnd,
    /// The whole path matrix in one lab (tests/matrix.rs).
    Matrix,
    /// A call per federation and hybrid row (tests/dialogs.rs), slot by row.
    Dialogs,
    /// tests/trust.rs, one slot per test.
    Trust,
    /// Rows 5 to 18 in a whole lab each (tests/paths.rs), slot by row.
    WholeRows,
    /// tests/federation.rs.
    Federation,
    /// Presence per row (tests/presence.rs), slot by row; and its federated watcher.
    PresenceRows,
    Presence,
    /// The four sign-ins (tests/autodiscover.rs), and its DNS-only sign-in.
    Autodiscover,
    AutodiscoverDns,
    /// Held by crates/autodiscover/tests/alpn.rs and crates/client/tests/cli.rs, which
    /// cannot reach this table: listed so that nothing here takes them.
    CrateAlpn,
    CrateClient,
    /// tests/pages.rs: the live page, and the HEP export read by sngrep and tshark.
    Pages,
    Hep,
    /// tests/hostile.rs, one slot per test.
    Hostile,
}

impl Suite {
    const ALL: [Suite; 17] = [
        Suite::Readme,
        Suite::SiteRows,
        Suite::FrontEnd,
        Suite::Matrix,
        Suite::Dialogs,
        Suite::Trust,
        Suite::WholeRows,
        Suite::Federation,
        Suite::PresenceRows,
        Suite::Presence,
        Suite::Autodiscover,
        Suite::AutodiscoverDns,
        Suite::CrateAlpn,
        Suite::CrateClient,
        Suite::Pages,
        Suite::Hep,
        Suite::Hostile,
    ];

    /// The first slot and how many.
    const fn range(self) -> (u8, u8) {
        match self {
            Suite::Readme => (0, 2),
            Suite::SiteRows => (10, 5),
            Suite::FrontEnd => (21, 12),
            Suite::Matrix => (40, 1),
            Suite::Dialogs => (51, 18),
            Suite::Trust => (70, 5),
            Suite::WholeRows => (100, 19),
            Suite::Federation => (120, 2),
            Suite::PresenceRows => (130, 18),
            Suite::Presence => (150, 1),
            Suite::Autodiscover => (180, 1),
            Suite::CrateAlpn => (182, 1),
            Suite::AutodiscoverDns => (184, 1),
            Suite::CrateClient => (200, 1),
            Suite::Pages => (160, 1),
            Suite::Hep => (162, 1),
            Suite::Hostile => (164, 7),
        }
    }

    /// The `n`th slot of the suite (a row number, or a test's place in its file).
    pub fn slot(self, n: u8) -> u8 {
        let (first, len) = self.range();
        assert!(n < len, "{self:?} has {len} slots, not {}", n + 1);
        first + n
    }
}

/// No two suites share a slot.
const _: () = {
    let mut i = 0;
    while i < Suite::ALL.len() {
        let mut j = i + 1;
        while j < Suite::ALL.len() {
            let (a, al) = Suite::ALL[i].range();
            let (b, bl) = Suite::ALL[j].range();
            assert!(a as u16 + al as u16 <= b as u16 || b as u16 + bl as u16 <= a as u16);
            j += 1;
        }
        i += 1;
    }
};

pub struct TestLab {
    pub lab: Lab,
    pub certs: Certs,
    pub dns: siplab_dns::RunningDns,
    pub nodes: Vec<RunningNode>,
}

impl TestLab {
    /// Starts `nodes` of the reference lab on the loopback addresses of `slot`.
    pub async fn start(slot: u8, nodes: &[&str]) -> TestLab {
        TestLab::start_with(slot, nodes, ProxyConfig::default()).await
    }

    /// As [`TestLab::start`], with the nodes' proxies configured (shorter timers, say).
    pub async fn start_with(slot: u8, nodes: &[&str], config: ProxyConfig) -> TestLab {
        let lab = Lab::reference().expect("reference lab");
        TestLab::start_lab(lab, slot, nodes, config).await
    }

    /// As [`TestLab::start`], with `limits` (lines of the lab file's `[limits]` table) for
    /// every node.
    pub async fn start_limited(slot: u8, nodes: &[&str], limits: &str) -> TestLab {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lab.toml"))
            .expect("deploy/lab.toml");
        assert!(
            text.contains("\n[limits]\n"),
            "lab.toml has a [limits] table"
        );
        let text = text.replacen("\n[limits]\n", &format!("\n[limits]\n{limits}\n"), 1);
        let lab = Lab::from_toml_str(&text).expect("the reference lab with limits");
        TestLab::start_lab(lab, slot, nodes, ProxyConfig::default()).await
    }

    async fn start_lab(lab: Lab, slot: u8, nodes: &[&str], config: ProxyConfig) -> TestLab {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let lab = lab.localized(slot);
        let certs = Certs::Authority(Arc::new(LabCa::generate().expect("lab CA")));
        let dns = siplab_dns::DnsServer::start(&lab)
            .await
            .expect("DNS server");
        let mut running = Vec::new();
        for n in nodes {
            running.push(
                start_node(&lab, n, &certs, config)
                    .await
                    .unwrap_or_else(|e| panic!("{n}: {e}")),
            );
        }
        TestLab {
            lab,
            certs,
            dns,
            nodes: running,
        }
    }

    /// The configuration of `aor`'s client at `at`, its server found through the DNS records
    /// alone: these tests start only some nodes and look at SIP, so a cloud user meets its
    /// front end's 301 (tests/autodiscover.rs signs in through autodiscover).
    pub async fn config(&self, aor: &str, at: At) -> UaConfig {
        client_config(&self.lab, &self.certs, aor, at, Discover::DnsOnly)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    /// A client of `aor` at `at`, signed in.
    pub async fn client(&self, aor: &str, at: At) -> Ua {
        let ua = Ua::start(self.config(aor, at).await)
            .await
            .unwrap_or_else(|e| panic!("{aor}: {e}"));
        ua.wait_registered(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{aor} registered: {e}"));
        ua
    }

    /// What a Via's sent-by host is in the spec's terms: an interface (R1, E1x) or a
    /// client placement (A1e).
    pub fn name_of(&self, host: &str) -> String {
        self.lab
            .name_of_host(host)
            .unwrap_or_else(|| host.to_owned())
    }

    /// The Via chain a receiver observed, top first, by name.
    pub fn chain(&self, vias: &[ViaHop]) -> Vec<String> {
        vias.iter().map(|v| self.name_of(&v.host)).collect()
    }

    /// The Via chain the reference says the receiver of row `id` sees.
    pub fn expected_chain(&self, id: u32) -> Vec<String> {
        let path = self.lab.path(id).expect("path row");
        siplab_runner::expected_vias(path)
    }

    /// Checks each Via's address is the lab's address of the name it was given.
    pub fn assert_addresses(&self, vias: &[ViaHop]) {
        for v in vias {
            let name = self.name_of(&v.host);
            let ip: IpAddr = v
                .host
                .parse()
                .unwrap_or_else(|_| panic!("Via host {} is not an address", v.host));
            match self.lab.interface(&name) {
                Some(i) => assert_eq!(i.ip(), ip, "{name}"),
                None => assert!(
                    self.lab
                        .placement(&name)
                        .is_some_and(|p| p.addresses().any(|a| IpAddr::V4(a) == ip)),
                    "{name} at {ip}"
                ),
            }
        }
    }
}

/// Waits for the next request `ua` receives.
pub async fn received(ua: &Ua) -> Received {
    ua.next_received(WAIT)
        .await
        .unwrap_or_else(|| panic!("{} received nothing", ua.aor()))
}

/// A bare SIP transport with `aor`'s client identity at `at` (its certificate, its
/// address), the destination of its server, and `request` with `{ip}` replaced by the
/// client's address: for tests that write requests by hand.
pub struct RawClient {
    pub transport: siplab_transport::Transport,
    pub events: tokio::sync::mpsc::Receiver<siplab_transport::Event>,
    pub server: siplab_transport::Destination,
    pub ip: IpAddr,
}

impl RawClient {
    pub async fn new(lab: &TestLab, aor: &str, at: At) -> RawClient {
        use siplab_transport::{Destination, Limits, Transport};
        let cfg = lab.config(aor, at).await;
        let (transport, events) = Transport::new(Limits::default());
        transport.add_interface("client", cfg.bind_ip, cfg.tls.clone());
        RawClient {
            transport,
            events,
            server: Destination::Peer {
                interface: "client".into(),
                addr: cfg.server,
                server_name: cfg.server_name.clone(),
            },
            ip: cfg.bind_ip,
        }
    }

    /// As [`RawClient::new`], but connecting to `interface`'s listener for `purpose`
    /// (E1i's SIP port, CEx's client port) instead of the server discovery finds.
    pub async fn towards(
        lab: &TestLab,
        aor: &str,
        at: At,
        interface: &str,
        purpose: siplab_topology::Purpose,
    ) -> RawClient {
        let mut client = RawClient::new(lab, aor, at).await;
        let iface = lab.lab.interface(interface).expect("interface");
        client.server = siplab_transport::Destination::Peer {
            interface: "client".into(),
            addr: iface.socket(purpose).expect("listener"),
            server_name: iface.fqdns[0].clone(),
        };
        client
    }

    /// Sends `text` to the server, `{ip}` replaced by the client's address.
    pub async fn send(&self, text: &str) {
        let text = text.replace("{ip}", &self.ip.to_string());
        self.transport
            .send(&self.server, bytes::Bytes::from(text))
            .await
            .expect("sent");
    }

    /// The next final response this client receives.
    pub async fn final_response(&mut self) -> siplab_sip::Message {
        self.next(|m| m.status().is_some_and(|s| s >= 200)).await.0
    }

    /// The next message this client receives that `wanted` picks, and its connection.
    pub async fn next(
        &mut self,
        wanted: impl Fn(&siplab_sip::Message) -> bool,
    ) -> (
        siplab_sip::Message,
        std::sync::Arc<siplab_transport::ConnInfo>,
    ) {
        use siplab_transport::Event;
        loop {
            match tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("answered in time")
                .expect("transport alive")
            {
                Event::Message { msg, conn } if wanted(&msg) => return (msg, conn),
                _ => continue,
            }
        }
    }

    /// Sends `msg` back down the connection `conn` (an answer to what came on it).
    pub async fn answer(&self, conn: &siplab_transport::ConnInfo, msg: &siplab_sip::Message) {
        self.transport
            .send(
                &siplab_transport::Destination::Flow(conn.flow),
                msg.to_bytes(),
            )
            .await
            .expect("answered");
    }
}

/// Sends one hand-written request as `aor`'s client at `at` would (its certificate, its
/// address, its server) and returns the final response. `{ip}` in the text is replaced
/// by the client's address.
pub async fn exchange(lab: &TestLab, aor: &str, at: At, request: &str) -> siplab_sip::Message {
    let mut client = RawClient::new(lab, aor, at).await;
    client.send(request).await;
    client.final_response().await
}

/// The Warning text of a response, where siplab says why.
pub fn warning(resp: &siplab_sip::Message) -> String {
    resp.headers
        .value(&siplab_sip::HeaderName::new("Warning"))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// The whole lab (DNS and every node) on the loopback addresses of `slot`, with a CA of its own.
pub async fn whole_lab(slot: u8) -> siplab_runner::LabRun {
    let lab = Lab::reference().expect("reference lab").localized(slot);
    siplab_runner::LabRun::start(
        lab,
        Certs::Authority(Arc::new(LabCa::generate().expect("lab CA"))),
    )
    .await
    .expect("lab starts")
}

/// One test per `name = slot, row;`, each calling `$run(slot, row)`.
#[macro_export]
macro_rules! rows {
    ($suite:expr, $run:ident: $($name:ident = $id:literal;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                $run($suite.slot($id), $id).await;
            }
        )*
    };
}
