//! Byte-level scanning shared by every parser: character classes of RFC 3261 section 25,
//! linear white space (which, inside a header value, may still hold the CRLF of a folded
//! line) and the quoting rules of quoted strings and angle brackets.

/// Where the first CRLF in `hay` starts. A two-byte needle is found faster by looking for
/// its first byte than by building a substring searcher for every line.
pub(crate) fn find_crlf(hay: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\r', &hay[from..]) {
        let at = from + i;
        if hay.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Where the first empty line (CRLF CRLF, the end of a header section) in `hay` starts; its
/// searcher is built once.
pub(crate) fn find_blank_line(hay: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(hay)
}

/// `token` characters (RFC 3261 section 25.1).
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// White space inside a header value. A folded line leaves `CRLF 1*WSP` in the value; the
/// framing already guaranteed that any CR or LF there is followed by white space.
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// A cursor over one header value (or start-line element).
#[derive(Debug, Clone)]
pub(crate) struct Scanner<'a> {
    pub(crate) input: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Scanner { input, pos: 0 }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.input[self.pos.min(self.input.len())..]
    }

    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(is_lws) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Consumes `b`, with optional white space around it (the `SEMI`, `EQUAL`, `COMMA`,
    /// `SLASH` and `COLON` separators of the grammar allow LWS on both sides).
    pub(crate) fn eat_sep(&mut self, b: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.peek() == Some(b) {
            self.pos += 1;
            self.skip_lws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Takes bytes while `f` holds.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    pub(crate) fn token(&mut self) -> Option<&'a [u8]> {
        let t = self.take_while(is_token);
        (!t.is_empty()).then_some(t)
    }

    /// A quoted string starting at the cursor, returned with its quotes; `None` when it never
    /// closes. Escapes (`quoted-pair`) may quote any octet but CR and LF.
    pub(crate) fn quoted_string(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if !self.eat(b'"') {
            return None;
        }
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => return Some(&self.input[start..self.pos]),
                b'\\' => match self.peek() {
                    Some(b'\r' | b'\n') | None => break,
                    Some(_) => self.pos += 1,
                },
                _ => {}
            }
        }
        self.pos = start;
        None
    }
}

/// Splits a list-valued header value at the commas that separate its elements, leaving
/// commas inside quoted strings and angle brackets alone. Elements are trimmed of white space.
/// Returns `None` when a quote or bracket never closes.
pub(crate) fn split_list(value: &[u8]) -> Option<Vec<(usize, usize)>> {
    // Most values hold one element: without a comma or a quote there is nothing to split,
    // and only an unclosed '<' to refuse.
    if memchr::memchr2(b',', b'"', value).is_none() {
        if memchr::memrchr2(b'<', b'>', value).is_some_and(|i| value[i] == b'<') {
            return None;
        }
        return Some(vec![trim(value, 0, value.len())]);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut in_angle = false;
    while i < value.len() {
        match value[i] {
            b'"' => {
                let mut s = Scanner {
                    input: value,
                    pos: i,
                };
                s.quoted_string()?;
                i = s.pos;
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => {
                parts.push(trim(value, start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if in_angle {
        return None;
    }
    parts.push(trim(value, start, value.len()));
    Some(parts)
}

/// The range `start..end` of `value` without leading and trailing white space.
pub(crate) fn trim(value: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_lws(value[start]) {
        start += 1;
    }
    while end > start && is_lws(value[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// Parses a non-negative decimal that must fit `max`, accepting leading zeros (`0068`).
pub(crate) fn decimal(digits: &[u8], max: u64) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let v = br#""a, b" <sip:x@y;p=1,2>, <sip:z>;q=0.1 , "\"," <sip:w>"#;
        let parts: Vec<&[u8]> = split_list(v)
            .unwrap()
            .into_iter()
            .map(|(s, e)| &v[s..e])
            .collect();
        assert_eq!(
            parts,
            vec![
                &br#""a, b" <sip:x@y;p=1,2>"#[..],
                &b"<sip:z>;q=0.1"[..],
                &br#""\"," <sip:w>"#[..]
            ]
        );
    }

    #[test]
    fn unterminated_quote_is_detected() {
        assert!(split_list(br#""abc <sip:x>"#).is_none());
        assert!(split_list(b"<sip:x").is_none());
        assert!(split_list(b"<sip:x> <sip:y").is_none());
        assert_eq!(split_list(b"  <sip:x>;lr  "), Some(vec![(2, 12)]));
    }

    #[test]
    fn line_ends_are_found_whole() {
        assert_eq!(find_crlf(b"a\rb\r\nc"), Some(3));
        assert_eq!(find_crlf(b"abc\r"), None);
        assert_eq!(find_crlf(b"\r\n"), Some(0));
        assert_eq!(find_blank_line(b"A: b\r\n\r\nbody"), Some(4));
        assert_eq!(find_blank_line(b"A: b\r\n\r"), None);
    }

    #[test]
    fn decimals_bound() {
        assert_eq!(decimal(b"0068", 255), Some(68));
        assert_eq!(decimal(b"300", 255), None);
        assert_eq!(decimal(b"36893488147419103232", u64::MAX), None);
        assert_eq!(decimal(b"-1", 10), None);
        assert_eq!(decimal(b"", 10), None);
    }
}
