//! The deterministic workload shared by the crash child and the test that
//! checks it: commit `n` always makes the same changes, so the expected
//! contents after any commit can be recomputed.

#![allow(dead_code)]

use std::collections::BTreeMap;

pub const BUCKET: &[u8] = b"crash";
pub const MARKER: &[u8] = b"\xffcommit";
const KEY_SPACE: u64 = 3000;

pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// splitmix64: a tiny, seedable generator, identical in both processes.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn workload(n: u64) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut s = mix(n);
    let count = 1 + s % 40;
    for i in 0..count {
        s = mix(s ^ i);
        let key = format!("key-{:06}", s % KEY_SPACE).into_bytes();
        if s.is_multiple_of(5) {
            ops.push(Op::Delete(key));
        } else {
            // Mostly small values, some overflow spans of several pages.
            let len = if s.is_multiple_of(17) {
                3000 + (s >> 8) % 9000
            } else {
                (s >> 8) % 300
            } as usize;
            let byte = (n as u8) ^ (i as u8);
            ops.push(Op::Put(key, vec![byte; len]));
        }
    }
    ops
}

pub fn marker(v: Option<&[u8]>) -> u64 {
    v.map(|b| u64::from_le_bytes(b.try_into().expect("8-byte marker")))
        .unwrap_or(0)
}

/// The expected contents after commit `n` (marker included).
pub fn expected(n: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for c in 1..=n {
        for op in workload(c) {
            match op {
                Op::Put(k, v) => {
                    model.insert(k, v);
                }
                Op::Delete(k) => {
                    model.remove(&k);
                }
            }
        }
        model.insert(MARKER.to_vec(), c.to_le_bytes().to_vec());
    }
    model
}
