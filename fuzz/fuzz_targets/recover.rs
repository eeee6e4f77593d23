//! Recovery over arbitrary files: whatever bytes a database file holds, `QueueDb::open` returns `Ok` or an
//! `OpenError`, never panics. The first byte picks the file (`trn.log`, a closed log, a generation or
//! `trn.chk`) and whether the rest is the whole file or the payloads of frames the harness wraps in a valid
//! header and valid checksums (so that record decoding and replay are reached, not only the CRC check).
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice_queue_db::sim::SimStorage;
use sluice_queue_db::{Options, QueueDb};

/// The salt of the headers the harness writes.
const SALT: u64 = 0x5a17;

/// A 32- or 40-byte header: magic, format version 2, then the fields each file has.
fn header(kind: u8, first_seq: u64) -> Vec<u8> {
    let mut h = Vec::new();
    match kind {
        // Log: magic | version | reserved | salt | first_seq.
        0 | 1 => {
            h.extend_from_slice(b"SLUICELG");
            h.extend_from_slice(&2u32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&SALT.to_le_bytes());
            h.extend_from_slice(&first_seq.to_le_bytes());
        }
        // Generation: magic | version | number | created_ms | salt.
        2 => {
            h.extend_from_slice(b"SLUICEGN");
            h.extend_from_slice(&2u32.to_le_bytes());
            h.extend_from_slice(&1u32.to_le_bytes());
            h.extend_from_slice(&1_795_000_000_000i64.to_le_bytes());
            h.extend_from_slice(&SALT.to_le_bytes());
        }
        // Checkpoint: magic | version | cursor generation | salt | next_seq | cursor offset.
        _ => {
            h.extend_from_slice(b"SLUICECK");
            h.extend_from_slice(&2u32.to_le_bytes());
            h.extend_from_slice(&0u32.to_le_bytes());
            h.extend_from_slice(&SALT.to_le_bytes());
            h.extend_from_slice(&first_seq.to_le_bytes());
            h.extend_from_slice(&0u64.to_le_bytes());
        }
    }
    h
}

/// One frame around `payload`, with a correct checksum.
fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(b"SLTF");
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    let mut crc = crc32c::crc32c(&SALT.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &out[start + 4..start + 16]);
    crc = crc32c::crc32c_append(crc, &out[start + 20..]);
    out[start + 16..start + 20].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else { return };
    let kind = pick & 3;
    let name = match kind {
        0 => "trn.log",
        1 => "trn-0000000000000000.log",
        2 => "gen-2026112205-1.que",
        _ => "trn.chk",
    };
    let bytes = if pick & 4 == 0 {
        rest.to_vec()
    } else {
        // Framed: payloads separated by 0xFF 0xFE, numbered from 0 (a checkpoint's frames must be).
        let mut file = header(kind, 0);
        let mut seq = 0;
        let mut parts = Vec::new();
        let mut from = 0;
        for i in 0..rest.len().saturating_sub(1) {
            if rest[i] == 0xFF && rest[i + 1] == 0xFE && i >= from {
                parts.push(&rest[from..i]);
                from = i + 2;
            }
        }
        parts.push(&rest[from.min(rest.len())..]);
        for p in parts {
            frame(seq, p, &mut file);
            seq += 1;
        }
        file
    };
    let sim = SimStorage::new();
    sim.set_contents(name, bytes);
    // No reserve files: writing 2 MB of zeros per run would be most of the time spent.
    let opts = Options { queue_depth: 16, reserve_size: 0, ..Options::default() };
    if let Ok((db, _, _)) = QueueDb::open(Arc::new(sim.process()), opts) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(db.close());
    }
});
