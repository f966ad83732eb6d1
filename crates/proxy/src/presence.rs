//! The presence server of a home server (RFC 3856 over RFC 3265, PUBLISH of RFC 3903, PIDF
//! of RFC 3863): what each of its users published, who watches whom, and the NOTIFYs those
//! watchers are owed. A SUBSCRIBE takes the same way as a message to the user, but the
//! user's home server answers it itself; the user's client never sees it (section 6).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use siplab_sip::{
    Aor, CSeq, HeaderName, Message, Method, NameAddr, SipUri, SubscriptionState, Uri, pidf,
    random_u64,
};
use tokio::time::Instant;

/// A watcher's subscription, as the notifier (the UAS of the SUBSCRIBE) keeps its dialog.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The watched user's AOR.
    pub target: Aor,
    /// The watcher's AOR.
    pub watcher: Aor,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The watcher's Contact: the Request-URI of NOTIFYs.
    pub remote_target: SipUri,
    /// The SUBSCRIBE's Record-Route in order: the notifier is the callee side (12.1.1).
    pub route_set: Vec<String>,
    /// The Via sent-bys of the SUBSCRIBE as it arrived, top first: the way it came.
    pub vias: Vec<String>,
    pub cseq: u32,
    pub expires_at: Instant,
    /// The state last sent, so that only changes are notified.
    pub last_state: Option<String>,
}

/// One user's published state.
#[derive(Debug, Clone)]
struct Publication {
    state: String,
    etag: String,
    expires_at: Instant,
}

#[derive(Debug, Default)]
pub struct PresenceServer {
    published: Mutex<HashMap<String, Publication>>,
    /// By Call-ID and our tag.
    subs: Mutex<HashMap<(String, String), Subscription>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Watchers of one user at once: subscriptions come from the network and must not grow
/// without bound.
const MAX_WATCHERS: usize = 256;

/// How long a subscription or publication may last, and the default.
const MAX_EXPIRES: u32 = 3600;
const DEFAULT_EXPIRES: u32 = 600;

impl PresenceServer {
    /// Applies a PUBLISH (already authorised for `aor`); returns the 200 with its entity tag.
    pub fn publish(&self, req: &Message, aor: &str) -> Result<Message, (u16, String)> {
        let expires = req
            .expires()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_EXPIRES)
            .min(MAX_EXPIRES);
        let mut published = lock(&self.published);
        if expires == 0 {
            published.remove(aor);
            return Ok(Message::response_to(req, 200, "OK"));
        }
        let state = if req.body.is_empty() {
            // A refresh (SIP-If-Match, no body) keeps what was published.
            let etag = req
                .headers
                .value(&HeaderName::SipIfMatch)
                .map(|v| String::from_utf8_lossy(v).into_owned());
            match published.get(aor) {
                Some(p) if etag.as_deref() == Some(p.etag.as_str()) => p.state.clone(),
                _ => return Err((412, "no publication with that entity tag".into())),
            }
        } else {
            siplab_sip::pidf_state(&req.body)
                .ok_or((415, "the body is not a PIDF document".to_owned()))?
        };
        let etag = format!("{:x}", random_u64());
        published.insert(
            aor.to_owned(),
            Publication {
                state,
                etag: etag.clone(),
                expires_at: Instant::now() + Duration::from_secs(expires.into()),
            },
        );
        let mut resp = Message::response_to(req, 200, "OK");
        resp.headers.push(HeaderName::SipETag, etag);
        resp.headers.push(HeaderName::Expires, expires.to_string());
        Ok(resp)
    }

    /// What a user shows: offline without a binding, else what it published (available when
    /// it published nothing).
    pub fn state(&self, aor: &str, signed_in: bool) -> String {
        if !signed_in {
            return "offline".into();
        }
        let now = Instant::now();
        lock(&self.published)
            .get(aor)
            .filter(|p| p.expires_at > now)
            .map_or_else(|| "available".into(), |p| p.state.clone())
    }

    /// Whether a request belongs to a subscription this server holds (a refresh or an
    /// unsubscribe in its dialog).
    pub fn holds(&self, req: &Message) -> bool {
        key_of(req).is_some_and(|k| lock(&self.subs).contains_key(&k))
    }

    /// Applies a SUBSCRIBE for `target`: a new subscription, a refresh, or an end (Expires 0);
    /// `None` for one in the dialog of a subscription held here.
    /// Returns the 200 and the subscription to notify.
    pub fn subscribe(
        &self,
        req: &Message,
        target: Option<&Aor>,
        contact: &str,
    ) -> Result<(Message, Subscription), (u16, String)> {
        let bad = |what: &str| (400, what.to_owned());
        let expires = req
            .expires()
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_EXPIRES)
            .min(MAX_EXPIRES);
        let from = req.from().map_err(|e| bad(&e.to_string()))?;
        let call_id =
            String::from_utf8_lossy(req.call_id().map_err(|e| bad(&e.to_string()))?).into_owned();
        let mut subs = lock(&self.subs);
        let existing = key_of(req).and_then(|k| subs.get(&k).cloned());
        let mut sub = match existing {
            Some(s) => s,
            None => {
                let Some(target) = target else {
                    return Err((481, "no such subscription here".to_owned()));
                };
                if subs.values().filter(|s| s.target == *target).count() >= MAX_WATCHERS {
                    return Err((403, format!("{target} already has {MAX_WATCHERS} watchers")));
                }
                let Some(watcher) = from.sip_uri().map(SipUri::aor) else {
                    return Err(bad("the From of a SUBSCRIBE must be a SIP URI"));
                };
                let remote_target = match req.contacts().ok().and_then(|c| c.into_iter().next()) {
                    Some(siplab_sip::Contact::Addr(a)) => match a.uri {
                        Uri::Sip(u) => u,
                        Uri::Other(_) => return Err(bad("the Contact is not a SIP URI")),
                    },
                    _ => return Err(bad("a SUBSCRIBE needs a Contact")),
                };
                Subscription {
                    target: target.clone(),
                    watcher,
                    call_id: call_id.clone(),
                    local_tag: format!("{:x}", random_u64()),
                    remote_tag: from.tag().unwrap_or_default().to_owned(),
                    remote_target,
                    route_set: req
                        .headers
                        .elements(&HeaderName::RecordRoute)
                        .unwrap_or_default()
                        .iter()
                        .map(|r| String::from_utf8_lossy(r).into_owned())
                        .collect(),
                    vias: req
                        .vias()
                        .unwrap_or_default()
                        .iter()
                        .map(|v| v.host.to_string())
                        .collect(),
                    cseq: 0,
                    expires_at: Instant::now(),
                    last_state: None,
                }
            }
        };
        sub.expires_at = Instant::now() + Duration::from_secs(expires.into());
        // A new or refreshed subscription is told the current state at once.
        sub.last_state = None;
        let key = (sub.call_id.clone(), sub.local_tag.clone());
        if expires == 0 {
            subs.remove(&key);
        } else {
            subs.insert(key, sub.clone());
        }
        let mut resp = Message::response_to(req, 200, "OK");
        resp.tag_to(&sub.local_tag);
        for rr in req.headers.get_all(&HeaderName::RecordRoute) {
            resp.headers.push(HeaderName::RecordRoute, rr.value.clone());
        }
        resp.headers.push(HeaderName::Contact, contact.to_owned());
        resp.headers.push(HeaderName::Expires, expires.to_string());
        Ok((resp, sub))
    }

    /// The subscriptions watching `target` whose state changed (all of them when `target` is
    /// `None`), marked as notified with their next CSeq.
    pub fn due(
        &self,
        target: Option<&str>,
        state_of: impl Fn(&str) -> String,
    ) -> Vec<(Subscription, String)> {
        let now = Instant::now();
        let mut subs = lock(&self.subs);
        let mut out = Vec::new();
        for sub in subs.values_mut() {
            if target.is_some_and(|t| *t != *sub.target) {
                continue;
            }
            let state = if sub.expires_at <= now {
                "terminated".to_owned()
            } else {
                state_of(&sub.target)
            };
            if sub.last_state.as_deref() != Some(state.as_str()) {
                sub.last_state = Some(state.clone());
                sub.cseq += 1;
                out.push((sub.clone(), state));
            }
        }
        subs.retain(|_, s| s.expires_at > now);
        out
    }

    /// Forgets a subscription whose NOTIFY was refused (481, 408: the watcher is gone).
    pub fn drop_dialog(&self, call_id: &str) {
        lock(&self.subs).retain(|(c, _), _| c != call_id);
    }

    /// Every subscription, for people and tests (which way did each SUBSCRIBE come?).
    pub fn subscriptions(&self) -> Vec<Subscription> {
        lock(&self.subs).values().cloned().collect()
    }
}

fn key_of(req: &Message) -> Option<(String, String)> {
    let tag = req.to().ok()?.tag()?.to_owned();
    Some((
        String::from_utf8_lossy(req.call_id().ok()?).into_owned(),
        tag,
    ))
}

/// The NOTIFY of `sub` carrying `state` (`terminated` ends it), without Via: the core
/// adds that when it sends.
pub fn notify(sub: &Subscription, state: &str, contact: &str) -> Message {
    let mut m = Message::request(Method::Notify, Uri::Sip(sub.remote_target.clone()));
    m.headers.push(HeaderName::MaxForwards, "70");
    for r in &sub.route_set {
        m.headers.push(HeaderName::Route, r.clone());
    }
    let party = |aor: &Aor, tag: &str| NameAddr::new(Uri::Sip(aor.uri())).with_tag(tag).to_string();
    m.headers
        .push(HeaderName::From, party(&sub.target, &sub.local_tag));
    m.headers
        .push(HeaderName::To, party(&sub.watcher, &sub.remote_tag));
    m.headers.push(HeaderName::CallId, sub.call_id.clone());
    m.headers.push(
        HeaderName::CSeq,
        CSeq::new(sub.cseq, Method::Notify).to_string(),
    );
    m.headers.push(HeaderName::Contact, contact.to_owned());
    m.headers.push(HeaderName::Event, "presence");
    if state == "terminated" {
        m.headers.push(
            HeaderName::SubscriptionState,
            SubscriptionState::Terminated("timeout").to_string(),
        );
        m.headers.push(HeaderName::ContentLength, "0");
    } else {
        let left = sub
            .expires_at
            .saturating_duration_since(Instant::now())
            .as_secs();
        m.headers.push(
            HeaderName::SubscriptionState,
            SubscriptionState::Active(left).to_string(),
        );
        m.set_body(
            "application/pidf+xml",
            pidf(&sub.target.uri().to_string(), state),
        );
    }
    m
}
