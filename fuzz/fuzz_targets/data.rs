//! DATA framing: the data ends exactly at the first wire `<CRLF>.<CRLF>` (no smuggling variant ends it),
//! and the result does not depend on how the input is split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_smtp::{BareNewlines, DataDecoder, DataStatus};

fn first_end(input: &[u8]) -> Option<usize> {
    // The decoder starts at the beginning of a line: as if `CRLF` came before the input.
    let mut wire = b"\r\n".to_vec();
    wire.extend_from_slice(input);
    wire.windows(5).position(|w| w == b"\r\n.\r\n").map(|p| p + 5 - 2)
}

fuzz_target!(|input: (u16, bool, &[u8])| {
    let (split, normalize, data) = input;
    let policy = if normalize { BareNewlines::Normalize } else { BareNewlines::Reject };
    let mut whole = DataDecoder::new(policy);
    let mut out_whole = Vec::new();
    let status = whole.feed(data, &mut out_whole);
    match (status, first_end(data)) {
        (DataStatus::Done { consumed }, Some(end)) => assert_eq!(consumed, end),
        (DataStatus::NeedMore, None) => {}
        (s, e) => panic!("status {s:?}, first CRLF.CRLF ends at {e:?} in {data:?}"),
    }
    // The same input in two reads gives the same message and the same end.
    let at = (split as usize).min(data.len());
    let mut parts = DataDecoder::new(policy);
    let mut out_parts = Vec::new();
    let first = parts.feed(&data[..at], &mut out_parts);
    let total = match first {
        DataStatus::Done { consumed } => DataStatus::Done { consumed },
        DataStatus::NeedMore => match parts.feed(&data[at..], &mut out_parts) {
            DataStatus::Done { consumed } => DataStatus::Done { consumed: at + consumed },
            DataStatus::NeedMore => DataStatus::NeedMore,
        },
    };
    assert_eq!(total, status);
    assert_eq!(out_parts, out_whole);
    assert_eq!(parts.violation(), whole.violation());
    // With reject, a clean message holds no bare CR or LF.
    if !normalize && whole.violation().is_none() {
        let mut prev = 0u8;
        for (i, b) in out_whole.iter().enumerate() {
            if *b == b'\n' {
                assert_eq!(prev, b'\r', "bare LF at {i}");
            }
            if prev == b'\r' {
                assert_eq!(*b, b'\n', "bare CR at {i}");
            }
            prev = *b;
        }
    }
});
