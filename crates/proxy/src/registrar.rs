//! The registrar and location service (RFC 3261 section 10, Path of RFC 3327, outbound of
//! RFC 5626): bindings of an AOR to contacts, each tied to the flow it was registered on or
//! to the Path of the edge it came through, so that requests for a user go back down the
//! user's own connection.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Mutex;
use std::time::Instant;

use siplab_sip::{Contact, ContactParams, HeaderName, Message, NameAddr, SipUri, Uri};
use siplab_transport::FlowToken;
use tracing::debug;

use crate::decision::{Forward, NextHop, Reply};
use crate::reply::reply_message;

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

/// One contact of an AOR, kept small: a registrar holds one per signed-in device, so its
/// texts share one allocation and its times and keys are plain numbers.
#[derive(Debug, Clone)]
pub struct Binding {
    /// The contact URI as registered (canonical text) followed by the `+sip.instance`, if
    /// any; the URI is parsed when a request goes to it.
    text: Box<str>,
    contact_len: u32,
    /// `reg-id` (RFC 5626), 0 for none (a reg-id is at least 1): with the instance, the same
    /// device registering again replaces its binding instead of adding one.
    reg_id: u32,
    /// The connection the REGISTER arrived on.
    flow: FlowToken,
    /// The Path the REGISTER carried (edges between the user and here), top first.
    path: Box<[Box<str>]>,
    /// A keyed hash of the REGISTER's Call-ID: a refresh from the same Call-ID must raise CSeq.
    call_id: u64,
    cseq: u32,
    /// When it expires, in seconds from the location service's start.
    expires: u32,
}

impl Binding {
    fn contact_text(&self) -> &str {
        &self.text[..self.contact_len as usize]
    }

    fn instance(&self) -> Option<&str> {
        Some(&self.text[self.contact_len as usize..]).filter(|i| !i.is_empty())
    }

    fn same_device(&self, other: &Binding) -> bool {
        match (self.instance(), other.instance()) {
            (Some(a), Some(b)) => a == b && self.reg_id == other.reg_id,
            _ => self.contact_text() == other.contact_text(),
        }
    }

    /// Tied to this connection rather than to an edge's Path.
    fn on_flow(&self, flow: &FlowToken) -> bool {
        self.flow == *flow && self.path.is_empty()
    }

    /// The Path it was registered with, top first.
    pub fn path(&self) -> &[Box<str>] {
        &self.path
    }

    /// The contact URI.
    pub fn contact(&self) -> Uri {
        let text = self.contact_text();
        Uri::parse(text).unwrap_or_else(|_| Uri::Other(text.to_owned()))
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
                Uri::Other(_) => NextHop::Flow(self.flow),
            },
            None => NextHop::Flow(self.flow),
        };
        let mut f = Forward::to(next_hop);
        f.request_uri = Some(self.contact());
        f.routes = self.path.iter().map(|p| p.to_string()).collect();
        f
    }
}

/// The bindings of one AOR, found by a keyed hash of the AOR; the AOR's text is kept to tell
/// a hash collision from the same AOR.
#[derive(Debug)]
struct Entry {
    aor: Box<str>,
    bindings: Vec<Binding>,
}

/// What the location service holds, under one lock. The maps are keyed by keyed 64-bit
/// hashes (AORs, contact URIs), which are their own hash.
#[derive(Debug, Default)]
struct Table {
    aors: HashMap<u64, Entry, Prehashed>,
    /// Contact URI -> AOR, so that an in-dialog request to a client's contact finds its
    /// binding without a scan. Entries are checked against the bindings on use and pruned
    /// by the sweep, so a stale one costs nothing but its memory until then.
    contacts: HashMap<u64, u64, Prehashed>,
    /// (flow, AOR) for every AOR registered directly on a connection, so a closing
    /// connection touches only its own bindings instead of every binding of the node.
    flows: BTreeSet<(FlowToken, u64)>,
}

impl Table {
    /// The AOR (key) with a live binding of this contact, if any.
    fn owner_of(&self, contact_hash: u64, contact: &str, now: u32) -> Option<u64> {
        let aor = *self.contacts.get(&contact_hash)?;
        self.aors
            .get(&aor)?
            .bindings
            .iter()
            .any(|b| b.expires > now && b.contact_text() == contact)
            .then_some(aor)
    }
}

/// The location service: AOR -> bindings.
#[derive(Debug)]
pub struct Location {
    table: Mutex<Table>,
    keys: RandomState,
    /// Expiry times count seconds from here.
    epoch: Instant,
    bounds: ExpiryBounds,
}

impl Default for Location {
    fn default() -> Self {
        Location::new(ExpiryBounds::default())
    }
}

impl Location {
    pub fn new(bounds: ExpiryBounds) -> Location {
        Location {
            table: Mutex::new(Table::default()),
            keys: RandomState::new(),
            epoch: Instant::now(),
            bounds,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hash(&self, bytes: &[u8]) -> u64 {
        self.keys.hash_one(bytes)
    }

    /// Now, in the seconds binding expiry is kept in.
    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Applies a REGISTER for `aor` (already authorised) that arrived on `flow`, and returns
    /// the response: 200 with the current bindings, 423 for a too brief interval, 400 for a
    /// malformed one (RFC 3261 section 10.3).
    pub fn register(&self, req: &Message, aor: &str, flow: &FlowToken) -> Message {
        match self.apply(req, aor, flow) {
            Ok(current) => {
                let mut resp = Message::response_to(req, 200, "OK");
                let now = self.now();
                for b in &current {
                    let mut contact = NameAddr::new(b.contact());
                    let left = b.expires.saturating_sub(now).to_string();
                    contact.params.set("expires", Some(&left));
                    if let Some(i) = b.instance() {
                        contact.params.set("+sip.instance", Some(i));
                    }
                    if b.reg_id != 0 {
                        contact.params.set("reg-id", Some(&b.reg_id.to_string()));
                    }
                    resp.headers.push(HeaderName::Contact, contact.to_string());
                }
                for h in req.headers.get_all(&HeaderName::Path) {
                    resp.headers.push(HeaderName::Path, h.value.clone());
                }
                resp.headers.push(HeaderName::Supported, "path, outbound");
                resp
            }
            Err(reply) => reply_message(req, &reply),
        }
    }

    fn apply(&self, req: &Message, aor: &str, flow: &FlowToken) -> Result<Vec<Binding>, Reply> {
        let bad = |e: siplab_sip::ParseError| Reply::because(400, e.to_string());
        let contacts = req.contacts().map_err(bad)?;
        let header_expires = req.expires().map_err(bad)?;
        let call_id = self.hash(req.call_id().map_err(bad)?);
        let cseq = req.cseq().map_err(bad)?.seq;
        let path: Box<[Box<str>]> = req
            .headers
            .elements(&HeaderName::Path)
            .unwrap_or_default()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into())
            .collect();
        let now = self.now();

        if contacts.contains(&Contact::Star) && (contacts.len() != 1 || header_expires != Some(0)) {
            // `*` removes every binding, and only with Expires: 0 and nothing else.
            return Err(Reply::because(
                400,
                "Contact: * needs Expires: 0 and no other contact",
            ));
        }
        let mut updates = Vec::with_capacity(contacts.len());
        for c in &contacts {
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
            let mut text = contact.to_string();
            let contact_len = u32::try_from(text.len())
                .map_err(|_| Reply::because(400, "contact URI too long"))?;
            text.push_str(addr.instance().unwrap_or_default());
            updates.push((
                Binding {
                    text: text.into_boxed_str(),
                    contact_len,
                    reg_id: addr.reg_id().unwrap_or(0),
                    flow: *flow,
                    path: path.clone(),
                    call_id,
                    cseq,
                    expires: now.saturating_add(expires.min(self.bounds.max)),
                },
                expires == 0,
            ));
        }

        let key = self.hash(aor.as_bytes());
        let mut table = self.lock();
        // A contact names one user's device: taking over another user's contact would hand
        // that user's in-dialog requests (addressed to the contact) to this one.
        for (b, remove) in &updates {
            if !remove
                && let Some(owner) = table.owner_of(
                    self.hash(b.contact_text().as_bytes()),
                    b.contact_text(),
                    now,
                )
                && owner != key
            {
                return Err(Reply::because(
                    403,
                    format!(
                        "contact {} is registered for another user",
                        b.contact_text()
                    ),
                ));
            }
        }
        let entry = table.aors.entry(key).or_insert_with(|| Entry {
            aor: aor.into(),
            bindings: Vec::new(),
        });
        if *entry.aor != *aor {
            return Err(Reply::because(
                500,
                "location service key collision; try another AOR",
            ));
        }
        let existing = &mut entry.bindings;
        existing.retain(|b| b.expires > now);
        if contacts.contains(&Contact::Star) {
            existing.clear();
        }
        // All or nothing (section 10.3): a REGISTER refused half-way changes no binding.
        let mut next = existing.clone();
        let outcome = apply_updates(&mut next, updates, aor);
        if outcome.is_ok() {
            // Most users have one device: a Vec grown by push keeps room for four bindings.
            next.shrink_to_fit();
            *existing = next;
        }
        let current = existing.clone();
        // An AOR left without bindings (removed, expired, or refused on its first REGISTER)
        // takes no room.
        if current.is_empty() {
            table.aors.remove(&key);
        }
        outcome?;
        for b in &current {
            table
                .contacts
                .insert(self.hash(b.contact_text().as_bytes()), key);
        }
        // Bindings through an edge live on the edge's Path, not on this flow.
        if current.iter().any(|b| b.on_flow(flow)) {
            table.flows.insert((*flow, key));
        }
        Ok(current)
    }

    /// The binding to deliver to: the most recent live one. (siplab delivers to one device
    /// per user; forking to several is not part of the lab's paths.)
    pub fn lookup(&self, aor: &str) -> Option<Binding> {
        let now = self.now();
        self.lock()
            .aors
            .get(&self.hash(aor.as_bytes()))
            .filter(|e| *e.aor == *aor)?
            .bindings
            .iter()
            .filter(|b| b.expires > now)
            .max_by_key(|b| b.expires)
            .cloned()
    }

    /// The binding whose contact is this URI: an in-dialog request's remote target.
    pub fn by_contact(&self, uri: &SipUri) -> Option<Binding> {
        let text = uri.to_string();
        let now = self.now();
        let table = self.lock();
        let aor = table.owner_of(self.hash(text.as_bytes()), &text, now)?;
        table
            .aors
            .get(&aor)?
            .bindings
            .iter()
            .find(|b| b.expires > now && b.contact_text() == text)
            .cloned()
    }

    /// Forgets the binding of this contact, whichever AOR holds it: the edge it was
    /// reached through answered 430 Flow Failed (RFC 5626 section 5.3), so the connection
    /// the binding lived on is gone. Whether there was one.
    pub fn remove_contact(&self, uri: &SipUri) -> bool {
        let text = uri.to_string();
        let now = self.now();
        let mut table = self.lock();
        let Some(aor) = table.owner_of(self.hash(text.as_bytes()), &text, now) else {
            return false;
        };
        let Some(e) = table.aors.get_mut(&aor) else {
            return false;
        };
        let before = e.bindings.len();
        e.bindings.retain(|b| b.contact_text() != text);
        let removed = e.bindings.len() < before;
        if e.bindings.is_empty() {
            table.aors.remove(&aor);
        }
        removed
    }

    /// Forgets every binding tied to a flow that closed: requests could not reach it.
    pub fn remove_flow(&self, flow: &FlowToken) {
        let mut table = self.lock();
        let aors: Vec<u64> = table
            .flows
            .range((*flow, 0)..=(*flow, u64::MAX))
            .map(|&(_, aor)| aor)
            .collect();
        for aor in aors {
            table.flows.remove(&(*flow, aor));
            if let Some(e) = table.aors.get_mut(&aor) {
                e.bindings.retain(|b| !b.on_flow(flow));
                if e.bindings.is_empty() {
                    table.aors.remove(&aor);
                }
            }
        }
    }

    /// Bindings held (expired ones not yet swept included).
    pub fn bindings(&self) -> usize {
        self.lock().aors.values().map(|e| e.bindings.len()).sum()
    }

    /// Drops expired bindings and the index entries that no longer lead to one; returns how
    /// many bindings remain.
    pub fn sweep(&self) -> usize {
        let now = self.now();
        let mut guard = self.lock();
        let table = &mut *guard;
        table.aors.retain(|_, e| {
            e.bindings.retain(|b| b.expires > now);
            !e.bindings.is_empty()
        });
        let aors = &table.aors;
        table.contacts.retain(|contact, aor| {
            aors.get(aor).is_some_and(|e| {
                e.bindings
                    .iter()
                    .any(|b| self.hash(b.contact_text().as_bytes()) == *contact)
            })
        });
        table.flows.retain(|(flow, aor)| {
            aors.get(aor)
                .is_some_and(|e| e.bindings.iter().any(|b| b.on_flow(flow)))
        });
        aors.values().map(|e| e.bindings.len()).sum()
    }
}

/// Applies a REGISTER's contacts to an AOR's bindings (RFC 3261 section 10.3 steps 7 and
/// 8); `remove` marks an expiry of 0.
fn apply_updates(
    existing: &mut Vec<Binding>,
    updates: Vec<(Binding, bool)>,
    aor: &str,
) -> Result<(), Reply> {
    for (binding, remove) in updates {
        match existing.iter().position(|b| b.same_device(&binding)) {
            // A refresh from the same Call-ID must carry a higher CSeq (section 10.3 step 7).
            Some(i)
                if existing[i].call_id == binding.call_id && existing[i].cseq >= binding.cseq =>
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
            // Full: the binding due to expire first gives way, so that a device whose
            // earlier connections died without signing out can always sign in again, and a
            // storm of new contacts stays within the limit.
            None if existing.len() >= MAX_BINDINGS => {
                if let Some(oldest) = (0..existing.len()).min_by_key(|&i| existing[i].expires) {
                    debug!(%aor, limit = MAX_BINDINGS, "bindings full: the one expiring first gives way");
                    existing.remove(oldest);
                }
                existing.push(binding);
            }
            None => existing.push(binding),
        }
    }
    Ok(())
}

/// The hasher of maps whose keys are already keyed 64-bit hashes: it passes them through.
#[derive(Debug, Default, Clone, Copy)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Debug)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with it; fold anything else in rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(text: &str) -> FlowToken {
        FlowToken::parse(text).unwrap()
    }

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
        let (direct, edge) = (flow("1xa"), flow("2xb"));
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
    fn a_contact_of_another_user_cannot_be_taken_over() {
        let loc = Location::new(ExpiryBounds::default());
        let contact = "sip:adam@127.1.0.102:5070;transport=tls";
        let adam = register("adam@contoso.test", contact, None);
        assert_eq!(
            loc.register(&adam, "adam@contoso.test", &flow("1xa"))
                .status(),
            Some(200)
        );
        // alice registers adam's contact as hers: refused, and adam's dialogs stay his.
        let alice = register("alice@contoso.test", contact, None);
        let r = loc.register(&alice, "alice@contoso.test", &flow("2xb"));
        assert_eq!(r.status(), Some(403));
        assert!(
            String::from_utf8_lossy(&r.to_bytes()).contains("registered for another user"),
            "{r:?}"
        );
        assert!(loc.lookup("alice@contoso.test").is_none());
        let owner = loc.by_contact(&SipUri::parse(contact).unwrap()).unwrap();
        assert_eq!(owner.flow, flow("1xa"));
        // Once adam's binding is gone, the contact is free again.
        loc.remove_flow(&flow("1xa"));
        let r = loc.register(&alice, "alice@contoso.test", &flow("2xb"));
        assert_eq!(r.status(), Some(200));
    }

    #[test]
    fn contacts_per_aor_are_bounded_and_the_one_expiring_first_gives_way() {
        let loc = Location::new(ExpiryBounds::default());
        let flow = flow("1xa");
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
        assert_eq!(r.status(), Some(200), "a device can always sign in again");
        assert_eq!(loc.sweep(), MAX_BINDINGS, "still within the limit");
        let uri = |port: u16| SipUri::parse(&format!("sip:alice@127.1.0.101:{port}")).unwrap();
        assert!(loc.by_contact(&uri(7000)).is_some());
        assert!(
            loc.by_contact(&uri(6000)).is_none(),
            "the first one gave way"
        );
        // An edge's 430 for a binding's flow drops it.
        assert!(loc.remove_contact(&uri(7000)));
        assert!(loc.by_contact(&uri(7000)).is_none());
        assert!(!loc.remove_contact(&uri(7000)));
    }
}
