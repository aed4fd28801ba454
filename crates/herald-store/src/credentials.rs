//! App credentials: secret keys (kept as SHA-256 hashes, checked in constant
//! time) and token secrets (kept as is, since they sign HS256 tokens).

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The plain credentials of a new or rotated app, shown once.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct NewCredentials {
    /// The app name.
    pub app: String,
    /// The secret key for the server API (`Authorization: Bearer <key>`).
    pub key: String,
    /// The HS256 secret that signs client tokens.
    pub token_secret: String,
}

/// An app as the server needs it: its name and currently valid credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The app name.
    pub name: String,
    /// SHA-256 hashes of the valid secret keys.
    pub key_hashes: Vec<[u8; 32]>,
    /// Valid token secrets, newest first (tokens are signed with the first).
    pub token_secrets: Vec<String>,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
}

impl std::fmt::Debug for AppRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRecord")
            .field("name", &self.name)
            .field("keys", &self.key_hashes.len())
            .field("token_secrets", &self.token_secrets.len())
            .finish()
    }
}

impl AppRecord {
    /// True when `presented` is one of the app's valid keys (constant time per key).
    pub fn verify_key(&self, presented: &str) -> bool {
        let h = hash_key(presented);
        let mut ok = subtle::Choice::from(0);
        for k in &self.key_hashes {
            ok |= k.ct_eq(&h);
        }
        ok.into()
    }
}

/// SHA-256 of a key. Keys are 192 random bits, so a fast hash is enough: there is
/// nothing to brute-force.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A fresh random secret: `prefix` + 48 hex digits (192 bits).
pub fn generate_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A fresh secret key (`hk_...`) and token secret (`hs_...`) for `app`.
pub fn generate(app: &str) -> NewCredentials {
    NewCredentials {
        app: app.to_owned(),
        key: generate_secret("hk_"),
        token_secret: generate_secret("hs_"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify() {
        let c = generate("a");
        let r = AppRecord {
            name: "a".into(),
            key_hashes: vec![hash_key(&c.key)],
            token_secrets: vec![c.token_secret.clone()],
            created_at: 0,
        };
        assert!(r.verify_key(&c.key));
        assert!(!r.verify_key("hk_nope"));
        assert!(!r.verify_key(""));
        assert!(!format!("{r:?}").contains(&c.token_secret));
    }
}
