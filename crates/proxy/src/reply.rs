//! Answers built here (RFC 3261 8.2.6): the status, a Warning with the reason, the role's
//! extra headers, and a To tag of our own.

use siplab_sip::{Message, random_u64, reason_phrase};

use crate::decision::Reply;

/// A response to `req` carrying `reply`.
pub(crate) fn reply_message(req: &Message, reply: &Reply) -> Message {
    let reason = reply.reason.unwrap_or_else(|| reason_phrase(reply.code));
    let mut resp = Message::response_to(req, reply.code, reason);
    if let Some(w) = &reply.warning {
        resp.push_warning(w);
    }
    for (name, value) in &reply.headers {
        resp.headers.push(name.clone(), value.clone());
    }
    if reply.code > 100 {
        add_to_tag(&mut resp);
    }
    resp
}

/// A fresh To tag for an answer of this node's own (8.2.6.2), unless To has one.
pub(crate) fn add_to_tag(resp: &mut Message) {
    resp.tag_to(&format!("{:x}", random_u64()));
}
