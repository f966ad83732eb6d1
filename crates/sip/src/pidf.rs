//! Presence documents (PIDF, RFC 3863) as the lab uses them: one tuple whose `basic` status
//! is open or closed and whose note carries the state a client shows (available, busy,
//! away, offline).

/// The states a user can publish, and `offline`, which its home server says for it when its
/// last binding goes.
pub const PRESENCE_STATES: &[&str] = &["available", "busy", "away", "offline"];

/// A PIDF document for `entity` (`sip:alice@contoso.test`) in `state`.
pub fn pidf(entity: &str, state: &str) -> String {
    let basic = if state == "offline" { "closed" } else { "open" };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"{}\">\r\n\
         <tuple id=\"siplab\"><status><basic>{basic}</basic></status><note>{}</note></tuple>\r\n\
         </presence>\r\n",
        escape(entity),
        escape(state)
    )
}

/// The state a PIDF document carries: its note, else `available` / `offline` from its
/// basic status; `None` when the body is not a PIDF document.
pub fn pidf_state(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("urn:ietf:params:xml:ns:pidf") {
        return None;
    }
    if let Some(note) = element(text, "note") {
        return Some(note.trim().to_owned());
    }
    match element(text, "basic")?.trim() {
        "open" => Some("available".into()),
        _ => Some("offline".into()),
    }
}

/// The text of the first `<name>` or `<name attr...>` element (no nesting inside it).
fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("<{name}"))?;
    let open_end = start + text[start..].find('>')? + 1;
    let close = open_end + text[open_end..].find(&format!("</{name}>"))?;
    Some(&text[open_end..close])
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for state in PRESENCE_STATES {
            let doc = pidf("sip:alice@contoso.test", state);
            assert_eq!(pidf_state(doc.as_bytes()).as_deref(), Some(*state));
        }
        assert!(pidf("sip:a@b", "offline").contains("<basic>closed</basic>"));
        assert_eq!(pidf_state(b"not xml"), None);
        let foreign = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf"><tuple id="x"><status><basic>open</basic></status></tuple></presence>"#;
        assert_eq!(pidf_state(foreign).as_deref(), Some("available"));
    }
}
