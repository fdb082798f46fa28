//! What claiming, beginning and settling attempts read: claims, current calls, the facts a
//! begin checks, prior attempts, pending calls, capacity and orphans.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Double, Integer, Nullable, Text};
use diesel::QueryableByName;

use crate::adapters::sql::from_ms;
use crate::adapters::sql::rows::{
    carrier_of, corrupt, hours_of, limits_of, parse_id, periods_of, zone_of,
};
use crate::domain::admission::{CampaignRules, Capacity, DialCheck, NumberFacts, PendingCall};
use crate::domain::call::CallStatus;
use crate::domain::campaign::{CampaignStatus, RetryPolicy};
use crate::domain::compliance::dnc::DncScope;
use crate::domain::compliance::{Compliance, PriorAttempt};
use crate::domain::ids::{CallId, CampaignId};
use crate::domain::phone::PhoneNumber;
use crate::domain::settlement::CurrentCall;
use crate::ports::{ClaimedCall, OrphanedAttempt, StoreError};

/// A reported call as the domain sees it, or `None` when its row cannot be read: the report
/// then counts as stale instead of failing the batch it came in, which would fail again on
/// every redelivery.
pub fn readable_current_call(row: CurrentCallRow) -> Option<CurrentCall> {
    match CurrentCall::try_from(row) {
        Ok(call) => Some(call),
        Err(err) => {
            tracing::error!(error = %err, "unreadable reported call left as it is");
            None
        }
    }
}

/// The readable reported calls of `rows`, by id.
pub fn current_calls_by_id(rows: Vec<CurrentCallRow>) -> HashMap<String, CurrentCall> {
    let mut current = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = row.id.clone();
        if let Some(call) = readable_current_call(row) {
            current.insert(id, call);
        }
    }
    current
}

#[derive(QueryableByName)]
pub struct ClaimRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Integer)]
    pub attempt_count: i32,
}

impl ClaimRow {
    pub fn into_claimed(
        self,
        campaign_id: CampaignId,
        now: DateTime<Utc>,
    ) -> Result<ClaimedCall, StoreError> {
        Ok(ClaimedCall {
            call_id: parse_id("call id", &self.id)?,
            campaign_id,
            phone_number: PhoneNumber::from_canonical(self.phone_number),
            attempt: self.attempt_count.max(0) as u32,
            started_at: now,
        })
    }
}

/// Columns of `CurrentCallRow`: a reported call (alias `c`) joined to its campaign (`k`) and
/// its current attempt (`a`, left-joined).
pub const CURRENT_CALL_COLUMNS: &str = "c.id AS id, c.status AS status, \
    c.attempt_count AS attempt_count, c.max_attempts AS max_attempts, c.owner AS owner, \
    c.placed_at AS placed_at, a.started_at AS started_at, k.status AS campaign_status";

/// A reported call as `record_attempts` reads it, before settling the report.
#[derive(QueryableByName)]
pub struct CurrentCallRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempt_count: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    owner: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    placed_at: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    started_at: Option<i64>,
    #[diesel(sql_type = Text)]
    campaign_status: String,
}

impl TryFrom<CurrentCallRow> for CurrentCall {
    type Error = StoreError;

    fn try_from(row: CurrentCallRow) -> Result<Self, StoreError> {
        Ok(CurrentCall {
            status: CallStatus::parse(&row.status)
                .ok_or_else(|| corrupt("call status", &row.status))?,
            attempt_count: row.attempt_count.max(0) as u32,
            max_attempts: row.max_attempts.max(0) as u32,
            // An owner that is not an instance id matches no report's expected owner.
            owner: row.owner.as_deref().and_then(|owner| owner.parse().ok()),
            placed: row.placed_at.is_some(),
            attempt_started_at: row.started_at.map(from_ms),
            campaign_status: CampaignStatus::parse(&row.campaign_status)
                .ok_or_else(|| corrupt("campaign status", &row.campaign_status))?,
        })
    }
}

/// A claimed call with what decides, at the moment of dialing, whether it may be placed: the
/// columns of `CurrentCallRow`, then `time_zone` and `business_hours` of its campaign.
#[derive(QueryableByName)]
pub struct BeginRow {
    #[diesel(embed)]
    pub call: CurrentCallRow,
    #[diesel(sql_type = Text)]
    time_zone: String,
    #[diesel(sql_type = Text)]
    business_hours: String,
    #[diesel(sql_type = Text)]
    recipient_hours: String,
    #[diesel(sql_type = Text)]
    restricted_periods: String,
    #[diesel(sql_type = Text)]
    recipient_limits: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    call_campaign_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    call_time_zone: Option<String>,
    /// The scope of a do-not-call entry covering the call ('global' or its campaign's id).
    #[diesel(sql_type = Nullable<Text>)]
    listed: Option<String>,
}

/// A claimed call as the dialer reads it, before its number's earlier attempts are known.
#[derive(Debug, Clone)]
pub struct BeginFacts {
    pub call: CurrentCall,
    pub campaign_id: CampaignId,
    pub campaign: CampaignRules,
    pub phone_number: String,
    pub time_zone: Option<chrono_tz::Tz>,
    pub listed: Option<DncScope>,
}

impl BeginFacts {
    /// The check of the call, with `prior` attempts to its number (any campaign's).
    pub fn check(&self, policy: &Compliance, prior: &[PriorRow]) -> DialCheck {
        let facts = NumberFacts {
            time_zone: self.time_zone,
            do_not_call: self.listed,
            prior: prior_attempts(prior, self.campaign_id),
        };
        DialCheck::for_call(policy, self.campaign.clone(), &self.phone_number, facts)
    }
}

/// The scope column of the do-not-call table.
pub fn scope_of(column: &str) -> Result<DncScope, StoreError> {
    if column == "global" {
        return Ok(DncScope::Global);
    }
    Ok(DncScope::Campaign(parse_id("do-not-call scope", column)?))
}

pub fn scope_column(scope: DncScope) -> String {
    match scope {
        DncScope::Global => "global".to_owned(),
        DncScope::Campaign(id) => id.to_string(),
    }
}

impl TryFrom<BeginRow> for BeginFacts {
    type Error = StoreError;

    fn try_from(row: BeginRow) -> Result<Self, StoreError> {
        let call = CurrentCall::try_from(row.call)?;
        let campaign = CampaignRules {
            status: call.campaign_status,
            time_zone: row
                .time_zone
                .parse()
                .map_err(|_| corrupt("time zone", &row.time_zone))?,
            business_hours: hours_of("business hours", &row.business_hours)?,
            recipient_hours: hours_of("recipient hours", &row.recipient_hours)?,
            restricted_periods: periods_of(&row.restricted_periods)?,
            recipient_limits: limits_of(&row.recipient_limits)?,
        };
        Ok(BeginFacts {
            campaign_id: parse_id("campaign id", &row.call_campaign_id)?,
            call,
            campaign,
            time_zone: zone_of(row.call_time_zone.as_deref())?,
            listed: row.listed.as_deref().map(scope_of).transpose()?,
            phone_number: row.phone_number,
        })
    }
}

/// An earlier attempt to a number.
#[derive(QueryableByName, Debug, Clone)]
pub struct PriorRow {
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    pub campaign_id: String,
    #[diesel(sql_type = BigInt)]
    pub started_at: i64,
}

/// Earlier attempts grouped by number.
pub fn prior_by_number(rows: Vec<PriorRow>) -> HashMap<String, Vec<PriorRow>> {
    let mut by_number: HashMap<String, Vec<PriorRow>> = HashMap::new();
    for row in rows {
        by_number
            .entry(row.phone_number.clone())
            .or_default()
            .push(row);
    }
    by_number
}

/// The attempts among `rows` as a call of `campaign` counts them.
pub fn prior_attempts(rows: &[PriorRow], campaign: CampaignId) -> Vec<PriorAttempt> {
    let campaign = campaign.to_string();
    rows.iter()
        .map(|row| PriorAttempt {
            at: from_ms(row.started_at),
            same_campaign: row.campaign_id == campaign,
        })
        .collect()
}

/// A waiting call as the campaign's explanation reads it.
#[derive(QueryableByName)]
pub struct PendingRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt_at: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    time_zone: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    listed: Option<String>,
}

impl PendingRow {
    /// The call with the attempts among `prior` made to its number.
    pub fn into_pending(
        self,
        campaign: CampaignId,
        prior: &HashMap<String, Vec<PriorRow>>,
    ) -> Result<(CallId, PendingCall), StoreError> {
        let mine = prior.get(&self.phone_number).map_or(&[][..], Vec::as_slice);
        Ok((
            parse_id("call id", &self.id)?,
            PendingCall {
                status: CallStatus::parse(&self.status)
                    .ok_or_else(|| corrupt("call status", &self.status))?,
                next_attempt_at: self.next_attempt_at.map(from_ms),
                facts: NumberFacts {
                    time_zone: zone_of(self.time_zone.as_deref())?,
                    do_not_call: self.listed.as_deref().map(scope_of).transpose()?,
                    prior: prior_attempts(mine, campaign),
                },
                phone_number: self.phone_number,
            },
        ))
    }
}

/// A queued call a claim may take.
#[derive(QueryableByName)]
pub struct CandidateRow {
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = Text)]
    pub phone_number: String,
}

/// What a claim may take, read in the claim's transaction.
#[derive(QueryableByName)]
pub struct CapacityRow {
    #[diesel(sql_type = Integer)]
    campaign_limit: i32,
    #[diesel(sql_type = BigInt)]
    campaign_dialing: i64,
    #[diesel(sql_type = BigInt)]
    global_dialing: i64,
}

impl CapacityRow {
    pub fn capacity(&self, global_cap: u32) -> Capacity {
        Capacity {
            campaign_limit: u64::try_from(self.campaign_limit).unwrap_or(0),
            campaign_dialing: u64::try_from(self.campaign_dialing).unwrap_or(0),
            global_cap: u64::from(global_cap),
            global_dialing: u64::try_from(self.global_dialing).unwrap_or(0),
        }
    }
}

#[derive(QueryableByName)]
pub struct OrphanRow {
    #[diesel(sql_type = Text)]
    call_id: String,
    #[diesel(sql_type = Text)]
    campaign_id: String,
    #[diesel(sql_type = Integer)]
    attempt: i32,
    #[diesel(sql_type = Integer)]
    max_attempts: i32,
    #[diesel(sql_type = BigInt)]
    base_delay_ms: i64,
    #[diesel(sql_type = BigInt)]
    max_delay_ms: i64,
    #[diesel(sql_type = Double)]
    jitter: f64,
    #[diesel(sql_type = Nullable<Text>)]
    owner: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    placed_at: Option<i64>,
    #[diesel(sql_type = Text)]
    phone_number: String,
    #[diesel(sql_type = Nullable<Text>)]
    carrier: Option<String>,
}

impl TryFrom<OrphanRow> for OrphanedAttempt {
    type Error = StoreError;

    fn try_from(row: OrphanRow) -> Result<Self, StoreError> {
        Ok(OrphanedAttempt {
            call_id: parse_id("call id", &row.call_id)?,
            campaign_id: parse_id("campaign id", &row.campaign_id)?,
            attempt: row.attempt.max(0) as u32,
            retry_policy: RetryPolicy {
                max_attempts: row.max_attempts.max(0) as u32,
                base_delay: Duration::from_millis(row.base_delay_ms.max(0) as u64),
                max_delay: Duration::from_millis(row.max_delay_ms.max(0) as u64),
                jitter: row.jitter,
            },
            owner: row
                .owner
                .as_deref()
                .map(|owner| parse_id("owner", owner))
                .transpose()?,
            placed: row.placed_at.is_some(),
            placed_at: row.placed_at.map(from_ms),
            phone_number: PhoneNumber::from_canonical(row.phone_number),
            sid: carrier_of(row.carrier.as_deref()).and_then(|carrier| carrier.sid),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;
    use crate::domain::call::CallStatus;
    use crate::domain::ids::CallId;

    fn reported(status: &str) -> CurrentCallRow {
        CurrentCallRow {
            id: CallId::new().to_string(),
            status: status.into(),
            attempt_count: 1,
            max_attempts: 3,
            owner: Some("not an instance id".into()),
            placed_at: Some(1_000),
            started_at: Some(1_000),
            campaign_status: "in_progress".into(),
        }
    }

    #[test]
    fn an_unreadable_reported_call_is_skipped_not_fatal() {
        let call = readable_current_call(reported("dialing")).expect("readable");
        assert_eq!(call.status, CallStatus::Dialing);
        assert_eq!(
            call.owner, None,
            "a foreign owner matches no expected owner"
        );
        assert_eq!(readable_current_call(reported("ringing")), None);
    }
}
