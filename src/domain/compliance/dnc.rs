//! The do-not-call list: numbers that must never be dialed again, for the whole deployment or
//! for one campaign.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::domain::ids::CampaignId;
use crate::domain::phone::PhoneNumber;

/// The longest reason kept with an entry.
pub const MAX_REASON_CHARS: usize = 500;

/// Whom an entry protects the number from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DncScope {
    /// Every campaign of the deployment.
    Global,
    Campaign(CampaignId),
}

impl DncScope {
    /// Whether a call of `campaign` to a listed number is covered.
    pub fn covers(self, campaign: CampaignId) -> bool {
        match self {
            Self::Global => true,
            Self::Campaign(id) => id == campaign,
        }
    }
}

impl fmt::Display for DncScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("global"),
            Self::Campaign(id) => write!(f, "campaign:{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a do-not-call scope: {0:?}")]
pub struct BadScope(pub String);

impl FromStr for DncScope {
    type Err = BadScope;

    fn from_str(s: &str) -> Result<Self, BadScope> {
        if s == "global" {
            return Ok(Self::Global);
        }
        s.strip_prefix("campaign:")
            .and_then(|id| id.parse().ok())
            .map(Self::Campaign)
            .ok_or_else(|| BadScope(s.to_owned()))
    }
}

/// One number on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DncEntry {
    pub phone_number: PhoneNumber,
    pub scope: DncScope,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scopes_read_back_as_written_and_cover_their_campaigns() {
        let campaign = CampaignId::new();
        for scope in [DncScope::Global, DncScope::Campaign(campaign)] {
            assert_eq!(scope.to_string().parse::<DncScope>(), Ok(scope));
        }
        assert!(DncScope::Global.covers(campaign));
        assert!(DncScope::Campaign(campaign).covers(campaign));
        assert!(!DncScope::Campaign(CampaignId::new()).covers(campaign));
        assert!("campaign:nope".parse::<DncScope>().is_err());
        assert!("Global".parse::<DncScope>().is_err());
    }
}
