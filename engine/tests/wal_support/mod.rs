//! Helpers shared by the WAL tests (and by the crash child, which includes
//! this file by path).
#![allow(dead_code)]

use engine::wal::{IoMode, Options};
use std::time::Duration;

/// Both I/O paths: every WAL test runs on each.
pub const PATHS: [IoMode; 2] = [IoMode::IoUring, IoMode::Portable];

/// Small segments so tests roll often and preallocate quickly.
pub fn small(io: IoMode) -> Options {
    Options {
        segment_bytes: 64 * 1024,
        record_bytes_max: 8 * 1024,
        queue_bytes_max: 32 * 1024,
        io,
        writer_spin: Duration::from_micros(20),
        waiter_spin: Duration::from_micros(20),
        ..Options::default()
    }
}

/// Deterministic payload for (stream, n): its length and bytes are checked
/// after recovery, so a record that comes back damaged is caught.
pub fn payload(stream: u32, n: u64) -> Vec<u8> {
    let mut len = 16 + ((n * 7919 + stream as u64 * 104_729) % 300) as usize;
    if n % 37 == 36 {
        // Now and then a record that spans several sectors.
        len += 4000;
    }
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&stream.to_le_bytes());
    p.extend_from_slice(&n.to_le_bytes());
    p.extend_from_slice(&(len as u32).to_le_bytes());
    let mut x = (n << 20) ^ stream as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(x as u8);
    }
    p
}

/// Decodes a payload made by `payload`, checking every byte.
pub fn check_payload(p: &[u8]) -> Option<(u32, u64)> {
    if p.len() < 16 {
        return None;
    }
    let stream = u32::from_le_bytes(p[0..4].try_into().unwrap());
    let n = u64::from_le_bytes(p[4..12].try_into().unwrap());
    (payload(stream, n) == p).then_some((stream, n))
}
