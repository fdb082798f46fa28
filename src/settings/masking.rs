//! What `outbound config` and a logged settings value show instead of a secret: `***` for
//! passwords, tokens and keys, in URLs and in the settings that hold them.

use std::fmt;

use serde::Serialize;

use super::{
    LimiterSettings, OtelSettings, Secret, StorageSettings, TimelineSettings, TwilioSettings,
};

/// A URL with its credentials replaced by `***`: the password of its user-info
/// (`scheme://user:password@host`) and the value of every query or key-value parameter that
/// names a password, a secret or a token (`?password=…`, `sslpassword=…`, `auth_token=…`).
pub fn mask_url(url: &str) -> String {
    let masked = match url.split_once("://") {
        Some((scheme, rest)) => {
            // The user-info ends the authority's first part: an '@' after a '/', '?' or '#'
            // belongs to the path or the query.
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((credentials, _)) => match credentials.split_once(':') {
                    Some((user, _)) => {
                        format!("{scheme}://{user}:***@{}", &rest[credentials.len() + 1..])
                    }
                    None => url.to_owned(),
                },
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    mask_secret_parameters(&masked)
}

/// Masks the values of `name=value` parameters whose name holds a secret's word.
fn mask_secret_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        let (before, after) = rest.split_at(at);
        let name_start = before
            .rfind(['?', '&', ';', ' ', '\t'])
            .map_or(0, |i| i + 1);
        let name = before[name_start..].to_ascii_lowercase();
        out.push_str(before);
        out.push('=');
        let value = &after[1..];
        let value_end = value
            .find(['&', ';', ' ', '\t', '#'])
            .unwrap_or(value.len());
        if ["password", "secret", "token"]
            .iter()
            .any(|word| name.contains(word))
            && value_end > 0
        {
            out.push_str("***");
        } else {
            out.push_str(&value[..value_end]);
        }
        rest = &value[value_end..];
    }
    out.push_str(rest);
    out
}

/// Formats a settings section as its serialized form after `mask` replaced its secrets.
fn debug_masked<T: Serialize + Clone>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    value: &T,
    mask: impl FnOnce(&mut T),
) -> fmt::Result {
    let mut copy = value.clone();
    mask(&mut copy);
    match serde_json::to_value(&copy) {
        Ok(fields) => write!(f, "{name} {fields}"),
        Err(_) => write!(f, "{name} {{ .. }}"),
    }
}

impl fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "StorageSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for LimiterSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "LimiterSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for TimelineSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "TimelineSettings", self, |s| s.url = mask_url(&s.url))
    }
}

impl fmt::Debug for OtelSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "OtelSettings", self, |s| {
            s.endpoint = s.endpoint.as_deref().map(mask_url)
        })
    }
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_masked(f, "TwilioSettings", self, TwilioSettings::mask)
    }
}

impl TwilioSettings {
    /// Replaces the secrets: the auth token and any credentials in its URLs.
    pub(super) fn mask(&mut self) {
        if !self.auth_token.expose().is_empty() {
            self.auth_token = Secret::new("***");
        }
        self.api_base = mask_url(&self.api_base);
        self.public_url = mask_url(&self.public_url);
    }
}
