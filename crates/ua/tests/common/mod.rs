//! A tiny registrar and proxy for testing the client against, on the real transport: it
//! registers clients on their flows, forwards requests between them as a record-routing
//! proxy (its own Via on top, `received`/`rport` on the sender's), answers 301 when told to,
//! and lets a test send requests of its own down a client's flow.

#![allow(dead_code)] // Each test file uses a different part of it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use siplab_pki::{LabCa, NodeIdentity, UserIdentity};
use siplab_sip::{Contact, HeaderName, Message, Method, StartLine, Via, reason_phrase};
use siplab_transport::{Destination, Event, FlowToken, Limits, TlsConfig, Transport};
use siplab_ua::UaConfig;
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(10);

/// The lab CA of one test, issuing the server's and the users' certificates.
pub struct Pki {
    ca: LabCa,
}

impl Pki {
    pub fn new() -> Pki {
        Pki {
            ca: LabCa::generate().unwrap(),
        }
    }

    pub fn node(&self, name: &str, ip: IpAddr) -> TlsConfig {
        let cert = self
            .ca
            .issue_node(&NodeIdentity {
                name: name.replace('.', "-"),
                dns_names: vec![name.into()],
                ips: vec![ip],
            })
            .unwrap();
        TlsConfig::from_pem(
            self.ca.cert_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .unwrap()
    }

    pub fn user(&self, aor: &str) -> TlsConfig {
        let cert = self
            .ca
            .issue_user(&UserIdentity { aor: aor.into() })
            .unwrap();
        TlsConfig::from_pem(
            self.ca.cert_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
        )
        .unwrap()
    }

    /// A client of `aor` at `ip`, signing in at `server`, with test-friendly timers.
    pub fn client(&self, aor: &str, ip: &str, server: &Server) -> UaConfig {
        let mut cfg = UaConfig::new(
            aor,
            ip.parse().unwrap(),
            server.addr,
            &server.name,
            self.user(aor),
        );
        cfg.transaction_timeout = Duration::from_secs(5);
        cfg
    }
}

/// What the server does with a REGISTER.
#[derive(Clone)]
pub enum OnRegister {
    /// 200 with the binding, and the flow kept for requests to the user.
    Accept,
    /// 301 with this Contact.
    Redirect(String),
}

#[derive(Default)]
struct State {
    /// AOR -> the flow it registered on.
    by_aor: HashMap<String, FlowToken>,
    /// Contact `host:port` -> flow, for in-dialog requests addressed to a Contact.
    by_contact: HashMap<String, FlowToken>,
    /// Our branch -> the flow the request came from, to send its responses back.
    forwarded: HashMap<String, FlowToken>,
    /// Every REGISTER seen, with the connection it came on.
    registers: Vec<(Message, u64)>,
}

pub struct Server {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub name: String,
    state: Arc<Mutex<State>>,
    /// Responses to requests the test sent itself with [`Server::send_to`].
    responses: tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>,
}

impl Server {
    pub async fn start(pki: &Pki, name: &str, ip: &str, on_register: OnRegister) -> Server {
        Server::start_with(pki, name, ip, on_register, Limits::default()).await
    }

    pub async fn start_with(
        pki: &Pki,
        name: &str,
        ip: &str,
        on_register: OnRegister,
        limits: Limits,
    ) -> Server {
        let ip: IpAddr = ip.parse().unwrap();
        let (transport, events) = Transport::new(limits);
        transport.add_interface("test", ip, pki.node(name, ip));
        let addr = transport
            .listen("test", SocketAddr::new(ip, 0))
            .await
            .unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (resp_tx, resp_rx) = mpsc::unbounded_channel();
        let proxy = Proxy {
            transport: transport.clone(),
            addr,
            state: state.clone(),
            on_register,
            responses: resp_tx,
        };
        tokio::spawn(proxy.run(events));
        Server {
            transport,
            addr,
            name: name.to_owned(),
            state,
            responses: tokio::sync::Mutex::new(resp_rx),
        }
    }

    /// The REGISTERs seen so far, with the connection each came on.
    pub fn registers(&self) -> Vec<(Message, u64)> {
        self.state.lock().unwrap().registers.clone()
    }

    /// Sends a request of the test's own down the flow `aor` registered on, with this
    /// server's Via on top of `vias_below` (which stand for hops further back).
    pub async fn send_to(&self, aor: &str, method: &str, vias_below: &[&str]) -> String {
        let branch = format!("z9hG4bKtest{}", rand_suffix());
        self.send_in(aor, method, &branch, vias_below).await;
        branch
    }

    /// The same in the transaction `branch` (a CANCEL names its INVITE's). An INVITE
    /// carries a Contact, as it must to make a dialog.
    pub async fn send_in(&self, aor: &str, method: &str, branch: &str, vias_below: &[&str]) {
        let mut text = format!(
            "{method} sip:{aor} SIP/2.0\r\nVia: SIP/2.0/TLS {};branch={branch}\r\n",
            self.addr
        );
        for via in vias_below {
            text.push_str(&format!("Via: {via}\r\n"));
        }
        text.push_str(&format!(
            "Max-Forwards: 69\r\nFrom: <sip:server@test>;tag=s1\r\nTo: <sip:{aor}>\r\n\
             Call-ID: {branch}@test\r\nCSeq: 1 {method}\r\n\
             Record-Route: <sip:{};transport=tls;lr>\r\n",
            self.addr
        ));
        if method == "INVITE" {
            text.push_str("Contact: <sip:server@127.0.0.1:5061;transport=tls>\r\n");
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.send_text(aor, &text).await;
    }

    /// Sends a hand-written request down the flow `aor` registered on; its responses come
    /// out of [`Server::next_response`] if its top Via names this server.
    pub async fn send_text(&self, aor: &str, text: &str) {
        let flow = self.state.lock().unwrap().by_aor.get(aor).cloned().unwrap();
        self.transport
            .send(&Destination::Flow(flow), Bytes::from(text.to_owned()))
            .await
            .unwrap();
    }

    /// The next response to a request sent with [`Server::send_to`].
    pub async fn next_response(&self) -> Message {
        tokio::time::timeout(WAIT, self.responses.lock().await.recv())
            .await
            .expect("a response in time")
            .expect("the server runs")
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

struct Proxy {
    transport: Transport,
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    on_register: OnRegister,
    responses: mpsc::UnboundedSender<Message>,
}

impl Proxy {
    async fn run(self, mut events: mpsc::Receiver<Event>) {
        while let Some(event) = events.recv().await {
            let Event::Message { msg, conn } = event else {
                continue;
            };
            let reply = if msg.is_request() {
                self.request(msg, conn.flow, conn.id)
            } else {
                self.response(msg)
            };
            if let Some((dest, msg)) = reply {
                let _ = self
                    .transport
                    .send(&Destination::Flow(dest), msg.to_bytes())
                    .await;
            }
        }
    }

    fn answer(req: &Message, code: u16) -> Message {
        let mut resp = Message::response_to(req, code, reason_phrase(code));
        if code >= 200
            && let Some(to) = req.headers.value(&HeaderName::To)
        {
            let to = String::from_utf8_lossy(to);
            if !to.contains("tag=") {
                resp.headers.set(HeaderName::To, format!("{to};tag=srv"));
            }
        }
        resp
    }

    fn request(
        &self,
        mut req: Message,
        from: FlowToken,
        conn: u64,
    ) -> Option<(FlowToken, Message)> {
        let method = req.method()?;
        if method == Method::Register {
            let aor = req.to().ok()?.sip_uri()?.aor();
            self.state
                .lock()
                .unwrap()
                .registers
                .push((req.clone(), conn));
            return Some((from, self.register(&req, &aor, from)));
        }
        // Loose routing: a Route naming us is ours to remove.
        let own = self.addr.to_string();
        if let Some(route) = req
            .headers
            .elements(&HeaderName::Route)
            .and_then(|r| r.first().cloned())
            && String::from_utf8_lossy(&route).contains(&own)
        {
            req.headers.remove_first_value(&HeaderName::Route);
        }
        let target = req.request_uri()?.as_sip()?.clone();
        if target.user.as_deref() == Some("blackhole") {
            return None;
        }
        let dest = {
            let state = self.state.lock().unwrap();
            let hostport = format!("{}:{}", target.host, target.port.unwrap_or(5061));
            state
                .by_contact
                .get(&hostport)
                .or_else(|| state.by_aor.get(target.aor().as_str()))
                .cloned()
        };
        let Some(dest) = dest else {
            return (method != Method::Ack).then(|| (from, Proxy::answer(&req, 404)));
        };
        // The sender's Via gets what we saw (RFC 3261 18.2.1, RFC 3581), ours goes on top.
        let conn_peer = self.transport.flow(&from)?.peer;
        let top = req.headers.remove_first_value(&HeaderName::Via)?;
        let mut via = Via::parse(&top).ok()?;
        via.params
            .set("received", Some(&conn_peer.ip().to_string()));
        via.params.set("rport", Some(&conn_peer.port().to_string()));
        req.headers.push_front(HeaderName::Via, via.to_string());
        let branch = format!("z9hG4bKproxy{}", rand_suffix());
        req.headers.push_front(
            HeaderName::Via,
            format!("SIP/2.0/TLS {};branch={branch}", self.addr),
        );
        if method == Method::Invite {
            req.headers.push_front(
                HeaderName::RecordRoute,
                format!("<sip:{};transport=tls;lr>", self.addr),
            );
        }
        if method != Method::Ack {
            self.state.lock().unwrap().forwarded.insert(branch, from);
        }
        Some((dest, req))
    }

    fn register(&self, req: &Message, aor: &str, flow: FlowToken) -> Message {
        match &self.on_register {
            OnRegister::Redirect(contact) => {
                let mut resp = Proxy::answer(req, 301);
                resp.headers.push(HeaderName::Contact, contact.clone());
                resp
            }
            OnRegister::Accept => {
                let mut resp = Proxy::answer(req, 200);
                let contacts = req.contacts().unwrap_or_default();
                let mut state = self.state.lock().unwrap();
                for c in &contacts {
                    if let Contact::Addr(a) = c
                        && let Some(uri) = a.sip_uri()
                    {
                        let hostport = format!("{}:{}", uri.host, uri.port.unwrap_or(5061));
                        state.by_contact.insert(hostport, flow);
                    }
                }
                state.by_aor.insert(aor.to_owned(), flow);
                for c in req.headers.get_all(&HeaderName::Contact) {
                    resp.headers.push(HeaderName::Contact, c.value.clone());
                }
                resp.headers.push(
                    HeaderName::Path,
                    format!("<sip:{};transport=tls;lr;ob>", self.addr),
                );
                resp
            }
        }
    }

    fn response(&self, mut resp: Message) -> Option<(FlowToken, Message)> {
        let branch = resp.top_via().ok()?.branch()?.to_owned();
        let back = {
            let mut state = self.state.lock().unwrap();
            let final_response = resp.status().is_some_and(|s| s >= 200);
            if final_response {
                state.forwarded.remove(&branch)
            } else {
                state.forwarded.get(&branch).cloned()
            }
        };
        match back {
            Some(flow) => {
                resp.headers.remove_first_value(&HeaderName::Via);
                Some((flow, resp))
            }
            None => {
                let _ = self.responses.send(resp);
                None
            }
        }
    }
}

/// The status of a response.
pub fn status(msg: &Message) -> u16 {
    match msg.start {
        StartLine::Response { code, .. } => code,
        StartLine::Request { .. } => 0,
    }
}

/// A resolver that knows one name.
pub fn resolve_one(name: &str, addr: SocketAddr) -> siplab_ua::Resolver {
    let name = name.to_owned();
    Arc::new(move |host: String, port: u16| {
        let found = (host == name && port == addr.port()).then_some(addr);
        Box::pin(async move { found })
    })
}
