//! BDAT chunks: the same rules as DATA whatever the chunk boundaries; splitting a message differently
//! never changes what is stored or whether it is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_smtp::{BareNewlines, BdatDecoder};

fuzz_target!(|input: (u16, bool, &[u8])| {
    let (split, normalize, data) = input;
    let policy = if normalize { BareNewlines::Normalize } else { BareNewlines::Reject };
    let mut whole = BdatDecoder::new(policy);
    let mut out_whole = Vec::new();
    whole.feed(data, &mut out_whole);
    whole.finish(&mut out_whole);
    let at = (split as usize).min(data.len());
    let mut parts = BdatDecoder::new(policy);
    let mut out_parts = Vec::new();
    parts.feed(&data[..at], &mut out_parts);
    parts.feed(&data[at..], &mut out_parts);
    parts.finish(&mut out_parts);
    assert_eq!(out_parts, out_whole);
    assert_eq!(parts.violation(), whole.violation());
    if normalize {
        // Normalized output is CRLF-canonical.
        let mut prev = 0u8;
        for b in &out_whole {
            if *b == b'\n' {
                assert_eq!(prev, b'\r');
            }
            prev = *b;
        }
    }
});
