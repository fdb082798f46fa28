//! Standard Webhooks signatures: `webhook-signature: v1,<base64 of HMAC-SHA256>`, keyed by the
//! endpoint's decoded secret, over `{webhook-id}.{webhook-timestamp}.{body}`.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac_sha256::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::WebhookError;

const PREFIX: &str = "whsec_";
/// Shortest and longest secret the specification allows, in bytes (192 and 512 bits).
const MIN_SECRET: usize = 24;
const MAX_SECRET: usize = 64;

/// An endpoint's signing secret. Its `Debug` hides it, and it has no `Display`, so that it is
/// only ever written out on purpose, through `expose`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A new endpoint's secret, from 32 random bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes.to_vec())
    }

    /// A new endpoint's secret, drawn from the caller's random number generator.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        Self::from_bytes(rng.random())
    }

    /// A secret as `expose` wrote it: `whsec_` and the standard base64 of 24 to 64 bytes.
    pub fn parse(text: &str) -> Result<Self, WebhookError> {
        let encoded = text.strip_prefix(PREFIX).ok_or(WebhookError::Secret)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| WebhookError::Secret)?;
        if !(MIN_SECRET..=MAX_SECRET).contains(&bytes.len()) {
            return Err(WebhookError::Secret);
        }
        Ok(Self(bytes))
    }

    /// The secret as shown once at creation and kept in the store.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `webhook-signature` of a try: `v1,` and the base64 of the MAC.
pub fn sign(secret: &Secret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(secret, msg_id, timestamp_secs, body))
    )
}

/// Whether a `webhook-signature` header (signatures separated by spaces, as during a secret
/// rotation) holds a `v1` signature of this message by `secret`, compared in constant time;
/// what a receiver does, for the tests that play one.
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp_secs: i64,
    body: &[u8],
    header: &str,
) -> bool {
    let expected = mac(secret, msg_id, timestamp_secs, body);
    header.split_whitespace().any(|entry| {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            return false;
        };
        STANDARD
            .decode(encoded)
            .is_ok_and(|given| bool::from(given.as_slice().ct_eq(&expected)))
    })
}

fn mac(secret: &Secret, msg_id: &str, timestamp_secs: i64, body: &[u8]) -> [u8; 32] {
    let timestamp = timestamp_secs.to_string();
    hmac_sha256(
        &secret.0,
        &[msg_id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
    )
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // Any key length is accepted by HMAC; the error case does not occur.
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    // The vector of the Standard Webhooks reference libraries' "sign function works" test
    // (libraries/javascript/src/webhook.test.ts, libraries/python/tests/test_webhooks.py in
    // github.com/standard-webhooks/standard-webhooks). Its secret is 24 bytes.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya ", b"want for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signs_the_standard_webhooks_vector() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(sign(&secret, MSG_ID, TIMESTAMP, BODY), SIGNATURE);
        assert!(verify(&secret, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
    }

    #[test]
    fn verify_refuses_any_change() {
        let secret = Secret::parse(SECRET).unwrap();
        assert!(!verify(&secret, MSG_ID, TIMESTAMP + 1, BODY, SIGNATURE));
        assert!(!verify(&secret, "msg_other", TIMESTAMP, BODY, SIGNATURE));
        assert!(!verify(
            &secret,
            MSG_ID,
            TIMESTAMP,
            br#"{"test":2432232314}"#,
            SIGNATURE
        ));
        let other = Secret::from_bytes([7; 32]);
        assert!(!verify(&other, MSG_ID, TIMESTAMP, BODY, SIGNATURE));
        for header in [
            "",
            "v1,",
            "v1,g0hM9SsE",
            "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            "v1,not base64!",
        ] {
            assert!(
                !verify(&secret, MSG_ID, TIMESTAMP, BODY, header),
                "{header:?}"
            );
        }
    }

    #[test]
    fn verify_takes_any_signature_of_a_list() {
        let secret = Secret::parse(SECRET).unwrap();
        let header = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= {SIGNATURE}"
        );
        assert!(verify(&secret, MSG_ID, TIMESTAMP, BODY, &header));
    }

    #[test]
    fn secrets_round_trip_and_hide() {
        let secret = Secret::from_bytes([0xab; 32]);
        let text = secret.expose();
        assert!(text.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&text[6..]).unwrap(), [0xab; 32]);
        assert_eq!(Secret::parse(&text).unwrap().expose(), text);
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(Secret::parse(SECRET).unwrap().expose(), SECRET);
    }

    #[test]
    fn generated_secrets_come_from_the_callers_rng() {
        let one = Secret::generate(&mut StdRng::seed_from_u64(7));
        let same = Secret::generate(&mut StdRng::seed_from_u64(7));
        let other = Secret::generate(&mut StdRng::seed_from_u64(8));
        assert_eq!(one.expose(), same.expose());
        assert_ne!(one.expose(), other.expose());
        assert_eq!(STANDARD.decode(&one.expose()[6..]).unwrap().len(), 32);
    }

    #[test]
    fn malformed_secrets_are_refused() {
        let short = format!("whsec_{}", STANDARD.encode([1; 23]));
        let long = format!("whsec_{}", STANDARD.encode([1; 65]));
        for text in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64",
            &short,
            &long,
        ] {
            assert!(Secret::parse(text).is_err(), "{text:?}");
        }
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([1; 64]))).is_ok());
        assert!(!WebhookError::Secret.to_string().contains("MfKQ"));
    }
}
