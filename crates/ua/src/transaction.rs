//! Client transactions (RFC 3261 section 17.1) over a reliable flow. Every hop of the lab is
//! TLS, so nothing is retransmitted: a request is sent once, a response finds its transaction
//! by the branch of its top Via, 1xx responses are provisional, and the final one must come
//! within Timer B (INVITE) or F (others), or the transaction times out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siplab_sip::{CSeq, HeaderName, Message, Method, StartLine};
use siplab_transport::{ConnInfo, Destination, Transport};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span};

use crate::error::UaError;
use crate::request::OutRequest;

/// What a request got: its final response, and the provisional ones before it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    pub reason: String,
    /// The statuses of the 1xx responses that came first, in order.
    pub provisional: Vec<u16>,
    /// The final response itself, for whatever else a test wants to read off it.
    pub response: Message,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The transactions waiting for responses, by branch.
#[derive(Clone, Default)]
pub(crate) struct Transactions {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
}

struct Pending {
    /// The connection the request went on: when it closes, no response can come.
    conn: u64,
    responses: mpsc::UnboundedSender<Message>,
}

/// A transaction's end of the table; leaving it (answered, timed out or abandoned) removes
/// the entry, so a late response is dropped rather than kept forever.
struct Waiter {
    table: Transactions,
    branch: String,
    responses: mpsc::UnboundedReceiver<Message>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.table.pending).remove(&self.branch);
    }
}

impl Transactions {
    fn open(&self, branch: &str, conn: u64) -> Waiter {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(
            branch.to_owned(),
            Pending {
                conn,
                responses: tx,
            },
        );
        Waiter {
            table: self.clone(),
            branch: branch.to_owned(),
            responses: rx,
        }
    }

    /// Hands a response to the transaction its top Via names; responses nobody waits for
    /// (a late or stray one) are dropped.
    pub(crate) fn dispatch(&self, response: Message) {
        let branch = match response.top_via() {
            Ok(via) => via.branch().map(str::to_owned),
            Err(error) => {
                debug!(%error, "response without a usable Via; dropped");
                return;
            }
        };
        let pending = lock(&self.pending);
        match branch.as_ref().and_then(|b| pending.get(b)) {
            Some(p) => {
                let _ = p.responses.send(response);
            }
            None => {
                debug!(?branch, status = ?response.status(), "no transaction for the response; dropped")
            }
        }
    }

    /// The connection is gone: every transaction on it fails now instead of at its timer.
    pub(crate) fn fail_connection(&self, conn: u64) {
        lock(&self.pending).retain(|_, p| p.conn != conn);
    }
}

/// Sends `req` down `conn` and waits for its final response.
pub(crate) async fn run(
    transport: &Transport,
    table: &Transactions,
    conn: &ConnInfo,
    req: OutRequest,
    timeout: Duration,
) -> Result<Outcome, UaError> {
    let span = info_span!("transaction", method = %req.method, branch = %req.branch);
    async move {
        let mut waiter = table.open(&req.branch, conn.id);
        transport
            .send(&Destination::Flow(conn.flow), req.msg.to_bytes())
            .await?;
        debug!(to = %conn.peer, "sent");
        let deadline = tokio::time::Instant::now() + timeout;
        let mut provisional = Vec::new();
        loop {
            let response = match tokio::time::timeout_at(deadline, waiter.responses.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    return Err(UaError::ConnectionLost {
                        method: req.method.to_string(),
                    });
                }
                Err(_) => {
                    return Err(UaError::Timeout {
                        method: req.method.to_string(),
                        after: timeout,
                    });
                }
            };
            let StartLine::Response { code, reason } = &response.start else {
                continue;
            };
            if *code < 200 {
                debug!(status = code, "provisional");
                provisional.push(*code);
                continue;
            }
            info!(status = code, "final response");
            if req.method == Method::Invite && *code >= 300 {
                // The ACK for a failure belongs to the INVITE transaction (RFC 3261 17.1.1.3).
                let ack = ack_for_failure(&req, &response);
                transport
                    .send(&Destination::Flow(conn.flow), ack.to_bytes())
                    .await?;
            }
            return Ok(Outcome {
                status: *code,
                reason: String::from_utf8_lossy(reason).into_owned(),
                provisional,
                response,
            });
        }
    }
    .instrument(span)
    .await
}

/// The ACK for a non-2xx final response: the INVITE's Request-URI, top Via, From, Call-ID,
/// CSeq number and Route, with the To of the response (its tag included).
fn ack_for_failure(invite: &OutRequest, response: &Message) -> Message {
    let mut ack = Message::request(Method::Ack, invite.uri.clone());
    ack.headers
        .push(HeaderName::Via, invite.via.clone().into_bytes());
    ack.headers.push(HeaderName::MaxForwards, "70");
    for name in [HeaderName::From, HeaderName::CallId] {
        if let Some(v) = invite.msg.headers.value(&name) {
            ack.headers.push(name, v.clone());
        }
    }
    if let Some(to) = response.headers.value(&HeaderName::To) {
        ack.headers.push(HeaderName::To, to.clone());
    }
    ack.headers.push(
        HeaderName::CSeq,
        CSeq::new(invite.cseq, Method::Ack).to_string(),
    );
    for route in invite.msg.headers.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route.value.clone());
    }
    ack.headers.push(HeaderName::ContentLength, "0");
    ack
}

/// A poisoned lock only means a task panicked while holding it; the map stays consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
