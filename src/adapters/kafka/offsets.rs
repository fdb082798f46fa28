//! Per-partition bookkeeping of one subscription: which messages it handed out, which were
//! acknowledged, and from that the offset it may commit. Pure data, no client inside, so the
//! commit rule is unit-tested here.
//!
//! The rule: for each partition, the committed offset is one past the highest offset below
//! which every message handed out is acknowledged. Acknowledging out of order never commits
//! past a message still in flight, so a crash redelivers it (and possibly some later ones that
//! were already acknowledged: at least once, never at most once).
//!
//! Every assignment of a partition gets a fresh epoch. A message carries the epoch it was
//! fetched under; once the partition is revoked (or revoked and assigned again, which restarts
//! consumption from the committed offset) its old messages are stale: they are not handed out,
//! and acknowledging them commits nothing, because the partition's new owner reads them again.

use std::collections::{BTreeMap, HashMap};

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub partition: i32,
    pub offset: i64,
    /// The partition's assignment epoch when the message was fetched.
    pub epoch: u64,
}

#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    /// Offsets handed out and not yet committed, each with whether it was acknowledged.
    outstanding: BTreeMap<i64, bool>,
}

#[derive(Debug, Default)]
pub(crate) struct Offsets {
    last_epoch: u64,
    partitions: HashMap<i32, PartitionState>,
    revocations: u64,
}

impl Offsets {
    /// Partitions given to this member; consumption restarts at their committed offsets.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for partition in partitions {
            self.last_epoch += 1;
            self.partitions.insert(
                partition,
                PartitionState {
                    epoch: self.last_epoch,
                    outstanding: BTreeMap::new(),
                },
            );
        }
    }

    /// Partitions taken away: their in-flight bookkeeping is forgotten.
    pub fn revoke(&mut self, partitions: impl IntoIterator<Item = i32>) {
        for partition in partitions {
            if self.partitions.remove(&partition).is_some() {
                self.revocations += 1;
            }
        }
    }

    /// The current epoch of an assigned partition.
    pub fn epoch(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|state| state.epoch)
    }

    /// Counts revocations, so a holder of positions knows when to re-check them.
    pub fn revocations(&self) -> u64 {
        self.revocations
    }

    pub fn is_current(&self, position: &Position) -> bool {
        self.epoch(position.partition) == Some(position.epoch)
    }

    /// Records a message being handed out. `false` when it is stale and must be dropped.
    pub fn deliver(&mut self, position: Position) -> bool {
        match self.partitions.get_mut(&position.partition) {
            Some(state) if state.epoch == position.epoch => {
                state.outstanding.entry(position.offset).or_insert(false);
                true
            }
            _ => false,
        }
    }

    /// Marks messages acknowledged and returns, per partition whose commit point moved, the
    /// offset to commit (the next offset the group should read). Stale positions are ignored.
    pub fn ack(&mut self, positions: impl IntoIterator<Item = Position>) -> Vec<(i32, i64)> {
        let mut touched = Vec::new();
        for position in positions {
            let Some(state) = self.partitions.get_mut(&position.partition) else {
                continue;
            };
            if state.epoch != position.epoch {
                continue;
            }
            if let Some(acked) = state.outstanding.get_mut(&position.offset) {
                *acked = true;
                if !touched.contains(&position.partition) {
                    touched.push(position.partition);
                }
            }
        }
        let mut commits = Vec::new();
        for partition in touched {
            let Some(state) = self.partitions.get_mut(&partition) else {
                continue;
            };
            let mut done = None;
            while let Some(entry) = state.outstanding.first_entry() {
                if !*entry.get() {
                    break;
                }
                done = Some(*entry.key());
                entry.remove();
            }
            if let Some(offset) = done {
                commits.push((partition, offset + 1));
            }
        }
        commits.sort_unstable();
        commits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offsets: &Offsets, partition: i32, offset: i64) -> Position {
        Position {
            partition,
            offset,
            epoch: offsets.epoch(partition).unwrap_or(0),
        }
    }

    #[test]
    fn in_order_acks_commit_one_past_the_last() {
        let mut offsets = Offsets::default();
        offsets.assign([0]);
        let delivered: Vec<Position> = (0..3).map(|o| at(&offsets, 0, o)).collect();
        assert!(delivered.iter().all(|p| offsets.deliver(*p)));
        assert_eq!(offsets.ack(delivered), vec![(0, 3)]);
    }

    #[test]
    fn out_of_order_acks_never_commit_past_an_unacknowledged_message() {
        let mut offsets = Offsets::default();
        offsets.assign([0, 1]);
        let p0: Vec<Position> = [10, 11, 13, 14].map(|o| at(&offsets, 0, o)).into();
        let p1 = at(&offsets, 1, 5);
        for position in p0.iter().chain([&p1]) {
            assert!(offsets.deliver(*position));
        }
        // 11 and 14 done, 10 still in flight: nothing moves on partition 0.
        assert_eq!(offsets.ack([p0[1], p0[3], p1]), vec![(1, 6)]);
        // 10 done: 10 and 11 are contiguous (13 is not acknowledged yet).
        assert_eq!(offsets.ack([p0[0]]), vec![(0, 12)]);
        // 13 done: everything handed out is acknowledged, gaps in offsets included.
        assert_eq!(offsets.ack([p0[2]]), vec![(0, 15)]);
        // Acknowledging twice is harmless.
        assert_eq!(offsets.ack([p0[2]]), vec![]);
    }

    #[test]
    fn revoked_partitions_are_forgotten_and_their_messages_are_stale() {
        let mut offsets = Offsets::default();
        offsets.assign([0, 1]);
        let old = at(&offsets, 0, 7);
        let kept = at(&offsets, 1, 3);
        assert!(offsets.deliver(old));
        assert!(offsets.deliver(kept));
        offsets.revoke([0]);
        assert_eq!(offsets.revocations(), 1);
        assert!(!offsets.is_current(&old));
        assert!(offsets.is_current(&kept));
        assert_eq!(offsets.ack([old, kept]), vec![(1, 4)]);
        // Assigned again: consumption restarts from the committed offset under a new epoch,
        // so the old delivery stays stale.
        offsets.assign([0]);
        assert!(!offsets.deliver(old));
        assert_eq!(offsets.ack([old]), vec![]);
        let again = at(&offsets, 0, 7);
        assert!(offsets.deliver(again));
        assert_eq!(offsets.ack([again]), vec![(0, 8)]);
    }
}
