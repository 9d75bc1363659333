//! TOTP secrets sealed at rest: ChaCha20-Poly1305 under one 32-byte key, a random
//! 96-bit nonce per sealing, and the id of the record that holds the secret (user id,
//! challenge key) as associated data, so a sealed secret moved to another record does
//! not open. The stored form is `v1:` + base64url(nonce || ciphertext || tag).
//!
//! The key comes from `PORTCULLIS_SECRET_KEY` (32 bytes in base64) or else from
//! `data_dir/keys/secret.key` (base64, made on first start, mode 0600 in a 0700
//! directory). Every backend seals through this module; the flows see plaintext only.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use super::dir::write_private;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// The environment variable that holds the key, when it is not in the data directory.
pub const KEY_ENV: &str = "PORTCULLIS_SECRET_KEY";

/// The key file in `data_dir/keys/`.
pub const KEY_FILE: &str = "secret.key";

/// The version prefix of a sealed secret.
const PREFIX: &str = "v1:";

/// Why the key could not be had. Never shows the key itself.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{KEY_ENV}: not valid base64 (32 random bytes, e.g. `openssl rand -base64 32`)")]
    Base64,
    #[error("{KEY_ENV}: the key must be 32 bytes, found {0}")]
    Length(usize),
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

/// A sealed secret that does not open: wrong key, altered, or moved to another record.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a sealed secret does not open (wrong key, or the record was altered or moved)")]
pub struct OpenError;

/// The key that seals and opens secrets.
pub struct SecretKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// The key from `PORTCULLIS_SECRET_KEY`, or else from (or made into)
    /// `data_dir/keys/secret.key`.
    pub fn from_environment(data_dir: &Path) -> Result<Self, KeyError> {
        Self::load(data_dir, std::env::var_os(KEY_ENV))
    }

    /// Like [`SecretKey::from_environment`], with the variable's value given.
    pub fn load(data_dir: &Path, env: Option<OsString>) -> Result<Self, KeyError> {
        if let Some(value) = env {
            let text = value.into_string().map_err(|_| KeyError::Base64)?;
            return Self::from_base64(&text);
        }
        let dir = data_dir.join("keys");
        let path = dir.join(KEY_FILE);
        let file_err = |message: String| KeyError::File {
            path: path.display().to_string(),
            message,
        };
        if path.exists() {
            let text = fs::read_to_string(&path).map_err(|e| file_err(format!("cannot read: {e}")))?;
            return Self::from_base64(&text).map_err(|e| match e {
                KeyError::Length(n) => file_err(format!("the key must be 32 bytes, found {n}")),
                _ => file_err("not valid base64".to_owned()),
            });
        }
        let mut raw = [0u8; 32];
        fill(&mut raw);
        write_private(&dir, &path, format!("{}\n", STANDARD.encode(raw)).as_bytes())
            .map_err(|e| file_err(format!("cannot write: {e}")))?;
        Self::from_bytes(&raw)
    }

    /// A key of 32 bytes in base64 (standard or URL-safe alphabet, padded or not).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let raw = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| KeyError::Base64)?;
        Self::from_bytes(&raw)
    }

    /// A key over 32 raw bytes.
    pub fn from_bytes(raw: &[u8]) -> Result<Self, KeyError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, raw).map_err(|_| KeyError::Length(raw.len()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
        })
    }

    /// A fresh random key, for throwaway stores.
    pub fn random() -> Self {
        let mut raw = [0u8; 32];
        fill(&mut raw);
        Self::from_bytes(&raw).unwrap_or_else(|_| unreachable!("32 bytes is a ChaCha20-Poly1305 key"))
    }

    /// Seals `secret` for the record `id`.
    pub fn seal(&self, id: &[u8], secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        fill(&mut nonce);
        let mut data = secret.as_bytes().to_vec();
        // Sealing fails only for inputs of gigabytes.
        if self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(id), &mut data)
            .is_err()
        {
            panic!("a secret too long to seal");
        }
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens what [`SecretKey::seal`] made for the record `id`.
    pub fn open(&self, id: &[u8], sealed: &str) -> Result<String, OpenError> {
        let body = sealed.strip_prefix(PREFIX).ok_or(OpenError)?;
        let mut data = URL_SAFE_NO_PAD.decode(body).map_err(|_| OpenError)?;
        if data.len() < NONCE_LEN {
            return Err(OpenError);
        }
        let nonce = Nonce::try_assume_unique_for_key(&data[..NONCE_LEN]).map_err(|_| OpenError)?;
        let mut rest = data.split_off(NONCE_LEN);
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id), &mut rest)
            .map_err(|_| OpenError)?;
        String::from_utf8(plain.to_vec()).map_err(|_| OpenError)
    }
}

/// Whether a stored secret is sealed (else it is the plaintext of an older version).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

fn fill(bytes: &mut [u8]) {
    SystemRandom::new().fill(bytes).unwrap_or_else(|_| {
        // The system RNG does not fail on supported platforms; refuse to continue if it does.
        panic!("system random number generator unavailable")
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

    // A sealed secret opens with its key and id, and shows neither the secret nor the
    // same text twice.
    #[test]
    fn round_trip() {
        let k = SecretKey::random();
        let a = k.seal(b"u-1", SECRET);
        let b = k.seal(b"u-1", SECRET);
        assert!(a.starts_with("v1:") && is_sealed(&a));
        assert_ne!(a, b, "a fresh nonce per sealing");
        assert!(!a.contains(SECRET));
        assert_eq!(k.open(b"u-1", &a).unwrap(), SECRET);
        assert_eq!(k.open(b"u-1", &b).unwrap(), SECRET);
    }

    // Tampering, another record's id, another key and plaintext are all refused.
    #[test]
    fn refuses() {
        let k = SecretKey::random();
        let sealed = k.seal(b"u-1", SECRET);
        assert!(k.open(b"u-2", &sealed).is_err(), "wrong associated data");
        assert!(SecretKey::random().open(b"u-1", &sealed).is_err(), "wrong key");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let tampered = format!("v1:{}", URL_SAFE_NO_PAD.encode(&raw));
            assert!(k.open(b"u-1", &tampered).is_err(), "byte {i} flipped");
            raw[i] ^= 1;
        }
        assert!(k.open(b"u-1", SECRET).is_err(), "plaintext is not sealed");
        assert!(k.open(b"u-1", "v1:").is_err());
        assert!(k.open(b"u-1", "v1:!!").is_err());
        assert!(k.open(b"u-1", &sealed[..sealed.len() - 4]).is_err(), "truncated");
    }

    // The environment's key wins; a bad one is an error naming the variable, without the
    // value; without it, the key file is made once (0600) and read back.
    #[test]
    fn loading() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let bad = SecretKey::load(tmp.path(), Some("c2hvcnQ=".into()))
            .unwrap_err()
            .to_string();
        assert!(
            bad.contains(KEY_ENV) && bad.contains("32") && !bad.contains("c2hvcnQ"),
            "{bad}"
        );
        let bad = SecretKey::load(tmp.path(), Some("not base64 at all!".into()))
            .unwrap_err()
            .to_string();
        assert!(bad.contains(KEY_ENV) && !bad.contains("at all"), "{bad}");
        assert!(!tmp.path().join("keys").exists(), "nothing made from a bad variable");

        let env_key = STANDARD.encode([7u8; 32]);
        let k = SecretKey::load(tmp.path(), Some(env_key.clone().into())).unwrap();
        let sealed = k.seal(b"id", SECRET);
        assert!(!tmp.path().join("keys").exists(), "the variable's key is not written");
        assert_eq!(
            SecretKey::from_base64(&env_key).unwrap().open(b"id", &sealed).unwrap(),
            SECRET
        );

        let made = SecretKey::load(tmp.path(), None).unwrap();
        let path = tmp.path().join("keys").join(KEY_FILE);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&tmp.path().join("keys")), 0o700);
        let sealed = made.seal(b"id", SECRET);
        let again = SecretKey::load(tmp.path(), None).unwrap();
        assert_eq!(
            again.open(b"id", &sealed).unwrap(),
            SECRET,
            "the same key on the next start"
        );
        assert!(k.open(b"id", &sealed).is_err());
    }
}
