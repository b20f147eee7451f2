//! JWT (HS256) issue and verification.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Api;

/// The claims of an onair token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Roles; `admin` may act as the owner of every channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
}

impl Claims {
    /// Whether the token carries `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .as_ref()
            .is_some_and(|r| r.iter().any(|x| x == role))
    }

    /// Whether the token carries the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Signature, algorithm or shape wrong.
    #[error("invalid token")]
    Invalid,
    /// Past its `exp`.
    #[error("token expired")]
    Expired,
    /// The subject is not an acceptable user id.
    #[error("invalid subject")]
    BadSubject,
}

pub(crate) struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub(crate) fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Api {
    /// Signs a token for `user_id` valid for `ttl`.
    pub fn mint_token(&self, user_id: &str, name: &str, ttl: Duration) -> anyhow::Result<String> {
        self.mint_token_with_roles(user_id, name, ttl, &[])
    }

    /// Signs a token carrying roles (e.g. `admin`).
    pub fn mint_token_with_roles(
        &self,
        user_id: &str,
        name: &str,
        ttl: Duration,
        roles: &[&str],
    ) -> anyhow::Result<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            name: name.to_string(),
            exp: now.saturating_add(ttl.as_secs()),
            iat: Some(now),
            roles: (!roles.is_empty()).then(|| roles.iter().map(|r| r.to_string()).collect()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.inner.jwt.encoding,
        )?)
    }

    /// Checks signature (HS256 only) and expiry, and returns the claims.
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &self.inner.jwt.decoding,
            &self.inner.jwt.validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            _ => TokenError::Invalid,
        })?;
        if !crate::validate::is_user_id(&data.claims.sub) {
            return Err(TokenError::BadSubject);
        }
        Ok(data.claims)
    }
}
