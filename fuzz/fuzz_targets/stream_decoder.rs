//! The stream decoder under arbitrary cuts; the body lives in the sip crate's test support so
//! that the regression tests replay found inputs with the very same checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sip/tests/support/stream_decoder.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
