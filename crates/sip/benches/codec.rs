//! What the codec costs per message: parse + validate + serialize of a typical client
//! MESSAGE (about 1 KB, as sent over TLS) and of RFC 4475's tortuous INVITE (wsinv), and a
//! proxy's forward (parse, top Via, push a Via, count down Max-Forwards, serialize).
//!
//! Before criterion times them, a counting global allocator prints the heap allocations
//! each case makes per message. Run with `cargo bench -p siplab-sip --bench codec`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use siplab_sip::{HeaderName, Message};

/// The system allocator, counting calls and bytes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters have no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size(), Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size(), Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// RFC 4475 section 3.1.1.1, byte for byte.
const WSINV: &[u8] = include_bytes!("../../../../shared/testdata/rfc4475/wsinv.dat");

/// A MESSAGE as a TLS client sends it: rport and an RFC 3261 branch in its Via, tags,
/// an outbound Contact, the usual capability headers and a 500-byte text body.
fn message_1k() -> Bytes {
    let sentence = "The quick brown fox jumps over the lazy dog, and the lazy dog, unmoved, \
                    sends back a short reply over the same TLS connection. ";
    let body: String = sentence.chars().cycle().take(500).collect();
    let head = format!(
        "MESSAGE sip:bob@fabrikam.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS 10.20.30.40:50712;branch=z9hG4bK.a8Jd72kLq0Wm;rport;alias\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice Liddell\" <sip:alice@contoso.test>;tag=8f3c2d1e9a\r\n\
         To: \"Bob\" <sip:bob@fabrikam.test>\r\n\
         Call-ID: 6a2f9c0e-4b7d-4d1e-9a3f-2c5e8b7d1f04\r\n\
         CSeq: 21 MESSAGE\r\n\
         Contact: <sip:alice@10.20.30.40:50712;transport=tls;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-00163e5f2a11>\"\r\n\
         User-Agent: siplab-client/0.1.0 (Linux x86_64)\r\n\
         Supported: path, outbound, gruu\r\n\
         P-Asserted-Identity: \"Alice Liddell\" <sip:alice@contoso.test>\r\n\
         Content-Type: text/plain;charset=UTF-8\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    // Leaked once so that handing the message to the parser allocates nothing.
    let wire = [head.into_bytes(), body.into_bytes()].concat();
    Bytes::from_static(Box::leak(wire.into_boxed_slice()))
}

/// What every server does with a message it receives.
fn parse_validate_serialize(wire: &Bytes) -> Bytes {
    let m = Message::parse(wire.clone()).expect("parses");
    m.validate().expect("valid");
    m.to_bytes()
}

/// What a proxy does to forward a request: read the top Via (the transaction key), put
/// its own on top, count down Max-Forwards, serialize.
fn proxy_forward(wire: &Bytes) -> Bytes {
    let mut m = Message::parse(wire.clone()).expect("parses");
    let top = m.top_via().expect("a top Via");
    black_box(top.branch());
    m.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bK.proxy.0a1b2c3d",
    );
    let hops = m
        .max_forwards()
        .expect("a valid Max-Forwards")
        .unwrap_or(70);
    m.headers
        .set(HeaderName::MaxForwards, hops.saturating_sub(1).to_string());
    m.to_bytes()
}

type Case = (&'static str, fn(&Bytes) -> Bytes, Bytes);

fn cases() -> Vec<Case> {
    let message = message_1k();
    let wsinv = Bytes::from_static(WSINV);
    vec![
        (
            "parse_validate_serialize/message_1k",
            parse_validate_serialize,
            message.clone(),
        ),
        (
            "parse_validate_serialize/wsinv",
            parse_validate_serialize,
            wsinv.clone(),
        ),
        ("proxy_forward/message_1k", proxy_forward, message),
        ("proxy_forward/wsinv", proxy_forward, wsinv),
    ]
}

/// Heap allocations (and bytes) per message, averaged over many runs after a warm-up.
fn report_allocations() {
    const RUNS: usize = 1000;
    println!(
        "{:<40} {:>7} {:>12} {:>13}",
        "case", "bytes", "allocs/msg", "alloc B/msg"
    );
    for (name, f, wire) in cases() {
        black_box(f(&wire));
        let (n0, b0) = (ALLOCATIONS.load(Relaxed), ALLOCATED_BYTES.load(Relaxed));
        for _ in 0..RUNS {
            black_box(f(black_box(&wire)));
        }
        let n = (ALLOCATIONS.load(Relaxed) - n0) as f64 / RUNS as f64;
        let b = (ALLOCATED_BYTES.load(Relaxed) - b0) as f64 / RUNS as f64;
        println!("{name:<40} {:>7} {n:>12.1} {b:>13.0}", wire.len());
    }
}

fn codec(c: &mut Criterion) {
    for (name, f, wire) in cases() {
        let (group, case) = name.split_once('/').expect("group/case");
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(case, |b| b.iter(|| f(black_box(&wire))));
        g.finish();
    }
}

criterion_group!(benches, codec);

fn main() {
    report_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
