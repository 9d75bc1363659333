//! Access tokens: JWTs signed with an Ed25519 key (or ES256, by configuration) generated
//! at first start into `data_dir/keys/` (mode 0600) and published at the JWKS endpoint
//! with `kid` = the key's RFC 7638 thumbprint.
//!
//! Verification pins the algorithm and the key by `kid`; headers such as `jwk`, `jku`
//! and `x5u` are never followed. `exp`, `nbf` and `iat` are checked against the
//! gateway's clock with at most 30 s of leeway, `iss` must be ours and `aud` must be
//! `[tokens] audience`. The same key signs audit checkpoints (detached signatures).
//! Also here: the random opaque tokens (refresh, MFA, confirmation) and the hash under
//! which they are stored.

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::{Deserialize, Serialize};

use crate::store::dir::write_private;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// `[tokens] audience`; verification requires it (a default here only so that a
    /// token without one is refused as such, not as unreadable).
    #[serde(default)]
    pub aud: String,
    pub sub: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The account's attributes; left out when it has none, so tokens of accounts
    /// without attributes stay as they were.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub attrs: std::collections::BTreeMap<String, String>,
    pub amr: Vec<String>,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// The session (refresh-token family) the token belongs to.
    pub sid: String,
    /// When the user last passed the second factor (or the password, for an account
    /// without one), Unix seconds (RFC 9470). 0 in tokens made before it was recorded.
    #[serde(default)]
    pub auth_time: u64,
}

pub use crate::config::KeyAlg;

/// The file in `data_dir/keys/` that holds the key of `alg`.
fn key_file(alg: KeyAlg) -> &'static str {
    match alg {
        KeyAlg::EdDsa => "signing-ed25519.pk8",
        KeyAlg::Es256 => "signing-es256.pk8",
    }
}

/// The JWT `alg` of `alg`.
fn jwt_alg(alg: KeyAlg) -> Algorithm {
    match alg {
        KeyAlg::EdDsa => Algorithm::EdDSA,
        KeyAlg::Es256 => Algorithm::ES256,
    }
}

/// Why the signing key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("cannot generate a signing key")]
    Generate,
    #[error("the signing key in {0} is not valid")]
    Invalid(String),
}

/// Why a token was refused: defined with the error it becomes.
pub use crate::error::TokenError;

/// The signing key and what verification needs.
pub struct KeyRing {
    alg: KeyAlg,
    kid: String,
    issuer: String,
    audience: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    jwk: serde_json::Value,
    /// SubjectPublicKeyInfo (DER) of the public key, for other verifiers.
    spki: Vec<u8>,
    /// The same key, for signing what is not a token (audit checkpoints).
    detached: DetachedKey,
}

/// The signing key as ring holds it, with its raw public key.
enum DetachedKey {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
}

impl KeyRing {
    /// Loads the key for `alg` from `dir`, generating it on first start.
    pub fn load_or_generate(dir: &Path, alg: KeyAlg, issuer: &str) -> Result<Self, KeyError> {
        let path = dir.join(key_file(alg));
        let display = path.display().to_string();
        let der = if path.exists() {
            fs::read(&path).map_err(|e| KeyError::File {
                path: display.clone(),
                message: format!("cannot read: {e}"),
            })?
        } else {
            let der = generate(alg)?;
            write_private(dir, &path, &der).map_err(|e| KeyError::File {
                path: display.clone(),
                message: format!("cannot write: {e}"),
            })?;
            der
        };
        Self::from_pkcs8(alg, &der, issuer).map_err(|_| KeyError::Invalid(display))
    }

    /// The key for `alg` shared by every gateway of `store` (one that keeps no keys of
    /// its own, such as PostgreSQL): the stored one, or one made now and stored unless
    /// another gateway stored its own first, in which case that one is used.
    pub async fn shared(store: &crate::store::Store, alg: KeyAlg, issuer: &str) -> Result<Self, String> {
        let name = key_file(alg);
        let der = match store.signing_key(name).await.map_err(|e| e.to_string())? {
            Some(der) => der,
            None => {
                let made = generate(alg).map_err(|e| e.to_string())?;
                store
                    .put_signing_key_if_absent(name, &made)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        Self::from_pkcs8(alg, &der, issuer).map_err(|_| format!("the shared signing key {name} is not valid"))
    }

    /// A key ring over PKCS#8 key material.
    pub fn from_pkcs8(alg: KeyAlg, der: &[u8], issuer: &str) -> Result<Self, KeyError> {
        super::jwt_crypto::install();
        // DER prefixes of SubjectPublicKeyInfo for Ed25519 (RFC 8410) and P-256 (RFC 5480).
        const ED25519_SPKI: &[u8] = &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        const P256_SPKI: &[u8] = &[
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let mut spki = Vec::new();
        let (public_jwk, decoding, detached) = match alg {
            KeyAlg::EdDsa => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| KeyError::Generate)?;
                spki.extend_from_slice(ED25519_SPKI);
                spki.extend_from_slice(pair.public_key().as_ref());
                let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
                let decoding = DecodingKey::from_ed_components(&x).map_err(|_| KeyError::Generate)?;
                (
                    serde_json::json!({ "crv": "Ed25519", "kty": "OKP", "x": x }),
                    decoding,
                    DetachedKey::Ed(pair),
                )
            }
            KeyAlg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                    .map_err(|_| KeyError::Generate)?;
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err(KeyError::Generate);
                }
                spki.extend_from_slice(P256_SPKI);
                spki.extend_from_slice(point);
                let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
                let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
                let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| KeyError::Generate)?;
                (
                    serde_json::json!({ "crv": "P-256", "kty": "EC", "x": x, "y": y }),
                    decoding,
                    DetachedKey::Ec(pair),
                )
            }
        };
        // RFC 7638: SHA-256 over the required members in lexicographic order, no spaces.
        // serde_json's map is ordered by key, so to_string gives exactly that form.
        let thumbprint = ring::digest::digest(&ring::digest::SHA256, public_jwk.to_string().as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(thumbprint.as_ref());
        let mut jwk = public_jwk;
        jwk["kid"] = kid.clone().into();
        jwk["alg"] = format!("{:?}", jwt_alg(alg)).into();
        jwk["use"] = "sig".into();

        let mut validation = Validation::new(jwt_alg(alg));
        validation.algorithms = vec![jwt_alg(alg)];
        // Time claims are checked against the gateway's clock, below.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = true;
        validation.set_audience(&[issuer]);
        validation.required_spec_claims = ["exp", "iat", "nbf", "iss", "sub", "aud"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        validation.set_issuer(&[issuer]);

        Ok(Self {
            alg,
            kid,
            issuer: issuer.to_owned(),
            audience: issuer.to_owned(),
            encoding: match alg {
                KeyAlg::EdDsa => EncodingKey::from_ed_der(der),
                KeyAlg::Es256 => EncodingKey::from_ec_der(der),
            },
            decoding,
            validation,
            jwk,
            spki,
            detached,
        })
    }

    /// Signs `message` with the token signing key (no JWT around it); base64url.
    pub fn sign_detached(&self, message: &[u8]) -> Option<String> {
        let signature = match &self.detached {
            DetachedKey::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            DetachedKey::Ec(pair) => pair.sign(&SystemRandom::new(), message).ok()?.as_ref().to_vec(),
        };
        Some(URL_SAFE_NO_PAD.encode(signature))
    }

    /// Whether `signature` (base64url) is this key's signature of `message`.
    pub fn verify_detached(&self, message: &[u8], signature: &str) -> bool {
        use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519};
        let Ok(signature) = URL_SAFE_NO_PAD.decode(signature.as_bytes()) else {
            return false;
        };
        match &self.detached {
            DetachedKey::Ed(pair) => UnparsedPublicKey::new(&ED25519, pair.public_key().as_ref()),
            DetachedKey::Ec(pair) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref()),
        }
        .verify(message, &signature)
        .is_ok()
    }

    /// The public key as a PEM `PUBLIC KEY` block, for verifiers such as HAProxy.
    pub fn public_pem(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.spki);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `iss` of every token: the public URL without a trailing `/`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The same key ring, issuing and requiring `aud` = `audience` (by default the
    /// issuer).
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.validation.set_audience(&[audience]);
        self.audience = audience.to_owned();
        self
    }

    /// The `aud` of every token (`[tokens] audience`).
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The JWT `alg` name tokens are signed with (`EdDSA` or `ES256`).
    pub fn algorithm(&self) -> String {
        format!("{:?}", jwt_alg(self.alg))
    }

    /// `{"keys": [...]}`: the public signing key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// Signs claims into a JWT.
    pub fn sign(&self, claims: &Claims) -> Option<String> {
        let mut header = Header::new(jwt_alg(self.alg));
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).ok()
    }

    /// Verifies a JWT's header, signature, issuer and times (Unix seconds `now`).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > 4096 {
            return Err(TokenError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // The algorithm and key are ours to choose, never the token's.
        if header.alg != jwt_alg(self.alg) || header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
                jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) if c == "aud" => TokenError::WrongAudience,
                // `ErrorKind` is non-exhaustive: every other kind is a bad token.
                _ => TokenError::BadSignature,
            })?;
        let c = data.claims;
        // Saturating: the claims are signed, but their times are still untrusted numbers.
        if now > c.exp.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        let latest = now.saturating_add(LEEWAY_SECS);
        if c.nbf > latest || c.iat > latest {
            return Err(TokenError::NotYetValid);
        }
        Ok(c)
    }
}

/// Audit checkpoints are signed with the token signing key.
impl crate::audit::Signer for KeyRing {
    fn key_id(&self) -> &str {
        &self.kid
    }

    fn sign(&self, message: &[u8]) -> Option<String> {
        self.sign_detached(message)
    }

    fn verify(&self, message: &[u8], signature: &str) -> bool {
        self.verify_detached(message, signature)
    }
}

/// A new PKCS#8 key for `alg`.
fn generate(alg: KeyAlg) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let doc = match alg {
        KeyAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?,
        KeyAlg::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| KeyError::Generate)?
        }
    };
    Ok(doc.as_ref().to_vec())
}

/// A random opaque token (256 bits), URL-safe.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes).unwrap_or_else(|_| {
        // The system RNG does not fail on supported platforms; refuse to continue if it does.
        panic!("system random number generator unavailable")
    });
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hex SHA-256 of a token: how tokens are stored and looked up.
pub fn token_hash(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
