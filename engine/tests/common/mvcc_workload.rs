//! The command stream of the MVCC crash test: command `i` of stream `seed`
//! is a pure function of both, so the child (which applies it, and is
//! killed) and the test (which applies it without a crash) agree exactly.
//! Shared with `src/bin/mvcc-crash-child.rs` through `#[path]`.

#![allow(dead_code)]

use engine::mvcc::*;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn key(n: u64) -> Vec<u8> {
    format!("key/{n:03}").into_bytes()
}

fn value(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn put(r: &mut SplitMix, i: u64, k: u64) -> PutRequest {
    let len = if r.below(50) == 0 {
        6000
    } else {
        r.below(200) as usize
    };
    PutRequest {
        key: key(k),
        value: value(i, len),
        lease: if r.below(8) == 0 {
            1 + r.below(4) as i64
        } else {
            0
        },
        prev_kv: r.below(4) == 0,
        ..Default::default()
    }
}

pub fn command(seed: u64, i: u64) -> Command {
    let mut r = SplitMix(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
    match r.below(100) {
        0..=54 => {
            let k = r.below(64);
            Command::Put(put(&mut r, i, k))
        }
        55..=64 => {
            let a = r.below(64);
            let end = if r.below(2) == 0 {
                vec![]
            } else {
                key(a + 1 + r.below(4))
            };
            Command::DeleteRange(DeleteRangeRequest {
                key: key(a),
                range_end: end,
                prev_kv: r.below(2) == 0,
            })
        }
        65..=79 => {
            let base = r.below(60);
            let success = (0..1 + r.below(4))
                .map(|j| RequestOp::Put(put(&mut r, i, base + j)))
                .collect();
            Command::Txn(TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Greater,
                    target: CompareTarget::Version(r.below(3) as i64),
                    key: key(base),
                    range_end: vec![],
                }],
                success,
                failure: vec![
                    RequestOp::DeleteRange(DeleteRangeRequest {
                        key: key(base + 10),
                        range_end: key(base + 12),
                        prev_kv: false,
                    }),
                    RequestOp::Range(RangeRequest {
                        key: key(0),
                        range_end: vec![0],
                        limit: 3,
                        ..Default::default()
                    }),
                ],
            })
        }
        80..=85 => Command::LeaseGrant(LeaseGrantRequest {
            ttl: 1000,
            id: 1 + r.below(4) as i64,
        }),
        86..=89 => Command::LeaseRevoke(LeaseRevokeRequest {
            id: 1 + r.below(4) as i64,
        }),
        90..=92 => Command::Compact(CompactionRequest {
            revision: (i / 2) as i64,
            physical: false,
        }),
        93..=94 => Command::LeaseCheckpoint(LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id: 1 + r.below(4) as i64,
                remaining_ttl: 500,
            }],
        }),
        _ => {
            // A run of puts in one txn: a revision with many sub revisions.
            let base = r.below(32);
            Command::Txn(TxnRequest {
                success: (0..20)
                    .map(|j| RequestOp::Put(put(&mut r, i, base + j)))
                    .collect(),
                ..Default::default()
            })
        }
    }
}
