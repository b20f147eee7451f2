//! Payment providers behind subscriptions.
//!
//! `test` confirms every payment at once. `webhook` sends the buyer to a payment page and waits
//! for `POST /api/payments/webhook`, signed Stripe-style:
//! `Onair-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, body
//! `{"eventID": "..", "paymentID": "..", "status": "succeeded" | "failed"}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;

use crate::config::PaymentProviderConfig;

/// Header carrying the webhook signature.
pub const SIGNATURE_HEADER: &str = "onair-signature";
/// Accepted clock difference between the signer and us.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// A payment to start.
#[derive(Clone, Debug)]
pub struct PaymentRequest {
    /// Our id for it (also in the webhook).
    pub payment_id: String,
    /// Channel subscribed to.
    pub channel_id: String,
    /// Buyer.
    pub user_id: String,
    /// Tier 1..=3.
    pub tier: u8,
}

/// What the provider did with a new payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStart {
    /// Paid already: activate now.
    Confirmed,
    /// The buyer must pay at this URL; a webhook will confirm.
    Pending {
        /// Where to send the buyer.
        payment_input_url: String,
    },
}

/// A verified webhook notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// Provider's unique event id (replays carry the same one).
    pub event_id: String,
    /// Our payment id.
    pub payment_id: String,
    /// Paid (`true`) or failed.
    pub succeeded: bool,
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Missing, malformed or wrong signature (401).
    #[error("invalid signature")]
    BadSignature,
    /// Signed too long ago (401).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// Signed correctly but the body is not an event (400).
    #[error("malformed event: {0}")]
    Malformed(String),
    /// This provider takes no webhooks (404).
    #[error("this payment provider takes no webhooks")]
    NotSupported,
}

/// Boxed future returned by [`PaymentProvider::start`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Takes the money for subscriptions.
pub trait PaymentProvider: Send + Sync {
    /// Short name stored with each payment.
    fn name(&self) -> &str;
    /// Starts a payment.
    fn start<'a>(&'a self, req: &'a PaymentRequest) -> BoxFuture<'a, anyhow::Result<PaymentStart>>;
    /// Verifies and parses a webhook (`signature` is the `Onair-Signature` header).
    fn parse_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<WebhookEvent, WebhookError>;
}

/// Confirms every payment at once.
pub struct TestProvider;

impl PaymentProvider for TestProvider {
    fn name(&self) -> &str {
        "test"
    }

    fn start<'a>(&'a self, _: &'a PaymentRequest) -> BoxFuture<'a, anyhow::Result<PaymentStart>> {
        Box::pin(async { Ok(PaymentStart::Confirmed) })
    }

    fn parse_webhook(
        &self,
        _: Option<&str>,
        _: &[u8],
        _: i64,
    ) -> Result<WebhookEvent, WebhookError> {
        Err(WebhookError::NotSupported)
    }
}

/// Pending payments confirmed by an HMAC-signed webhook.
pub struct WebhookProvider {
    secret: Vec<u8>,
    payment_input_url: String,
}

impl WebhookProvider {
    /// `payment_input_url` may contain `{paymentID}`.
    pub fn new(secret: &str, payment_input_url: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
            payment_input_url: payment_input_url.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventBody {
    #[serde(rename = "eventID")]
    event_id: String,
    #[serde(rename = "paymentID")]
    payment_id: String,
    status: String,
}

fn hmac_hex(secret: &[u8], t: i64, body: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac.finalize().into_bytes().to_vec())
}

/// The `Onair-Signature` header value for `body` signed at `t` (for senders and tests).
pub fn sign_webhook(secret: &str, t: i64, body: &[u8]) -> String {
    let mac = hmac_hex(secret.as_bytes(), t, body).unwrap_or_default();
    format!("t={t},v1={}", hex::encode(mac))
}

impl PaymentProvider for WebhookProvider {
    fn name(&self) -> &str {
        "webhook"
    }

    fn start<'a>(&'a self, req: &'a PaymentRequest) -> BoxFuture<'a, anyhow::Result<PaymentStart>> {
        let url = self
            .payment_input_url
            .replace("{paymentID}", &req.payment_id);
        Box::pin(async move {
            Ok(PaymentStart::Pending {
                payment_input_url: url,
            })
        })
    }

    fn parse_webhook(
        &self,
        signature: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<WebhookEvent, WebhookError> {
        let header = signature.ok_or(WebhookError::BadSignature)?;
        let mut t: Option<i64> = None;
        let mut sigs: Vec<Vec<u8>> = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = v.parse().ok(),
                Some(("v1", v)) => {
                    if let Ok(bytes) = hex::decode(v) {
                        sigs.push(bytes);
                    }
                }
                _ => {}
            }
        }
        let t = t.ok_or(WebhookError::BadSignature)?;
        // Verify the MAC in constant time; `verify_slice` does that.
        let ok = sigs.iter().any(|sig| {
            Hmac::<Sha256>::new_from_slice(&self.secret).is_ok_and(|mut mac| {
                mac.update(t.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                mac.verify_slice(sig).is_ok()
            })
        });
        if !ok {
            return Err(WebhookError::BadSignature);
        }
        if (now_unix - t).abs() > SIGNATURE_TOLERANCE_SECS {
            return Err(WebhookError::Stale);
        }
        let ev: EventBody =
            serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        let succeeded = match ev.status.as_str() {
            "succeeded" => true,
            "failed" => false,
            other => return Err(WebhookError::Malformed(format!("unknown status {other:?}"))),
        };
        let ok_id = |s: &str| !s.is_empty() && s.len() <= 200 && s.chars().all(|c| !c.is_control());
        if !ok_id(&ev.event_id) || !ok_id(&ev.payment_id) {
            return Err(WebhookError::Malformed(
                "eventID and paymentID must be 1 to 200 printable characters".into(),
            ));
        }
        Ok(WebhookEvent {
            event_id: ev.event_id,
            payment_id: ev.payment_id,
            succeeded,
        })
    }
}

pub(crate) fn provider_from_config(cfg: &PaymentProviderConfig) -> Arc<dyn PaymentProvider> {
    match cfg {
        PaymentProviderConfig::Test => Arc::new(TestProvider),
        PaymentProviderConfig::Webhook {
            secret,
            payment_input_url,
        } => Arc::new(WebhookProvider::new(secret, payment_input_url)),
        PaymentProviderConfig::Custom(p) => p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signatures() {
        let p = WebhookProvider::new("s3cret", "https://pay/{paymentID}");
        let body = br#"{"eventID":"e1","paymentID":"p1","status":"succeeded"}"#;
        let sig = sign_webhook("s3cret", 1000, body);
        let ev = p.parse_webhook(Some(&sig), body, 1010).expect("valid");
        assert_eq!(ev.payment_id, "p1");
        assert!(ev.succeeded);
        let forged = sign_webhook("other", 1000, body);
        assert!(matches!(
            p.parse_webhook(Some(&forged), body, 1010),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            p.parse_webhook(Some(&sig), body, 5000),
            Err(WebhookError::Stale)
        ));
        assert!(matches!(
            p.parse_webhook(None, body, 1000),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            p.parse_webhook(Some("t=1000,v1=zz"), body, 1000),
            Err(WebhookError::BadSignature)
        ));
    }
}
