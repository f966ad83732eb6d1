//! Fresh identifiers. RFC 3261 (sections 8.1.1.7 and 19.3) wants branches, tags and Call-IDs
//! unique in space and time and hard to guess; RFC 5626 wants an instance URN that stays the
//! same for the life of the client.

use siplab_sip::{BRANCH_COOKIE, random_u64};

/// A Via branch with the RFC 3261 cookie, so that it alone names the transaction.
pub(crate) fn branch() -> String {
    format!("{BRANCH_COOKIE}{:016x}", random_u64())
}

pub(crate) fn tag() -> String {
    format!("{:016x}", random_u64())
}

/// A Call-ID: random, with the client's address to keep it unique across hosts.
pub(crate) fn call_id(host: &str) -> String {
    format!("{:016x}{:08x}@{host}", random_u64(), random_u64() as u32)
}

/// `urn:uuid:` with a version 4 UUID (RFC 4122): the `+sip.instance` of RFC 5626.
pub(crate) fn instance_urn() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "urn:uuid:{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_fresh_and_well_formed() {
        let (a, b) = (branch(), branch());
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK") && a.len() == 23);
        assert_ne!(tag(), tag());
        let urn = instance_urn();
        let uuid = urn.strip_prefix("urn:uuid:").unwrap();
        let parts: Vec<_> = uuid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "4");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"));
        assert!(call_id("127.0.0.1").ends_with("@127.0.0.1"));
    }
}
