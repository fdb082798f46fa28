//! Who may do what: API keys, the roles they carry, what each route requires, and the audit
//! record of a change.
//!
//! A key is `obk_` followed by 64 URL-safe base64 characters: its 16-byte id, then 32 random
//! bytes. The prefix lets secret scanners recognise a leaked key (`obk_[A-Za-z0-9_-]{64}`); the
//! id lets a server find the key's record without searching by secret; only the SHA-256 of the
//! whole key is stored, compared in constant time. The random part carries 256 bits, so a fast
//! hash is enough: there is nothing to guess by brute force that a slow hash would protect.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::ids::KeyId;

/// What a key may do. Ordered: each role may do everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Whether a key with this role may use a route that requires `access`.
    pub fn may(self, access: Access) -> bool {
        match access {
            Access::Public => true,
            Access::Viewer => self >= Role::Viewer,
            Access::Operator => self >= Role::Operator,
            Access::Admin => self >= Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role must be viewer, operator or admin, got {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    /// No key, whatever the mode: the contract document.
    Public,
    Viewer,
    Operator,
    Admin,
}

impl Access {
    /// The least role that may use the route; `None` for a public one.
    pub fn least_role(self) -> Option<Role> {
        match self {
            Access::Public => None,
            Access::Viewer => Some(Role::Viewer),
            Access::Operator => Some(Role::Operator),
            Access::Admin => Some(Role::Admin),
        }
    }
}

/// When a request needs a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    Always,
    Never,
    /// Only a request that comes from this host itself goes without (`auth.mode = auto` on a
    /// loopback listener with no public URL).
    UnlessLocal,
}

impl KeyPolicy {
    /// Whether a request with this `Host` and these header names needs a key.
    pub fn requires_key<'a>(
        self,
        host: Option<&str>,
        header_names: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        match self {
            KeyPolicy::Always => true,
            KeyPolicy::Never => false,
            KeyPolicy::UnlessLocal => !is_local_request(host, header_names),
        }
    }
}

/// Headers a reverse proxy or a tunnel adds to what it passes on: a request that carries one
/// came from elsewhere, whatever address it arrived from.
pub const FORWARDING_HEADERS: [&str; 7] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
];

/// Whether a request that reached a loopback listener was made on this host: it carries no
/// forwarding header, and its `Host` names a loopback host (a page served from any other name,
/// even one that resolves to 127.0.0.1 by DNS rebinding, sends that name).
pub fn is_local_request<'a>(
    host: Option<&str>,
    header_names: impl IntoIterator<Item = &'a str>,
) -> bool {
    let forwarded = header_names.into_iter().any(|name| {
        FORWARDING_HEADERS
            .iter()
            .any(|header| header.eq_ignore_ascii_case(name))
    });
    !forwarded && host.is_some_and(is_loopback_host)
}

/// `localhost`, an address in 127.0.0.0/8 or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let digits = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    let name = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        match after.strip_prefix(':') {
            Some(port) if digits(port) => inside,
            None if after.is_empty() => inside,
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) if digits(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub const KEY_PREFIX: &str = "obk_";
const SECRET_BYTES: usize = 32;
const ENCODED_LEN: usize = 64;

/// The SHA-256 of a key: all the store keeps of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Constant-time, so the time a refusal takes says nothing about how close a guess was.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

/// A key as given once to its holder. Its `Debug` hides the secret.
pub struct IssuedKey {
    pub record: NewKey,
    pub key: String,
}

impl fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedKey")
            .field("record", &self.record)
            .field("key", &"***")
            .finish()
    }
}

/// A key to store: everything but the secret.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    pub hash: KeyHash,
}

/// Makes a key from its id and 32 random bytes (randomness is the caller's, as everywhere in
/// the domain).
pub fn issue(id: KeyId, name: String, role: Role, secret: [u8; SECRET_BYTES]) -> IssuedKey {
    let mut raw = Vec::with_capacity(16 + SECRET_BYTES);
    raw.extend_from_slice(id.0.as_bytes());
    raw.extend_from_slice(&secret);
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw));
    IssuedKey {
        record: NewKey {
            id,
            name,
            role,
            hash: KeyHash::of(&key),
        },
        key,
    }
}

/// The id a presented key claims, if it has the shape of a key at all.
pub fn claimed_id(presented: &str) -> Option<KeyId> {
    let encoded = presented.strip_prefix(KEY_PREFIX)?;
    if encoded.len() != ENCODED_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    let id = Uuid::from_slice(raw.get(..16)?).ok()?;
    Some(KeyId(id))
}

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: KeyId,
    pub name: String,
    pub role: Role,
    pub hash: KeyHash,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether `presented` is this key and may still be used.
    pub fn admits(&self, presented: &KeyHash) -> bool {
        // Compared whether revoked or not, so both refusals take the same time.
        let same = self.hash.matches(presented);
        same && self.revoked_at.is_none()
    }
}

/// A key name: what an operator recognises it by in the key list and the audit log.
pub fn name_problem(name: &str) -> Option<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        Some("name: must not be empty".into())
    } else if trimmed.chars().count() > 100 {
        Some("name: at most 100 characters".into())
    } else if trimmed.chars().any(char::is_control) {
        Some("name: must not contain control characters".into())
    } else {
        None
    }
}

/// One request that changed something, or tried to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub key_id: Option<KeyId>,
    pub key_name: Option<String>,
    pub method: String,
    /// The route's pattern, e.g. `/api/v1/campaigns/{id}/start`.
    pub route: String,
    /// The campaign, call or key the request touched.
    pub resource_id: Option<String>,
    pub status: u16,
    /// How many requests the entry stands for: refusals for a missing or unknown key from one
    /// client address are recorded together, once a second; 1 for every other request.
    pub count: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Viewer.may(Access::Viewer));
        assert!(!Role::Viewer.may(Access::Operator));
        assert!(Role::Operator.may(Access::Viewer));
        assert!(!Role::Operator.may(Access::Admin));
        assert!(Role::Admin.may(Access::Operator));
        for role in Role::ALL {
            assert!(role.may(Access::Public));
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_key_names_its_id_and_matches_only_its_hash() {
        let id = KeyId::new();
        let issued = issue(id, "ci".into(), Role::Operator, [7; 32]);
        assert!(issued.key.starts_with("obk_"));
        assert_eq!(issued.key.len(), 4 + 64);
        assert_eq!(claimed_id(&issued.key), Some(id));
        assert!(issued.record.hash.matches(&KeyHash::of(&issued.key)));
        // Another secret with the same id is another key.
        let other = issue(id, "ci".into(), Role::Operator, [8; 32]);
        assert!(!issued.record.hash.matches(&KeyHash::of(&other.key)));
        assert!(!format!("{issued:?}").contains(&issued.key));
    }

    #[test]
    fn what_is_not_shaped_like_a_key_claims_nothing() {
        assert_eq!(claimed_id(""), None);
        assert_eq!(claimed_id("obk_short"), None);
        assert_eq!(claimed_id(&format!("xyz_{}", "A".repeat(64))), None);
        assert_eq!(claimed_id(&format!("obk_{}", "*".repeat(64))), None);
    }

    #[test]
    fn hashes_round_trip_as_hex() {
        let hash = KeyHash::of("obk_x");
        assert_eq!(KeyHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn a_revoked_key_admits_nothing() {
        let issued = issue(KeyId::new(), "k".into(), Role::Admin, [1; 32]);
        let mut key = ApiKey {
            id: issued.record.id,
            name: "k".into(),
            role: Role::Admin,
            hash: issued.record.hash,
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            last_used_at: None,
            revoked_at: None,
        };
        let presented = KeyHash::of(&issued.key);
        assert!(key.admits(&presented));
        key.revoked_at = Some(DateTime::<Utc>::UNIX_EPOCH);
        assert!(!key.admits(&presented));
    }

    #[test]
    fn a_request_is_local_only_without_forwarding_and_with_a_loopback_host() {
        for host in [
            "localhost",
            "LOCALHOST:8081",
            "127.0.0.1",
            "127.0.0.1:8081",
            "127.9.9.9:1",
            "[::1]",
            "[::1]:8081",
        ] {
            assert!(is_local_request(Some(host), ["accept"]), "{host}");
        }
        for host in [
            "",
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:8081",
            "0.0.0.0:8081",
            "[::2]:8081",
            "[::1]x",
            "::1",
            "localhost:80:80",
            "localhost:http",
        ] {
            assert!(!is_local_request(Some(host), ["accept"]), "{host}");
        }
        assert!(!is_local_request(None, ["accept"]));
        for header in FORWARDING_HEADERS {
            let upper = header.to_ascii_uppercase();
            assert!(
                !is_local_request(Some("127.0.0.1:8081"), [header]),
                "{header}"
            );
            assert!(
                !is_local_request(Some("localhost"), [upper.as_str()]),
                "{upper}"
            );
        }
        assert!(KeyPolicy::Always.requires_key(Some("localhost"), []));
        assert!(!KeyPolicy::Never.requires_key(Some("evil.example"), ["forwarded"]));
        assert!(!KeyPolicy::UnlessLocal.requires_key(Some("localhost"), []));
        assert!(KeyPolicy::UnlessLocal.requires_key(Some("localhost"), ["x-real-ip"]));
    }
}
