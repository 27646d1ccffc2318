//! `X-Lomi-Signature`: lowercase hex of HMAC-SHA256 over the exact body bytes, keyed
//! with the endpoint's secret (NOTES.md, "Webhooks"). No timestamp is signed: replays
//! are stopped by deduplicating on the envelope `id`, not here.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::WebhookSecret;

/// Whether `header` is the body's signature under `secret`. The comparison is
/// constant-time (`Mac::verify_slice`); a header that is not hex of the right length
/// is simply not the signature.
pub fn verify(secret: &WebhookSecret, body: &[u8], header: &[u8]) -> bool {
    let Some(signature) = decode_hex(header.trim_ascii()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Hex digits (either case) to bytes; `None` for anything else.
fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    const RFC_4231_2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn the_signature_is_hex_hmac_sha256_of_the_body() {
        let secret = WebhookSecret::new("Jefe");
        let body = b"what do ya want for nothing?";
        assert!(verify(&secret, body, RFC_4231_2.as_bytes()));
        assert!(verify(&secret, body, RFC_4231_2.to_uppercase().as_bytes()));
        assert!(!verify(
            &secret,
            b"what do ya want for nothing!",
            RFC_4231_2.as_bytes()
        ));
        assert!(!verify(
            &WebhookSecret::new("jefe"),
            body,
            RFC_4231_2.as_bytes()
        ));
        for bad in [
            "",
            "5bdc",
            "zz",
            &RFC_4231_2[1..],
            &format!("sha256={RFC_4231_2}"),
        ] {
            assert!(!verify(&secret, body, bad.as_bytes()), "{bad}");
        }
    }
}
