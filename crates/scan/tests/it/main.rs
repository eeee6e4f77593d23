//! Integration tests of sluice-scan: both engines on one decoded message, and robustness against
//! arbitrary input.

use sluice_scan::SourceFile;
use sluice_scan::antispam::RuleSet;
use sluice_scan::antivirus::{EICAR, Signatures};
use sluice_scan::mime;

/// A small deterministic pseudo-random generator (xorshift64*), so the fuzz-ish test needs no
/// new dependency and fails reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEED_MESSAGES: &[&str] = &[
    "Subject: hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 =\r\nx\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--c--\r\n\r\n--b\r\nContent-Type: application/octet-stream; name=a\r\nContent-Transfer-Encoding: base64\r\n\r\nWDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=\r\n--b--\r\n",
    "From: =?utf-8?b?w6k=?= <a@b>\r\nSubject: =?bogus?q?x?=\r\n\r\nbody",
    "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeAoKeQo=\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    match rng.below(4) {
        0 => bytes.truncate(rng.below(bytes.len() + 1)),
        1 => {
            for _ in 0..1 + rng.below(8) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next() as u8;
                }
            }
        }
        2 => {
            let len = rng.below(300);
            bytes = (0..len).map(|_| rng.next() as u8).collect();
        }
        _ => {
            let at = rng.below(bytes.len() + 1);
            let insert =
                [&b"\r\n--b\r\n"[..], b"\r\n\r\n", b"=?", b"Content-Type: multipart/mixed; boundary=b\r\n", EICAR];
            let piece = insert[rng.below(insert.len())];
            bytes.splice(at..at, piece.iter().copied());
        }
    }
    bytes
}

#[test]
fn random_and_truncated_input_never_panics() {
    let rules = RuleSet::builtin();
    let signatures = Signatures::builtin();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..3000 {
        let seed = SEED_MESSAGES[round % SEED_MESSAGES.len()].as_bytes();
        let input = mutate(&mut rng, seed);
        let verdict = rules.check(&input);
        assert!(verdict.scl <= 9);
        assert!(verdict.score.is_finite());
        let _ = signatures.scan(&input);
        if let Some((stripped, detections)) = signatures.strip(&input) {
            assert!(!detections.is_empty());
            let _ = signatures.scan(&stripped);
        }
    }
}

#[test]
fn every_prefix_of_a_message_is_handled() {
    let rules = RuleSet::builtin();
    let signatures = Signatures::builtin();
    let seed = SEED_MESSAGES[0].as_bytes();
    for end in 0..=seed.len() {
        let _ = rules.check(&seed[..end]);
        let _ = signatures.scan(&seed[..end]);
        let _ = signatures.strip(&seed[..end]);
    }
}

#[test]
fn both_engines_share_one_decoding() {
    let rules = RuleSet::compile(&[SourceFile {
        name: "local.cf".to_owned(),
        bytes: b"body FORWARDED /Forwarded/\nheader SUBJ Subject =~ /^fwd$/\n".to_vec(),
    }])
    .0;
    let signatures = Signatures::builtin();
    let msg = format!(
        "Subject: fwd\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --o\r\nContent-Type: application/x; name=e.com\r\n\r\n{}\r\n--o--\r\n",
        std::str::from_utf8(EICAR).expect("ASCII")
    );
    let decoded = mime::decode(msg.as_bytes());
    let verdict = rules.check_decoded(&decoded);
    assert_eq!(verdict.hits, vec!["FORWARDED", "SUBJ"]);
    let detection = signatures.scan_decoded(&decoded).expect("EICAR");
    assert_eq!(detection.part, "e.com");
    assert_eq!(verdict, rules.check(msg.as_bytes()));
}

/// mail-parser drops nested messages recursively; `Decoded` takes them apart iteratively.
#[test]
fn deeply_nested_messages_do_not_overflow_the_stack() {
    let depth = 50_000;
    let mut msg = b"Subject: deep\r\n".to_vec();
    msg.extend(b"Content-Type: message/rfc822\r\n\r\n".repeat(depth));
    msg.extend_from_slice(b"Subject: bottom\r\n\r\n");
    msg.extend_from_slice(EICAR);
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let _ = RuleSet::builtin().check(&msg);
            let _ = Signatures::builtin().scan(&msg);
        })
        .expect("spawn");
    assert!(handle.join().is_ok());
}
