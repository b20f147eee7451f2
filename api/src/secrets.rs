//! Random secrets, hashing and constant-time comparison.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::ApiConfig;

/// 256 random bits as URL-safe base64 without padding (43 characters).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex SHA-256 of `text`.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether `presented` hashes to `stored_hex`, compared in constant time.
pub fn matches_hash(presented: &str, stored_hex: &str) -> bool {
    let presented = Sha256::digest(presented.as_bytes());
    match hex::decode(stored_hex) {
        Ok(stored) if stored.len() == presented.len() => {
            bool::from(presented.as_slice().ct_eq(stored.as_slice()))
        }
        _ => false,
    }
}

/// The JWT secret: the configured one, else `<data_dir>/jwt-secret`, generated on first use
/// (256 random bits, file mode 0600).
pub fn load_jwt_secret(config: &ApiConfig) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.jwt_secret {
        anyhow::ensure!(!secret.is_empty(), "the JWT secret is empty");
        if secret.len() < 32 {
            tracing::warn!("the configured JWT secret is shorter than 32 bytes");
        }
        return Ok(secret.as_bytes().to_vec());
    }
    load_or_create_secret_file(&config.data_dir.join("jwt-secret"))
}

fn load_or_create_secret_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            let secret = random_token();
            file.write_all(secret.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(secret.into_bytes())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process may be writing it this very moment: wait for content.
            for _ in 0..50 {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let trimmed = text.trim();
                if !trimmed.is_empty() {
                    return Ok(trimmed.as_bytes().to_vec());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            anyhow::bail!("{} is empty", path.display())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_url_safe() {
        let t = random_token();
        assert_eq!(t.len(), 43);
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(t, random_token());
    }

    #[test]
    fn hash_matching() {
        let h = sha256_hex("key");
        assert!(matches_hash("key", &h));
        assert!(!matches_hash("kez", &h));
        assert!(!matches_hash("key", "zz"));
    }

    #[test]
    fn secret_file_is_created_once_with_0600() {
        let dir = std::env::temp_dir().join(format!("onair-secret-{}", random_token()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("jwt-secret");
        let a = load_or_create_secret_file(&path).expect("create");
        let b = load_or_create_secret_file(&path).expect("read");
        assert_eq!(a, b);
        assert_eq!(a.len(), 43);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
