//! The registrar and location service (RFC 3261 section 10, Path of RFC 3327, outbound of
//! RFC 5626): bindings of an AOR to contacts, each tied to the flow it was registered on or
//! to the Path of the edge it came through, so that requests for a user go back down the
//! user's own connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use siplab_sip::{Contact, ContactParams, HeaderName, Message, SipUri, Uri};
use siplab_transport::FlowToken;
use tokio::time::Instant;

use crate::policy::{Forward, NextHop, Reply};

/// Contacts one AOR may have at once: devices, not an open-ended list from the network.
pub const MAX_BINDINGS: usize = 16;

/// The bounds a registrar puts on Expires.
#[derive(Debug, Clone, Copy)]
pub struct ExpiryBounds {
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

impl Default for ExpiryBounds {
    fn default() -> Self {
        ExpiryBounds {
            min: 60,
            max: 7200,
            default: 3600,
        }
    }
}

/// One contact of an AOR, kept small: a registrar holds one per signed-in device.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The contact URI as registered (canonical text), parsed when a request goes to it.
    contact: Box<str>,
    /// `+sip.instance` and `reg-id` (RFC 5626): the same device registering again replaces
    /// its binding instead of adding one.
    pub instance: Option<Box<str>>,
    pub reg_id: Option<u32>,
    /// The connection the REGISTER arrived on.
    pub flow: FlowToken,
    /// The Path the REGISTER carried (edges between the user and here), top first.
    pub path: Vec<String>,
    pub expires_at: Instant,
    /// A hash of the REGISTER's Call-ID: a refresh from the same Call-ID must raise CSeq.
    call_id: u64,
    pub cseq: u32,
}

impl Binding {
    fn same_device(&self, other: &Binding) -> bool {
        match (&self.instance, &other.instance) {
            (Some(a), Some(b)) => a == b && self.reg_id == other.reg_id,
            _ => self.contact == other.contact,
        }
    }

    /// The contact URI.
    pub fn contact(&self) -> Uri {
        Uri::parse(&self.contact).unwrap_or_else(|_| Uri::Other(self.contact.to_string()))
    }

    /// How a request reaches this binding: through the Path when there is one (the first
    /// Path entry is the next hop), else straight down the flow.
    pub fn forward(&self) -> Forward {
        let next_hop = match self
            .path
            .first()
            .and_then(|p| siplab_sip::NameAddr::parse(p.as_bytes()).ok())
        {
            Some(first) => match first.uri {
                Uri::Sip(u) => NextHop::Uri(u),
                Uri::Other(_) => NextHop::Flow(self.flow.clone()),
            },
            None => NextHop::Flow(self.flow.clone()),
        };
        let mut f = Forward::to(next_hop);
        f.request_uri = Some(self.contact());
        f.routes = self.path.clone();
        f
    }
}

/// The location service: AOR -> bindings.
#[derive(Debug, Default)]
pub struct Location {
    bindings: Mutex<HashMap<String, Vec<Binding>>>,
    /// Contact URI -> AOR, so that an in-dialog request to a client's contact finds its
    /// binding without a scan. Entries are checked against the bindings on use and pruned
    /// by the sweep, so a stale one costs nothing but its memory until then.
    contacts: Mutex<HashMap<u64, Box<str>>>,
    /// Flow -> the AORs registered directly on it, so a closing connection touches only its
    /// own bindings instead of every binding of the node.
    flows: Mutex<HashMap<FlowToken, Vec<Box<str>>>>,
    bounds: ExpiryBounds,
}

impl Location {
    pub fn new(bounds: ExpiryBounds) -> Location {
        Location {
            bindings: Mutex::new(HashMap::new()),
            contacts: Mutex::new(HashMap::new()),
            flows: Mutex::new(HashMap::new()),
            bounds,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Binding>>> {
        self.bindings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a REGISTER for `aor` (already authorised) that arrived on `flow`, and returns
    /// the response: 200 with the current bindings, 423 for a too brief interval, 400 for a
    /// malformed one (RFC 3261 section 10.3).
    pub fn register(&self, req: &Message, aor: &str, flow: &FlowToken) -> Message {
        match self.apply(req, aor, flow) {
            Ok(current) => {
                let mut resp = Message::response_to(req, 200, "OK");
                let now = Instant::now();
                for b in &current {
                    let mut value = format!(
                        "<{}>;expires={}",
                        b.contact,
                        b.expires_at.saturating_duration_since(now).as_secs()
                    );
                    if let Some(i) = &b.instance {
                        value.push_str(&format!(";+sip.instance={i}"));
                    }
                    if let Some(r) = b.reg_id {
                        value.push_str(&format!(";reg-id={r}"));
                    }
                    resp.headers.push(HeaderName::Contact, value);
                }
                for h in req.headers.get_all(&HeaderName::Path) {
                    resp.headers.push(HeaderName::Path, h.value.clone());
                }
                resp.headers.push(HeaderName::Supported, "path, outbound");
                resp
            }
            Err(reply) => crate::core::reply_message(req, &reply),
        }
    }

    fn apply(&self, req: &Message, aor: &str, flow: &FlowToken) -> Result<Vec<Binding>, Reply> {
        let bad = |e: siplab_sip::ParseError| Reply::because(400, e.to_string());
        let contacts = req.contacts().map_err(bad)?;
        let header_expires = req.expires().map_err(bad)?;
        let call_id = hash(req.call_id().map_err(bad)?);
        let cseq = req.cseq().map_err(bad)?.seq;
        let path: Vec<String> = req
            .headers
            .elements(&HeaderName::Path)
            .unwrap_or_default()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        let now = Instant::now();
        let mut table = self.lock();
        let existing = table.entry(aor.to_owned()).or_default();
        existing.retain(|b| b.expires_at > now);

        if contacts.contains(&Contact::Star) {
            // `*` removes every binding, and only with Expires: 0 and nothing else.
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(Reply::because(
                    400,
                    "Contact: * needs Expires: 0 and no other contact",
                ));
            }
            existing.clear();
            return Ok(Vec::new());
        }
        let mut updates = Vec::with_capacity(contacts.len());
        for c in contacts {
            let Contact::Addr(addr) = c else { continue };
            let Uri::Sip(ref contact) = addr.uri else {
                return Err(Reply::because(400, "a contact must be a SIP URI"));
            };
            let expires = addr
                .expires()
                .or(header_expires)
                .unwrap_or(self.bounds.default);
            if expires != 0 && expires < self.bounds.min {
                return Err(Reply::because(
                    423,
                    format!("expires {expires} is below {}", self.bounds.min),
                )
                .with(HeaderName::MinExpires, self.bounds.min.to_string()));
            }
            updates.push((
                Binding {
                    contact: contact.to_string().into_boxed_str(),
                    instance: addr.instance().map(Box::from),
                    reg_id: addr.reg_id(),
                    flow: flow.clone(),
                    path: path.clone(),
                    expires_at: now + Duration::from_secs(expires.min(self.bounds.max).into()),
                    call_id,
                    cseq,
                },
                expires == 0,
            ));
        }
        for (binding, remove) in updates {
            match existing.iter().position(|b| b.same_device(&binding)) {
                // A refresh from the same Call-ID must carry a higher CSeq (section 10.3 step 7).
                Some(i)
                    if existing[i].call_id == binding.call_id
                        && existing[i].cseq >= binding.cseq =>
                {
                    return Err(Reply::because(
                        400,
                        "CSeq not above the previous REGISTER's",
                    ));
                }
                Some(i) if remove => {
                    existing.remove(i);
                }
                Some(i) => existing[i] = binding,
                None if remove => {}
                None if existing.len() >= MAX_BINDINGS => {
                    return Err(Reply::because(
                        403,
                        format!("{aor} already has {MAX_BINDINGS} registered contacts"),
                    ));
                }
                None => existing.push(binding),
            }
        }
        // Most users have one device: a Vec grown by push keeps room for four bindings.
        existing.shrink_to_fit();
        let current = existing.clone();
        if existing.is_empty() {
            table.remove(aor);
        }
        drop(table);
        let mut contacts = self.contacts.lock().unwrap_or_else(|p| p.into_inner());
        for b in &current {
            contacts.insert(hash(b.contact.as_bytes()), Box::from(aor));
        }
        drop(contacts);
        // Bindings through an edge live on the edge's Path, not on this flow.
        if current.iter().any(|b| b.flow == *flow && b.path.is_empty()) {
            let mut flows = self.flows.lock().unwrap_or_else(|p| p.into_inner());
            let aors = flows.entry(flow.clone()).or_default();
            if !aors.iter().any(|a| **a == *aor) {
                aors.push(Box::from(aor));
            }
        }
        Ok(current)
    }

    /// The binding to deliver to: the most recent live one. (siplab delivers to one device
    /// per user; forking to several is not part of the lab's paths.)
    pub fn lookup(&self, aor: &str) -> Option<Binding> {
        let now = Instant::now();
        self.lock()
            .get(aor)?
            .iter()
            .filter(|b| b.expires_at > now)
            .max_by_key(|b| b.expires_at)
            .cloned()
    }

    /// The binding whose contact is this URI: an in-dialog request's remote target.
    pub fn by_contact(&self, uri: &SipUri) -> Option<Binding> {
        let aor = self
            .contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash(uri.to_string().as_bytes()))?
            .clone();
        let now = Instant::now();
        let text = uri.to_string();
        self.lock()
            .get(&*aor)?
            .iter()
            .find(|b| b.expires_at > now && *b.contact == *text)
            .cloned()
    }

    /// Forgets every binding tied to a flow that closed: requests could not reach it.
    pub fn remove_flow(&self, flow: &FlowToken) {
        let aors = self
            .flows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(flow);
        let mut table = self.lock();
        for aor in aors.unwrap_or_default() {
            if let Some(list) = table.get_mut(&*aor) {
                list.retain(|b| b.flow != *flow || !b.path.is_empty());
                if list.is_empty() {
                    table.remove(&*aor);
                }
            }
        }
    }

    /// Drops expired bindings; returns how many remain.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut table = self.lock();
        table.retain(|_, list| {
            list.retain(|b| b.expires_at > now);
            !list.is_empty()
        });
        self.contacts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|contact, aor| {
                table
                    .get(&**aor)
                    .is_some_and(|l| l.iter().any(|b| hash(b.contact.as_bytes()) == *contact))
            });
        table.values().map(Vec::len).sum()
    }
}

/// A 64-bit hash of a key the registrar keeps only to compare (Call-IDs, contact URIs).
fn hash(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(aor: &str, contact: &str, path: Option<&str>) -> Message {
        let path = path.map(|p| format!("Path: {p}\r\n")).unwrap_or_default();
        let text = format!(
            "REGISTER sip:contoso.test SIP/2.0\r\nVia: SIP/2.0/TLS 127.1.0.101:5070;branch=z9hG4bK{aor}\r\n\
             From: <sip:{aor}>;tag=1\r\nTo: <sip:{aor}>\r\nCall-ID: {aor}\r\nCSeq: 1 REGISTER\r\n\
             Contact: <{contact}>;expires=600\r\n{path}Content-Length: 0\r\n\r\n"
        );
        Message::parse(bytes::Bytes::from(text)).unwrap()
    }

    #[test]
    fn a_closed_flow_takes_its_direct_bindings_and_leaves_path_ones() {
        let loc = Location::new(ExpiryBounds::default());
        let (direct, edge) = (FlowToken::from_text("1xa"), FlowToken::from_text("2xb"));
        let r = loc.register(
            &register("alice@contoso.test", "sip:alice@127.1.0.101:5070", None),
            "alice@contoso.test",
            &direct,
        );
        assert_eq!(r.status(), Some(200));
        let via_edge = register(
            "adam@contoso.test",
            "sip:adam@127.3.0.201:5071",
            Some("<sip:2xb@edge01-int.contoso.test:5061;lr>"),
        );
        assert_eq!(
            loc.register(&via_edge, "adam@contoso.test", &edge).status(),
            Some(200)
        );
        let contact = SipUri::parse("sip:alice@127.1.0.101:5070").unwrap();
        assert!(loc.by_contact(&contact).is_some());

        loc.remove_flow(&direct);
        loc.remove_flow(&edge);
        assert!(
            loc.lookup("alice@contoso.test").is_none(),
            "the direct binding went with its flow"
        );
        assert!(loc.by_contact(&contact).is_none());
        assert!(
            loc.lookup("adam@contoso.test").is_some(),
            "a Path binding outlives the edge's connection"
        );
    }

    #[test]
    fn contacts_per_aor_are_bounded() {
        let loc = Location::new(ExpiryBounds::default());
        let flow = FlowToken::from_text("1xa");
        for i in 0..MAX_BINDINGS {
            let r = loc.register(
                &register(
                    "alice@contoso.test",
                    &format!("sip:alice@127.1.0.101:{}", 6000 + i),
                    None,
                ),
                "alice@contoso.test",
                &flow,
            );
            assert_eq!(r.status(), Some(200));
        }
        let r = loc.register(
            &register("alice@contoso.test", "sip:alice@127.1.0.101:7000", None),
            "alice@contoso.test",
            &flow,
        );
        assert_eq!(r.status(), Some(403));
    }
}
