//! Each typed header parser on arbitrary bytes, and on every comma-separated element the way
//! list headers reach them: none may panic, and what parses prints as something that parses.

#![no_main]

use libfuzzer_sys::fuzz_target;
use siplab_sip::{CSeq, Contact, NameAddr, SipUri, Uri, Via};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Via::parse(data) {
        let _ = (v.branch(), v.rport(), v.has_rfc3261_branch(), v.sent_by());
        let text = v.to_string();
        Via::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    if let Ok(n) = NameAddr::parse(data) {
        let _ = (n.tag(), n.display_name(), n.sip_uri().map(SipUri::aor));
        let text = n.to_string();
        NameAddr::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    }
    if let Ok(c) = CSeq::parse(data) {
        assert_eq!(CSeq::parse(c.to_string().as_bytes()), Ok(c));
    }
    let _ = Contact::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(u) = Uri::parse(text) {
            let printed = u.to_string();
            let again = Uri::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
            assert_eq!(again.to_string(), printed);
        }
        let _ = SipUri::parse(text);
    }
});
