//! Passwords: argon2id hashing on the blocking pool behind a semaphore sized to the
//! cores, so a login flood queues instead of stalling proxying or exhausting memory; and
//! the password policy of `[password]`.

use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::config::{CharClass, PasswordPolicy};

/// Longest password accepted: argon2 cost does not depend on it, but bodies are bounded
/// and nobody types more.
pub const MAX_PASSWORD: usize = 128;

/// OWASP's argon2id minimum: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Verified against when the email is unknown, so that case costs the same as a wrong
/// password: an argon2id hash with exactly the parameters of [`argon2`] (a test checks
/// that they agree). It is a constant rather than computed at start-up, which would
/// cost a hash and leave its 19 MiB with the allocator for nothing. Its verification
/// never lets anyone in: the answer for an unknown email is false whatever it says.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$8BH/9YEosrqpGsgzxpurDA$b894YTT6Wuo7iUMrFZwGWgEIPP4I/WBhWbBcQHRWr2o";

/// Hashes and verifies on the blocking pool, at most one job per core at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    /// A pool of [`default_concurrency`] hashing slots.
    pub fn new() -> Self {
        Self::with_concurrency(default_concurrency())
    }

    /// A pool running at most `slots` hashes at once (at least one).
    pub fn with_concurrency(slots: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let _permit = self.permits.acquire().await.ok()?;
        tokio::task::spawn_blocking(job).await.ok()
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> Option<String> {
        self.run(move || hash_now(&password)).await.flatten()
    }

    /// Whether `password` matches `phc`; with `None`, verifies against the dummy hash
    /// (and answers false) so an unknown account costs the same as a wrong password.
    pub async fn verify(&self, password: String, phc: Option<String>) -> bool {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY_PHC.to_owned());
        let ok = self.run(move || verify_now(&password, &phc)).await.unwrap_or(false);
        ok && known
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

/// One hashing slot per core. Fewer slots leave cores to proxying during a login flood,
/// but on a small machine the login queue then outlasts client timeouts and logins
/// collapse (measured on 2 cores: 55 logins/s with 2 slots, under 1/s with 1), so fewer
/// is an operator's choice (`[login] hash_concurrency`), not the default.
pub fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

pub fn hash_now(password: &str) -> Option<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

fn verify_now(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    argon2().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Every rule of the policy that `password` breaks, as human-readable sentences.
pub fn broken_rules(policy: &PasswordPolicy, password: &str, email: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let len = password.chars().count();
    if len < policy.min_length {
        broken.push(format!("at least {} characters", policy.min_length));
    }
    if len > MAX_PASSWORD {
        broken.push(format!("at most {MAX_PASSWORD} characters"));
    }
    for class in &policy.require {
        let (ok, rule) = match class {
            CharClass::Upper => (password.chars().any(char::is_uppercase), "an upper-case letter"),
            CharClass::Lower => (password.chars().any(char::is_lowercase), "a lower-case letter"),
            CharClass::Digit => (password.chars().any(|c| c.is_ascii_digit()), "a digit"),
            CharClass::Symbol => (
                password.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()),
                "a symbol",
            ),
        };
        if !ok {
            broken.push(rule.to_owned());
        }
    }
    let local = email.split('@').next().unwrap_or("").to_lowercase();
    if local.chars().count() >= 3 && password.to_lowercase().contains(&local) {
        broken.push("must not contain the email address's name".to_owned());
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    // The dummy hash costs what a real one does: same algorithm, version and parameters.
    #[test]
    fn dummy_matches_parameters() {
        let dummy = PasswordHash::new(DUMMY_PHC).unwrap();
        let real_phc = hash_now("Some!Passw0rd").unwrap();
        let real = PasswordHash::new(&real_phc).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(dummy.hash.map(|h| h.len()), real.hash.map(|h| h.len()));
        assert!(verify_now("portcullis-dummy-password", DUMMY_PHC));
    }

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 8,
            require: vec![CharClass::Upper, CharClass::Lower, CharClass::Digit, CharClass::Symbol],
        }
    }

    // A good password breaks no rule; a bad one lists every rule it breaks.
    #[test]
    fn policy_rules() {
        assert!(broken_rules(&policy(), "Corr3ct-Horse", "ann@example.com").is_empty());
        let broken = broken_rules(&policy(), "abc", "ann@example.com");
        assert_eq!(broken.len(), 4, "{broken:?}");
        let long = "Aa1!".repeat(40);
        assert!(broken_rules(&policy(), &long, "a@b.c")
            .iter()
            .any(|r| r.contains("at most")));
        let mine = broken_rules(&policy(), "Annabel-2024!", "annabel@example.com");
        assert!(mine.iter().any(|r| r.contains("email")), "{mine:?}");
    }

    // Hashes are argon2id with the OWASP parameters, and verify only the right password.
    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new();
        let phc = h.hash("S3cret!pass".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify("S3cret!pass".into(), Some(phc.clone())).await);
        assert!(!h.verify("wrong".into(), Some(phc)).await);
        assert!(
            !h.verify("portcullis-dummy-password".into(), None).await,
            "the dummy hash logs nobody in"
        );
    }
}
