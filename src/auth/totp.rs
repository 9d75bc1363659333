//! TOTP (RFC 6238): SHA-1, 6 digits, 30-second steps, one step of clock skew either way,
//! and a code never accepted twice (the last accepted step is remembered per user).

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Seconds per TOTP step.
pub const STEP: u64 = 30;
/// The generator for a base32 secret (`None` if the secret does not decode); `issuer`
/// (`[totp] issuer`) is the name an authenticator app shows beside the account.
fn totp(secret_b32: &str, account: &str, issuer: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret)
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .ok()
}

/// A fresh random secret (160 bits), base32 without padding.
pub fn generate_secret() -> String {
    Secret::generate().to_base32()
}

/// `otpauth://totp/<issuer>:<email>?secret=...&issuer=<issuer>`.
pub fn otpauth_uri(secret_b32: &str, email: &str, issuer: &str) -> Option<String> {
    totp(secret_b32, email, issuer)?.to_url().ok()
}

/// A QR code of [`otpauth_uri`], as a PNG in standard base64 (no `data:` prefix).
pub fn qr_png_base64(secret_b32: &str, email: &str, issuer: &str) -> Option<String> {
    totp(secret_b32, email, issuer)?.to_qr_base64().ok()
}

/// The code for a Unix time (for tests and the `portcullis totp` command).
pub fn code_at(secret_b32: &str, unix_secs: u64) -> Option<String> {
    totp(secret_b32, "x", crate::config::totp::DEFAULT_ISSUER).map(|t| t.generate(unix_secs).to_string())
}

/// Checks `code` at `now` (Unix seconds). Returns the step it matched when that step is
/// later than `last_step`; a replayed or stale code, or a wrong one, gives `None`. The
/// library compares codes in constant time and reports the matched step; refusing a step
/// already used is ours (RFC 6238 §5.2).
pub fn verify(secret_b32: &str, code: &str, now: u64, last_step: u64) -> Option<u64> {
    check(secret_b32, code, now, last_step).ok()
}

/// Why a TOTP code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not the code of any step in the window (or no secret to check it with).
    Wrong,
    /// The code of a step already accepted: a replay, or the same code sent twice.
    Reused,
}

/// [`verify`], saying why a code is refused.
pub fn check(secret_b32: &str, code: &str, now: u64, last_step: u64) -> Result<u64, Rejected> {
    let step = totp(secret_b32, "x", crate::config::totp::DEFAULT_ISSUER)
        .and_then(|t| t.check(code, now))
        .ok_or(Rejected::Wrong)?;
    if step > last_step {
        Ok(step)
    } else {
        Err(Rejected::Reused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 (the 8-digit vectors' last 6 digits).
    #[test]
    fn rfc6238_vectors() {
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        for (time, code8) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(&secret, time).unwrap(), &code8[2..], "t={time}");
        }
    }

    // One step of skew either way is accepted, two are not, and a code is never reused.
    #[test]
    fn skew_and_replay() {
        let s = generate_secret();
        let now = 1_700_000_000;
        let code = code_at(&s, now).unwrap();
        let step = verify(&s, &code, now, 0).unwrap();
        assert_eq!(step, now / STEP);
        assert_eq!(verify(&s, &code, now, step), None, "replay accepted");
        assert_eq!(
            check(&s, &code, now, step),
            Err(Rejected::Reused),
            "a replay is told apart"
        );
        assert_eq!(check(&s, "000000x", now, 0), Err(Rejected::Wrong));
        assert!(verify(&s, &code_at(&s, now - STEP).unwrap(), now, 0).is_some());
        assert!(verify(&s, &code_at(&s, now + STEP).unwrap(), now, 0).is_some());
        assert!(verify(&s, &code_at(&s, now - 2 * STEP).unwrap(), now, 0).is_none());
        assert!(verify(&s, "12345", now, 0).is_none());
        assert!(verify(&s, "abcdef", now, 0).is_none());
    }

    // The enrolment URI names the issuer and the account.
    #[test]
    fn uri_shape() {
        let uri = otpauth_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "ann@example.com", "Portcullis").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/Portcullis:ann%40example.com?secret=JBSWY3DPEHPK3PXP"),
            "{uri}"
        );
        assert!(uri.contains("issuer=Portcullis"), "{uri}");
    }
}
