//! The faulty in-process network of the simulator: it drops, duplicates,
//! delays (and so reorders) and partitions messages, every decision drawn
//! from the simulation's seeded RNG, so a seed replays the same run.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::{Message, MessageType};
use rand::rngs::StdRng;
use rand::Rng;

/// Fault settings. Probabilities are per message.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub drop_prob: f64,
    pub dup_prob: f64,
    /// One-way delay drawn uniformly from `[min, max]` virtual ms.
    pub delay_ms: (u64, u64),
    /// With reordering every message draws its own delay; without it a
    /// link delivers in send order (a TCP connection).
    pub reorder: bool,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            drop_prob: 0.02,
            dup_prob: 0.01,
            delay_ms: (1, 8),
            reorder: true,
        }
    }
}

impl NetConfig {
    /// No faults, short fixed delay, in order.
    pub fn reliable() -> NetConfig {
        NetConfig {
            drop_prob: 0.0,
            dup_prob: 0.0,
            delay_ms: (1, 1),
            reorder: false,
        }
    }
}

/// What travels between simulated nodes.
#[derive(Clone, Debug)]
pub enum Packet {
    Raft(Message),
    /// A MsgSnapshot together with the snapshot file it describes.
    Snapshot {
        msg: Message,
        file: Vec<u8>,
    },
    /// "You were removed from the cluster."
    Removed,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub cut: u64,
    pub duplicated: u64,
}

pub struct Delivery {
    pub from: u64,
    pub to: u64,
    pub packet: Packet,
    /// The link was cut while the packet was in flight: it is lost. Reported
    /// so a lost snapshot stream can be reported as failed, as a broken TCP
    /// stream would be.
    pub lost: bool,
}

pub struct SimNetwork {
    cfg: NetConfig,
    /// (deliver_at, seq) → delivery; seq keeps equal times in send order.
    in_flight: BTreeMap<(u64, u64), Delivery>,
    seq: u64,
    /// Directed links that are cut.
    cut: BTreeSet<(u64, u64)>,
    /// Last scheduled delivery per link, for in-order links.
    link_last: BTreeMap<(u64, u64), u64>,
    pub stats: NetStats,
}

impl SimNetwork {
    pub fn new(cfg: NetConfig) -> SimNetwork {
        assert!(
            cfg.delay_ms.0 >= 1 && cfg.delay_ms.0 <= cfg.delay_ms.1,
            "delays are at least 1 ms"
        );
        SimNetwork {
            cfg,
            in_flight: BTreeMap::new(),
            seq: 0,
            cut: BTreeSet::new(),
            link_last: BTreeMap::new(),
            stats: NetStats::default(),
        }
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    pub fn set_config(&mut self, cfg: NetConfig) {
        self.cfg = cfg;
    }

    /// Splits the nodes into groups that cannot reach each other. Nodes in no
    /// group keep their links.
    pub fn partition(&mut self, groups: &[Vec<u64>]) {
        self.cut.clear();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for x in a {
                        for y in b {
                            self.cut.insert((*x, *y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts every link to and from `node` among `all`.
    pub fn isolate(&mut self, node: u64, all: &[u64]) {
        for other in all {
            if *other != node {
                self.cut.insert((node, *other));
                self.cut.insert((*other, node));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Sends a packet at virtual time `now`. Returns false if the network
    /// dropped it (the simulator reports a failed snapshot stream).
    pub fn send(&mut self, rng: &mut StdRng, now: u64, from: u64, to: u64, packet: Packet) -> bool {
        self.stats.sent += 1;
        if self.is_cut(from, to) {
            self.stats.cut += 1;
            return false;
        }
        if rng.gen_bool(self.cfg.drop_prob) {
            self.stats.dropped += 1;
            return false;
        }
        // Raft messages are idempotent and get duplicated. A forwarded
        // proposal is not: raft would append it twice, as it would a client's
        // retry. TCP never duplicates and the transport never re-sends, so
        // proposals are exempt.
        let duplicable =
            matches!(&packet, Packet::Raft(m) if m.get_msg_type() != MessageType::MsgPropose);
        let copies = if duplicable && rng.gen_bool(self.cfg.dup_prob) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = now + rng.gen_range(self.cfg.delay_ms.0..=self.cfg.delay_ms.1);
            if !self.cfg.reorder {
                let last = self.link_last.entry((from, to)).or_insert(0);
                at = at.max(*last);
                *last = at;
            }
            self.seq += 1;
            self.in_flight.insert(
                (at, self.seq),
                Delivery {
                    from,
                    to,
                    packet: packet.clone(),
                    lost: false,
                },
            );
        }
        true
    }

    /// Packets due at or before `now`, in delivery order. A link cut while a
    /// packet was in flight loses the packet (returned with `lost` set).
    pub fn due(&mut self, now: u64) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let mut d = entry.remove();
            if self.is_cut(d.from, d.to) {
                self.stats.cut += 1;
                d.lost = true;
            } else {
                self.stats.delivered += 1;
            }
            out.push(d);
        }
        out
    }

    /// Drops everything in flight to or from `node` (it crashed: its
    /// connections are gone) and returns what was dropped.
    pub fn forget(&mut self, node: u64) -> Vec<Delivery> {
        let keys: Vec<(u64, u64)> = self
            .in_flight
            .iter()
            .filter(|(_, d)| d.from == node || d.to == node)
            .map(|(k, _)| *k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.in_flight.remove(&k))
            .map(|mut d| {
                d.lost = true;
                d
            })
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn msg(i: u64) -> Packet {
        let mut m = Message::default();
        m.index = i;
        Packet::Raft(m)
    }

    fn index(p: &Packet) -> u64 {
        match p {
            Packet::Raft(m) => m.index,
            Packet::Snapshot { msg, .. } => msg.index,
            Packet::Removed => 0,
        }
    }

    fn run(seed: u64, cfg: NetConfig) -> (Vec<u64>, NetStats) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = SimNetwork::new(cfg);
        for i in 0..200 {
            net.send(&mut rng, i / 4, 1, 2, msg(i));
        }
        let mut got = Vec::new();
        for t in 0..1000 {
            got.extend(
                net.due(t)
                    .iter()
                    .filter(|d| !d.lost)
                    .map(|d| index(&d.packet)),
            );
        }
        (got, net.stats)
    }

    #[test]
    fn same_seed_same_deliveries() {
        let cfg = NetConfig {
            drop_prob: 0.1,
            dup_prob: 0.1,
            delay_ms: (1, 20),
            reorder: true,
        };
        assert_eq!(run(7, cfg.clone()), run(7, cfg.clone()));
        assert_ne!(run(7, cfg.clone()).0, run(8, cfg).0);
    }

    #[test]
    fn faults_happen_and_order_is_kept_without_reorder() {
        let (got, stats) = run(
            1,
            NetConfig {
                drop_prob: 0.1,
                dup_prob: 0.1,
                delay_ms: (1, 20),
                reorder: true,
            },
        );
        assert!(stats.dropped > 0 && stats.duplicated > 0);
        assert!(
            got.windows(2).any(|w| w[0] > w[1]),
            "some packets were reordered"
        );
        let (got, _) = run(
            1,
            NetConfig {
                drop_prob: 0.0,
                dup_prob: 0.0,
                delay_ms: (1, 20),
                reorder: false,
            },
        );
        assert_eq!(got, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn partitions_cut_in_flight_packets() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut net = SimNetwork::new(NetConfig::reliable());
        assert!(net.send(&mut rng, 0, 1, 2, msg(1)));
        net.partition(&[vec![1], vec![2, 3]]);
        assert!(!net.send(&mut rng, 0, 1, 3, msg(2)));
        assert!(
            net.due(10).iter().all(|d| d.lost),
            "the in-flight packet crossed the cut"
        );
        assert!(net.send(&mut rng, 10, 2, 3, msg(3)));
        net.heal();
        assert!(net.send(&mut rng, 10, 3, 1, msg(4)));
        assert_eq!(net.due(20).len(), 2);
    }
}
