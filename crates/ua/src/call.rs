//! Calls: an INVITE, and the dialog a 2xx makes (RFC 3261 sections 12 and 13). Every proxy
//! on the way Record-Routes an INVITE, so the ACK, in-dialog requests and the BYE follow the
//! route set back along the same path, as the spec's section 6 requires.

use std::net::SocketAddr;
use std::sync::Arc;

use siplab_sip::{Contact, HeaderName, Method, Uri};
use siplab_transport::Destination;
use tracing::{Instrument, info, info_span};

use crate::error::UaError;
use crate::ids;
use crate::request::{Head, OutRequest, contact_uri, sdp};
use crate::transaction::Outcome;
use crate::ua::Core;

/// An INVITE this client sent: its final answer and, if that was a 2xx, the dialog.
pub struct Call {
    core: Arc<Core>,
    outcome: Outcome,
    dialog: Option<Dialog>,
}

/// The caller's side of a dialog.
struct Dialog {
    call_id: String,
    /// From, with our tag.
    local: String,
    /// To, with the callee's tag.
    remote: String,
    /// The callee's Contact: the Request-URI of in-dialog requests.
    target: Uri,
    /// The Record-Route of the 2xx reversed; every proxy in it is a loose router (`lr`).
    route: Vec<String>,
    cseq: u32,
}

impl Dialog {
    fn request(&self, method: Method, local: SocketAddr, cseq: u32) -> OutRequest {
        let mut req = OutRequest::new(Head {
            method,
            uri: self.target.clone(),
            local,
            from: &self.local,
            to: &self.remote,
            call_id: &self.call_id,
            cseq,
        });
        for route in &self.route {
            req = req.header(HeaderName::Route, route.clone());
        }
        req
    }
}

impl Call {
    /// Sends an INVITE to `to`; on a 2xx keeps the dialog and ACKs along its route set.
    pub(crate) async fn place(core: Arc<Core>, to: Uri) -> Result<Call, UaError> {
        let conn = core.current_flow()?;
        let call_id = ids::call_id(&conn.local.ip().to_string());
        let span = info_span!("call", %call_id, %to);
        async move {
            let local = core.new_from();
            let invite = OutRequest::new(Head {
                method: Method::Invite,
                uri: to.clone(),
                local: conn.local,
                from: &local,
                to: &format!("<{to}>"),
                call_id: &call_id,
                cseq: 1,
            })
            .header(
                HeaderName::Contact,
                format!("<{}>", contact_uri(&core.user, conn.local)),
            )
            .body("application/sdp", sdp(conn.local.ip()));
            let outcome = core.transact(&conn, invite).await?;
            if !outcome.is_success() {
                info!(status = outcome.status, "call not established");
                return Ok(Call {
                    core,
                    outcome,
                    dialog: None,
                });
            }
            let response = &outcome.response;
            let bad = |what, error| UaError::BadResponse { what, error };
            let remote = response
                .headers
                .value(&HeaderName::To)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let target = response
                .contacts()
                .map_err(|e| bad("Contact", e))?
                .into_iter()
                .find_map(|c| match c {
                    Contact::Addr(a) => Some(a.uri),
                    Contact::Star => None,
                })
                .ok_or(UaError::NoContact {
                    status: outcome.status,
                })?;
            let mut route: Vec<String> = response
                .headers
                .elements(&HeaderName::RecordRoute)
                .unwrap_or_default()
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            route.reverse();
            let dialog = Dialog {
                call_id: call_id.clone(),
                local,
                remote,
                target,
                route,
                cseq: 1,
            };
            // The ACK for a 2xx is a transaction of its own (RFC 3261 13.2.2.4): a new
            // branch, the INVITE's CSeq number, along the route set.
            let ack = dialog.request(Method::Ack, conn.local, 1).empty();
            core.transport
                .send(&Destination::Flow(conn.flow.clone()), ack.msg.to_bytes())
                .await?;
            info!(route = dialog.route.len(), "established");
            Ok(Call {
                core,
                outcome,
                dialog: Some(dialog),
            })
        }
        .instrument(span)
        .await
    }

    /// The INVITE's final response.
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub fn is_established(&self) -> bool {
        self.dialog.is_some()
    }

    /// The route set in-dialog requests carry, first hop first.
    pub fn route_set(&self) -> &[String] {
        self.dialog.as_ref().map_or(&[], |d| &d.route)
    }

    /// A MESSAGE inside the dialog: it takes the route set, not the way a new request would.
    pub async fn message(&mut self, text: &str) -> Result<Outcome, UaError> {
        self.in_dialog(Method::Message, Some(text)).await
    }

    /// Ends the call.
    pub async fn bye(mut self) -> Result<Outcome, UaError> {
        self.in_dialog(Method::Bye, None).await
    }

    async fn in_dialog(&mut self, method: Method, text: Option<&str>) -> Result<Outcome, UaError> {
        let status = self.outcome.status;
        let dialog = self.dialog.as_mut().ok_or(UaError::NoDialog { status })?;
        let conn = self.core.current_flow()?;
        dialog.cseq += 1;
        let req = dialog.request(method, conn.local, dialog.cseq);
        let req = match text {
            Some(text) => req.body("text/plain", text.to_owned()),
            None => req.empty(),
        };
        let span = info_span!("call", call_id = %dialog.call_id);
        self.core.transact(&conn, req).instrument(span).await
    }
}
