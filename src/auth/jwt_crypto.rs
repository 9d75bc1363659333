//! The signature backend of access tokens: ring, for exactly the two algorithms the gateway
//! signs with (EdDSA over Ed25519, and ES256).
//!
//! jsonwebtoken's own backends compile in every algorithm it knows, RSA among them (and
//! with it the `rsa` crate and its unfixed timing advisory, RUSTSEC-2023-0071), although
//! the gateway never uses RSA. This backend is installed before the first token is signed
//! or verified; any other algorithm, HMAC included, is refused with an error, never
//! handled.

use jsonwebtoken::crypto::{CryptoProvider, JwkUtils, JwtSigner, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519,
};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    // The gateway builds its JWKS itself; jsonwebtoken's JWK helpers are never called.
    jwk_utils: JwkUtils::new_unimplemented(),
};

/// Makes ring the process's JWT backend. Idempotent: later calls change nothing.
pub fn install() {
    // An error only says a provider is installed already, which can only be this one
    // (no other backend is compiled in).
    let _ = PROVIDER.install_default();
}

enum SigningKey {
    Ed25519(Ed25519KeyPair),
    Es256(EcdsaKeyPair),
}

struct RingSigner(SigningKey);

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match &self.0 {
            SigningKey::Ed25519(pair) => Ok(pair.sign(msg).as_ref().to_vec()),
            SigningKey::Es256(pair) => pair
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self.0 {
            SigningKey::Ed25519(_) => Algorithm::EdDSA,
            SigningKey::Es256(_) => Algorithm::ES256,
        }
    }
}

struct RingVerifier {
    alg: Algorithm,
    key: UnparsedPublicKey<Vec<u8>>,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        self.key.verify(msg, signature).map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let signing = match (alg, key.family()) {
        (Algorithm::EdDSA, AlgorithmFamily::Ed) => SigningKey::Ed25519(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.inner()).map_err(|_| ErrorKind::InvalidEddsaKey)?,
        ),
        (Algorithm::ES256, AlgorithmFamily::Ec) => SigningKey::Es256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.inner(), &SystemRandom::new())
                .map_err(|_| ErrorKind::InvalidEcdsaKey)?,
        ),
        (Algorithm::EdDSA | Algorithm::ES256, _) => return Err(ErrorKind::InvalidKeyFormat.into()),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingSigner(signing)))
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let bytes = key.as_bytes().to_vec();
    let key = match (alg, key.family()) {
        (Algorithm::EdDSA, AlgorithmFamily::Ed) if bytes.len() == 32 => UnparsedPublicKey::new(&ED25519, bytes),
        // An uncompressed P-256 point: 0x04, x, y.
        (Algorithm::ES256, AlgorithmFamily::Ec) if bytes.len() == 65 => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, bytes)
        }
        (Algorithm::EdDSA | Algorithm::ES256, _) => return Err(ErrorKind::InvalidKeyFormat.into()),
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(Box::new(RingVerifier { alg: *alg, key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Algorithms the gateway does not sign with are refused by the backend itself, so
    // no configuration or header can make the gateway handle them.
    #[test]
    fn refuses_other_algorithms() {
        install();
        let hmac = EncodingKey::from_secret(b"secret");
        for alg in [Algorithm::HS256, Algorithm::RS256, Algorithm::PS256, Algorithm::ES384] {
            assert!(new_signer(&alg, &hmac).is_err(), "{alg:?}");
            assert!(
                new_verifier(&alg, &DecodingKey::from_secret(b"secret")).is_err(),
                "{alg:?}"
            );
        }
        // A key of the wrong family for the algorithm is refused too.
        assert!(new_signer(&Algorithm::EdDSA, &hmac).is_err());
    }
}
