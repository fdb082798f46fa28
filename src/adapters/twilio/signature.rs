//! `X-Twilio-Signature`: base64 of HMAC-SHA1, keyed by the auth token, over the callback URL as
//! the carrier called it followed by every form parameter's name and value, sorted by name
//! (repeated names by value), with no separators. Twilio's own validators accept the signature
//! of the URL with or without its default port, because the carrier has signed both ways.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

fn mac(auth_token: &str, url: &str, params: &[(String, String)]) -> HmacSha1 {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match HmacSha1::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts keys of any length"),
    };
    mac.update(url.as_bytes());
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    mac
}

/// The signature the carrier sends for a POST of `params` to `url`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(mac(auth_token, url, params).finalize().into_bytes())
}

/// Whether `signature` is the carrier's for this request, compared in constant time; the URL
/// is tried as given, with its default port added and with its port removed.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    url_variants(url).iter().any(|candidate| {
        mac(auth_token, candidate, params)
            .verify_slice(&expected)
            .is_ok()
    })
}

/// `url`, and the same URL with the scheme's default port added or an explicit port removed.
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let port_at = match hostport.rfind(']') {
        Some(bracket) => hostport[bracket..].find(':').map(|i| bracket + i),
        None => hostport.rfind(':'),
    };
    match port_at {
        Some(colon) => {
            variants.push(format!("{scheme}://{userinfo}{}{tail}", &hostport[..colon]));
        }
        None => {
            let default = match scheme.to_ascii_lowercase().as_str() {
                "https" => Some(443),
                "http" => Some(80),
                _ => None,
            };
            if let Some(port) = default {
                variants.push(format!("{scheme}://{userinfo}{hostport}:{port}{tail}"));
            }
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    #[test]
    fn matches_twilios_published_vector() {
        assert_eq!(
            sign("12345", URL, &vector()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert!(verify(
            "12345",
            URL,
            &vector(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn parameter_order_does_not_matter_but_every_byte_does() {
        let mut shuffled = vector();
        shuffled.reverse();
        assert!(verify(
            "12345",
            URL,
            &shuffled,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let mut altered = vector();
        altered[2].1 = "1235".into();
        assert!(!verify(
            "12345",
            URL,
            &altered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(
            "12346",
            URL,
            &vector(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &vector(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!verify("12345", URL, &vector(), "not base64!"));
        assert!(!verify("12345", URL, &vector(), ""));
    }

    #[test]
    fn a_signature_with_or_without_the_default_port_verifies() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed_with_port = sign("12345", with_port, &vector());
        assert!(verify("12345", URL, &vector(), &signed_with_port));
        assert!(verify(
            "12345",
            with_port,
            &vector(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert_eq!(
            url_variants("http://127.0.0.1:8080/w?a=1"),
            vec!["http://127.0.0.1:8080/w?a=1", "http://127.0.0.1/w?a=1"]
        );
        assert_eq!(
            url_variants("http://[::1]/w"),
            vec!["http://[::1]/w", "http://[::1]:80/w"]
        );
    }

    #[test]
    fn repeated_names_are_sorted_by_value() {
        let a = vec![
            ("StatusCallbackEvent".to_owned(), "ringing".to_owned()),
            ("StatusCallbackEvent".to_owned(), "answered".to_owned()),
        ];
        let mut b = a.clone();
        b.reverse();
        assert_eq!(sign("t", "http://x/", &a), sign("t", "http://x/", &b));
    }
}
