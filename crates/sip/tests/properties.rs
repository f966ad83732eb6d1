//! Properties of the codec over generated input:
//!
//! - a well-formed message, however tortuous its spacing, folding, name forms and quoting,
//!   parses, validates and leaves byte for byte as it came, as a datagram and on a stream
//!   cut anywhere;
//! - no input, arbitrary or a valid message damaged, makes the parser, the validation or a
//!   typed accessor panic, and whatever parses serializes to something that parses back;
//! - the stream decoder always makes progress and never holds more than one message's worth
//!   of bytes.

use std::fmt;
use std::net::Ipv6Addr;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use siplab_sip::{
    Contact, ContactParams, Frame, HeaderName, Limits, Message, NameAddr, StreamDecoder, Uri,
};

/// Wire bytes, shown as text when a case fails.
#[derive(Clone, PartialEq)]
struct Wire(Vec<u8>);

impl fmt::Debug for Wire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

// --- lexical pieces ---------------------------------------------------------------------

/// Linear white space where the grammar requires some: spaces, tabs and folded lines.
fn lws() -> impl Strategy<Value = &'static str> {
    select(&[" ", "  ", "\t", " \t ", "\r\n ", "\r\n\t", "   \r\n    "][..])
}

/// Linear white space where the grammar allows it (`SEMI`, `EQUAL`, `SLASH`, `COMMA`...).
fn opt_lws() -> impl Strategy<Value = &'static str> {
    select(&["", "", "", " ", "\t", "  ", "\r\n "][..])
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,10}"
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "INVITE",
                "ACK",
                "BYE",
                "CANCEL",
                "REGISTER",
                "OPTIONS",
                "MESSAGE",
                "SUBSCRIBE",
                "NOTIFY",
                "PUBLISH",
                "INFO",
                "PRACK",
                "UPDATE",
                "REFER"
            ][..]
        )
        .prop_map(str::to_owned),
        "[A-Z]{3,12}",
        token(),
    ]
}

/// A header name in one of the forms a sender may use: canonical, another case, compact.
fn name(long: &'static str, compact: Option<&'static str>) -> BoxedStrategy<String> {
    let mut forms = vec![
        long.to_owned(),
        long.to_ascii_lowercase(),
        long.to_ascii_uppercase(),
    ];
    if let Some(c) = compact {
        forms.push(c.to_owned());
        forms.push(c.to_ascii_uppercase());
    }
    select(forms).boxed()
}

/// One header line: the name, odd spacing around the colon, the value, trailing blanks.
fn line(name: BoxedStrategy<String>, value: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (
        name,
        select(&["", "", " ", "\t", "  "][..]),
        select(&["", " ", " ", "  ", "\t", "\r\n "][..]),
        value,
        select(&["", "", " ", "\t"][..]),
    )
        .prop_map(|(n, before, after, v, trail)| format!("{n}{before}:{after}{v}{trail}\r\n"))
        .boxed()
}

// --- URIs and addresses -----------------------------------------------------------------

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        vec("[A-Za-z0-9]([A-Za-z0-9-]{0,6}[A-Za-z0-9])?", 1..4).prop_map(|l| l.join(".")),
        any::<[u8; 4]>().prop_map(|[a, b, c, d]| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
    ]
}

/// A `sip:` or `sips:` URI; `rich` adds a user part with the characters and escapes the
/// grammar allows there, a password, URI parameters and (with `headers`) a `?` part.
fn sip_uri(rich: bool, headers: bool) -> BoxedStrategy<String> {
    let escape = "%[0-9A-Fa-f]{2}";
    let user = if rich {
        prop_oneof![3 => "[A-Za-z0-9_.!~*'()&=+$,;?/-]", 1 => escape]
            .prop_map(|s: String| s)
            .boxed()
    } else {
        "[a-z0-9._-]".boxed()
    };
    (
        select(&["sip", "sips", "SIP"][..]),
        option::of((
            vec(user, 1..12).prop_map(|v| v.concat()),
            option::of(vec(prop_oneof!["[A-Za-z0-9&=+$,_.-]", escape], 0..6)),
        )),
        host(),
        option::of(any::<u16>()),
        vec(
            (
                prop_oneof![
                    Just("transport".to_owned()),
                    Just("lr".to_owned()),
                    Just("maddr".to_owned()),
                    "[A-Za-z0-9_.!~*'()\\[\\]/:&+$-]{1,8}",
                ],
                option::of(vec(
                    prop_oneof!["[A-Za-z0-9_.!~*'()\\[\\]/:&+$-]", escape],
                    0..8,
                )),
            ),
            0..if rich { 4 } else { 1 },
        ),
        option::of(vec(
            prop_oneof!["[A-Za-z0-9_.!~*'()\\[\\]/?:+$=&-]", escape],
            0..10,
        )),
    )
        .prop_map(move |(scheme, userinfo, host, port, params, hdrs)| {
            let mut u = format!("{scheme}:");
            if let Some((user, password)) = userinfo {
                u.push_str(&user);
                // A bare addr-spec may hold no ',' (nor a password, to keep it simple).
                if let (true, Some(p)) = (rich, password) {
                    u.push(':');
                    u.push_str(&p.concat());
                }
                u.push('@');
            }
            u.push_str(&host);
            if let Some(p) = port {
                u.push_str(&format!(":{p}"));
            }
            for (n, v) in params {
                u.push(';');
                u.push_str(&n);
                if let Some(v) = v {
                    u.push('=');
                    u.push_str(&v.concat());
                }
            }
            if let (true, Some(h)) = (headers, hdrs) {
                u.push('?');
                u.push_str(&h.concat());
            }
            u
        })
        .boxed()
}

/// URIs of schemes a proxy carries without parsing.
fn other_uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "tel:\\+[0-9-]{1,12}(;phone-context=[a-z.]{1,8})?",
        "urn:uuid:[0-9a-f-]{8,36}",
        "mailto:[a-z]{1,8}@[a-z.]{1,12}",
    ]
}

/// A quoted display name with `quoted-pair` escapes and non-ASCII text.
fn quoted() -> impl Strategy<Value = String> {
    vec(
        prop_oneof![
            4 => "[ !#-\\[\\]-~]",
            1 => select(&["é", "日本", "\t", "Ω"][..]).prop_map(str::to_owned),
            1 => "\\\\[ -~]",
        ],
        0..12,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()))
}

/// `;name=value` header parameters with white space around `;` and `=`; values are tokens or
/// quoted strings.
fn header_params(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    vec(
        (
            opt_lws(),
            opt_lws(),
            prop_oneof![select(names).prop_map(str::to_owned), "x-[a-z0-9]{1,6}"],
            option::of((
                opt_lws(),
                opt_lws(),
                prop_oneof![3 => token(), 1 => quoted()],
            )),
        ),
        0..3,
    )
    .prop_map(|ps| {
        ps.into_iter()
            .map(|(a, b, n, v)| match v {
                Some((c, d, v)) => format!("{a};{b}{n}{c}={d}{v}"),
                None => format!("{a};{b}{n}"),
            })
            .collect()
    })
}

/// A name-addr or addr-spec: quoted or token display names, `<>` with a full URI, or a bare
/// URI that must then be simple (its parameters would be the header's).
fn address() -> BoxedStrategy<String> {
    let angle = prop_oneof![3 => sip_uri(true, true), 1 => other_uri()];
    prop_oneof![
        (quoted(), opt_lws(), angle.clone()).prop_map(|(d, l, u)| format!("{d}{l}<{u}>")),
        (
            vec(token(), 1..3),
            select(&["", " ", "  ", "\t"][..]),
            angle.clone()
        )
            .prop_map(|(w, l, u)| format!("{}{l}<{u}>", w.join(" "))),
        angle.prop_map(|u| format!("<{u}>")),
        sip_uri(false, false),
    ]
    .boxed()
}

// --- header values ------------------------------------------------------------------------

fn via_value() -> impl Strategy<Value = String> {
    (
        select(&["SIP", "sip", "Sip"][..]),
        vec(opt_lws(), 4),
        prop_oneof![
            select(&["UDP", "TCP", "TLS", "SCTP", "tls", "WS", "WSS"][..]).prop_map(str::to_owned),
            token(),
        ],
        lws(),
        host(),
        option::of((opt_lws(), opt_lws(), any::<u16>())),
        token(),
        vec(
            (
                opt_lws(),
                opt_lws(),
                select(&["rport", "received", "ttl", "maddr", "x-ext", "comp"][..]),
                option::of((
                    opt_lws(),
                    opt_lws(),
                    prop_oneof![
                        3 => token(),
                        1 => quoted(),
                        1 => any::<[u16; 8]>().prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
                    ],
                )),
            ),
            0..4,
        ),
    )
        .prop_map(|(proto, l, transport, sp, host, port, branch, params)| {
            let mut v = format!(
                "{proto}{}/{}2.0{}/{}{transport}{sp}{host}",
                l[0], l[1], l[2], l[3]
            );
            if let Some((a, b, p)) = port {
                v.push_str(&format!("{a}:{b}{p}"));
            }
            v.push_str(&format!(";branch=z9hG4bK{branch}"));
            for (a, b, n, value) in params {
                v.push_str(&format!("{a};{b}{n}"));
                if let Some((c, d, value)) = value {
                    v.push_str(&format!("{c}={d}{value}"));
                }
            }
            v
        })
}

/// Comma-separated elements with white space around the commas.
fn list(element: BoxedStrategy<String>, max: usize) -> BoxedStrategy<String> {
    vec((element, opt_lws(), opt_lws()), 1..=max)
        .prop_map(|es| {
            let mut out = String::new();
            for (i, (e, a, b)) in es.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&format!("{a},{b}"));
                }
                out.push_str(&e);
            }
            out
        })
        .boxed()
}

/// An extension header's value: any visible characters, non-ASCII text, odd spacing and
/// folded continuation lines.
fn unknown_value() -> impl Strategy<Value = String> {
    vec(
        (
            prop_oneof![
                4 => "[!-~]{1,10}",
                1 => select(&["é", "日本語", "\u{1F600}"][..]).prop_map(str::to_owned),
            ],
            select(
                &[
                    " ",
                    " ",
                    "  ",
                    "\t",
                    " \t",
                    "\r\n ",
                    "\r\n\t",
                    "   \r\n    ",
                ][..],
            ),
        ),
        0..6,
    )
    .prop_map(|ws| {
        let n = ws.len();
        ws.into_iter()
            .enumerate()
            .map(|(i, (w, sep))| if i + 1 < n { format!("{w}{sep}") } else { w })
            .collect()
    })
}

fn unknown_header() -> BoxedStrategy<String> {
    line(
        "[Xx]-[A-Za-z0-9!%*_+`'~.-]{1,12}".boxed(),
        unknown_value().boxed(),
    )
}

/// Headers a message may carry beyond the mandatory ones, none of them single-valued.
fn extra_header() -> BoxedStrategy<String> {
    prop_oneof![
        4 => unknown_header(),
        1 => line(name("Route", None), list(address(), 3)),
        1 => line(name("Record-Route", None), list(sip_uri(true, false).prop_map(|u| format!("<{u}>")).boxed(), 3)),
        1 => line(name("Supported", Some("k")), list("[a-z0-9.-]{1,8}".boxed(), 3)),
        1 => line(name("User-Agent", None), unknown_value().boxed()),
        1 => line(name("P-Asserted-Identity", None), address()),
    ]
    .boxed()
}

fn contact_value() -> BoxedStrategy<String> {
    prop_oneof![
        1 => Just("*".to_owned()),
        6 => list(
            (address(), header_params(&["expires", "q", "reg-id", "+sip.instance"]))
                .prop_map(|(a, p)| format!("{a}{p}"))
                .boxed(),
            3,
        ),
    ]
    .boxed()
}

// --- whole messages -----------------------------------------------------------------------

/// A well-formed request or response as the bytes a sender put on the wire.
fn message() -> impl Strategy<Value = Wire> {
    (any::<bool>(), method()).prop_flat_map(|(is_request, method)| {
        let start = if is_request {
            (
                prop_oneof![3 => sip_uri(true, false), 1 => other_uri()],
                Just(method.clone()),
            )
                .prop_map(|(uri, m)| format!("{m} {uri} SIP/2.0\r\n"))
                .boxed()
        } else {
            (
                100u16..700,
                vec(
                    prop_oneof![
                        6 => "[ -~]",
                        1 => select(&["é", "日本", "\t"][..]).prop_map(str::to_owned)
                    ],
                    0..20,
                ),
            )
                .prop_map(|(code, reason)| format!("SIP/2.0 {code} {}\r\n", reason.concat()))
                .boxed()
        };
        let vias = vec(
            line(name("Via", Some("v")), list(via_value().boxed(), 3)),
            1..4,
        );
        let from = line(
            name("From", Some("f")),
            (address(), token(), header_params(&["x"]))
                .prop_map(|(a, t, p)| format!("{a};tag={t}{p}"))
                .boxed(),
        );
        let to = line(
            name("To", Some("t")),
            (address(), header_params(&["tag"]))
                .prop_map(|(a, p)| format!("{a}{p}"))
                .boxed(),
        );
        let call_id = line(
            name("Call-ID", Some("i")),
            r#"[A-Za-z0-9.!%*_+`'~()<>:\\/\[\]?{}"-]{1,24}(@[A-Za-z0-9.-]{1,16})?"#.boxed(),
        );
        let cseq = line(
            name("CSeq", None),
            (0u32..=0x7fff_ffff, 0usize..3, lws())
                .prop_map(move |(n, zeros, sp)| format!("{}{n}{sp}{method}", "0".repeat(zeros)))
                .boxed(),
        );
        let max_forwards = option::of(line(
            name("Max-Forwards", None),
            (0u8..=255, 1usize..5)
                .prop_map(|(n, w)| format!("{n:0w$}"))
                .boxed(),
        ));
        let contact = option::of(line(name("Contact", Some("m")), contact_value()));
        let expires = option::of(line(name("Expires", None), "[0-9]{1,12}".boxed()));
        let body = vec(any::<u8>(), 0..600);
        let content_type = line(
            name("Content-Type", Some("c")),
            select(
                &[
                    "text/plain",
                    "application/sdp",
                    "text/plain; charset=UTF-8",
                    "multipart/mixed;boundary=\"a b\"",
                ][..],
            )
            .prop_map(str::to_owned)
            .boxed(),
        );
        let length_form = (
            name("Content-Length", Some("l")),
            select(&["", " ", "\t"][..]),
            select(&["", " ", "  ", "\r\n "][..]),
            0usize..4,
        );
        (
            start,
            (vias, from, to, call_id, cseq),
            (max_forwards, contact, expires),
            vec(extra_header(), 0..6),
            (body, content_type, length_form),
        )
            .prop_flat_map(|(start, mandatory, optional, extra, body)| {
                let (vias, from, to, call_id, cseq) = mandatory;
                let (max_forwards, contact, expires) = optional;
                let (body, content_type, (cl_name, before, after, zeros)) = body;
                let mut lines = vias;
                lines.extend([from, to, call_id, cseq]);
                lines.extend(max_forwards);
                lines.extend(contact);
                lines.extend(expires);
                lines.extend(extra);
                if !body.is_empty() {
                    lines.push(content_type);
                }
                lines.push(format!(
                    "{cl_name}{before}:{after}{}{}\r\n",
                    "0".repeat(zeros),
                    body.len()
                ));
                (Just(start), Just(lines).prop_shuffle(), Just(body))
            })
            .prop_map(|(start, lines, body)| {
                let mut wire = start.into_bytes();
                for l in lines {
                    wire.extend_from_slice(l.as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&body);
                Wire(wire)
            })
    })
}

// --- damage -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"\r",
        b"\n",
        b" ",
        b"\t",
        b":",
        b";",
        b",",
        b"<",
        b">",
        b"\"",
        b"\\",
        b"%",
        b"@",
        b"[",
        b"]",
        b"=",
        b"\0",
        b"\xff",
        b"\xc3",
        b"0",
        b"-1",
        b"99999999999999999999",
        b"l: 5\r\n",
        b"\r\n ",
        b"SIP/2.0",
    ];
    prop_oneof![
        (any::<Index>(), 1u8..).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (
            any::<Index>(),
            prop_oneof![
                select(interesting).prop_map(<[u8]>::to_vec),
                vec(any::<u8>(), 1..4)
            ]
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn damage(mut wire: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if wire.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, mask) => {
                let i = i.index(wire.len());
                wire[i] ^= mask;
            }
            Mutation::Insert(i, bytes) => {
                let i = i.index(wire.len() + 1);
                wire.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i.index(wire.len());
                wire.drain(i..(i + n).min(wire.len()));
            }
            Mutation::Truncate(i) => wire.truncate(i.index(wire.len())),
        }
    }
    wire
}

// --- what every input must survive --------------------------------------------------------

fn poke_address(a: &NameAddr) {
    let _ = (a.tag(), a.display_name(), a.to_string());
    if let Some(u) = a.sip_uri() {
        let _ = (u.aor(), u.user_unescaped(), u.to_string());
    }
    let _ = (a.expires(), a.q(), a.instance(), a.reg_id(), a.outbound());
}

/// Every accessor a proxy or registrar uses, then what a proxy does to forward and answer.
/// Nothing may panic, and a message that parsed serializes to bytes that parse back to the
/// same bytes.
fn poke(m: &Message) {
    let _ = m.validate();
    let _ = (m.is_request(), m.method(), m.status());
    if let Some(u) = m.request_uri() {
        let text = u.to_string();
        let _ = u.scheme();
        Uri::parse(&text).unwrap_or_else(|e| panic!("Request-URI {text:?} reprints badly: {e}"));
    }
    for v in m.vias().into_iter().flatten().chain(m.top_via()) {
        let _ = (v.branch(), v.has_rfc3261_branch(), v.received(), v.rport());
        let _ = (v.sent_by(), v.to_string());
    }
    for a in [m.from(), m.to()].into_iter().flatten() {
        poke_address(&a);
    }
    let _ = (m.call_id(), m.cseq().map(|c| c.to_string()));
    let _ = (m.max_forwards(), m.expires());
    for c in m.contacts().into_iter().flatten() {
        if let Contact::Addr(a) = c {
            poke_address(&a);
        }
    }
    for n in [
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Path,
        HeaderName::PAssertedIdentity,
    ] {
        for a in m.addresses(n).into_iter().flatten() {
            poke_address(&a);
        }
    }
    for n in [
        HeaderName::Supported,
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Unsupported,
    ] {
        let _ = m.option_tags(n);
    }
    for h in m.headers.iter() {
        let _ = (h.elements(), h.name.as_str(), h.name.is_list());
    }

    let out = m.to_bytes();
    let again = Message::parse(out.clone()).expect("a serialized message parses");
    assert_eq!(again.to_bytes(), out, "serialization is not stable");

    // Forward: pop the top Via and push ours, count down Max-Forwards, retarget.
    let mut fwd = m.clone();
    let _ = fwd.headers.remove_first_value(&HeaderName::Via);
    fwd.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/TLS 192.0.2.1:5061;branch=z9hG4bKfwd",
    );
    if let Ok(Some(n)) = m.max_forwards() {
        fwd.headers
            .set(HeaderName::MaxForwards, n.saturating_sub(1).to_string());
    }
    if let Some(u) = m.request_uri() {
        fwd.set_request_uri(u.clone());
    }
    Message::parse(fwd.to_bytes()).expect("a forwarded message parses");
    if m.is_request() {
        let r = Message::response_to(m, 200, "OK");
        let _ = r.validate();
        Message::parse(r.to_bytes()).expect("a response parses");
    }
}

/// Feeds `input` to a decoder in chunks of the given sizes (cycled), checking progress and
/// the buffer bound, and returns the frames.
fn decode_chunked(input: &[u8], cuts: &[usize], limits: Limits) -> Vec<Frame> {
    let bound = limits.max_header_bytes + limits.max_body_bytes + 4;
    let mut decoder = StreamDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut rest = input;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*cut.next().unwrap()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Some(f) => {
                    assert!(buf.len() < before, "a frame consumed nothing: {f:?}");
                    frames.push(f);
                }
                None => {
                    assert!(
                        buf.len() <= bound,
                        "{} bytes held, more than {bound}",
                        buf.len()
                    );
                    break;
                }
            }
        }
    }
    frames
}

fn small_limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (16usize..600, 0usize..300, 1usize..20).prop_map(|(h, b, n)| Limits {
            max_header_bytes: h,
            max_body_bytes: b,
            max_headers: n,
        }),
    ]
}

/// Streams built from the pieces that steer the decoder: keep-alives, line ends, framing
/// headers, start lines, and noise.
fn stream_pieces() -> impl Strategy<Value = Vec<u8>> {
    let pieces: &[&[u8]] = &[
        b"\r\n",
        b"\r\n\r\n",
        b"\r",
        b"\n",
        b"OPTIONS sip:a@b SIP/2.0\r\n",
        b"SIP/2.0 200 OK\r\n",
        b"Via: SIP/2.0/TLS h;branch=z9hG4bK1\r\n",
        b"Content-Length: 5\r\n",
        b"l: 0\r\n",
        b"l: 99999999\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length:\r\n 3\r\n",
        b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        b"hello",
    ];
    vec(
        prop_oneof![
            3 => select(pieces).prop_map(<[u8]>::to_vec),
            1 => vec(any::<u8>(), 1..40),
        ],
        0..40,
    )
    .prop_map(|ps| ps.concat())
}

// --- the properties -----------------------------------------------------------------------

proptest! {
    #[test]
    fn well_formed_messages_parse_validate_and_round_trip(m in message()) {
        let parsed = Message::parse(Bytes::from(m.0.clone()));
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("parse: {e}"))),
        };
        if let Err(e) = parsed.validate() {
            return Err(TestCaseError::fail(format!("validate: {e}")));
        }
        prop_assert_eq!(Wire(parsed.to_bytes().to_vec()), m);
        poke(&parsed);
    }

    #[test]
    fn well_formed_messages_survive_any_stream_cutting(
        m in message(),
        ping in any::<bool>(),
        pong in any::<bool>(),
        cuts in vec(1usize..300, 1..16),
    ) {
        let mut input = Vec::new();
        if ping {
            input.extend_from_slice(b"\r\n\r\n");
        }
        input.extend_from_slice(&m.0);
        if pong {
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(&m.0);
        let frames = decode_chunked(&input, &cuts, Limits::default());
        let messages: Vec<_> = frames
            .iter()
            .filter_map(|f| match f {
                Frame::Message(m) => Some(m),
                Frame::Ping => None,
                Frame::Invalid { error, .. } => panic!("{error}"),
            })
            .collect();
        prop_assert_eq!(frames.len() - messages.len(), usize::from(ping));
        prop_assert_eq!(messages.len(), 2);
        for got in messages {
            prop_assert_eq!(&Wire(got.to_bytes().to_vec()), &m);
            if let Err(e) = got.validate() {
                return Err(TestCaseError::fail(format!("validate: {e}")));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        if let Ok(m) = Message::parse(Bytes::from(bytes.clone())) {
            poke(&m);
        }
        let _ = Uri::parse(&String::from_utf8_lossy(&bytes));
        let _ = NameAddr::parse(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(
        m in message(),
        mutations in vec(mutation(), 1..5),
        cuts in vec(1usize..100, 1..8),
        limits in small_limits(),
    ) {
        let wire = damage(m.0, &mutations);
        if let Ok(m) = Message::parse(Bytes::from(wire.clone())) {
            poke(&m);
        }
        for f in decode_chunked(&wire, &cuts, limits) {
            if let Frame::Message(m) = f {
                poke(&m);
            }
        }
    }

    #[test]
    fn the_stream_decoder_progresses_and_stays_bounded(
        input in prop_oneof![vec(any::<u8>(), 0..2048), stream_pieces()],
        cuts in vec(1usize..200, 1..8),
        limits in small_limits(),
    ) {
        for f in decode_chunked(&input, &cuts, limits) {
            if let Frame::Message(m) = f {
                poke(&m);
            }
        }
    }
}
