//! The command parser: never panics, and every command it accepts renders to a line that parses back to
//! the same command (what the relay sends is what it understood).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_smtp::parse_command;

fuzz_target!(|line: &[u8]| {
    for smtputf8 in [false, true] {
        if let Ok(cmd) = parse_command(line, smtputf8) {
            let rendered = cmd.render();
            let again = parse_command(rendered.trim_end_matches("\r\n").as_bytes(), smtputf8);
            assert_eq!(again.as_ref(), Ok(&cmd), "{rendered:?} from {line:?}");
        }
    }
});
