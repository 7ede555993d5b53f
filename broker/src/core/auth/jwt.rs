//! JWT connection identity: HS256, RS256 and ES256 verified with `ring`.
//!
//! The algorithm is fixed by the app's configured key, never taken from the token: a token
//! whose header names another algorithm (`none`, or HS256 for an RSA key) is refused before
//! any signature work. Sizes are checked before decoding. [`Identity`] can only be built by
//! [`verify`].

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::{hmac, signature};
use serde_json::{Map, Value};

/// Longest accepted token.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest tenant id, actor type or role.
const MAX_CLAIM_CHARS: usize = 128;
/// Most roles.
const MAX_ROLES: usize = 32;

/// A signature algorithm, named in configs by its JOSE name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum Algorithm {
    /// HMAC-SHA256 with a shared secret.
    #[serde(rename = "HS256")]
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// The key tokens are checked with; its type decides the algorithm.
#[derive(Clone)]
pub enum VerifyingKey {
    /// A shared secret.
    Hs256(hmac::Key),
    /// An RSA public key (PKCS#1 `RSAPublicKey` DER).
    Rs256(Vec<u8>),
    /// A P-256 public key (uncompressed point).
    Es256(Vec<u8>),
}

impl PartialEq for VerifyingKey {
    /// Whether both verify the same signatures. An HMAC key is opaque, so two are compared by
    /// the tag each gives one message: equal keys give equal tags, and different keys giving
    /// equal tags would be a forgery of HMAC-SHA256.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (VerifyingKey::Hs256(a), VerifyingKey::Hs256(b)) => {
                hmac::sign(a, b"").as_ref() == hmac::sign(b, b"").as_ref()
            }
            (VerifyingKey::Rs256(a), VerifyingKey::Rs256(b))
            | (VerifyingKey::Es256(a), VerifyingKey::Es256(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for VerifyingKey {}

impl std::fmt::Debug for VerifyingKey {
    /// The algorithm only: an HS256 key is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.algorithm().name())
    }
}

/// Why a key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not a PEM `PUBLIC KEY` block.
    #[error("expected a PEM \"PUBLIC KEY\" (SubjectPublicKeyInfo) block")]
    NotPem,
    /// Not a well-formed SubjectPublicKeyInfo.
    #[error("malformed SubjectPublicKeyInfo")]
    BadDer,
    /// Neither RSA nor EC P-256.
    #[error("unsupported key type (RSA and EC P-256 are supported)")]
    Unsupported,
}

const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

impl VerifyingKey {
    /// An HS256 key.
    pub fn hs256(secret: &[u8]) -> Self {
        VerifyingKey::Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// An RS256 or ES256 key from a PEM SubjectPublicKeyInfo (`openssl pkey -pubout`).
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PUBLIC KEY-----")
            .collect();
        if body.is_empty() {
            return Err(KeyError::NotPem);
        }
        let der = STANDARD.decode(body).map_err(|_| KeyError::NotPem)?;
        let (spki, _) = der_take(&der, 0x30).ok_or(KeyError::BadDer)?;
        let (algorithm, rest) = der_take(spki, 0x30).ok_or(KeyError::BadDer)?;
        let (bits, _) = der_take(rest, 0x03).ok_or(KeyError::BadDer)?;
        let (oid, params) = der_take(algorithm, 0x06).ok_or(KeyError::BadDer)?;
        // A BIT STRING starts with its count of unused bits, which is 0 for keys.
        let key = match bits.split_first() {
            Some((0, key)) => key.to_vec(),
            _ => return Err(KeyError::BadDer),
        };
        if oid == RSA_OID {
            Ok(VerifyingKey::Rs256(key))
        } else if oid == EC_OID
            && der_take(params, 0x06).is_some_and(|(curve, _)| curve == P256_OID)
        {
            Ok(VerifyingKey::Es256(key))
        } else {
            Err(KeyError::Unsupported)
        }
    }

    /// The algorithm tokens must use.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            VerifyingKey::Hs256(_) => Algorithm::Hs256,
            VerifyingKey::Rs256(_) => Algorithm::Rs256,
            VerifyingKey::Es256(_) => Algorithm::Es256,
        }
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            VerifyingKey::Hs256(key) => hmac::verify(key, message, sig).is_ok(),
            VerifyingKey::Rs256(der) => {
                signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
                    .verify(message, sig)
                    .is_ok()
            }
            VerifyingKey::Es256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
        }
    }
}

/// Signs `claims` as a compact HS256 JWS (for tools and tests that issue tokens).
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Signs `claims` as a compact ES256 JWS naming `kid` in its header (for tools and tests
/// that issue tokens, e.g. for a JWKS they publish).
pub fn sign_es256(
    claims: &Value,
    kid: Option<&str>,
    key: &signature::EcdsaKeyPair,
) -> Result<String, ring::error::Unspecified> {
    let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(&ring::rand::SystemRandom::new(), input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
}

/// Whether `text` has the shape of a compact JWS (three base64url parts), e.g. to pick the
/// token out of the `Sec-WebSocket-Protocol` values a browser offers.
pub fn looks_like_token(text: &str) -> bool {
    let is_b64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| is_b64url(p)) && text.len() <= MAX_TOKEN_BYTES
}

/// Reads one DER element with `tag` from the front of `input`: `(contents, rest)`.
fn der_take(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// Which claims carry what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimNames {
    /// The user id claim (string or number).
    pub user_id: String,
    /// The tenant id claim.
    pub tenant: String,
    /// The actor type claim (`user`, `worker`, ...).
    pub actor: String,
    /// The roles claim (an array of strings, or one space- or comma-separated string).
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user_id: "sub".into(),
            tenant: "tenant_id".into(),
            actor: "actor".into(),
            roles: "roles".into(),
        }
    }
}

/// What a token must satisfy.
pub struct VerifyOptions<'a> {
    /// The app's key.
    pub key: &'a VerifyingKey,
    /// Required `iss`, if any.
    pub issuer: Option<&'a str>,
    /// Required `aud` (one of), if any.
    pub audience: Option<&'a str>,
    /// Allowed clock difference for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claim names.
    pub claims: &'a ClaimNames,
    /// Longest user id.
    pub max_user_id_chars: usize,
    /// When not empty, the token's `azp` (authorized party, as Clerk issues it) must be one
    /// of these.
    pub authorized_parties: &'a [String],
}

/// The verified identity of a connection.
// The private field makes `verify` the only constructor even inside this crate, which
// `#[non_exhaustive]` would not.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id, if the token names one.
    pub user_id: Option<String>,
    /// The tenant id.
    pub tenant: Option<String>,
    /// The actor type.
    pub actor: Option<String>,
    /// Roles.
    pub roles: Vec<String>,
    /// The token id (`jti`), for revocation.
    pub jti: Option<String>,
    /// `exp`, in seconds since the Unix epoch.
    pub expires_at: u64,
    _proof: (),
}

impl Identity {
    /// The identity of credentials an app's backend verified (`[apps.token_verification]`),
    /// for policies exactly as a JWT's. It has no `jti` and never expires (`expires_at` is
    /// `u64::MAX`): the backend was asked at connect, and the connection lives until it
    /// closes or its user's tokens are revoked.
    pub fn verified_by_backend(answer: super::backend::VerifiedAnswer) -> Self {
        Self {
            user_id: Some(answer.user_id),
            tenant: answer.tenant,
            actor: Some(answer.actor),
            roles: answer.roles,
            jti: None,
            expires_at: u64::MAX,
            _proof: (),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Over [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than the app's.
    #[error("token algorithm {found:?} is not the app's {expected}")]
    AlgorithmMismatch {
        /// What the header says.
        found: String,
        /// What the app's key requires.
        expected: &'static str,
    },
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// No `exp` claim: tokens must expire.
    #[error("token has no exp claim")]
    MissingExpiry,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token audience does not match")]
    WrongAudience,
    /// `authorized_parties` is set and the token has no `azp`.
    #[error("token has no azp claim, and the app requires one of its authorized_parties")]
    MissingAuthorizedParty,
    /// `azp` is not one of `authorized_parties`.
    #[error("token azp is not one of the app's authorized_parties")]
    WrongAuthorizedParty,
    /// A mapped claim has the wrong type or is too long.
    #[error("claim {0:?} is invalid or too long")]
    BadClaim(String),
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed(what))
}

/// A compact JWS split into its three parts, with its header read: what choosing a key
/// needs, before any signature work.
pub struct Token<'a> {
    /// The whole token, whose `header.payload` prefix is what the signature covers.
    text: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// The header's `alg`, when it is a string.
    alg: Option<String>,
    /// The header's `kid` (one that is not a string makes the token malformed).
    kid: Option<String>,
}

impl<'a> Token<'a> {
    /// Splits `text` and reads its header; claims are read only by [`Token::verify`].
    pub fn parse(text: &'a str) -> Result<Self, JwtError> {
        if text.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = text.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three dot-separated parts"));
        };
        let header: Map<String, Value> =
            serde_json::from_slice(&decode_part(header, "header is not base64url")?)
                .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(JwtError::Malformed("header kid is not a string")),
        };
        Ok(Self {
            text,
            payload,
            signature,
            alg: header.get("alg").and_then(Value::as_str).map(str::to_owned),
            kid,
        })
    }

    /// The header's `kid`: which key of a JWKS signed the token.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies the token and maps its claims to an [`Identity`].
    pub fn verify(&self, opts: &VerifyOptions<'_>, now_unix: u64) -> Result<Identity, JwtError> {
        verify_parsed(self, opts, now_unix)
    }
}

/// Verifies a compact JWS and maps its claims to an [`Identity`].
pub fn verify(token: &str, opts: &VerifyOptions<'_>, now_unix: u64) -> Result<Identity, JwtError> {
    Token::parse(token)?.verify(opts, now_unix)
}

fn verify_parsed(
    token: &Token<'_>,
    opts: &VerifyOptions<'_>,
    now_unix: u64,
) -> Result<Identity, JwtError> {
    let expected = opts.key.algorithm().name();
    match token.alg.as_deref() {
        Some(alg) if alg == expected => {}
        other => {
            return Err(JwtError::AlgorithmMismatch {
                found: other.unwrap_or("(none)").chars().take(16).collect(),
                expected,
            });
        }
    }
    let sig = decode_part(token.signature, "signature is not base64url")?;
    // The signature is the last part: what precedes it and its dot is what it signs.
    let signed = &token.text[..token.text.len() - token.signature.len() - 1];
    if !opts.key.verify(signed.as_bytes(), &sig) {
        return Err(JwtError::BadSignature);
    }
    // Claims are only parsed once the signature holds.
    let claims: Map<String, Value> =
        serde_json::from_slice(&decode_part(token.payload, "claims are not base64url")?)
            .map_err(|_| JwtError::Malformed("claims are not a JSON object"))?;
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(JwtError::MissingExpiry)?;
    if now_unix > expires_at.saturating_add(opts.leeway_secs) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_u64)
        && nbf > now_unix.saturating_add(opts.leeway_secs)
    {
        return Err(JwtError::NotYetValid);
    }
    if let Some(issuer) = opts.issuer
        && claims.get("iss").and_then(Value::as_str) != Some(issuer)
    {
        return Err(JwtError::WrongIssuer);
    }
    if let Some(audience) = opts.audience {
        let ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == audience,
            Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    if !opts.authorized_parties.is_empty() {
        match claims.get("azp").and_then(Value::as_str) {
            None => return Err(JwtError::MissingAuthorizedParty),
            Some(azp) if opts.authorized_parties.iter().any(|p| p == azp) => {}
            Some(_) => return Err(JwtError::WrongAuthorizedParty),
        }
    }
    let names = opts.claims;
    let text_claim = |name: &str, max: usize| -> Result<Option<String>, JwtError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s))
                if !s.is_empty()
                    && s.chars().count() <= max
                    && !s.chars().any(char::is_control) =>
            {
                Ok(Some(s.clone()))
            }
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
            Some(_) => Err(JwtError::BadClaim(name.chars().take(32).collect())),
        }
    };
    let roles = match claims.get(&names.roles) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s
            .split([' ', ','])
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| JwtError::BadClaim(names.roles.clone()))?,
        Some(_) => return Err(JwtError::BadClaim(names.roles.clone())),
    };
    if roles.len() > MAX_ROLES || roles.iter().any(|r| r.chars().count() > MAX_CLAIM_CHARS) {
        return Err(JwtError::BadClaim(names.roles.clone()));
    }
    let unique: HashSet<&String> = roles.iter().collect();
    let roles = if unique.len() == roles.len() {
        roles
    } else {
        unique.into_iter().cloned().collect()
    };
    Ok(Identity {
        user_id: text_claim(&names.user_id, opts.max_user_id_chars)?,
        tenant: text_claim(&names.tenant, MAX_CLAIM_CHARS)?,
        actor: text_claim(&names.actor, MAX_CLAIM_CHARS)?,
        roles,
        jti: text_claim("jti", MAX_CLAIM_CHARS)?,
        expires_at,
        _proof: (),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
    };

    const NOW: u64 = 1_800_000_000;

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/testdata/jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Signs `claims` with `alg` and the matching test key.
    fn token(alg: &str, claims: &Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match alg {
            "HS256" => hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, b"jwt-secret"),
                signing_input.as_bytes(),
            )
            .as_ref()
            .to_vec(),
            "RS256" => {
                let key = RsaKeyPair::from_pkcs8(&pem_der(&fixture("rsa-private.pem"))).unwrap();
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    signing_input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            "ES256" => {
                let rng = SystemRandom::new();
                let key = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &pem_der(&fixture("ec-private.pem")),
                    &rng,
                )
                .unwrap();
                key.sign(&rng, signing_input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
            _ => Vec::new(),
        };
        format!("{signing_input}.{}", b64(&sig))
    }

    fn claims() -> Value {
        serde_json::json!({"sub": "u1", "tenant_id": "t9", "actor": "user", "roles": ["admin", "support"], "jti": "j1", "exp": NOW + 60})
    }

    /// No issuer, audience, leeway or authorized parties.
    fn plain<'a>(key: &'a VerifyingKey, names: &'a ClaimNames) -> VerifyOptions<'a> {
        VerifyOptions {
            key,
            issuer: None,
            audience: None,
            leeway_secs: 0,
            claims: names,
            max_user_id_chars: 128,
            authorized_parties: &[],
        }
    }

    fn check(key: &VerifyingKey, token: &str) -> Result<Identity, JwtError> {
        verify(token, &plain(key, &ClaimNames::default()), NOW)
    }

    #[test]
    fn verifies_hs256_rs256_and_es256_and_maps_claims() {
        let keys = [
            ("HS256", VerifyingKey::hs256(b"jwt-secret")),
            (
                "RS256",
                VerifyingKey::from_public_pem(&fixture("rsa-public.pem")).unwrap(),
            ),
            (
                "ES256",
                VerifyingKey::from_public_pem(&fixture("ec-public.pem")).unwrap(),
            ),
        ];
        for (alg, key) in &keys {
            assert_eq!(key.algorithm().name(), *alg);
            let identity = check(key, &token(alg, &claims())).unwrap();
            assert_eq!(identity.user_id.as_deref(), Some("u1"));
            assert_eq!(identity.tenant.as_deref(), Some("t9"));
            assert_eq!(identity.actor.as_deref(), Some("user"));
            assert_eq!(identity.roles, ["admin", "support"]);
            assert_eq!(identity.jti.as_deref(), Some("j1"));
        }
    }

    #[test]
    fn the_algorithm_comes_from_the_key_not_the_token() {
        let rsa = VerifyingKey::from_public_pem(&fixture("rsa-public.pem")).unwrap();
        // HS/RS confusion: an HS256 token "signed" with the RSA public key as the secret.
        let public = fixture("rsa-public.pem");
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256"}"#),
            b64(claims().to_string().as_bytes())
        );
        let sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, public.as_bytes()),
            input.as_bytes(),
        );
        let confused = format!("{input}.{}", b64(sig.as_ref()));
        assert!(matches!(
            check(&rsa, &confused),
            Err(JwtError::AlgorithmMismatch { .. })
        ));
        // alg none with an empty signature.
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims().to_string().as_bytes())
        );
        assert!(matches!(
            check(&VerifyingKey::hs256(b"jwt-secret"), &none),
            Err(JwtError::AlgorithmMismatch { .. })
        ));
        assert!(matches!(
            check(&rsa, &token("ES256", &claims())),
            Err(JwtError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn tampered_or_wrongly_signed_tokens_are_refused() {
        let key = VerifyingKey::hs256(b"jwt-secret");
        let good = token("HS256", &claims());
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = b64(serde_json::json!({"sub": "admin", "exp": NOW + 60})
            .to_string()
            .as_bytes());
        parts[1] = &other;
        assert_eq!(check(&key, &parts.join(".")), Err(JwtError::BadSignature));
        assert_eq!(
            check(&VerifyingKey::hs256(b"other"), &good),
            Err(JwtError::BadSignature)
        );
    }

    #[test]
    fn malformed_tokens_are_refused_with_a_reason() {
        let key = VerifyingKey::hs256(b"jwt-secret");
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.b.c",
            &format!("{}.e30.sig", b64(b"[]")),
        ] {
            assert!(
                matches!(check(&key, bad), Err(JwtError::Malformed(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            check(&key, &"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(JwtError::TooLarge)
        );
    }

    #[test]
    fn time_claims_are_enforced_with_leeway() {
        let key = VerifyingKey::hs256(b"jwt-secret");
        let names = ClaimNames::default();
        let expired = token("HS256", &serde_json::json!({"sub": "u", "exp": NOW - 10}));
        assert_eq!(check(&key, &expired), Err(JwtError::Expired));
        let opts = VerifyOptions {
            key: &key,
            issuer: None,
            audience: None,
            leeway_secs: 10,
            claims: &names,
            max_user_id_chars: 128,
            authorized_parties: &[],
        };
        assert!(verify(&expired, &opts, NOW).is_ok());
        let early = token(
            "HS256",
            &serde_json::json!({"sub": "u", "exp": NOW + 60, "nbf": NOW + 30}),
        );
        assert_eq!(check(&key, &early), Err(JwtError::NotYetValid));
        let forever = token("HS256", &serde_json::json!({"sub": "u"}));
        assert_eq!(check(&key, &forever), Err(JwtError::MissingExpiry));
    }

    #[test]
    fn issuer_audience_and_claim_sizes_are_checked() {
        let key = VerifyingKey::hs256(b"jwt-secret");
        let names = ClaimNames::default();
        let token_ = token(
            "HS256",
            &serde_json::json!({"sub": "u", "exp": NOW + 60, "iss": "me", "aud": ["x", "app"]}),
        );
        let mut opts = VerifyOptions {
            key: &key,
            issuer: Some("me"),
            audience: Some("app"),
            leeway_secs: 0,
            claims: &names,
            max_user_id_chars: 128,
            authorized_parties: &[],
        };
        assert!(verify(&token_, &opts, NOW).is_ok());
        opts.issuer = Some("them");
        assert_eq!(verify(&token_, &opts, NOW), Err(JwtError::WrongIssuer));
        opts.issuer = None;
        opts.audience = Some("other");
        assert_eq!(verify(&token_, &opts, NOW), Err(JwtError::WrongAudience));
        let long = token(
            "HS256",
            &serde_json::json!({"sub": "u".repeat(129), "exp": NOW + 60}),
        );
        assert!(matches!(check(&key, &long), Err(JwtError::BadClaim(_))));
        let roles = token(
            "HS256",
            &serde_json::json!({"sub": "u", "exp": NOW + 60, "roles": [1]}),
        );
        assert!(matches!(check(&key, &roles), Err(JwtError::BadClaim(_))));
        let many: Vec<String> = (0..33).map(|i| i.to_string()).collect();
        let too_many = token(
            "HS256",
            &serde_json::json!({"sub": "u", "exp": NOW + 60, "roles": many}),
        );
        assert!(matches!(check(&key, &too_many), Err(JwtError::BadClaim(_))));
    }

    #[test]
    fn authorized_parties_require_an_azp_among_them() {
        let key = VerifyingKey::hs256(b"jwt-secret");
        let names = ClaimNames::default();
        let parties = ["https://app.example.com".to_owned()];
        let opts = VerifyOptions {
            authorized_parties: &parties,
            ..plain(&key, &names)
        };
        let with_azp = |azp: &str| {
            token(
                "HS256",
                &serde_json::json!({"sub": "u", "exp": NOW + 60, "azp": azp}),
            )
        };
        assert!(verify(&with_azp("https://app.example.com"), &opts, NOW).is_ok());
        assert_eq!(
            verify(&with_azp("https://evil.example.com"), &opts, NOW),
            Err(JwtError::WrongAuthorizedParty)
        );
        let without = token("HS256", &serde_json::json!({"sub": "u", "exp": NOW + 60}));
        let refused = verify(&without, &opts, NOW).unwrap_err();
        assert_eq!(refused, JwtError::MissingAuthorizedParty);
        assert!(refused.to_string().contains("azp"), "{refused}");
        // Without authorized_parties, azp is not looked at.
        assert!(check(&key, &with_azp("anything")).is_ok());
    }

    #[test]
    fn the_header_is_read_once_and_names_the_kid() {
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"k-7"}"#),
            b64(claims().to_string().as_bytes())
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, b"jwt-secret"),
            input.as_bytes(),
        );
        let text = format!("{input}.{}", b64(tag.as_ref()));
        let parsed = Token::parse(&text).unwrap();
        assert_eq!(parsed.kid(), Some("k-7"));
        let names = ClaimNames::default();
        let key = VerifyingKey::hs256(b"jwt-secret");
        assert_eq!(
            parsed
                .verify(&plain(&key, &names), NOW)
                .unwrap()
                .jti
                .as_deref(),
            Some("j1")
        );
        assert_eq!(
            Token::parse(&token("HS256", &claims())).unwrap().kid(),
            None
        );
        let numeric_kid = format!("{}.e30.sig", b64(br#"{"alg":"HS256","kid":7}"#));
        assert!(matches!(
            Token::parse(&numeric_kid),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn public_keys_must_be_rsa_or_p256_spki() {
        assert_eq!(
            VerifyingKey::from_public_pem("nope").err(),
            Some(KeyError::NotPem)
        );
        let truncated =
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQ==\n-----END PUBLIC KEY-----\n";
        assert!(VerifyingKey::from_public_pem(truncated).is_err());
    }

    #[test]
    fn keys_are_equal_when_they_verify_the_same_signatures_and_print_no_secret() {
        assert_eq!(
            VerifyingKey::hs256(b"jwt-secret"),
            VerifyingKey::hs256(b"jwt-secret")
        );
        assert_ne!(
            VerifyingKey::hs256(b"jwt-secret"),
            VerifyingKey::hs256(b"jwt-secreT")
        );
        let rsa = VerifyingKey::from_public_pem(&fixture("rsa-public.pem")).unwrap();
        let ec = VerifyingKey::from_public_pem(&fixture("ec-public.pem")).unwrap();
        assert_eq!(rsa, rsa.clone());
        assert_ne!(rsa, ec);
        assert_ne!(ec, VerifyingKey::hs256(b"jwt-secret"));
        assert_eq!(
            format!("{:?}", VerifyingKey::hs256(b"jwt-secret")),
            "VerifyingKey(HS256)"
        );
    }
}
