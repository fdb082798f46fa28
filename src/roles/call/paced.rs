//! Dispatches waiting for their turn in the account's pace, in a lane per campaign: turns go
//! round the campaigns, so one campaign's backlog never delays another's dials, and a
//! campaign that may not dial gives its whole lane back without spending a turn.

use std::collections::{HashMap, VecDeque};

use crate::domain::ids::CampaignId;
use crate::ports::Delivery;

/// A lane's key: the campaign, or `None` for a message that cannot be read (its begin
/// dead-letters it; it never waits for a turn).
type Lane = Option<CampaignId>;

#[derive(Default)]
pub(super) struct PacedQueue {
    lanes: HashMap<Lane, VecDeque<Delivery>>,
    /// Lanes with something waiting, in the order their next turn comes.
    turns: VecDeque<Lane>,
    len: usize,
}

impl PacedQueue {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, campaign: Lane, delivery: Delivery) {
        let lane = self.lanes.entry(campaign).or_default();
        if lane.is_empty() {
            self.turns.push_back(campaign);
        }
        lane.push_back(delivery);
        self.len += 1;
    }

    /// The next dispatch whose turn has come: the oldest of the campaign whose turn it is,
    /// which then goes to the back of the round.
    pub fn pop(&mut self) -> Option<Delivery> {
        let campaign = self.turns.pop_front()?;
        let lane = self.lanes.get_mut(&campaign)?;
        let delivery = lane.pop_front();
        if lane.is_empty() {
            self.lanes.remove(&campaign);
        } else {
            self.turns.push_back(campaign);
        }
        if delivery.is_some() {
            self.len -= 1;
        }
        delivery
    }

    /// The campaigns with dispatches waiting.
    pub fn campaigns(&self) -> impl Iterator<Item = CampaignId> + '_ {
        self.turns.iter().flatten().copied()
    }

    /// Takes out every lane `leave` picks (in their order of turns).
    pub fn take_lanes(&mut self, leave: impl Fn(Lane) -> bool) -> Vec<Delivery> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.turns.len());
        for campaign in std::mem::take(&mut self.turns) {
            if leave(campaign) {
                taken.extend(self.lanes.remove(&campaign).unwrap_or_default());
            } else {
                kept.push_back(campaign);
            }
        }
        self.turns = kept;
        self.len -= taken.len();
        taken
    }

    pub fn drain(&mut self) -> Vec<Delivery> {
        self.take_lanes(|_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Message;

    fn delivery(token: u64) -> Delivery {
        Delivery {
            token,
            message: Message {
                key: String::new(),
                payload: Vec::new(),
                headers: Vec::new(),
            },
        }
    }

    fn tokens(deliveries: Vec<Delivery>) -> Vec<u64> {
        deliveries.into_iter().map(|d| d.token).collect()
    }

    #[test]
    fn turns_go_round_the_campaigns_and_a_lane_leaves_whole() {
        let (a, b, c) = (CampaignId::new(), CampaignId::new(), CampaignId::new());
        let mut queue = PacedQueue::default();
        for token in 0..4 {
            queue.push(Some(a), delivery(token));
        }
        queue.push(Some(b), delivery(10));
        queue.push(Some(b), delivery(11));
        queue.push(Some(c), delivery(20));
        queue.push(None, delivery(99));
        assert_eq!(queue.len(), 8);
        // A backlog of one campaign waits its turn like any other.
        let first: Vec<u64> = (0..4)
            .filter_map(|_| queue.pop())
            .map(|d| d.token)
            .collect();
        assert_eq!(first, vec![0, 10, 20, 99]);
        let mut seen: Vec<CampaignId> = queue.campaigns().collect();
        seen.sort();
        let mut expected = vec![a, b];
        expected.sort();
        assert_eq!(seen, expected);
        // A campaign that may not dial gives its whole lane back, without a turn.
        assert_eq!(
            tokens(queue.take_lanes(|lane| lane == Some(a))),
            vec![1, 2, 3]
        );
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.pop().map(|d| d.token), Some(11));
        assert!(queue.is_empty());
        assert!(queue.pop().is_none());
        queue.push(Some(c), delivery(21));
        assert_eq!(tokens(queue.drain()), vec![21]);
        assert!(queue.is_empty());
    }
}
