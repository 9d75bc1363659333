//! Recovery codes: ten single-use codes handed out when a TOTP enrolment completes, each
//! usable once in place of a TOTP code (at `/auth/mfa` and `/auth/step-up`).
//!
//! A code is 16 characters of Crockford's base32 (80 random bits), shown as
//! `xxxx-xxxx-xxxx-xxxx`; it is read case-insensitively, with or without dashes and
//! spaces, and with `O`, `I` and `L` taken for `0`, `1` and `1`. Only a hash salted with
//! the account id is stored; a code is spent by a compare-and-swap of the account, so two
//! concurrent uses of one code cannot both pass.

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use super::flow::{AuthEvent, Flow};
use super::service::AuthService;
use super::state::Verified;
use super::tokens::token_hash;
use crate::audit::EventKind;
use crate::error::GatewayError;
use crate::store::{StoreError, User};

/// How many codes a set holds.
pub const CODES: usize = 10;
/// Characters in a code, without its dashes (5 bits each: 80 bits).
const LEN: usize = 16;
/// Crockford's base32: no `I`, `L`, `O` or `U`.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh code, `xxxx-xxxx-xxxx-xxxx`.
fn generate_code() -> String {
    let mut bytes = [0u8; 10];
    SystemRandom::new()
        .fill(&mut bytes)
        .unwrap_or_else(|_| panic!("system random number generator unavailable"));
    let bits = bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let chars: Vec<u8> = (0..LEN)
        .map(|i| ALPHABET[((bits >> (5 * (LEN - 1 - i))) & 31) as usize])
        .collect();
    chars
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect::<Vec<_>>()
        .join("-")
}

/// A code as typed, in its canonical form; `None` when it cannot be a code.
fn normalize(code: &str) -> Option<String> {
    if code.len() > 64 {
        return None;
    }
    let canonical: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    (canonical.len() == LEN && canonical.bytes().all(|b| ALPHABET.contains(&b))).then_some(canonical)
}

/// The stored form of a code of account `user_id`.
fn hash(user_id: &str, canonical: &str) -> String {
    token_hash(&format!("portcullis-recovery-code:{user_id}:{canonical}"))
}

/// A new set of codes for `user_id`: the codes to show once, and the hashes to store.
pub(super) fn new_set(user_id: &str) -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..CODES).map(|_| generate_code()).collect();
    let hashes = codes
        .iter()
        .map(|c| hash(user_id, &normalize(c).unwrap_or_default()))
        .collect();
    (codes, hashes)
}

/// Whether `code` could be a recovery code rather than a TOTP code (six digits).
pub(super) fn looks_like_recovery(code: &str) -> bool {
    !(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()))
}

/// The position of `code` among `hashes`; every stored hash is compared in constant time.
fn position(user_id: &str, hashes: &[String], code: &str) -> Option<usize> {
    let target = hash(user_id, &normalize(code)?);
    let mut found = None;
    for (i, h) in hashes.iter().enumerate() {
        if bool::from(h.as_bytes().ct_eq(target.as_bytes())) {
            found.get_or_insert(i);
        }
    }
    found
}

impl AuthService {
    /// Spends one recovery code of `user_id`, atomically: `Some((account, codes left))`
    /// when it was one of the account's unused codes, `None` otherwise (or when the
    /// account is disabled or has no TOTP).
    pub(super) async fn spend_recovery_code(
        &self,
        user_id: &str,
        code: &str,
    ) -> Result<Option<(User, usize)>, StoreError> {
        let spent = self
            .store
            .try_update_user(user_id, |u| {
                if u.disabled || !u.mfa_enabled() {
                    return false;
                }
                match position(&u.id, &u.recovery_codes, code) {
                    Some(i) => {
                        u.recovery_codes.remove(i);
                        true
                    }
                    None => false,
                }
            })
            .await?;
        Ok(spent.map(|u| {
            let left = u.recovery_codes.len();
            (u, left)
        }))
    }

    /// `POST /auth/totp/recovery-codes`: a new set of codes for a caller whose token
    /// passed TOTP; the previous set stops working.
    pub async fn regenerate_recovery_codes(&self, caller: &Verified) -> Flow<Vec<String>> {
        Flow::audited_success(self.try_regenerate(caller).await)
    }

    async fn try_regenerate(&self, caller: &Verified) -> Result<(Vec<String>, AuthEvent), GatewayError> {
        if !caller.principal.mfa {
            return Err(GatewayError::Forbidden {
                reason: "regenerating recovery codes needs a login that passed TOTP".into(),
            });
        }
        let (codes, hashes) = new_set(&caller.principal.id);
        let updated = self
            .store
            .try_update_user(&caller.principal.id, |u| {
                if u.disabled || !u.mfa_enabled() {
                    return false;
                }
                u.recovery_codes.clone_from(&hashes);
                true
            })
            .await;
        let user = match updated {
            Ok(Some(u)) => u,
            Ok(None) | Err(StoreError::NoSuchUser) => {
                return Err(GatewayError::Forbidden {
                    reason: "the account has no TOTP or is disabled".into(),
                })
            }
            Err(e) => return Err(e.into()),
        };
        self.store.flush().await?;
        let event = AuthEvent {
            event: EventKind::RecoveryCodesRegenerated,
            user_id: Some(user.id),
            email: Some(user.email),
            reason: Some(format!("{CODES} new codes; the previous set is void")),
        };
        Ok((codes, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Codes have the documented shape and are read however they are typed.
    #[test]
    fn shape_and_forms() {
        let (codes, hashes) = new_set("u-1");
        assert_eq!(codes.len(), CODES);
        let c = &codes[0];
        assert_eq!(c.len(), 19, "{c}");
        assert_eq!(c.matches('-').count(), 3, "{c}");
        assert_eq!(position("u-1", &hashes, c), Some(0));
        assert_eq!(position("u-1", &hashes, &c.to_uppercase()), Some(0));
        assert_eq!(position("u-1", &hashes, &c.replace('-', "")), Some(0));
        assert_eq!(position("u-1", &hashes, &codes[3].replace('-', " ")), Some(3));
        assert_eq!(position("u-2", &hashes, c), None, "hashes are salted by account");
        assert_eq!(position("u-1", &hashes, "0000-0000-0000-0000"), None);
        assert_eq!(position("u-1", &hashes, "123456"), None);
        assert_eq!(position("u-1", &hashes, ""), None);
        let all: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(all.len(), CODES, "codes are distinct");
    }

    // Ambiguous characters are read as the digits they look like.
    #[test]
    fn ambiguous_characters() {
        assert_eq!(normalize("oooo-iiii-llll-0000").as_deref(), Some("0000111111110000"));
        assert_eq!(normalize("uuuu-0000-0000-0000"), None, "U is not in the alphabet");
        assert!(looks_like_recovery("abcd-efgh-jkmn-pqrs"));
        assert!(!looks_like_recovery("123456"));
    }

    // Many threads spending one code at once: the compare-and-swap lets exactly one
    // through, whatever lock the HTTP flows hold around it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_spends_have_one_winner() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
            dir.path().display()
        );
        let config = Arc::new(crate::config::Config::parse(&dir.path().join("g.toml"), &src).unwrap());
        let store = crate::store::Store::temporary().unwrap();
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::ManualClock::new());
        let (audit, _task) = crate::audit::Audit::start(&store, clock.clone()).unwrap();
        let auth = Arc::new(AuthService::new(config, store, clock, audit).await.unwrap());
        let user = auth
            .add_user("a@example.com", vec!["admin".into()], "Str0ng!Passw0rd".into(), "A")
            .await
            .unwrap();
        auth.set_totp(&user.id, "JBSWY3DPEHPK3PXP").await.unwrap();
        let (codes, hashes) = new_set(&user.id);
        auth.store
            .update_user(&user.id, |u| u.recovery_codes.clone_from(&hashes))
            .await
            .unwrap();
        for code in codes.iter().take(3) {
            let spends: Vec<_> = (0..8)
                .map(|_| {
                    let (auth, id, code) = (auth.clone(), user.id.clone(), code.clone());
                    tokio::spawn(async move { auth.spend_recovery_code(&id, &code).await.unwrap() })
                })
                .collect();
            let mut won: Vec<usize> = Vec::new();
            for t in spends {
                won.extend(t.await.unwrap().map(|(_, left)| left));
            }
            assert_eq!(won.len(), 1, "{won:?}");
        }
        assert_eq!(
            auth.store.user(&user.id).await.unwrap().unwrap().recovery_codes.len(),
            CODES - 3
        );
        // Without TOTP (after `user reset-mfa`) no code works.
        auth.store
            .update_user(&user.id, |u| u.totp_secret = None)
            .await
            .unwrap();
        assert!(auth.spend_recovery_code(&user.id, &codes[5]).await.unwrap().is_none());
    }
}
