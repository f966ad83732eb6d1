//! The pages: `siplab run --report DIR` (one self-contained `index.html`, and each ladder as
//! its own `.svg` and `.mmd`) and `siplab up --web ADDR` (the same page, live: ladders that
//! draw themselves as the nodes capture, sent as Server-Sent Events).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use siplab_sip::{Message, Method};
use siplab_topology::Lab;
use siplab_transport::{Captured, serve_bounded};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info};

use crate::draw::{esc, ladder_svg, mermaid, topology_svg};
use crate::lab::SignInReport;
use crate::ladder::{Ladder, Select};
use crate::presence::PresenceRow;
use crate::scenario::{Outcome, Row};
use crate::wire::Wire;

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccd}\
section.row,section.call{margin:1.2em 0;padding:.6em;border:1px solid #dde;border-radius:6px;width:max-content}\
.match{color:#2c7a3f;font-weight:bold}.mismatch,.failed{color:#b22;font-weight:bold}\
code{background:#f3f3f6;padding:0 .25em}table{border-collapse:collapse}\
td,th{border:1px solid #ccd;padding:.2em .5em;text-align:left;vertical-align:top}\
#filter{font-size:1em;padding:.3em;width:24em}.hidden{display:none}";

/// Hides the sections whose users or Call-ID do not contain what is typed in the filter.
const FILTER: &str = "const f=document.getElementById('filter');\
function apply(){const q=f.value.toLowerCase();document.querySelectorAll('section[data-search]')\
.forEach(s=>s.classList.toggle('hidden',q!==''&&!s.dataset.search.toLowerCase().includes(q)));}\
f.addEventListener('input',apply);";

/// Keeps the latest calls at the top as their ladders arrive.
const LIVE: &str = "const live=document.getElementById('live');\
const es=new EventSource('/events');es.onopen=()=>{document.body.dataset.live='open';};es.onmessage=e=>{const c=JSON.parse(e.data);\
let s=document.querySelector('section[data-call-id=\"'+CSS.escape(c.call_id)+'\"]');\
if(!s){s=document.createElement('section');s.className='call';s.dataset.callId=c.call_id;}\
s.dataset.search=c.users+' '+c.call_id;s.innerHTML='<h3>'+c.title+'</h3>'+c.svg;\
live.prepend(s);while(live.children.length>LIMIT)live.lastChild.remove();apply();\
document.body.dataset.received=(+(document.body.dataset.received||0)+1);};";

/// What `--report` writes about.
pub struct Report<'a> {
    pub lab: &'a Lab,
    pub sign_ins: &'a [(String, SignInReport)],
    pub rows: &'a [Row],
    pub presence: &'a [PresenceRow],
}

fn page(title: &str, body: &str, script: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n{body}\n<script>{FILTER}{script}</script></body></html>\n",
        t = esc(title)
    )
}

fn verdict(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Match => r#"<span class="match">match</span>"#.into(),
        Outcome::Mismatch => r#"<span class="mismatch">mismatch</span>"#.into(),
        Outcome::Failed(why) => format!(r#"<span class="failed">failed: {}</span>"#, esc(why)),
    }
}

/// The row's name in a file name: `17`, `17m`.
fn slug(scenario: &str) -> &str {
    scenario.split_whitespace().next().unwrap_or(scenario)
}

impl Report<'_> {
    /// Writes `index.html` and, per row, `rows/<row>.svg` and `rows/<row>.mmd` into `dir`.
    pub fn write(&self, dir: &Path, events: &[Captured]) -> std::io::Result<PathBuf> {
        let rows_dir = dir.join("rows");
        std::fs::create_dir_all(&rows_dir)?;
        let lab = self.lab;
        let mut body = String::new();
        let matched = self
            .rows
            .iter()
            .filter(|r| r.outcome == Outcome::Match)
            .count();
        let _ = write!(
            body,
            "<p>Every path of the reference lab as the nodes captured it on the wire: {matched} of {} \
             message rows match the article. Each arrow goes from the real source to the real \
             destination of one message (hover for addresses and time); the column on the right is \
             the reason the sending node gave.</p>\n\
             <p><input id=\"filter\" placeholder=\"filter by user, row or Call-ID\"></p>\n\
             <h2 id=\"topology\">The lab</h2>\n{}\n",
            self.rows.len(),
            topology_svg(lab)
        );
        body.push_str("<h2 id=\"sign-in\">Sign-in: discovery, then registration</h2>\n<table><tr><th>user</th><th>at</th><th>discovery</th><th>led by</th><th>registered with</th></tr>\n");
        for (place, s) in self.sign_ins {
            let servers: Vec<String> = s
                .servers
                .iter()
                .map(|(server, code)| match code {
                    Some(c) => format!("{server} ({c})"),
                    None => server.clone(),
                })
                .collect();
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.aor),
                esc(place),
                s.discovery
                    .iter()
                    .map(|d| esc(d))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                esc(&s.via),
                esc(&servers.join(" -> "))
            );
        }
        body.push_str("</table>\n<h2 id=\"rows\">Message rows (section 5)</h2>\n");
        for row in self.rows {
            let title = format!("Row {}: {} to {}", row.scenario, row.sender, row.receiver);
            let ladder = Ladder::of(lab, events, &row.call_id, Select::First(Method::Message))
                .titled(&title);
            let name = slug(&row.scenario);
            std::fs::write(rows_dir.join(format!("{name}.svg")), ladder_svg(&ladder))?;
            std::fs::write(rows_dir.join(format!("{name}.mmd")), mermaid(&ladder))?;
            let wire = ladder.path();
            let same = if wire == row.article {
                "the same"
            } else {
                "differs"
            };
            let _ = write!(
                body,
                "<section class=\"row\" id=\"row-{name}\" data-row=\"{name}\" data-call-id=\"{cid}\" data-search=\"{search}\">\
                 <h3>{} - {}</h3><p>Article: <code>{}</code><br>On the wire: <code>{}</code> ({same})<br>\
                 Vias at the receiver: <code>{}</code> (<a href=\"rows/{name}.svg\">SVG</a>, <a href=\"rows/{name}.mmd\">Mermaid</a>)</p>\n{}\n</section>\n",
                esc(&title),
                verdict(&row.outcome),
                esc(&row.article.join(" -> ")),
                esc(&wire.join(" -> ")),
                esc(&row.observed.join(", ")),
                ladder_svg(&ladder),
                cid = esc(&row.call_id),
                search = esc(&format!(
                    "{} {} {} {}",
                    row.scenario, row.sender, row.receiver, row.call_id
                )),
            );
        }
        body.push_str("<h2 id=\"presence\">Presence rows (section 6): SUBSCRIBE up to the home server, NOTIFY back</h2>\n");
        for p in self.presence {
            let title = format!(
                "Presence {}: {} watches {}",
                p.scenario, p.watcher, p.target
            );
            let name = format!("presence-{}", slug(&p.scenario));
            let _ = write!(
                body,
                "<section class=\"row presence\" id=\"{name}\" data-call-id=\"{}\" data-search=\"{}\"><h3>{} - {} (home {}, state {})</h3>",
                esc(&p.call_id),
                esc(&format!(
                    "{} {} {} {}",
                    p.scenario, p.watcher, p.target, p.call_id
                )),
                esc(&title),
                verdict(&p.outcome),
                esc(&p.home),
                esc(&p.state)
            );
            for method in [Method::Subscribe, Method::Notify] {
                let ladder = Ladder::of(lab, events, &p.call_id, Select::First(method.clone()))
                    .titled(format!("{title}: {method}"));
                std::fs::write(
                    rows_dir.join(format!("{name}-{method}.svg")),
                    ladder_svg(&ladder),
                )?;
                std::fs::write(
                    rows_dir.join(format!("{name}-{method}.mmd")),
                    mermaid(&ladder),
                )?;
                body.push_str(&ladder_svg(&ladder));
            }
            body.push_str("</section>\n");
        }
        let index = dir.join("index.html");
        std::fs::write(
            &index,
            page("siplab: the paths on the wire", &body, "apply();"),
        )?;
        Ok(index)
    }
}

/// Calls the live page shows at most, newest first.
const LIVE_CALLS: usize = 40;
/// Messages kept per call.
const LIVE_MESSAGES: usize = 200;
/// Watchers (browser tabs) served at once.
const LIVE_WATCHERS: usize = 32;

/// The live page's state: the latest calls' captures, and who is watching.
struct Hub {
    lab: Lab,
    calls: Mutex<VecDeque<(String, Vec<Captured>)>>,
    updates: broadcast::Sender<Bytes>,
}

impl Hub {
    /// Files `ev` with its call and returns the call's ladder as an SSE event.
    fn take(&self, ev: Captured) -> Option<Bytes> {
        let call_id = String::from_utf8_lossy(ev.call_id()?).into_owned();
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let at = match calls.iter().position(|(c, _)| *c == call_id) {
            Some(i) => i,
            None => {
                if calls.len() == LIVE_CALLS {
                    calls.pop_front();
                }
                calls.push_back((call_id.clone(), Vec::new()));
                calls.len() - 1
            }
        };
        let events = &mut calls[at].1;
        if events.len() < LIVE_MESSAGES {
            events.push(ev);
        }
        Some(self.event(&call_id, events))
    }

    fn event(&self, call_id: &str, events: &[Captured]) -> Bytes {
        let ladder = Ladder::of(&self.lab, events, call_id, Select::Call);
        let first = events
            .first()
            .and_then(|e| Message::parse(e.payload.clone()).ok());
        let party = |m: &Message, to: bool| {
            let a = if to { m.to() } else { m.from() };
            a.ok()
                .and_then(|a| a.sip_uri().map(|u| u.aor().to_string()))
                .unwrap_or_default()
        };
        let (from, to, method) = first
            .as_ref()
            .map(|m| {
                let method = m.cseq().map(|c| c.method.to_string()).unwrap_or_default();
                (party(m, false), party(m, true), method)
            })
            .unwrap_or_default();
        let data = serde_json::json!({
            "call_id": call_id,
            "users": format!("{from} {to}"),
            "title": esc(&format!("{method} {from} to {to} ({} messages)", ladder.arrows.len())),
            "svg": ladder_svg(&ladder),
        });
        Bytes::from(format!("data: {data}\n\n"))
    }

    fn snapshot(&self) -> Vec<Bytes> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.iter().map(|(c, e)| self.event(c, e)).collect()
    }
}

/// A response body that is a stream of Server-Sent Events.
struct Events(mpsc::Receiver<Bytes>);

impl Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Serves the live page on `addr` (plain HTTP, for a browser on this machine) until the
/// process ends; returns the bound address.
pub async fn serve_live(lab: Lab, wire: &Wire, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let body = format!(
        "<p>The lab's SIP as its nodes capture it: each call appears as a ladder and grows as its \
         messages pass (the latest {LIVE_CALLS} calls). Send with siplab-client or baresip and watch.</p>\n\
         <p><input id=\"filter\" placeholder=\"filter by user or Call-ID\"></p>\n<div id=\"live\"></div>\n\
         <h2>The lab</h2>\n{}",
        topology_svg(&lab)
    );
    let html = Bytes::from(page(
        "siplab: live",
        &body,
        &format!("const LIMIT={LIVE_CALLS};{LIVE}"),
    ));
    let (updates, _) = broadcast::channel(256);
    let hub = Arc::new(Hub {
        lab,
        calls: Mutex::default(),
        updates,
    });
    let mut captured = wire.watch();
    let feeder = hub.clone();
    tokio::spawn(async move {
        loop {
            match captured.recv().await {
                Ok(ev) => {
                    if let Some(update) = feeder.take(ev) {
                        let _ = feeder.updates.send(update);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    debug!(missed = n, "live page behind the capture")
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    info!(%bound, "live page");
    serve_bounded(listener, LIVE_WATCHERS, "live page", move |tcp, peer| {
        let (hub, html) = (hub.clone(), html.clone());
        async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (hub, html) = (hub.clone(), html.clone());
                async move { Ok::<_, Infallible>(answer(&req, &hub, html)) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "live page connection");
            }
        }
    });
    Ok(bound)
}

type Reply = Response<BoxBody<Bytes, Infallible>>;

fn answer(req: &Request<Incoming>, hub: &Arc<Hub>, html: Bytes) -> Reply {
    let full = |status: StatusCode, kind: &'static str, body: Bytes| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(Full::new(body).boxed())
            .unwrap_or_default()
    };
    match req.uri().path() {
        "/" => full(StatusCode::OK, "text/html; charset=utf-8", html),
        "/events" => {
            let (tx, rx) = mpsc::channel(64);
            let mut updates = hub.updates.subscribe();
            for event in hub.snapshot() {
                let _ = tx.try_send(event);
            }
            tokio::spawn(async move {
                loop {
                    let next = match updates.recv().await {
                        Ok(b) => b,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    // A watcher that does not read loses updates, not the page's memory.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(next) {
                        return;
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Events(rx).boxed())
                .unwrap_or_default()
        }
        _ => full(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    }
}
