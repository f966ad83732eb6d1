//! Calls: an INVITE and the dialog its 2xx makes (RFC 3261 sections 12 and 13), on either
//! side. The caller gets its [`Call`] from [`Ua::invite`]; the callee gets one from
//! [`Ua::next_call`] for every INVITE it answered with 200. Both send in the dialog the same
//! way ([`Dialog`]): along the route set every proxy on the way recorded, so the ACK,
//! in-dialog requests and the BYE take the INVITE's path, as the spec's section 6 requires.
//!
//! [`Ua::invite`]: crate::Ua::invite
//! [`Ua::next_call`]: crate::Ua::next_call

use std::sync::Arc;

use siplab_sip::{HeaderName, Message, Method, Uri, reason_phrase};
use siplab_transport::Destination;
use tracing::{Instrument, info, info_span};

use crate::dialog::Dialog;
use crate::error::UaError;
use crate::ids;
use crate::request::{Head, OutRequest, addr, contact, sdp};
use crate::transaction::Outcome;
use crate::ua::Core;

/// A call this client placed or answered: the INVITE's final response and, if that was a
/// 2xx, this side of the dialog.
pub struct Call {
    core: Arc<Core>,
    outcome: Outcome,
    dialog: Option<Dialog>,
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
                to: &addr(&to),
                call_id: &call_id,
                cseq: 1,
            })
            .header(HeaderName::Contact, contact(&core.user, conn.local))
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
            let dialog = Dialog::as_caller(&call_id, local, 1, &outcome.response)
                .map_err(|why| why.into_error(outcome.status))?;
            // Open before the ACK leaves: once the callee has it, it may send in the dialog.
            core.dialogs.open(dialog.id.clone());
            let ack = dialog.ack(conn.local);
            core.transport
                .send(&Destination::Flow(conn.flow), ack.msg.to_bytes())
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

    /// The callee's call: the INVITE was answered with `ok`, after the provisional
    /// responses in `provisional`; the dialog is open already.
    pub(crate) fn answered(
        core: Arc<Core>,
        ok: Message,
        provisional: Vec<u16>,
        dialog: Dialog,
    ) -> Call {
        let status = ok.status().unwrap_or(200);
        let outcome = Outcome {
            status,
            reason: reason_phrase(status).into(),
            provisional,
            response: ok,
        };
        Call {
            core,
            outcome,
            dialog: Some(dialog),
        }
    }

    /// The INVITE's final response: the one received (caller) or sent (callee).
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Whether the call has a dialog that has not ended: it was answered with 2xx and no
    /// BYE has been sent or received in it since.
    pub fn is_established(&self) -> bool {
        self.dialog
            .as_ref()
            .is_some_and(|d| self.core.dialogs.is_live(&d.id))
    }

    /// The Call-ID of the INVITE.
    pub fn call_id(&self) -> &str {
        self.dialog.as_ref().map_or_else(
            || {
                self.outcome
                    .response
                    .call_id()
                    .ok()
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .unwrap_or_default()
            },
            |d| &d.id.call_id,
        )
    }

    /// The route set in-dialog requests carry, first hop first: the Record-Route of the 2xx
    /// reversed for the caller, the INVITE's Record-Route in order for the callee.
    pub fn route_set(&self) -> &[String] {
        self.dialog.as_ref().map_or(&[], |d| &d.route)
    }

    /// A MESSAGE inside the dialog: it takes the route set, not the way a new request would.
    ///
    /// Fails with [`UaError::DialogEnded`] once a BYE was sent or received in the dialog,
    /// without sending anything.
    pub async fn message(&mut self, text: &str) -> Result<Outcome, UaError> {
        self.in_dialog(Method::Message, Some(text)).await
    }

    /// Hangs up: a BYE along the route set. The dialog ends as the BYE leaves (15.1.1),
    /// whatever the answer.
    pub async fn bye(mut self) -> Result<Outcome, UaError> {
        self.in_dialog(Method::Bye, None).await
    }

    async fn in_dialog(&mut self, method: Method, text: Option<&str>) -> Result<Outcome, UaError> {
        let status = self.outcome.status;
        let dialog = self.dialog.as_mut().ok_or(UaError::NoDialog { status })?;
        let dialogs = &self.core.dialogs;
        if !dialogs.is_live(&dialog.id) {
            return Err(UaError::DialogEnded {
                call_id: dialog.id.call_id.clone(),
                method: method.to_string(),
            });
        }
        if method == Method::Bye {
            dialogs.end(&dialog.id);
        }
        let conn = self.core.current_flow()?;
        let req = dialog.next_request(method, conn.local);
        let req = match text {
            Some(text) => req.body("text/plain", text.to_owned()),
            None => req.empty(),
        };
        let span = info_span!("call", call_id = %dialog.id.call_id);
        let outcome = self.core.transact(&conn, req).instrument(span).await?;
        // The far end does not know the dialog (any more), or nobody answers in it (12.2.1.2).
        if matches!(outcome.status, 408 | 481) {
            dialogs.end(&dialog.id);
        }
        Ok(outcome)
    }
}
