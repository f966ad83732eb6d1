//! The floor under a relayed MESSAGE's CPU: siplab's transport (mutual TLS, framing, header
//! lines, one reader and one writer task per connection) with the least a relay must do on
//! top, and nothing of a proxy: no validation, no transactions or timers, no loop detection,
//! no received/rport, no routing policy, no logging.
//!
//! It serves `siplab-load`'s MESSAGE workload and nothing else: a REGISTER binds its To
//! header (byte for byte) to its connection and is answered 200; a request is sent down the
//! connection bound to its To with a Via of ours on top; a response goes back to where the
//! branch of its top Via came from, without that Via. It takes the front end's command line
//! (`--certs DIR --slot N`, the rest ignored) and listens where R1 would (127.1.N.10:5061,
//! R1's certificate), so the bench scripts run it in R1's place. It relays on one task, as
//! the front end does on one core (the bench scripts' `PIN=1`); it is a measuring fixture
//! for the load generator, not a server for anything else:
//!
//! ```sh
//! cargo build --release -p siplab-transport --example relay_floor
//! bench/ab target/release/examples/relay_floor target/release/siplab-frontend
//! FRONTEND=target/release/examples/relay_floor bench/compare relay
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use siplab_sip::{HeaderName, Message, Method};
use siplab_transport::{Destination, Event, FlowToken, Limits, TlsConfig, Transport};

const BRANCH: &str = "z9hG4bKfloor";

/// The allocator of the node programs, so that only the work differs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let certs = PathBuf::from(flag("--certs").ok_or("--certs DIR is needed")?);
    let slot: u8 = flag("--slot").ok_or("--slot N is needed")?.parse()?;
    let addr: SocketAddr = format!("127.1.{slot}.10:5061").parse()?;
    let paths = siplab_pki::node_cert_paths(&certs, "R1");
    let tls = TlsConfig::from_files(&siplab_pki::ca_path(&certs), &paths.cert, &paths.key)?;
    let (transport, events) = Transport::new(Limits::default());
    transport.add_interface("R1", addr.ip(), tls);
    transport.listen("R1", addr).await?;
    eprintln!("relay_floor: node up on {addr}");
    // On a worker thread, as the front end's lane tasks are: on the main thread each message
    // would cost a futex wake-up.
    tokio::spawn(relay(transport, events, addr)).await?;
    Ok(())
}

async fn relay(
    transport: Transport,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    addr: SocketAddr,
) {
    let mut bound: HashMap<Bytes, FlowToken> = HashMap::new();
    let mut pending: HashMap<u64, FlowToken> = HashMap::new();
    let mut next_branch = 0u64;
    while let Some(event) = events.recv().await {
        let (mut msg, conn) = match event {
            Event::Message { msg, conn } => (msg, conn),
            Event::Closed { conn } => {
                bound.retain(|_, flow| *flow != conn.flow);
                continue;
            }
        };
        let to = msg.headers.value(&HeaderName::To).cloned();
        let method = msg.is_request().then(|| msg.method()).flatten();
        // The branch a forwarded request waits on, to forget if it cannot be sent.
        let mut waiting = None;
        let (dest, out) = match method {
            Some(Method::Register) => {
                if let Some(to) = to {
                    bound.insert(to, conn.flow);
                }
                (conn.flow, Message::response_to(&msg, 200, "OK").to_bytes())
            }
            Some(_) => {
                let Some(&callee) = to.as_ref().and_then(|to| bound.get(to)) else {
                    continue;
                };
                next_branch += 1;
                pending.insert(next_branch, conn.flow);
                waiting = Some(next_branch);
                msg.headers.push_front(
                    HeaderName::Via,
                    format!("SIP/2.0/TLS {addr};branch={BRANCH}{next_branch:x}"),
                );
                (callee, msg.to_bytes())
            }
            None => {
                let Some(caller) = our_branch(&msg).and_then(|b| pending.remove(&b)) else {
                    continue;
                };
                msg.headers.remove_first_value(&HeaderName::Via);
                (caller, msg.to_bytes())
            }
        };
        if transport.send(&Destination::Flow(dest), out).await.is_err()
            && let Some(branch) = waiting
        {
            pending.remove(&branch);
        }
    }
}

/// The number in the branch of a response's top Via, when that Via is ours.
fn our_branch(resp: &Message) -> Option<u64> {
    let via = std::str::from_utf8(resp.headers.value(&HeaderName::Via)?).ok()?;
    let (_, rest) = via.split_once(BRANCH)?;
    let end = rest
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(rest.len());
    u64::from_str_radix(&rest[..end], 16).ok()
}
