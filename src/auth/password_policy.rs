//! The password policy of `[password]`: length, character classes, the email's name,
//! and (with `reject_common`) zxcvbn's estimate of how easily a password is guessed.

use crate::config::{CharClass, PasswordPolicy};

/// Longest password accepted: argon2 cost does not depend on it, but bodies are bounded
/// and nobody types more.
pub const MAX_PASSWORD: usize = 128;

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

/// The rule a common or easily guessed password breaks (`[password] reject_common`).
pub const COMMON_RULE: &str = "common";

/// The zxcvbn score a password needs: `Three` is "safely unguessable" (about 10^8
/// guesses and more), which `Password1!` and `Qwerty123!` are not.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// [`broken_rules`] for the account of `inputs` (its email first, then its name), and
/// [`COMMON_RULE`] when the policy rejects common passwords and zxcvbn finds this one
/// easy to guess. zxcvbn runs only on a password within the length limit.
pub fn checked_rules(policy: &PasswordPolicy, password: &str, inputs: &[String]) -> Vec<String> {
    let email = inputs.first().map_or("", String::as_str);
    let mut broken = broken_rules(policy, password, email);
    if policy.reject_common && password.chars().count() <= MAX_PASSWORD && !password.is_empty() {
        let local = email.split('@').next().unwrap_or("");
        let mut words: Vec<&str> = inputs.iter().map(String::as_str).collect();
        words.push(local);
        if zxcvbn::zxcvbn(password, &words).score() < MIN_SCORE {
            broken.push(COMMON_RULE.to_owned());
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 8,
            require: vec![CharClass::Upper, CharClass::Lower, CharClass::Digit, CharClass::Symbol],
            reject_common: true,
            reset_ttl: Duration::from_secs(1800),
        }
    }

    // Common passwords break rule `common` though they meet every class rule; the
    // passwords of the tests, the README and generated ones pass; the user's own name
    // and address count as guessable words; `reject_common = false` turns it off.
    #[test]
    fn common_passwords() {
        let inputs = |e: &str, n: &str| vec![e.to_owned(), n.to_owned()];
        for weak in ["Password1!", "Qwerty123!", "Welcome1!", "P@ssw0rd123"] {
            let started = Instant::now();
            let rules = checked_rules(&policy(), weak, &inputs("ann@example.com", "Ann"));
            eprintln!("zxcvbn on {weak:?}: {:?}", started.elapsed());
            assert_eq!(rules, vec![COMMON_RULE.to_owned()], "{weak}");
        }
        let long = "Aa1!xY".repeat(21);
        let started = Instant::now();
        let _ = checked_rules(&policy(), &long, &inputs("ann@example.com", "Ann"));
        eprintln!("zxcvbn on 126 characters: {:?}", started.elapsed());
        for good in [
            "Str0ng!Passw0rd",
            "Corr3ct-Horse",
            "Att4cker!Passw0rd",
            "Other!Passw0rd",
            "Chosen!Passw0rd",
            &crate::admin::generate_password(),
        ] {
            let rules = checked_rules(&policy(), good, &inputs("ann@example.com", "Ann"));
            assert!(rules.is_empty(), "{good}: {rules:?}");
        }
        let personal = checked_rules(&policy(), "Hildegard2024!", &inputs("hk@example.com", "Hildegard"));
        assert!(personal.contains(&COMMON_RULE.to_owned()), "{personal:?}");
        let off = PasswordPolicy {
            reject_common: false,
            ..policy()
        };
        assert!(checked_rules(&off, "Password1!", &inputs("ann@example.com", "Ann")).is_empty());
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
}
