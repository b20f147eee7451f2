//! Signed HLS URLs: a channel-scoped, expiring HMAC token carried as `?token=` on the
//! multivariant playlist and inherited by every URI the playlists list (relative URIs lose the
//! query, so the playlists append it themselves).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The label of the signing key derived from the node secret (the same on every node).
pub const KEY_LABEL: &str = "onair hls signed urls";

/// The query parameter that carries the token.
pub const TOKEN_PARAM: &str = "token";

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token in the URL.
    #[error("this channel's HLS needs a signed URL (token missing)")]
    Missing,
    /// Not `<expiry>.<mac>`, or not for this channel.
    #[error("the HLS token is malformed or forged")]
    Forged,
    /// Past its expiry.
    #[error("the HLS token has expired")]
    Expired,
}

/// Signs and checks tokens with one key (the same on every node).
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    /// A signer with `key`.
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    fn mac(&self, channel: &str, expires: u64) -> [u8; 32] {
        // One key signs every channel, so the channel is part of the signed text; the newline
        // keeps `ab`+`1` and `a`+`b1` apart (channel ids have no newline).
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(channel.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A token for `channel` valid until `expires` (Unix seconds).
    pub fn sign(&self, channel: &str, expires: u64) -> String {
        format!(
            "{expires}.{}",
            URL_SAFE_NO_PAD.encode(self.mac(channel, expires))
        )
    }

    /// Checks `token` for `channel` at `now` (Unix seconds).
    pub fn verify(&self, channel: &str, token: Option<&str>, now: u64) -> Result<(), TokenError> {
        let token = token.ok_or(TokenError::Missing)?;
        let (exp, mac) = token.split_once('.').ok_or(TokenError::Forged)?;
        let expires: u64 = exp.parse().map_err(|_| TokenError::Forged)?;
        let given = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Forged)?;
        let want = self.mac(channel, expires);
        // Check the signature before the expiry so a forged token never learns whether its
        // expiry would have passed.
        if !bool::from(given.as_slice().ct_eq(want.as_slice())) {
            return Err(TokenError::Forged);
        }
        if now >= expires {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// The value of `name` in a raw query string (no percent-decoding: tokens are URL-safe).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(b"k".repeat(32))
    }

    #[test]
    fn a_token_verifies_for_its_channel_until_it_expires() {
        let s = signer();
        let t = s.sign("demo", 1000);
        assert_eq!(s.verify("demo", Some(&t), 999), Ok(()));
        assert_eq!(s.verify("demo", Some(&t), 1000), Err(TokenError::Expired));
        assert_eq!(s.verify("other", Some(&t), 10), Err(TokenError::Forged));
    }

    #[test]
    fn tampering_is_forgery() {
        let s = signer();
        let t = s.sign("demo", 1000);
        let later = t.replacen("1000", "9000", 1);
        assert_eq!(s.verify("demo", Some(&later), 10), Err(TokenError::Forged));
        let other_key = UrlSigner::new(b"x".repeat(32)).sign("demo", 1000);
        assert_eq!(
            s.verify("demo", Some(&other_key), 10),
            Err(TokenError::Forged)
        );
        for bad in ["", ".", "abc", "1000.", "1000.!!", "x.AAAA"] {
            assert_eq!(
                s.verify("demo", Some(bad), 10),
                Err(TokenError::Forged),
                "{bad}"
            );
        }
        assert_eq!(s.verify("demo", None, 10), Err(TokenError::Missing));
    }

    #[test]
    fn finds_the_token_among_other_parameters() {
        assert_eq!(
            query_param("_HLS_msn=3&token=1.abc&sid=x", TOKEN_PARAM),
            Some("1.abc")
        );
        assert_eq!(query_param("tokens=1", TOKEN_PARAM), None);
    }
}
