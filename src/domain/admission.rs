//! Who may dial, and when. A concurrency slot belongs to an attempt: a call in `dialing` holds
//! one slot of its campaign and one of the deployment from its claim until its outcome is
//! recorded, whichever process carries it. The store counts the slots (its `dialing` calls), so
//! nothing that happens to a process, a lease or a clock can free one early.
//!
//! The rules here decide three moments of an attempt: how many calls a claim admits, whether a
//! claimed attempt may be placed right now (checked by the dialer at the moment of dialing,
//! not only at claim time), and what an attempt that was never placed goes back to.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::business_hours::BusinessHours;
use super::call::{Call, CallStatus, NewTarget};
use super::campaign::{Campaign, CampaignStatus};
use super::compliance::dnc::DncScope;
use super::compliance::states::StateRule;
use super::compliance::{
    CallRules, Cap, Compliance, FrequencyCap, Hold, HoldCode, PriorAttempt, RestrictedPeriod,
};
use super::ids::{CampaignId, InstanceId};
use super::settlement::CurrentCall;
use super::stats::StatsDelta;

/// What one claim may take: at most `want`, never above the campaign's limit nor the
/// deployment's cap, counting the calls already dialing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub campaign_limit: u64,
    pub campaign_dialing: u64,
    pub global_cap: u64,
    pub global_dialing: u64,
}

/// The slots a campaign's limit leaves free with `dialing` calls up.
pub fn free_slots(limit: u64, dialing: u64) -> u64 {
    limit.saturating_sub(dialing)
}

impl Capacity {
    pub fn admits(&self, want: u64) -> u64 {
        let campaign_free = free_slots(self.campaign_limit, self.campaign_dialing);
        let global_free = self.global_cap.saturating_sub(self.global_dialing);
        want.min(campaign_free).min(global_free)
    }
}

/// The campaign and the called party as they stand when a claimed attempt is about to be
/// placed.
#[derive(Debug, Clone, PartialEq)]
pub struct DialCheck {
    pub campaign_status: CampaignStatus,
    pub time_zone: Tz,
    pub business_hours: BusinessHours,
    pub recipient_hours: BusinessHours,
    pub restricted_periods: Vec<RestrictedPeriod>,
    /// Where the number rings; empty: the campaign's zone.
    pub recipient_zones: Vec<Tz>,
    /// The rule of the state of a +1 number's area code.
    pub state: Option<&'static StateRule>,
    /// The list entry that forbids the number to this campaign, if any.
    pub do_not_call: Option<DncScope>,
    pub caps: Vec<Cap>,
    /// Earlier attempts to the number within the longest cap window.
    pub prior: Vec<PriorAttempt>,
}

/// What the store knows of a called number when it checks a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumberFacts {
    /// The target's own zone, overriding its number's.
    pub time_zone: Option<Tz>,
    pub do_not_call: Option<DncScope>,
    pub prior: Vec<PriorAttempt>,
}

/// What of a campaign decides whether its calls may be placed.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRules {
    pub status: CampaignStatus,
    pub time_zone: Tz,
    pub business_hours: BusinessHours,
    pub recipient_hours: BusinessHours,
    pub restricted_periods: Vec<RestrictedPeriod>,
    pub recipient_limits: Vec<FrequencyCap>,
}

/// Why a claimed attempt was handed back instead of placed, and from when the call may be
/// claimed again (`None`: whenever the campaign next runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldReason {
    pub code: HoldCode,
    pub until: Option<DateTime<Utc>>,
}

impl HoldReason {
    pub fn as_str(self) -> &'static str {
        self.code.as_str()
    }
}

impl CampaignRules {
    pub fn of(campaign: &Campaign) -> Self {
        Self {
            status: campaign.status,
            time_zone: campaign.time_zone,
            business_hours: campaign.business_hours.clone(),
            recipient_hours: campaign.recipient_hours.clone(),
            restricted_periods: campaign.restricted_periods.clone(),
            recipient_limits: campaign.recipient_limits.clone(),
        }
    }
}

impl DialCheck {
    /// The check of a call to `phone_number` (E.164) of a campaign: its target's own zone
    /// when given, else where its number rings, the rule of its +1 area code's state, the
    /// caps and the list. The store's dialer and the explain routes all build it here.
    pub fn for_call(
        policy: &Compliance,
        campaign: CampaignRules,
        phone_number: &str,
        facts: NumberFacts,
    ) -> Self {
        let recipient_zones = match facts.time_zone {
            Some(zone) => vec![zone],
            None => policy.zones().zones_of(phone_number).to_vec(),
        };
        let state = policy.state_rule(phone_number);
        DialCheck {
            caps: policy.caps(&campaign.recipient_limits, state),
            do_not_call: facts.do_not_call,
            prior: facts.prior,
            campaign_status: campaign.status,
            time_zone: campaign.time_zone,
            business_hours: campaign.business_hours,
            recipient_hours: campaign.recipient_hours,
            restricted_periods: campaign.restricted_periods,
            recipient_zones,
            state,
        }
    }

    /// Every rule holding the call at `now`, with when each stops holding.
    pub fn explain(&self, now: DateTime<Utc>) -> Vec<Hold> {
        if self.campaign_status != CampaignStatus::InProgress {
            return vec![Hold {
                code: HoldCode::CampaignNotRunning,
                message: format!("the campaign is {}", self.campaign_status.as_str()),
                until: None,
            }];
        }
        let mut holds = Vec::new();
        if let Some(scope) = self.do_not_call {
            holds.push(Hold {
                code: HoldCode::DoNotCall,
                message: format!("the number is on the do-not-call list ({scope})"),
                until: None,
            });
        }
        holds.extend(self.rules().holds(now));
        holds
    }

    /// The calling rules of this call, as the explain routes show them too.
    pub fn rules(&self) -> CallRules<'_> {
        CallRules {
            campaign_zone: self.time_zone,
            business_hours: &self.business_hours,
            recipient_hours: &self.recipient_hours,
            recipient_zones: &self.recipient_zones,
            state: self.state,
            restricted: &self.restricted_periods,
            caps: &self.caps,
            prior: &self.prior,
        }
    }

    /// `None` when the attempt may be placed at `now`.
    pub fn hold(&self, now: DateTime<Utc>) -> Option<HoldReason> {
        if self.campaign_status != CampaignStatus::InProgress {
            return Some(HoldReason {
                code: HoldCode::CampaignNotRunning,
                until: None,
            });
        }
        if self.do_not_call.is_some() {
            return Some(HoldReason {
                code: HoldCode::DoNotCall,
                until: None,
            });
        }
        let rules = self.rules();
        let first = rules.holds(now).into_iter().next()?;
        Some(HoldReason {
            code: first.code,
            until: rules.next_dialable(now),
        })
    }
}

/// When new calls of a campaign can first be dialable by the rules of time alone (business
/// and recipient hours, state hours, restricted periods), so a claim never reads a call its
/// recipient's night holds: a campaign of a million numbers, most of them asleep, costs its
/// claims what its dialable calls cost. The instant is a lower bound (the list, caps and the
/// campaign's status are left to the claim's screen, which decides at the moment of claiming);
/// a change of the campaign's rules makes its held calls claimable again.
pub struct FirstDialable<'a> {
    policy: &'a Compliance,
    rules: CampaignRules,
    now: DateTime<Utc>,
    /// The instant depends only on a number's zones and state, shared by most of a campaign.
    memo: HashMap<(Zones<'a>, Option<&'static str>), Option<DateTime<Utc>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Zones<'a> {
    Given(Tz),
    OfNumber(&'a [Tz]),
}

impl<'a> FirstDialable<'a> {
    pub fn new(policy: &'a Compliance, campaign: &Campaign, now: DateTime<Utc>) -> Self {
        Self {
            policy,
            rules: CampaignRules::of(campaign),
            now,
            memo: HashMap::new(),
        }
    }

    /// The first instant a new call to `phone_number` may be dialable, when later than now.
    pub fn of(&mut self, phone_number: &str, time_zone: Option<Tz>) -> Option<DateTime<Utc>> {
        let policy = self.policy;
        let zones = match time_zone {
            Some(zone) => Zones::Given(zone),
            None => Zones::OfNumber(policy.zones().zones_of(phone_number)),
        };
        let state = policy.state_rule(phone_number).map(|rule| rule.state);
        let (rules, now) = (&self.rules, self.now);
        *self.memo.entry((zones, state)).or_insert_with(|| {
            let facts = NumberFacts {
                time_zone,
                do_not_call: None,
                prior: Vec::new(),
            };
            DialCheck::for_call(policy, rules.clone(), phone_number, facts)
                .rules()
                .next_dialable(now)
                .filter(|at| *at > now)
        })
    }

    /// The queued calls registering `targets` creates, in the order they become dialable,
    /// each with the first instant it may be dialed (none: now). Calls dialable at the same
    /// instant keep their given order. Each call is made as it is taken, its id then (ids of
    /// one process ascend as they are made): calls that become dialable together are
    /// neighbours in the table and in its id-keyed indexes, so dialing them rewrites few
    /// pages however many calls around them wait for a later window. A million targets are
    /// held once, as targets, not again as calls.
    pub fn queued_calls<'t>(
        &mut self,
        targets: &'t [NewTarget],
        campaign_id: CampaignId,
        max_attempts: u32,
    ) -> impl Iterator<Item = (Call, Option<DateTime<Utc>>)> + 't {
        let mut order: Vec<(usize, Option<DateTime<Utc>>)> = targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                let at = self.of(target.phone_number.as_str(), target.time_zone);
                (index, at)
            })
            .collect();
        // Stable, and `None` (dialable now) first.
        order.sort_by_key(|(_, at)| *at);
        let now = self.now;
        order.into_iter().map(move |(index, at)| {
            let call = targets[index]
                .clone()
                .queued_call(campaign_id, max_attempts, now);
            (call, at)
        })
    }
}

/// A call of a campaign waiting to be dialed, as the campaign's explanation counts it.
#[derive(Debug, Clone)]
pub struct PendingCall {
    pub phone_number: String,
    pub status: CallStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub facts: NumberFacts,
}

/// Why a campaign's waiting calls wait: each call counted once, under the first rule holding
/// it (its backoff, then the order `DialCheck::explain` gives), or under the campaign's or the
/// deployment's limit when nothing else holds it and that limit is reached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingTally {
    pub by_reason: std::collections::BTreeMap<HoldCode, u64>,
    /// Calls nothing holds now.
    pub dialable: u64,
    /// The first instant a waiting call may be dialed, when one is known.
    pub next_dial_at: Option<DateTime<Utc>>,
}

/// Where the campaign stands against the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsReached {
    pub campaign: bool,
    pub global: bool,
}

impl PendingTally {
    /// Turns the counts of a sample of `sampled` waiting calls into estimates for `total`
    /// of them, by their shares of the sample.
    pub fn scale_to(&mut self, sampled: u64, total: u64) {
        if sampled == 0 {
            return;
        }
        let scale = |n: u64| -> u64 {
            u64::try_from(u128::from(n) * u128::from(total) / u128::from(sampled))
                .unwrap_or(u64::MAX)
        };
        for count in self.by_reason.values_mut() {
            *count = scale(*count);
        }
        self.dialable = scale(self.dialable);
    }

    /// Counts `call` of a campaign with `rules` under `policy` at `now`.
    pub fn add(
        &mut self,
        policy: &Compliance,
        rules: &CampaignRules,
        call: PendingCall,
        limits: LimitsReached,
        now: DateTime<Utc>,
    ) {
        let check = DialCheck::for_call(policy, rules.clone(), &call.phone_number, call.facts);
        let running = check.campaign_status == CampaignStatus::InProgress;
        let (reason, from) = match (call.status, call.next_attempt_at) {
            (CallStatus::Retrying, Some(at)) if at > now => (Some(HoldCode::Backoff), at),
            _ => (check.explain(now).first().map(|hold| hold.code), now),
        };
        let reason = reason.or(if limits.campaign {
            Some(HoldCode::CampaignLimit)
        } else if limits.global {
            Some(HoldCode::GlobalLimit)
        } else {
            None
        });
        match reason {
            Some(code) => *self.by_reason.entry(code).or_default() += 1,
            None => self.dialable += 1,
        }
        if running && check.do_not_call.is_none() {
            if let Some(at) = check.rules().next_dialable(from) {
                self.next_dial_at = Some(self.next_dial_at.map_or(at, |next| next.min(at)));
            }
        }
    }
}

/// How long a call held by a rule that gives no end (no open window within a year) waits
/// before a claim looks at it again.
pub const RECHECK_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// What a claim does with a queued call it is about to take, from the check the dialer
/// repeats at the moment of dialing: held calls are set aside until their rules allow them,
/// so later claims read past none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Take,
    /// Not claimable before this instant.
    HoldUntil(DateTime<Utc>),
    /// On the do-not-call list: the call ends `canceled` with `do_not_call`.
    Forbid,
}

impl DialCheck {
    /// What the dialer does with an attempt it holds, at `now`.
    fn begin(&self, now: DateTime<Utc>) -> Begin {
        match self.hold(now) {
            Some(HoldReason {
                code: HoldCode::DoNotCall,
                ..
            }) => Begin::Forbidden,
            Some(reason) => Begin::Held(reason),
            None => Begin::Dial,
        }
    }

    pub fn screen(&self, now: DateTime<Utc>) -> Screen {
        match self.hold(now) {
            None => Screen::Take,
            Some(HoldReason {
                code: HoldCode::DoNotCall,
                ..
            }) => Screen::Forbid,
            Some(HoldReason {
                until: Some(until), ..
            }) if until > now => Screen::HoldUntil(until),
            Some(_) => Screen::HoldUntil(now + RECHECK_AFTER),
        }
    }
}

/// What the dialer may do with one claimed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// The attempt is now this dialer's and placed: dial it.
    Dial,
    /// The campaign may not dial now: the attempt went back unspent.
    Held(HoldReason),
    /// The number is on the do-not-call list: the attempt goes back unspent and the call ends
    /// `canceled` with `do_not_call`.
    Forbidden,
    /// The attempt is no longer the one its claimer handed out (recorded, handed back, or
    /// begun by another dialer): never dial it.
    Stale,
}

/// What the dialer asks the store about attempts it holds: its begin of claimed attempts, or
/// its check, right before a create, of attempts it began. Both are the same check; they differ
/// in whose attempt is taken and in whether it becomes placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialDecision {
    Begin { owner: InstanceId },
    Recheck { dialer: InstanceId },
}

impl DialDecision {
    /// The answer for `attempt` of `call`, held by `holder` and begun at `began` as its claim
    /// says, at `now`.
    pub fn answer(
        self,
        call: &CurrentCall,
        attempt: u32,
        holder: Option<InstanceId>,
        began: Option<DateTime<Utc>>,
        check: &DialCheck,
        now: DateTime<Utc>,
    ) -> Begin {
        match (self, holder) {
            (Self::Begin { .. }, Some(claimer)) => call.begin(attempt, claimer, began, check, now),
            (Self::Begin { .. }, None) => Begin::Stale,
            (Self::Recheck { dialer }, _) => call.recheck(attempt, dialer, check, now),
        }
    }

    /// Who a dialed attempt becomes owned (and placed) by: the begin's dialer; a recheck
    /// changes nothing.
    pub fn placed_by(self) -> Option<InstanceId> {
        match self {
            Self::Begin { owner } => Some(owner),
            Self::Recheck { .. } => None,
        }
    }

    /// The dialer whose begun attempts are checked again, whose own entries in the numbers'
    /// log are set aside before the check (an attempt must not count against its own caps).
    pub fn rechecking(self) -> Option<InstanceId> {
        match self {
            Self::Begin { .. } => None,
            Self::Recheck { dialer } => Some(dialer),
        }
    }

    /// Changes `call` as writing `answer` leaves it, so that a later duplicate of the attempt
    /// in the same batch is judged on the call as the store will hold it: dialed by a begin,
    /// it is placed and owned by the dialer; refused, its attempt went back unspent.
    pub fn leave(self, call: &mut CurrentCall, answer: Begin) {
        let release = match answer {
            Begin::Dial => {
                if let Some(owner) = self.placed_by() {
                    call.owner = Some(owner);
                    call.placed = true;
                }
                return;
            }
            Begin::Forbidden => call.forbid(),
            Begin::Held(_) => call.release_unchecked(),
            Begin::Stale => return,
        };
        call.status = release.call_status;
        call.attempt_count = call.attempt_count.saturating_sub(1);
        call.owner = None;
        call.placed = false;
    }
}

/// An attempt that was never placed, handed back: the call is queued again (or canceled, if
/// its campaign completed meanwhile) and the attempt is not counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub call_status: CallStatus,
    pub delta: StatsDelta,
}

/// Why an attempt may go back unspent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unspent {
    /// No dialer began placing it.
    Unplaced,
    /// A dialer began placing it, but the carrier has no call for it (a lookup found none long
    /// after any create could have happened): no number was rung.
    NeverCreated,
}

impl CurrentCall {
    /// Whether `attempt` is still the unplaced attempt `holder` claimed or was handed.
    fn holds_unplaced(&self, attempt: u32, holder: Option<InstanceId>) -> bool {
        self.holds(attempt, holder) && !self.placed
    }

    fn holds(&self, attempt: u32, holder: Option<InstanceId>) -> bool {
        self.status == CallStatus::Dialing && self.attempt_count == attempt && self.owner == holder
    }

    /// Decides, at `now`, whether the dialer may place `attempt`, which `claimer` claimed
    /// when it began at `began`. On `Held` the caller writes `release`'s answer; on `Dial` it
    /// marks the attempt placed and owned by the dialer. A claim of an earlier attempt with
    /// the same number (one handed back unspent, whose dispatch still arrived) is stale: its
    /// outcome would be refused, so it must not ring.
    pub fn begin(
        &self,
        attempt: u32,
        claimer: InstanceId,
        began: Option<DateTime<Utc>>,
        check: &DialCheck,
        now: DateTime<Utc>,
    ) -> Begin {
        if !self.holds_unplaced(attempt, Some(claimer)) || !self.began_at(began) {
            return Begin::Stale;
        }
        check.begin(now)
    }

    /// Whether `attempt` is the one `dialer` began and has not yet handed to the carrier: the
    /// only attempt a create may be sent for.
    pub fn is_placing(&self, attempt: u32, dialer: InstanceId) -> bool {
        self.holds(attempt, Some(dialer)) && self.placed
    }

    /// Decides, right before a create request for `attempt` (which `dialer` began), whether it
    /// may still be sent: the same check as `begin`, made again at `now`. On `Held` or
    /// `Forbidden` the caller writes the release exactly as `begin` would have; on `Dial` the
    /// create goes out.
    pub fn recheck(
        &self,
        attempt: u32,
        dialer: InstanceId,
        check: &DialCheck,
        now: DateTime<Utc>,
    ) -> Begin {
        if !self.is_placing(attempt, dialer) {
            return Begin::Stale;
        }
        check.begin(now)
    }

    /// Hands back `attempt` if `holder` still holds it (the one begun at `began`, when known)
    /// and it went unspent as `unspent` says; `None` if it moved on (placed, when it must not be; recorded; someone else's).
    pub fn release(
        &self,
        attempt: u32,
        holder: Option<InstanceId>,
        began: Option<DateTime<Utc>>,
        unspent: Unspent,
    ) -> Option<Release> {
        let holds = match unspent {
            Unspent::Unplaced => self.holds_unplaced(attempt, holder),
            Unspent::NeverCreated => self.holds(attempt, holder),
        };
        (holds && self.began_at(began)).then(|| self.release_unchecked())
    }

    /// The end of a call whose number is on the do-not-call list, its attempt unspent.
    pub fn forbid(&self) -> Release {
        Release {
            call_status: CallStatus::Canceled,
            delta: StatsDelta::released(CallStatus::Canceled, self.attempt_count > 1),
        }
    }

    /// The release of the call's current attempt, once `begin` or `release` allowed it.
    pub fn release_unchecked(&self) -> Release {
        let call_status = if self.campaign_status == CampaignStatus::Completed {
            CallStatus::Canceled
        } else {
            CallStatus::Queued
        };
        Release {
            call_status,
            delta: StatsDelta::released(call_status, self.attempt_count > 1),
        }
    }
}

#[cfg(test)]
mod tests;
