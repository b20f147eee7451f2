//! Built-in accounts: register and log in with argon2id password hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;

use chrono::Utc;
use sea_orm::{ActiveValue::Set, EntityTrait as _};

use crate::Api;
use crate::config::PasswordHashing;
use crate::db::entities::users;
use crate::error::{ApiError, ApiResult};
use crate::validate;

/// Shortest accepted password.
pub const PASSWORD_MIN: usize = 8;
/// Longest accepted password (argon2 input is bounded to keep hashing cheap to refuse).
pub const PASSWORD_MAX: usize = 256;

/// A user as the token carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Username (JWT `sub`).
    pub user_id: String,
    /// Display name (JWT `name`).
    pub name: String,
    /// Roles (JWT `roles`).
    pub roles: Vec<String>,
}

impl From<users::Model> for Account {
    fn from(m: users::Model) -> Self {
        Self {
            user_id: m.user_id,
            name: m.name,
            roles: m
                .roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

fn new_salt() -> Result<SaltString, argon2::password_hash::Error> {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    SaltString::encode_b64(&bytes)
}

fn hasher(cost: PasswordHashing) -> Argon2<'static> {
    match cost {
        PasswordHashing::Default => Argon2::default(),
        PasswordHashing::Fast => {
            let params = Params::new(64, 1, 1, None).unwrap_or_default();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        }
    }
}

/// A hash of a random password, checked when the user does not exist so that a wrong username
/// takes as long as a wrong password. Computed once per cost.
fn dummy_hash(cost: PasswordHashing) -> String {
    static DEFAULT: OnceLock<String> = OnceLock::new();
    static FAST: OnceLock<String> = OnceLock::new();
    let cell = match cost {
        PasswordHashing::Default => &DEFAULT,
        PasswordHashing::Fast => &FAST,
    };
    cell.get_or_init(|| {
        new_salt()
            .and_then(|salt| {
                hasher(cost)
                    .hash_password(crate::secrets::random_token().as_bytes(), &salt)
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
    .clone()
}

impl Api {
    /// Takes one login/register attempt from `client` (an IP address); `RateLimited` past the
    /// configured rate.
    pub fn check_auth_rate(&self, client: &str) -> ApiResult<()> {
        self.inner
            .auth_limiter
            .check(client)
            .map_err(|wait| ApiError::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
    }

    /// Creates an account. Errors: `Invalid` (`invalid-username`, `invalid-password`,
    /// `invalid-name`), `Conflict` (`username-taken`).
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        display_name: Option<&str>,
    ) -> ApiResult<Account> {
        if !validate::is_slug(username) {
            return Err(ApiError::invalid(
                "invalid-username",
                "username must match [a-z0-9_]{3,25}",
            ));
        }
        let n = password.chars().count();
        if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&n) {
            return Err(ApiError::invalid(
                "invalid-password",
                format!("password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters"),
            ));
        }
        let name = display_name.unwrap_or(username).to_string();
        if name.trim().is_empty() || !validate::is_line(&name, 50) {
            return Err(ApiError::invalid(
                "invalid-name",
                "displayName must be 1 to 50 characters on one line",
            ));
        }
        let cost = self.inner.config.password_hashing;
        let pw = password.to_string();
        let hash = tokio::task::spawn_blocking(move || {
            let salt = new_salt()?;
            hasher(cost)
                .hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing: {e}")))?;
        let model = users::ActiveModel {
            user_id: Set(username.to_string()),
            name: Set(name),
            password_hash: Set(hash),
            roles: Set(String::new()),
            created_at: Set(Utc::now()),
        };
        match users::Entity::insert(model)
            .exec_without_returning(self.db())
            .await
        {
            Ok(_) => {}
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(ApiError::Conflict {
                    slug: "username-taken",
                    detail: format!("username {username:?} is taken"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Account {
            user_id: username.to_string(),
            name: display_name.unwrap_or(username).to_string(),
            roles: Vec::new(),
        })
    }

    /// Checks a username and password. Wrong either way: `Unauthorized`.
    pub async fn login(&self, username: &str, password: &str) -> ApiResult<Account> {
        let user = if validate::is_slug(username) {
            users::Entity::find_by_id(username.to_string())
                .one(self.db())
                .await?
        } else {
            None
        };
        let cost = self.inner.config.password_hashing;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            let stored = stored.unwrap_or_else(|| dummy_hash(cost));
            PasswordHash::new(&stored)
                .is_ok_and(|h| hasher(cost).verify_password(pw.as_bytes(), &h).is_ok())
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
        match user {
            Some(u) if ok => Ok(u.into()),
            _ => Err(ApiError::Unauthorized("wrong username or password".into())),
        }
    }

    /// The account of `user_id`, if it exists.
    pub async fn account(&self, user_id: &str) -> ApiResult<Option<Account>> {
        Ok(users::Entity::find_by_id(user_id.to_string())
            .one(self.db())
            .await?
            .map(Account::from))
    }

    /// Signs a token for an account with the configured lifetime.
    pub fn issue_token(&self, account: &Account) -> ApiResult<String> {
        let roles: Vec<&str> = account.roles.iter().map(String::as_str).collect();
        self.mint_token_with_roles(
            &account.user_id,
            &account.name,
            self.inner.config.token_ttl,
            &roles,
        )
        .map_err(ApiError::Internal)
    }
}
