//! Batched ReadIndex (raft thesis §6.4): every linearizable read that
//! arrives while one ReadIndex round is in flight joins the next round, so a
//! burst of reads costs one heartbeat round, not one each.
//!
//! A read is served once the state machine has applied the read index the
//! leader confirmed; the caller then reads its state machine locally.

use std::collections::VecDeque;

use bytes::Bytes;

/// Caller-chosen id of one read.
pub type ReadId = u64;

struct Round {
    ctx: Bytes,
    reads: Vec<ReadId>,
    age_ticks: usize,
}

/// The reads of one node, from request to "safe to serve".
pub struct ReadIndexQueue {
    node: u64,
    next_round: u64,
    retry_ticks: usize,
    queued: Vec<ReadId>,
    in_flight: Option<Round>,
    /// (read index, reads) in arrival order; indexes are non-decreasing in
    /// practice but release does not rely on it.
    waiting: VecDeque<(u64, Vec<ReadId>)>,
    /// Bound on queued + in-flight + waiting reads.
    reads_max: usize,
    reads_len: usize,
}

impl ReadIndexQueue {
    /// `first_round` must differ between starts of a node (a random value):
    /// a leader may answer a round of the node's previous life after it
    /// restarted, and that answer must not be taken for the new round.
    pub fn new(
        node: u64,
        first_round: u64,
        retry_ticks: usize,
        reads_max: usize,
    ) -> ReadIndexQueue {
        ReadIndexQueue {
            node,
            next_round: first_round,
            retry_ticks,
            queued: Vec::new(),
            in_flight: None,
            waiting: VecDeque::new(),
            reads_max,
            reads_len: 0,
        }
    }

    /// Queues a read; false when the queue is full.
    pub fn push(&mut self, id: ReadId) -> bool {
        if self.reads_len >= self.reads_max {
            return false;
        }
        self.reads_len += 1;
        self.queued.push(id);
        true
    }

    /// Starts a round if none is in flight and reads are queued. Returns the
    /// context to hand to `RawNode::read_index`. The context is unique in the
    /// cluster (node id + round number) because the leader keys pending
    /// rounds by it.
    pub fn start_round(&mut self) -> Option<Bytes> {
        if self.in_flight.is_some() || self.queued.is_empty() {
            return None;
        }
        let mut ctx = Vec::with_capacity(16);
        ctx.extend_from_slice(&self.node.to_le_bytes());
        ctx.extend_from_slice(&self.next_round.to_le_bytes());
        self.next_round = self.next_round.wrapping_add(1);
        let ctx = Bytes::from(ctx);
        self.in_flight = Some(Round {
            ctx: ctx.clone(),
            reads: std::mem::take(&mut self.queued),
            age_ticks: 0,
        });
        Some(ctx)
    }

    /// The leader confirmed `index` for the round `ctx`. Stale contexts (of
    /// rounds given up on) are ignored.
    pub fn on_read_state(&mut self, ctx: &[u8], index: u64) {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|r| r.ctx.as_ref() == ctx)
        {
            let round = self.in_flight.take().unwrap();
            self.waiting.push_back((index, round.reads));
        }
    }

    /// One tick passed. A round unanswered for `retry_ticks` is abandoned
    /// and its reads go back to the queue for the next round: the request or
    /// its answer was lost, or leadership moved.
    pub fn tick(&mut self) {
        if let Some(round) = &mut self.in_flight {
            round.age_ticks += 1;
            if round.age_ticks >= self.retry_ticks {
                let round = self.in_flight.take().unwrap();
                let mut reads = round.reads;
                reads.append(&mut self.queued);
                self.queued = reads;
            }
        }
    }

    /// Reads whose index is `<= applied`, now safe to serve.
    pub fn release(&mut self, applied: u64, out: &mut Vec<ReadId>) {
        let before = out.len();
        self.waiting.retain_mut(|(index, reads)| {
            if *index <= applied {
                out.append(reads);
                false
            } else {
                true
            }
        });
        self.reads_len -= out.len() - before;
    }

    pub fn pending(&self) -> usize {
        self.reads_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_rounds_and_releases_by_applied_index() {
        let mut q = ReadIndexQueue::new(1, 1, 3, 100);
        assert!(q.start_round().is_none());
        q.push(1);
        q.push(2);
        let ctx = q.start_round().unwrap();
        q.push(3); // joins the next round
        assert!(q.start_round().is_none());
        q.on_read_state(&ctx, 10);
        let ctx2 = q.start_round().unwrap();
        assert_ne!(ctx, ctx2);
        q.on_read_state(&ctx2, 12);
        let mut out = Vec::new();
        q.release(9, &mut out);
        assert!(out.is_empty());
        q.release(10, &mut out);
        assert_eq!(out, vec![1, 2]);
        q.release(20, &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn unanswered_round_is_retried_and_stale_answer_ignored() {
        let mut q = ReadIndexQueue::new(1, 1, 2, 100);
        q.push(7);
        let old = q.start_round().unwrap();
        q.tick();
        q.tick();
        q.push(8);
        let new = q.start_round().unwrap();
        q.on_read_state(&old, 5); // stale, ignored
        let mut out = Vec::new();
        q.release(100, &mut out);
        assert!(out.is_empty());
        q.on_read_state(&new, 5);
        q.release(5, &mut out);
        assert_eq!(out, vec![7, 8]);
    }

    #[test]
    fn bounded() {
        let mut q = ReadIndexQueue::new(1, 1, 2, 2);
        assert!(q.push(1));
        assert!(q.push(2));
        assert!(!q.push(3));
    }
}
