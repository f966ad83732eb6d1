//! The user agent: one user, one flow to its server, everything over it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siplab_sip::{HeaderName, Host, Method, NameAddr, SipUri, Uri};
use siplab_transport::{ConnInfo, Event, Transport};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span};

use crate::call::Call;
use crate::config::UaConfig;
use crate::dialog::{Dialog, Dialogs};
use crate::error::UaError;
use crate::ids;
use crate::registration::{Registration, SignIn, Target};
use crate::request::{Head, OutRequest, addr, contact};
use crate::transaction::{self, Outcome, Transactions};
use crate::uas::{self, Received};

/// Received requests kept for the reader of [`Ua::next_received`]; beyond it they are
/// dropped (and logged) rather than pile up in a client nobody reads.
const RECEIVED_BACKLOG: usize = 1024;

/// Answered calls kept for the reader of [`Ua::next_call`]; beyond it their [`Call`]s are
/// dropped. Their dialogs stay open: the caller can still send in them and hang up.
const CALL_BACKLOG: usize = 64;

/// How long [`Ua::shutdown`] waits for the answer to its sign-out.
const SIGN_OUT_WAIT: Duration = Duration::from_secs(2);

/// What the client's tasks share.
pub(crate) struct Core {
    pub(crate) cfg: UaConfig,
    /// The user part of the AOR, for Contacts.
    pub(crate) user: String,
    pub(crate) aor_uri: Uri,
    /// `sip:<domain>`, the Request-URI of REGISTER.
    pub(crate) registrar_uri: Uri,
    /// The `+sip.instance` URN, the same for the client's whole life (RFC 5626).
    pub(crate) instance: String,
    pub(crate) register_call_id: String,
    register_cseq: AtomicU32,
    pub(crate) transport: Transport,
    transactions: Transactions,
    /// The flow the client is registered on: where new requests go.
    flow: Mutex<Option<Arc<ConnInfo>>>,
    registration: watch::Sender<Option<Registration>>,
    pub(crate) sign_in: Mutex<Option<SignIn>>,
    pub(crate) received: mpsc::Sender<Received>,
    /// The calls this client answered, for [`Ua::next_call`].
    pub(crate) calls: mpsc::Sender<Call>,
    /// The dialogs this client is in, as caller or callee.
    pub(crate) dialogs: Dialogs,
    /// The presence subscriptions this client made (Call-ID, our tag): their NOTIFYs are
    /// in a dialog the SUBSCRIBE's 200 makes, and may overtake that 200 (RFC 6665 4.1.2.4).
    pub(crate) watching: Mutex<std::collections::HashSet<(String, String)>>,
    /// INVITEs this client is ringing for, by branch, so a CANCEL can end them.
    pub(crate) ringing: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Core {
    /// A From for a new request: our AOR with a fresh tag.
    pub(crate) fn new_from(&self) -> String {
        NameAddr::new(self.aor_uri.clone())
            .with_tag(&ids::tag())
            .to_string()
    }

    pub(crate) fn next_register_cseq(&self) -> u32 {
        self.register_cseq.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn current_flow(&self) -> Result<Arc<ConnInfo>, UaError> {
        lock(&self.flow).clone().ok_or(UaError::NotConnected)
    }

    pub(crate) async fn transact(
        &self,
        conn: &ConnInfo,
        req: OutRequest,
    ) -> Result<Outcome, UaError> {
        transaction::run(
            &self.transport,
            &self.transactions,
            conn,
            req,
            self.cfg.transaction_timeout,
        )
        .await
    }

    /// Makes a registration current (new requests go on its flow), or none.
    pub(crate) fn publish(&self, reg: Option<Registration>) {
        *lock(&self.flow) = reg.as_ref().map(|r| r.connection.clone());
        self.registration.send_replace(reg);
    }

    /// A request outside any dialog: a new Call-ID and From tag, CSeq [`FIRST_CSEQ`].
    fn out_of_dialog(&self, method: Method, uri: Uri, conn: &ConnInfo) -> OutRequest {
        OutRequest::new(Head {
            method,
            uri: uri.clone(),
            local: conn.local,
            from: &self.new_from(),
            to: &addr(&uri),
            call_id: &ids::call_id(&conn.local.ip().to_string()),
            cseq: FIRST_CSEQ,
        })
    }
}

/// The CSeq number of a request outside any dialog (a SUBSCRIBE's, say).
const FIRST_CSEQ: u32 = 1;

/// A signed-in SIP client. Dropping it stops its tasks and closes its connection.
pub struct Ua {
    core: Arc<Core>,
    received: tokio::sync::Mutex<mpsc::Receiver<Received>>,
    calls: tokio::sync::Mutex<mpsc::Receiver<Call>>,
    /// Hands transport events to the UAS and the transactions.
    dispatcher: JoinHandle<()>,
    /// Refreshes, pings, and signs in again.
    keeper: JoinHandle<()>,
}

impl Ua {
    /// Connects to the configured server and signs in, following redirects.
    ///
    /// Returns once a server gave a final answer to REGISTER: 2xx, or a refusal that
    /// [`Ua::registered_via`] reports (the client keeps trying, as real clients do). Fails
    /// when no server could be reached at all, which is a mistake in the configuration.
    pub async fn start(cfg: UaConfig) -> Result<Ua, UaError> {
        let (user, domain) = cfg
            .aor
            .split_once('@')
            .filter(|(u, d)| !u.is_empty() && !d.is_empty())
            .ok_or_else(|| UaError::BadAor(cfg.aor.clone()))?;
        let host = Host::parse(domain).map_err(|_| UaError::BadAor(cfg.aor.clone()))?;
        let aor_uri = parse_uri(&format!("sip:{}", cfg.aor))?;
        let (transport, events) = Transport::new(cfg.limits);
        let (received_tx, received_rx) = mpsc::channel(RECEIVED_BACKLOG);
        let (calls_tx, calls_rx) = mpsc::channel(CALL_BACKLOG);
        let core = Arc::new(Core {
            user: user.to_owned(),
            aor_uri,
            registrar_uri: Uri::Sip(SipUri::new(None, host, None)),
            instance: ids::instance_urn(),
            register_call_id: ids::call_id(&cfg.bind_ip.to_string()),
            register_cseq: AtomicU32::new(0),
            transport,
            transactions: Transactions::default(),
            flow: Mutex::new(None),
            registration: watch::Sender::new(None),
            sign_in: Mutex::new(None),
            received: received_tx,
            calls: calls_tx,
            dialogs: Dialogs::default(),
            watching: Mutex::default(),
            ringing: Mutex::new(HashMap::new()),
            cfg,
        });
        let span = info_span!("ua", aor = %core.cfg.aor);
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        let dispatcher =
            tokio::spawn(dispatch(core.clone(), events, closed_tx).instrument(span.clone()));
        let first = Target {
            name: core.cfg.server_name.clone(),
            addr: core.cfg.server,
        };
        let registered = match core.sign_in(first).instrument(span.clone()).await {
            Ok(reg) => {
                // Published before returning, so the caller can send at once.
                core.publish(Some(reg.clone()));
                Some(reg)
            }
            Err(UaError::Rejected { status, reason }) => {
                info!(parent: &span, status, %reason, "sign-in refused; will retry");
                None
            }
            Err(error) => {
                dispatcher.abort();
                core.transport.close_all();
                return Err(error);
            }
        };
        let keeper = tokio::spawn(
            core.clone()
                .keep_signed_in(registered, closed_rx)
                .instrument(span),
        );
        Ok(Ua {
            core,
            received: tokio::sync::Mutex::new(received_rx),
            calls: tokio::sync::Mutex::new(calls_rx),
            dispatcher,
            keeper,
        })
    }

    pub fn aor(&self) -> &str {
        &self.core.cfg.aor
    }

    /// The current registration; `None` while signing in (again).
    pub fn registration(&self) -> Option<Registration> {
        self.core.registration.borrow().clone()
    }

    /// How the last sign-in went: the servers tried, in order, and the final status.
    pub fn registered_via(&self) -> Option<SignIn> {
        lock(&self.core.sign_in).clone()
    }

    /// The current registration, waiting for one if the client is signing in.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<Registration, UaError> {
        self.wait_for(timeout, |_| true).await
    }

    /// A registration on another connection than `after`'s: the client signed in again
    /// (after its flow died), not merely refreshed.
    pub async fn wait_reregistered(
        &self,
        after: &Registration,
        timeout: Duration,
    ) -> Result<Registration, UaError> {
        let old = after.connection.id;
        self.wait_for(timeout, |r| r.connection.id != old).await
    }

    async fn wait_for(
        &self,
        timeout: Duration,
        accept: impl Fn(&Registration) -> bool,
    ) -> Result<Registration, UaError> {
        let mut rx = self.core.registration.subscribe();
        let found = tokio::time::timeout(timeout, async {
            let reg = rx
                .wait_for(|r| r.as_ref().is_some_and(&accept))
                .await
                .ok()?;
            reg.clone()
        });
        found
            .await
            .ok()
            .flatten()
            .ok_or(UaError::NotRegistered(timeout))
    }

    /// Sends a MESSAGE (text/plain) to `to`, an AOR (`adam@contoso.test`) or SIP URI.
    pub async fn send_message(&self, to: &str, text: &str) -> Result<Outcome, UaError> {
        let conn = self.core.current_flow()?;
        let req = self
            .core
            .out_of_dialog(Method::Message, aor_uri(to)?, &conn)
            .body("text/plain", text.to_owned());
        self.core.transact(&conn, req).await
    }

    /// Publishes this user's presence (RFC 3903, PIDF) to its home server: `available`,
    /// `busy` or `away`.
    pub async fn publish(&self, state: &str) -> Result<Outcome, UaError> {
        let conn = self.core.current_flow()?;
        let entity = self.core.aor_uri.to_string();
        let req = self
            .core
            .out_of_dialog(Method::Publish, self.core.aor_uri.clone(), &conn)
            .header(HeaderName::Event, "presence")
            .header(HeaderName::Expires, "600")
            .body("application/pidf+xml", siplab_sip::pidf(&entity, state));
        self.core.transact(&conn, req).await
    }

    /// Watches `target`'s presence (RFC 3856): its home server answers and NOTIFYs the
    /// current state now and on every change; each NOTIFY is received like any request.
    pub async fn subscribe(&self, target: &str, expires: u32) -> Result<Outcome, UaError> {
        let conn = self.core.current_flow()?;
        let req = self
            .core
            .out_of_dialog(Method::Subscribe, aor_uri(target)?, &conn)
            .header(HeaderName::Event, "presence")
            .header(HeaderName::Accept, "application/pidf+xml")
            .header(HeaderName::Contact, contact(&self.core.user, conn.local))
            .header(HeaderName::Expires, expires.to_string())
            .empty();
        if let (Ok(call_id), Some(tag)) = (
            req.msg.call_id(),
            req.msg.from().ok().and_then(|f| f.tag().map(str::to_owned)),
        ) {
            lock(&self.core.watching).insert((String::from_utf8_lossy(call_id).into_owned(), tag));
        }
        self.core.transact(&conn, req).await
    }

    /// Ends the subscription that `subscribed` (the 200 to [`Ua::subscribe`]) set up
    /// (RFC 6665 4.1.2.3): a SUBSCRIBE with Expires 0 along the dialog's route set, so that
    /// the notifier owes this client nothing more.
    pub async fn unsubscribe(&self, subscribed: &Outcome) -> Result<Outcome, UaError> {
        let ok = &subscribed.response;
        let bad = |what| move |error| UaError::BadResponse { what, error };
        let call_id = String::from_utf8_lossy(ok.call_id().map_err(bad("Call-ID"))?).into_owned();
        let local = ok.from().map_err(bad("From"))?.to_string();
        let mut dialog = Dialog::as_caller(&call_id, local, FIRST_CSEQ, ok)
            .map_err(|why| why.into_error(subscribed.status))?;
        let conn = self.core.current_flow()?;
        let req = dialog
            .next_request(Method::Subscribe, conn.local)
            .header(HeaderName::Event, "presence")
            .header(HeaderName::Contact, contact(&self.core.user, conn.local))
            .header(HeaderName::Expires, "0")
            .empty();
        self.core.transact(&conn, req).await
    }

    /// Sends an OPTIONS to `uri` (a SIP URI or an AOR).
    pub async fn options(&self, uri: &str) -> Result<Outcome, UaError> {
        let conn = self.core.current_flow()?;
        let req = self
            .core
            .out_of_dialog(Method::Options, aor_uri(uri)?, &conn)
            .header(HeaderName::Accept, "application/sdp")
            .empty();
        self.core.transact(&conn, req).await
    }

    /// Calls `to` (an AOR or SIP URI). A call that is not answered with 2xx still returns
    /// a [`Call`], whose outcome holds the status.
    pub async fn invite(&self, to: &str) -> Result<Call, UaError> {
        Call::place(self.core.clone(), aor_uri(to)?).await
    }

    /// The next request this client received (and answered), waiting up to `timeout`.
    pub async fn next_received(&self, timeout: Duration) -> Option<Received> {
        let mut rx = self.received.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next call this client answered with 200, waiting up to `timeout`: the callee's
    /// side of the dialog, to send in it ([`Call::message`]) and hang up ([`Call::bye`]).
    ///
    /// The call comes out as the 200 leaves. The caller's dialog is confirmed when its ACK
    /// arrives ([`Ua::next_received`]); a request sent before that may cross the 200 and
    /// find no dialog at the caller yet (481), and RFC 3261 section 15 forbids a BYE then.
    pub async fn next_call(&self, timeout: Duration) -> Option<Call> {
        let mut rx = self.calls.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Signs out (REGISTER with expires 0 on the current flow) and stops. A client told to
    /// stop waits a moment for the answer, not a whole transaction time-out.
    pub async fn shutdown(self) {
        self.keeper.abort();
        if let Ok(conn) = self.core.current_flow() {
            let sign_out = self.core.register(&conn, 0);
            match tokio::time::timeout(SIGN_OUT_WAIT, sign_out).await {
                Ok(Ok(outcome)) => info!(status = outcome.status, "signed out"),
                Ok(Err(error)) => info!(%error, "sign-out failed"),
                Err(_) => info!("sign-out not answered in time"),
            }
        }
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        self.keeper.abort();
        self.dispatcher.abort();
        self.core.transport.close_all();
    }
}

/// Hands what the transport delivers to its place: requests to the UAS, responses to their
/// transactions, and closed connections to the transactions on them and to the keeper.
async fn dispatch(
    core: Arc<Core>,
    mut events: mpsc::Receiver<Event>,
    closed: mpsc::UnboundedSender<u64>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Message { msg, conn } if msg.is_request() => {
                uas::handle(&core, &conn, msg).await
            }
            Event::Message { msg, .. } => core.transactions.dispatch(msg),
            Event::Closed { conn } => {
                debug!(conn = conn.id, peer = %conn.peer, "connection closed");
                core.transactions.fail_connection(conn.id);
                let _ = closed.send(conn.id);
            }
        }
    }
}

/// `adam@contoso.test` or a whole URI (`sip:...`, `tel:...`): a scheme ends before any `@`.
fn aor_uri(text: &str) -> Result<Uri, UaError> {
    match (text.find(':'), text.find('@')) {
        (Some(colon), at) if at.is_none_or(|at| colon < at) => parse_uri(text),
        _ => parse_uri(&format!("sip:{text}")),
    }
}

fn parse_uri(text: &str) -> Result<Uri, UaError> {
    Uri::parse(text).map_err(|error| UaError::BadUri {
        text: text.to_owned(),
        error,
    })
}

/// A poisoned lock only means a task panicked while holding it; the value stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
