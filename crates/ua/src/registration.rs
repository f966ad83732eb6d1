//! Signing in and staying signed in (the article's "Anmeldung", spec section 4).
//!
//! A client opens one connection to its server and registers over it with RFC 5626
//! outbound (`+sip.instance`, `reg-id`, `ob`): the registrar keeps the flow and sends
//! requests for the user back down it, since nothing can dial a client. A front end answers
//! a cloud-hosted user with 301 and the cloud's sipdir; the client follows, opening a new
//! connection there. Once registered it refreshes before the binding expires, pings the flow
//! (CRLF CRLF), and when the flow dies it signs in again, with a backoff, for as long as it runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use siplab_sip::{Contact, ContactParams, HeaderName, Method, SipUri};
use siplab_transport::{ConnInfo, Destination};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::error::UaError;
use crate::request::{Head, OutRequest, addr, contact, contact_addr};
use crate::transaction::Outcome;
use crate::ua::Core;

/// An RFC 5626 keep-alive ping; the server answers with a single CRLF.
const PING: &[u8] = b"\r\n\r\n";

/// Redirects followed in one sign-in before giving up: a loop of 3xx must end.
const MAX_REDIRECTS: usize = 5;

/// The first wait before signing in again, doubled up to the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A server the client tried during a sign-in, and what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTried {
    /// The name its certificate was checked against (`fe01.contoso.test`, `sipdir...`).
    pub name: String,
    pub addr: SocketAddr,
    /// Its final answer to REGISTER; `None` when it gave none (no connection, time-out).
    pub status: Option<u16>,
}

/// The way one sign-in went: every server in order, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub servers: Vec<ServerTried>,
    /// The last server's final answer, if it gave one.
    pub status: Option<u16>,
    /// Its reason phrase, or what kept it from answering.
    pub reason: String,
}

/// A binding the registrar accepted, and the flow it lives on.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The connection registered on: its local end is the Contact, its peer the server.
    pub connection: Arc<ConnInfo>,
    pub server_name: String,
    /// The Contact as the registrar returned it.
    pub contact: String,
    /// The lifetime the registrar granted, in seconds.
    pub expires: u32,
    /// The Path of the 200 (RFC 3327): the edges between the client and its registrar.
    pub path: Vec<String>,
    /// The Service-Route of the 200 (RFC 3608), as the registrar offered it.
    pub service_route: Vec<String>,
    /// How the client got there.
    pub sign_in: SignIn,
}

/// A server to sign in at.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
}

impl Core {
    /// Signs in once: connect, REGISTER, follow redirects; records how it went.
    pub(crate) async fn sign_in(&self, first: Target) -> Result<Registration, UaError> {
        let mut servers = Vec::new();
        let mut target = first;
        let result = loop {
            let (conn, outcome) = match self.try_server(&target).await {
                Ok(answer) => answer,
                Err(error) => {
                    servers.push(ServerTried {
                        name: target.name.clone(),
                        addr: target.addr,
                        status: None,
                    });
                    break Err(error);
                }
            };
            servers.push(ServerTried {
                name: target.name.clone(),
                addr: target.addr,
                status: Some(outcome.status),
            });
            match outcome.status {
                200..=299 => break Ok((conn, outcome, target)),
                300..=399 if servers.len() <= MAX_REDIRECTS => {
                    match self.redirect_target(&outcome).await {
                        Ok(next) => {
                            info!(status = outcome.status, to = %next.name, addr = %next.addr, "redirected");
                            target = next;
                        }
                        Err(error) => break Err(error),
                    }
                }
                status => {
                    break Err(UaError::Rejected {
                        status,
                        reason: outcome.reason,
                    });
                }
            }
        };
        let (status, reason) = match &result {
            Ok((_, outcome, _)) => (Some(outcome.status), outcome.reason.clone()),
            Err(UaError::Rejected { status, reason }) => (Some(*status), reason.clone()),
            Err(error) => (None, error.to_string()),
        };
        let trail = SignIn {
            servers,
            status,
            reason,
        };
        *crate::ua::lock(&self.sign_in) = Some(trail.clone());
        let (conn, outcome, target) = result?;
        self.registered(conn, &outcome, &target.name, trail)
    }

    /// Connects to `target` and registers there.
    async fn try_server(&self, target: &Target) -> Result<(Arc<ConnInfo>, Outcome), UaError> {
        let ip = self.cfg.source(target.addr);
        let interface: Arc<str> = ip.to_string().into();
        self.transport
            .add_interface(&interface, ip, self.cfg.tls.clone());
        // A keep-alive opens the connection: its local end is what Via and Contact carry.
        let conn = self
            .transport
            .send(
                &Destination::Peer {
                    interface,
                    addr: target.addr,
                    server_name: target.name.clone(),
                },
                Bytes::from_static(PING),
            )
            .await?;
        info!(server = %target.name, addr = %target.addr, local = %conn.local, "connected");
        let outcome = self.register(&conn, self.cfg.register_expires).await?;
        Ok((conn, outcome))
    }

    /// Sends one REGISTER down `conn`: the same Call-ID for the client's whole life and a
    /// rising CSeq, so the registrar sees refreshes of one registration (RFC 3261 10.2).
    pub(crate) async fn register(&self, conn: &ConnInfo, expires: u32) -> Result<Outcome, UaError> {
        let mut contact = contact_addr(&self.user, conn.local);
        let instance = format!("<{}>", self.instance);
        contact.params.set_quoted("+sip.instance", &instance);
        contact.params.set("reg-id", Some("1"));
        contact.params.set("expires", Some(&expires.to_string()));
        let contact = contact.to_string();
        let req = OutRequest::new(Head {
            method: Method::Register,
            uri: self.registrar_uri.clone(),
            local: conn.local,
            from: &self.new_from(),
            to: &addr(&self.aor_uri),
            call_id: &self.register_call_id,
            cseq: self.next_register_cseq(),
        })
        .header(HeaderName::Contact, contact)
        .header(HeaderName::Supported, "path, outbound")
        .empty();
        self.transact(conn, req).await
    }

    /// The first Contact of a 3xx, resolved.
    async fn redirect_target(&self, outcome: &Outcome) -> Result<Target, UaError> {
        let contacts = outcome
            .response
            .contacts()
            .map_err(|error| UaError::BadResponse {
                what: "Contact",
                error,
            })?;
        let uri: &SipUri = contacts
            .iter()
            .find_map(|c| match c {
                Contact::Addr(a) => a.sip_uri(),
                Contact::Star => None,
            })
            .ok_or(UaError::NoContact {
                status: outcome.status,
            })?;
        let name = uri.host.to_string();
        // A TLS target without a port is at the SIP over TLS default.
        let port = uri.port.unwrap_or(5061);
        let addr = (self.cfg.resolver)(name.clone(), port)
            .await
            .ok_or_else(|| UaError::Redirect(format!("{name}:{port} does not resolve")))?;
        Ok(Target { name, addr })
    }

    /// Reads the binding off a 2xx: our Contact (by instance) with the lifetime granted.
    fn registered(
        &self,
        connection: Arc<ConnInfo>,
        outcome: &Outcome,
        server_name: &str,
        sign_in: SignIn,
    ) -> Result<Registration, UaError> {
        let response = &outcome.response;
        let bad = |what, error| UaError::BadResponse { what, error };
        let contacts = response.contacts().map_err(|e| bad("Contact", e))?;
        let instance = format!("\"<{}>\"", self.instance);
        let ours = contacts.iter().find_map(|c| match c {
            Contact::Addr(a) if a.instance() == Some(instance.as_str()) => Some(a),
            _ => None,
        });
        let expires = match ours.and_then(ContactParams::expires) {
            Some(e) => e,
            None => response
                .expires()
                .map_err(|e| bad("Expires", e))?
                .unwrap_or(self.cfg.register_expires),
        };
        let contact = match ours {
            Some(a) => a.to_string(),
            None => {
                warn!("the registrar's 200 does not list our Contact");
                contact(&self.user, connection.local)
            }
        };
        let values = |name: &HeaderName| -> Vec<String> {
            response
                .headers
                .elements(name)
                .unwrap_or_default()
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        Ok(Registration {
            contact,
            expires,
            path: values(&HeaderName::Path),
            service_route: values(&HeaderName::new("Service-Route")),
            server_name: server_name.to_owned(),
            connection,
            sign_in,
        })
    }

    /// Keeps the client signed in for as long as it runs: serves the registered flow
    /// (refreshes, keep-alives) until it dies, then signs in again.
    pub(crate) async fn keep_signed_in(
        self: Arc<Self>,
        mut current: Option<Registration>,
        mut closed: mpsc::UnboundedReceiver<u64>,
    ) {
        let mut home = None;
        loop {
            let reg = match current.take() {
                Some(reg) => reg,
                None => self.sign_in_again(home.take()).await,
            };
            // After a redirect the client stays where it was sent ("all users in the
            // cloud are always external"); only when that fails does it start over.
            home = Some(Target {
                name: reg.server_name.clone(),
                addr: reg.connection.peer,
            });
            self.publish(Some(reg.clone()));
            self.serve(reg, &mut closed).await;
            self.publish(None);
        }
    }

    /// Signs in until it works, waiting 100 ms, then twice as long each time up to 5 s.
    async fn sign_in_again(&self, home: Option<Target>) -> Registration {
        let first = Target {
            name: self.cfg.server_name.clone(),
            addr: self.cfg.server,
        };
        let mut target = home.unwrap_or_else(|| first.clone());
        let mut delay = BACKOFF_FIRST;
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            tokio::time::sleep(delay).await;
            info!(attempt, server = %target.name, addr = %target.addr, "signing in again");
            match self.sign_in(target.clone()).await {
                Ok(reg) => {
                    info!(attempt, server = %reg.server_name, "registered again");
                    return reg;
                }
                Err(error) => {
                    delay = (delay * 2).min(BACKOFF_MAX);
                    warn!(attempt, %error, retry_in = ?delay, "sign-in failed");
                    target = first.clone();
                }
            }
        }
    }

    /// Refreshes the registration and pings the flow until the flow closes or a refresh
    /// fails; returns then.
    async fn serve(&self, mut reg: Registration, closed: &mut mpsc::UnboundedReceiver<u64>) {
        let conn = reg.connection.clone();
        let span = info_span!("flow", conn = conn.id, server = %reg.server_name);
        async {
            // It may have closed between the 200 and now.
            if self.transport.flow(&conn.flow).is_none() {
                warn!("the flow closed right after registering");
                return;
            }
            info!(expires = reg.expires, contact = %reg.contact, "registered");
            let keepalive = self.cfg.keepalive;
            let mut pings = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
            let mut refresh_at = Instant::now() + refresh_after(reg.expires);
            loop {
                tokio::select! {
                    id = closed.recv() => match id {
                        Some(id) if id == conn.id => {
                            warn!("the flow closed");
                            return;
                        }
                        Some(_) => {}
                        None => return,
                    },
                    _ = tokio::time::sleep_until(refresh_at) => {
                        match self.refresh(&reg).await {
                            Ok(new) => {
                                refresh_at = Instant::now() + refresh_after(new.expires);
                                reg = new;
                                self.publish(Some(reg.clone()));
                            }
                            Err(error) => {
                                warn!(%error, "refresh failed");
                                return;
                            }
                        }
                    }
                    _ = pings.tick() => {
                        let ping = Bytes::from_static(PING);
                        if let Err(error) = self.transport.send(&Destination::Flow(conn.flow), ping).await {
                            warn!(%error, "keep-alive failed");
                            return;
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn refresh(&self, reg: &Registration) -> Result<Registration, UaError> {
        let outcome = self
            .register(&reg.connection, self.cfg.register_expires)
            .await?;
        if !outcome.is_success() {
            return Err(UaError::Rejected {
                status: outcome.status,
                reason: outcome.reason,
            });
        }
        self.registered(
            reg.connection.clone(),
            &outcome,
            &reg.server_name,
            reg.sign_in.clone(),
        )
    }
}

/// When to refresh a binding granted for `expires` seconds: half-way through a short one,
/// 30 s before the end of a long one, so a slow answer cannot let it lapse.
fn refresh_after(expires: u32) -> Duration {
    let secs = if expires > 60 {
        expires - 30
    } else {
        (expires / 2).max(1)
    };
    Duration::from_secs(secs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_before_expiry() {
        assert_eq!(refresh_after(600), Duration::from_secs(570));
        assert_eq!(refresh_after(60), Duration::from_secs(30));
        assert_eq!(refresh_after(2), Duration::from_secs(1));
        assert_eq!(refresh_after(0), Duration::from_secs(1));
    }
}
