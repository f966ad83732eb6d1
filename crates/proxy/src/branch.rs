//! Branch parameters (RFC 3261 section 8.1.1.7) and loop detection (section 16.3 step 4).
//!
//! A branch this node writes is `z9hG4bK` + a hash of what identifies the request here +
//! `.` + a unique part. When a request comes back carrying a Via of this node whose hash
//! part equals the hash of the request as it arrives now, it has looped; when the hash
//! differs (another Request-URI, another Route set, another asserted identity, or another
//! interface it arrived on) it spirals, which the lab's hybrid paths do (rows 15 to 17 pass
//! the cloud twice; a federated request for a cloud user passes its company's edge in from
//! the partner and out again from the front end, unchanged but for the side it came from).

use std::fmt::{self, Write as _};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use siplab_sip::{BRANCH_COOKIE, HeaderName, Message, random_u64};

/// The hash over the fields RFC 3261 section 16.6 step 8 names (Request-URI, To and From
/// tags, Call-ID, CSeq number, Proxy-Require, Proxy-Authorization) plus the Route set and
/// the asserted identity as received, and the interface it arrived on (`""` for a request
/// this node makes), which is what tells a spiral from a loop here.
pub fn loop_hash(
    msg: &Message,
    (to_tag, from_tag): (Option<&str>, Option<&str>),
    cseq: u32,
    arrived_on: &str,
) -> u64 {
    let mut h = DefaultHasher::new();
    arrived_on.hash(&mut h);
    if let Some(uri) = msg.request_uri() {
        // Its canonical text, hashed as it is written out rather than built as a String.
        let _ = write!(HashWriter(&mut h), "{uri}");
    }
    to_tag.hash(&mut h);
    from_tag.hash(&mut h);
    msg.call_id().ok().hash(&mut h);
    cseq.hash(&mut h);
    for name in [
        HeaderName::Route,
        HeaderName::ProxyRequire,
        HeaderName::new("Proxy-Authorization"),
        HeaderName::PAssertedIdentity,
    ] {
        for line in msg.headers.get_all(&name) {
            line.value.hash(&mut h);
        }
    }
    h.finish()
}

struct HashWriter<'a>(&'a mut DefaultHasher);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// Makes branches: the loop hash, then a counter started at a random point.
#[derive(Debug)]
pub struct BranchMaker {
    next: AtomicU64,
}

impl Default for BranchMaker {
    fn default() -> Self {
        BranchMaker {
            next: AtomicU64::new(random_u64() >> 16),
        }
    }
}

impl BranchMaker {
    pub fn make(&self, loop_hash: u64) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{BRANCH_COOKIE}{loop_hash:016x}.{n:x}")
    }
}

/// Whether a branch of ours carries this loop hash.
pub fn carries(branch: &str, loop_hash: u64) -> bool {
    branch
        .strip_prefix(BRANCH_COOKIE)
        .and_then(|rest| rest.get(..16))
        .is_some_and(|h| u64::from_str_radix(h, 16).ok() == Some(loop_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_are_unique_and_carry_the_hash() {
        let m = BranchMaker::default();
        let (a, b) = (m.make(0xabc), m.make(0xabc));
        assert_ne!(a, b);
        assert!(a.starts_with("z9hG4bK0000000000000abc."));
        assert!(carries(&a, 0xabc));
        assert!(!carries(&a, 0xabd));
        assert!(!carries("z9hG4bKshort", 1));
    }

    #[test]
    fn the_loop_hash_covers_tags_sequence_and_arrival() {
        let m = Message::parse(bytes::Bytes::from_static(
            b"NOTIFY sip:w@contoso.test SIP/2.0\r\nFrom: <sip:a@contoso.test>;tag=1\r\n\
              To: <sip:w@contoso.test>;tag=2\r\nCall-ID: n1\r\nCSeq: 7 NOTIFY\r\n\
              Content-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let base = loop_hash(&m, (Some("2"), Some("1")), 7, "E1x");
        assert_eq!(base, loop_hash(&m, (Some("2"), Some("1")), 7, "E1x"));
        assert_ne!(base, loop_hash(&m, (Some("3"), Some("1")), 7, "E1x"));
        assert_ne!(base, loop_hash(&m, (Some("2"), None), 7, "E1x"));
        assert_ne!(base, loop_hash(&m, (Some("2"), Some("1")), 8, "E1x"));
        assert_ne!(base, loop_hash(&m, (Some("2"), Some("1")), 7, "E1i"));
    }
}
