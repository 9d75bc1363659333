//! Tests of the key ring: both algorithms, thumbprints, times, foreign keys.

use super::*;

fn claims(now: u64) -> Claims {
    Claims {
        iss: "https://gw".into(),
        aud: "https://gw".into(),
        sub: "u-1".into(),
        email: "a@b.c".into(),
        roles: vec!["customer".into()],
        amr: vec!["pwd".into()],
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "j1".into(),
        sid: "s1".into(),
        auth_time: now,
        attrs: Default::default(),
    }
}

fn ring(alg: KeyAlg) -> KeyRing {
    KeyRing::from_pkcs8(alg, &generate(alg).unwrap(), "https://gw").unwrap()
}

// Both algorithms sign and verify, and the kid is the RFC 7638 thumbprint.
#[test]
fn sign_verify_both_algorithms() {
    for alg in [KeyAlg::EdDsa, KeyAlg::Es256] {
        let k = ring(alg);
        let t = k.sign(&claims(1000)).unwrap();
        assert_eq!(k.verify(&t, 1000).unwrap().sub, "u-1");
        assert_eq!(k.jwks()["keys"][0]["kid"], k.kid());
    }
}

// RFC 7638's thumbprint of the RFC 8037 Ed25519 example key.
#[test]
fn thumbprint_rfc8037() {
    let jwk = serde_json::json!({"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let d = ring::digest::digest(&ring::digest::SHA256, jwk.to_string().as_bytes());
    assert_eq!(
        URL_SAFE_NO_PAD.encode(d.as_ref()),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
}

// Expiry, not-before and issuer are enforced against the given time.
#[test]
fn time_and_issuer() {
    let k = ring(KeyAlg::EdDsa);
    let t = k.sign(&claims(1000)).unwrap();
    assert_eq!(k.verify(&t, 1000 + 300 + LEEWAY_SECS + 1), Err(TokenError::Expired));
    assert_eq!(k.verify(&t, 1000 - LEEWAY_SECS - 1), Err(TokenError::NotYetValid));
    let mut other = claims(1000);
    other.iss = "https://elsewhere".into();
    let t = k.sign(&other).unwrap();
    assert_eq!(k.verify(&t, 1000), Err(TokenError::WrongIssuer));
}

// `aud` must be the configured audience: the issuer by default, or `with_audience`'s;
// a token for another audience, or with none, is refused.
#[test]
fn audience_required() {
    let k = ring(KeyAlg::EdDsa);
    assert_eq!(k.audience(), "https://gw");
    assert!(k.verify(&k.sign(&claims(1000)).unwrap(), 1000).is_ok());
    let mut other = claims(1000);
    other.aud = "https://elsewhere".into();
    assert_eq!(k.verify(&k.sign(&other).unwrap(), 1000), Err(TokenError::WrongAudience));
    let custom = ring(KeyAlg::EdDsa).with_audience("api://orders");
    other.aud = "api://orders".into();
    assert!(custom.verify(&custom.sign(&other).unwrap(), 1000).is_ok());
    assert_eq!(
        custom.verify(&custom.sign(&claims(1000)).unwrap(), 1000),
        Err(TokenError::WrongAudience)
    );
    // No `aud` at all: signed by hand, without the field.
    let mut value = serde_json::to_value(claims(1000)).unwrap();
    value.as_object_mut().unwrap().remove("aud");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(k.kid().to_owned());
    let t = jsonwebtoken::encode(&header, &value, &k.encoding).unwrap();
    assert_eq!(k.verify(&t, 1000), Err(TokenError::WrongAudience));
}

// The exported PEM is the key the JWKS publishes, and other verifiers accept it.
#[test]
fn public_pem_verifies() {
    for alg in [KeyAlg::EdDsa, KeyAlg::Es256] {
        let k = ring(alg);
        let t = k.sign(&claims(1000)).unwrap();
        let pem = k.public_pem();
        let key = match alg {
            KeyAlg::EdDsa => DecodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            KeyAlg::Es256 => DecodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        };
        let mut v = Validation::new(jwt_alg(alg));
        v.validate_exp = false;
        v.set_issuer(&["https://gw"]);
        v.set_audience(&["https://gw"]);
        jsonwebtoken::decode::<Claims>(&t, &key, &v).unwrap();
    }
}

// A detached signature verifies under its key only, and only for its message.
#[test]
fn detached_signatures() {
    for alg in [KeyAlg::EdDsa, KeyAlg::Es256] {
        let (ours, theirs) = (ring(alg), ring(alg));
        let sig = ours.sign_detached(b"seq=7").unwrap();
        assert!(ours.verify_detached(b"seq=7", &sig));
        assert!(!ours.verify_detached(b"seq=8", &sig));
        assert!(!theirs.verify_detached(b"seq=7", &sig));
        assert!(!ours.verify_detached(b"seq=7", "not base64!"));
    }
}

// Time claims at the top of the range are compared without overflow (found by the
// `tokens` fuzz target: `exp` = u64::MAX panicked in debug builds, wrapped in release).
#[test]
fn extreme_times_do_not_overflow() {
    let k = ring(KeyAlg::EdDsa);
    let mut c = claims(1000);
    c.exp = u64::MAX;
    let t = k.sign(&c).unwrap();
    assert_eq!(k.verify(&t, 1000).unwrap().exp, u64::MAX);
    assert_eq!(k.verify(&t, u64::MAX).unwrap().exp, u64::MAX);
    let mut c = claims(1000);
    c.nbf = u64::MAX;
    let t = k.sign(&c).unwrap();
    assert_eq!(k.verify(&t, u64::MAX - 1), Err(TokenError::Expired));
    assert_eq!(k.verify(&t, 1000), Err(TokenError::NotYetValid));
}

// A key of the same kind but not ours fails even with our kid in the header.
#[test]
fn foreign_key_refused() {
    let ours = ring(KeyAlg::EdDsa);
    let theirs = ring(KeyAlg::EdDsa);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(ours.kid().to_owned());
    let forged = jsonwebtoken::encode(&header, &claims(1000), &theirs.encoding).unwrap();
    assert_eq!(ours.verify(&forged, 1000), Err(TokenError::BadSignature));
}
