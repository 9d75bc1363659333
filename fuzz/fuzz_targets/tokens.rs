//! Token parsing and verification: an `Authorization` header value as it arrives, or a
//! bare token, never panics and never verifies unless it is a token our key issued; and
//! claims we sign ourselves pass or fail exactly on issuer and times.

#![no_main]

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis::auth::tokens::{Claims, KeyAlg, KeyRing, TokenError, LEEWAY_SECS};
use portcullis::auth::verify::bearer;
use portcullis_fuzz::{issued_tokens, key_ring, ISSUER, NOW};

struct Fixture {
    ring: KeyRing,
    alg: KeyAlg,
    issued: Vec<String>,
}

fn fixtures() -> &'static [Fixture] {
    static F: OnceLock<Vec<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        [KeyAlg::EdDsa, KeyAlg::Es256]
            .into_iter()
            .map(|alg| {
                let ring = key_ring(alg);
                let issued = issued_tokens(&ring);
                Fixture { ring, alg, issued }
            })
            .collect()
    })
}

/// The signed part of a JWT: header and payload.
fn signed_part(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(signed, _)| signed)
}

fn check_verify(f: &Fixture, token: &str) {
    let Ok(claims) = f.ring.verify(token, NOW) else {
        return;
    };
    // Ed25519 signatures are unique; an ECDSA signature (r, s) has a twin (r, n - s), so
    // for ES256 only the signed part must be one we issued.
    let known = match f.alg {
        KeyAlg::EdDsa => f.issued.iter().any(|t| t == token),
        KeyAlg::Es256 => f.issued.iter().any(|t| signed_part(t) == signed_part(token)),
    };
    assert!(known, "a token we never issued verifies: {token:?} -> {claims:?}");
}

/// What verification must answer for claims signed with our key.
fn expected(c: &Claims) -> Result<(), TokenError> {
    if c.iss != ISSUER {
        return Err(TokenError::WrongIssuer);
    }
    // The key ring's audience is its issuer unless told otherwise.
    if c.aud != ISSUER {
        return Err(TokenError::WrongAudience);
    }
    if u128::from(NOW) > u128::from(c.exp) + u128::from(LEEWAY_SECS) {
        return Err(TokenError::Expired);
    }
    if u128::from(c.nbf) > u128::from(NOW) + u128::from(LEEWAY_SECS)
        || u128::from(c.iat) > u128::from(NOW) + u128::from(LEEWAY_SECS)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'{') {
        // Claims of our own signing: only the issuer, audience and time checks decide.
        let Ok(claims) = serde_json::from_slice::<Claims>(data) else {
            return;
        };
        for f in fixtures() {
            let token = f.ring.sign(&claims).expect("signing");
            let got = f.ring.verify(&token, NOW);
            if token.len() > 4096 {
                // Longer tokens are refused unread.
                assert_eq!(got, Err(TokenError::Malformed));
                continue;
            }
            match expected(&claims) {
                Ok(()) => assert_eq!(got.as_ref(), Ok(&claims), "{token}"),
                Err(why) => assert_eq!(got.map(|_| ()), Err(why), "{claims:?}"),
            }
        }
        return;
    }
    if let Ok(token) = std::str::from_utf8(data) {
        for f in fixtures() {
            check_verify(f, token);
        }
    }
    // As it arrives: one `Authorization` header value.
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    if let Ok(Some(token)) = bearer(&headers) {
        for f in fixtures() {
            check_verify(f, token);
        }
    }
});
