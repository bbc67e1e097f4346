//! Key choice: uniform, sequential, YCSB's scrambled zipfian, and latest.

use crate::workload::{Distribution, Workload};
use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The YCSB zipfian constant.
const ZIPF_THETA: f64 = 0.99;

/// Zipfian over `0..n` by Gray et al., "Quickly Generating Billion-Record
/// Synthetic Databases" (SIGMOD 1994), as YCSB's ZipfianGenerator does it.
#[derive(Clone, Debug)]
pub struct Zipfian {
    n: u64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
    half_pow_theta: f64,
}

impl Zipfian {
    pub fn new(n: u64) -> Self {
        assert!(n >= 1);
        let zeta = |count: u64| {
            (1..=count)
                .map(|i| 1.0 / (i as f64).powf(ZIPF_THETA))
                .sum::<f64>()
        };
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2.min(n));
        let alpha = 1.0 / (1.0 - ZIPF_THETA);
        let eta = if n > 1 {
            (1.0 - (2.0 / n as f64).powf(1.0 - ZIPF_THETA)) / (1.0 - zeta_2 / zeta_n)
        } else {
            0.0
        };
        Self {
            n,
            alpha,
            zeta_n,
            eta,
            half_pow_theta: 1.0 + 0.5f64.powf(ZIPF_THETA),
        }
    }

    /// A rank in `0..n`; rank 0 is the most popular.
    pub fn next(&self, rng: &mut SmallRng) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < self.half_pow_theta {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// FNV-1a of the rank, so popular keys are spread over the key space
/// instead of clustering at its start (YCSB's ScrambledZipfianGenerator).
fn scramble(rank: u64, n: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in rank.to_le_bytes() {
        hash ^= byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % n
}

/// Shared by every client of a run: how many keys exist (grows with inserts).
#[derive(Debug)]
pub struct KeySpace {
    pub size: u64,
    /// Next key index an insert creates (YCSB D/E); starts at `size`.
    pub insert_next: AtomicU64,
    zipf: Zipfian,
}

impl KeySpace {
    pub fn new(size: u64) -> Arc<Self> {
        Arc::new(Self {
            size,
            insert_next: AtomicU64::new(size),
            zipf: Zipfian::new(size),
        })
    }
}

/// One client's key chooser.
pub struct KeyGen {
    space: Arc<KeySpace>,
    distribution: Distribution,
    sequential: bool,
    next_seq: u64,
    stride: u64,
    key_size: usize,
}

impl KeyGen {
    pub fn new(space: Arc<KeySpace>, wl: &Workload, client: usize, clients: usize) -> Self {
        Self {
            space,
            distribution: wl.distribution(),
            sequential: wl.sequential_keys,
            next_seq: client as u64,
            stride: clients as u64,
            key_size: wl.key_size,
        }
    }

    /// The next key index to touch.
    pub fn next_index(&mut self, rng: &mut SmallRng) -> u64 {
        let n = self.space.size;
        if self.sequential {
            let i = self.next_seq % n;
            self.next_seq += self.stride;
            return i;
        }
        match self.distribution {
            Distribution::Uniform => rng.gen_range(0..n),
            Distribution::Zipfian => scramble(self.space.zipf.next(rng), n),
            Distribution::Latest => {
                let newest = self.space.insert_next.load(Ordering::Relaxed).max(1) - 1;
                newest.saturating_sub(self.space.zipf.next(rng))
            }
        }
    }

    /// Claims a fresh key index for an insert.
    pub fn insert_index(&self) -> u64 {
        self.space.insert_next.fetch_add(1, Ordering::Relaxed)
    }

    pub fn key(&self, index: u64) -> Vec<u8> {
        format_key(index, self.key_size)
    }
}

/// Key `index` as a zero-padded decimal of `key_size` bytes, so keys sort in
/// index order and a prefix of `key_size - 2` bytes covers 100 of them.
pub fn format_key(index: u64, key_size: usize) -> Vec<u8> {
    let digits = index.to_string();
    let mut key = vec![b'0'; key_size.saturating_sub(digits.len())];
    key.extend_from_slice(digits.as_bytes());
    key.truncate(key_size.max(digits.len()));
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn keys_are_fixed_width_and_ordered() {
        assert_eq!(format_key(42, 8), b"00000042");
        assert!(format_key(9, 8) < format_key(10, 8));
    }

    /// Zipfian(0.99) over 1000 ranks: rank 0 alone draws about 1/zeta(1000)
    /// ≈ 13% of the samples, and the top 10% of ranks well over half.
    #[test]
    fn zipfian_is_skewed() {
        let z = Zipfian::new(1000);
        let mut rng = SmallRng::seed_from_u64(7);
        let draws = 100_000;
        let mut rank0 = 0;
        let mut top = 0;
        for _ in 0..draws {
            let r = z.next(&mut rng);
            assert!(r < 1000);
            rank0 += (r == 0) as u32;
            top += (r < 100) as u32;
        }
        let share0 = rank0 as f64 / draws as f64;
        assert!((0.10..0.17).contains(&share0), "rank 0 share {share0}");
        assert!(top as f64 / draws as f64 > 0.55);
    }
}
