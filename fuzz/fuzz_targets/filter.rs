//! The filter language: any text parses or fails with an error, never a panic, and every filter it accepts
//! renders to a text that parses back to the same filter (what a bulk action acts on is what was asked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_filter::{Kind, Property, parse};

const PROPS: &[Property] = &[
    Property { name: "MessageCount", kind: Kind::Int },
    Property { name: "Status", kind: Kind::Enum(&["Active", "Ready", "Retry", "Suspended"]) },
    Property { name: "FromAddress", kind: Kind::Str },
    Property { name: "Size", kind: Kind::Size },
    Property { name: "MessageLatency", kind: Kind::Duration },
    Property { name: "DateReceived", kind: Kind::Time },
    Property { name: "Recipients", kind: Kind::List },
];

fn time(s: &str) -> Option<i64> {
    s.parse().ok()
}

fuzz_target!(|text: &str| {
    if let Ok(f) = parse(text, PROPS, time) {
        let rendered = f.render(PROPS, |ms| ms.to_string());
        assert_eq!(parse(&rendered, PROPS, time), Ok(f), "{rendered:?} from {text:?}");
    }
});
