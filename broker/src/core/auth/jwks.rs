//! JSON Web Key Sets (RFC 7517) for `[apps.jwt]`: a fetched document parsed once into a
//! [`KeySet`] of [`VerifyingKey`]s named by `kid`.
//!
//! The algorithm stays fixed by config: a JWK is kept only when its type fits the configured
//! algorithm (and its own `alg`, when present, names it), so a key set cannot widen what a
//! token may use. Keys of other types or curves, and keys whose `use` is not `sig`, are skipped
//! rather than failing the document, because providers publish such keys beside signing keys.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::core::sync::{lock, read, write};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::jwt::{Algorithm, VerifyingKey};

/// Largest JWKS document read; a provider's set of a few keys is a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one document.
pub const MAX_JWKS_KEYS: usize = 64;
/// Longest `kid` kept.
const MAX_KID_CHARS: usize = 256;
/// Length of a P-256 coordinate.
const P256_COORDINATE_BYTES: usize = 32;
/// Largest RSA modulus `ring` verifies with (8192 bits).
const MAX_RSA_MODULUS_BYTES: usize = 8192 / 8;

/// Why a JWKS document gave no usable key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Over [`MAX_JWKS_BYTES`].
    #[error("JWKS document is over {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not JSON of the shape `{"keys": [...]}`.
    #[error("JWKS document is not a JSON object with a \"keys\" array")]
    Malformed,
    /// Over [`MAX_JWKS_KEYS`] entries.
    #[error("JWKS document has more than {MAX_JWKS_KEYS} keys")]
    TooManyKeys,
    /// No entry is a signing key for the configured algorithm.
    #[error("JWKS document has no usable {} signing key", .0.name())]
    NoUsableKey(Algorithm),
}

/// The keys of one JWKS document that can verify the configured algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<(Option<String>, VerifyingKey)>,
}

/// Which key a token's header selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice<'a> {
    /// The key to verify with.
    Key(&'a VerifyingKey),
    /// The token names a `kid` the set does not hold (a refetch may find it).
    UnknownKid,
    /// The token names no `kid` and the set holds more than one key, so none can be chosen.
    KidRequired,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

/// One JWK's fields that matter here; unknown members are ignored as RFC 7517 requires.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys usable with `algorithm`.
    pub fn parse(document: &[u8], algorithm: Algorithm) -> Result<Self, JwksError> {
        if document.len() > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge);
        }
        let doc: Document = serde_json::from_slice(document).map_err(|_| JwksError::Malformed)?;
        if doc.keys.len() > MAX_JWKS_KEYS {
            return Err(JwksError::TooManyKeys);
        }
        let keys: Vec<_> = doc
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| jwk.into_key(algorithm))
            .collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey(algorithm));
        }
        Ok(KeySet { keys })
    }

    /// The key for a token whose header names `kid` (or none).
    pub fn choose(&self, kid: Option<&str>) -> KeyChoice<'_> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k.as_deref() == Some(kid))
                .map_or(KeyChoice::UnknownKid, |(_, key)| KeyChoice::Key(key)),
            None => match self.keys.as_slice() {
                [(_, key)] => KeyChoice::Key(key),
                _ => KeyChoice::KidRequired,
            },
        }
    }

    /// Whether a token naming `kid` finds its key here.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.as_deref() == Some(kid))
    }

    /// How many usable keys the set holds (always at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a set without a usable key is a [`JwksError::NoUsableKey`].
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Jwk {
    /// The key with its `kid`, or `None` for a key this algorithm cannot use.
    fn into_key(self, algorithm: Algorithm) -> Option<(Option<String>, VerifyingKey)> {
        if self.usage.as_deref().is_some_and(|u| u != "sig")
            || self.alg.as_deref().is_some_and(|a| a != algorithm.name())
            || self
                .kid
                .as_ref()
                .is_some_and(|k| k.chars().count() > MAX_KID_CHARS)
        {
            return None;
        }
        let key = match (algorithm, self.kty.as_str()) {
            (Algorithm::Rs256, "RSA") => {
                let n = decode(self.n.as_deref()?)?;
                let e = decode(self.e.as_deref()?)?;
                VerifyingKey::Rs256(rsa_public_key_der(&n, &e)?)
            }
            (Algorithm::Es256, "EC") if self.crv.as_deref() == Some("P-256") => {
                let x = decode(self.x.as_deref()?)?;
                let y = decode(self.y.as_deref()?)?;
                if x.len() != P256_COORDINATE_BYTES || y.len() != P256_COORDINATE_BYTES {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + 2 * P256_COORDINATE_BYTES);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::Es256(point)
            }
            _ => return None,
        };
        Some((self.kid, key))
    }
}

/// An app's key set as last fetched, shared by the shards that verify tokens with it and the
/// fetcher thread that replaces it, with what the fetcher is asked to do next.
///
/// Shards only ever take the read lock for as long as it takes to clone an `Arc`, and the
/// fetcher takes the write lock only to swap that `Arc`, so a slow fetch never stalls a shard.
#[derive(Debug, Default)]
pub struct LiveKeys {
    set: RwLock<Option<Arc<KeySet>>>,
    wake: Mutex<Wake>,
    woken: Condvar,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
}

/// What the fetcher has been asked since it last looked.
#[derive(Debug, Default)]
struct Wake {
    /// A token named a `kid` the set does not hold (or came before any set was loaded).
    refetch: bool,
    /// The server is stopping.
    stop: bool,
}

/// How often a fetcher fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSchedule {
    /// Time between two scheduled fetches (`jwks_refresh_secs`).
    pub refresh: Duration,
    /// Least time between the last fetch and one asked for by a token naming an unknown
    /// `kid` (`jwks_min_refetch_secs`), so that forged kids cannot make the broker hammer
    /// the provider.
    pub min_refetch: Duration,
}

impl FetchSchedule {
    /// `Ok` when a fetch is due at `now`, given the last one at `last`; else when it will be.
    fn due(&self, refetch_asked: bool, last: Instant, now: Instant) -> Result<(), Instant> {
        // Durations past what an `Instant` can hold (never from a file) mean "a day from now".
        let after = |wait: Duration| {
            last.checked_add(wait)
                .unwrap_or_else(|| now + Duration::from_secs(86_400))
        };
        let scheduled = after(self.refresh);
        let deadline = if refetch_asked {
            scheduled.min(after(self.min_refetch))
        } else {
            scheduled
        };
        if now >= deadline {
            Ok(())
        } else {
            Err(deadline)
        }
    }
}

impl LiveKeys {
    /// The set last loaded; `None` until the first fetch succeeds.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        read(&self.set).clone()
    }

    /// Puts a freshly fetched set in place of the old one, and counts the fetch.
    pub fn install(&self, set: KeySet) {
        *write(&self.set) = Some(Arc::new(set));
        self.fetches_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a fetch that gave no set (the old one stays).
    pub fn count_failure(&self) {
        self.fetches_failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Asks the fetcher for a fetch as soon as its schedule's `min_refetch` allows: a token
    /// named a key the set does not hold, which a rotation at the provider may have added.
    pub fn request_refetch(&self) {
        lock(&self.wake).refetch = true;
        self.woken.notify_all();
    }

    /// Whether a refetch was asked for and has not started yet.
    pub fn refetch_requested(&self) -> bool {
        lock(&self.wake).refetch
    }

    /// Tells the fetcher to end (it does after the fetch it may be in).
    pub fn stop(&self) {
        lock(&self.wake).stop = true;
        self.woken.notify_all();
    }

    /// Blocks the fetcher until its next fetch is due, given the last one at `last`: `true`
    /// to fetch now (a pending refetch request is taken), `false` to end.
    pub fn wait_for_fetch(&self, schedule: FetchSchedule, last: Instant) -> bool {
        let mut wake = lock(&self.wake);
        loop {
            if wake.stop {
                return false;
            }
            let now = Instant::now();
            match schedule.due(wake.refetch, last, now) {
                Ok(()) => {
                    wake.refetch = false;
                    return true;
                }
                Err(deadline) => {
                    wake = match self.woken.wait_timeout(wake, deadline - now) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
            }
        }
    }

    /// Fetches that loaded a set.
    pub fn fetches_ok(&self) -> u64 {
        self.fetches_ok.load(Ordering::Relaxed)
    }

    /// Fetches that failed or gave an unusable document.
    pub fn fetches_failed(&self) -> u64 {
        self.fetches_failed.load(Ordering::Relaxed)
    }

    /// Keys in the set in use (0 before the first successful fetch).
    pub fn keys_loaded(&self) -> usize {
        self.current().map_or(0, |set| set.len())
    }
}

fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok().filter(|b| !b.is_empty())
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` in DER, the
/// form `ring`'s `RSA_PKCS1_2048_8192_SHA256` takes. `None` for an oversized modulus or
/// exponent (`ring` checks the rest when it verifies).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
    let n = der_integer(n, MAX_RSA_MODULUS_BYTES)?;
    let e = der_integer(e, 8)?;
    let mut body = n;
    body.extend_from_slice(&e);
    Some(der_tlv(0x30, &body))
}

/// An unsigned big-endian number as a DER INTEGER: leading zeros stripped, and one 0x00 put
/// back when the top bit is set so that it does not read as negative.
fn der_integer(magnitude: &[u8], max_bytes: usize) -> Option<Vec<u8>> {
    let start = magnitude.iter().position(|b| *b != 0)?;
    let digits = magnitude.get(start..)?;
    if digits.len() > max_bytes {
        return None;
    }
    let mut content = Vec::with_capacity(digits.len() + 1);
    if digits.first().is_some_and(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(digits);
    Some(der_tlv(0x02, &content))
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 4);
    out.push(tag);
    let len = content.len();
    let len_bytes = len.to_be_bytes();
    let significant = len_bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(len_bytes.len());
    match len_bytes.get(significant..) {
        Some(long) if len >= 0x80 => {
            // Long form: 0x80 | count of length bytes, then the length. `long` is at most 8 bytes.
            out.push(0x80 | long.len() as u8);
            out.extend_from_slice(long);
        }
        _ => out.push(len as u8),
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
    };

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/testdata/jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(body).unwrap()
    }

    fn b64(data: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(data)
    }

    pub(crate) fn ec_jwk(kid: &str, key: &EcdsaKeyPair) -> serde_json::Value {
        let point = key.public_key().as_ref();
        serde_json::json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    pub(crate) fn new_ec_key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    pub(crate) fn doc(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::json!({ "keys": keys }).to_string().into_bytes()
    }

    #[test]
    fn rsa_jwk_becomes_the_pkcs1_key_that_verifies_its_signatures() {
        let pair = RsaKeyPair::from_pkcs8(&pem_der(&fixture("rsa-private.pem"))).unwrap();
        let public = pair.public();
        let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(public);
        let jwk = serde_json::json!({"kty": "RSA", "kid": "r1", "alg": "RS256",
            "n": b64(&components.n),
            "e": b64(&components.e)});
        let set = KeySet::parse(&doc(&[jwk]), Algorithm::Rs256).unwrap();
        let KeyChoice::Key(key) = set.choose(Some("r1")) else {
            panic!("r1 not chosen")
        };
        assert_eq!(
            *key,
            VerifyingKey::from_public_pem(&fixture("rsa-public.pem")).unwrap()
        );
        let VerifyingKey::Rs256(der) = key else {
            panic!("not RSA")
        };
        let mut sig = vec![0; public.modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            b"message",
            &mut sig,
        )
        .unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .verify(b"message", &sig)
            .unwrap();
    }

    #[test]
    fn ec_jwk_becomes_the_uncompressed_point_that_verifies_its_signatures() {
        let pair = new_ec_key();
        let set = KeySet::parse(&doc(&[ec_jwk("e1", &pair)]), Algorithm::Es256).unwrap();
        let KeyChoice::Key(VerifyingKey::Es256(point)) = set.choose(Some("e1")) else {
            panic!("e1 not chosen")
        };
        let sig = pair.sign(&SystemRandom::new(), b"message").unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(b"message", sig.as_ref())
            .unwrap();
    }

    #[test]
    fn kid_selects_its_key_and_an_unknown_kid_is_reported() {
        let (a, b) = (new_ec_key(), new_ec_key());
        let set =
            KeySet::parse(&doc(&[ec_jwk("a", &a), ec_jwk("b", &b)]), Algorithm::Es256).unwrap();
        let KeyChoice::Key(VerifyingKey::Es256(point)) = set.choose(Some("b")) else {
            panic!("b not chosen")
        };
        assert_eq!(point.as_slice(), b.public_key().as_ref());
        assert_eq!(set.choose(Some("c")), KeyChoice::UnknownKid);
        assert!(set.knows("a") && !set.knows("c"));
    }

    #[test]
    fn a_token_without_kid_needs_a_set_of_exactly_one_key() {
        let one = KeySet::parse(&doc(&[ec_jwk("a", &new_ec_key())]), Algorithm::Es256).unwrap();
        assert!(matches!(one.choose(None), KeyChoice::Key(_)));
        let two = KeySet::parse(
            &doc(&[ec_jwk("a", &new_ec_key()), ec_jwk("b", &new_ec_key())]),
            Algorithm::Es256,
        )
        .unwrap();
        assert_eq!(two.choose(None), KeyChoice::KidRequired);
    }

    #[test]
    fn keys_for_other_algorithms_uses_or_curves_are_skipped() {
        let good = ec_jwk("good", &new_ec_key());
        let mut encryption = ec_jwk("enc", &new_ec_key());
        encryption["use"] = "enc".into();
        let mut other_alg = ec_jwk("alg", &new_ec_key());
        other_alg["alg"] = "ES384".into();
        let mut other_curve = ec_jwk("crv", &new_ec_key());
        other_curve["crv"] = "P-384".into();
        let symmetric = serde_json::json!({"kty": "oct", "kid": "oct", "k": "c2VjcmV0"});
        let set = KeySet::parse(
            &doc(&[encryption, other_alg, other_curve, symmetric, good]),
            Algorithm::Es256,
        )
        .unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.knows("good"));
        // An EC set is no use to an RS256 app: the config's algorithm decides.
        assert_eq!(
            KeySet::parse(&doc(&[ec_jwk("a", &new_ec_key())]), Algorithm::Rs256),
            Err(JwksError::NoUsableKey(Algorithm::Rs256))
        );
    }

    #[test]
    fn malformed_and_oversized_documents_are_refused_without_panic() {
        for bad in [
            &b""[..],
            b"[]",
            b"{}",
            b"{\"keys\": 3}",
            b"\xff\xfe",
            b"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\": \"!!\", \"y\": \"\"}]}",
        ] {
            assert!(KeySet::parse(bad, Algorithm::Es256).is_err(), "{bad:?}");
        }
        let short = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(&[1; 31]), "y": b64(&[1; 32])});
        assert_eq!(
            KeySet::parse(&doc(&[short]), Algorithm::Es256),
            Err(JwksError::NoUsableKey(Algorithm::Es256))
        );
        let mut padded = doc(&[ec_jwk("a", &new_ec_key())]);
        padded.resize(MAX_JWKS_BYTES + 1, b' ');
        assert_eq!(
            KeySet::parse(&padded, Algorithm::Es256),
            Err(JwksError::TooLarge)
        );
        padded.truncate(MAX_JWKS_BYTES);
        assert!(KeySet::parse(&padded, Algorithm::Es256).is_ok());
        let key = ec_jwk("a", &new_ec_key());
        let at_limit = vec![key.clone(); MAX_JWKS_KEYS];
        assert!(KeySet::parse(&doc(&at_limit), Algorithm::Es256).is_ok());
        let over = vec![key; MAX_JWKS_KEYS + 1];
        assert_eq!(
            KeySet::parse(&doc(&over), Algorithm::Es256),
            Err(JwksError::TooManyKeys)
        );
    }

    #[test]
    fn a_refetch_waits_for_min_refetch_and_a_refresh_for_its_interval() {
        let schedule = FetchSchedule {
            refresh: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
        };
        let last = Instant::now();
        let at = |secs| last + Duration::from_secs(secs);
        assert_eq!(schedule.due(false, last, at(5)), Err(at(300)));
        assert_eq!(schedule.due(true, last, at(5)), Err(at(10)));
        assert_eq!(schedule.due(true, last, at(10)), Ok(()));
        assert_eq!(schedule.due(false, last, at(300)), Ok(()));
        let endless = FetchSchedule {
            refresh: Duration::MAX,
            min_refetch: Duration::MAX,
        };
        assert_eq!(endless.due(true, last, at(1)), Err(at(1 + 86_400)));
        // A refetch can never be later than the scheduled refresh.
        let tight = FetchSchedule {
            refresh: Duration::from_secs(5),
            ..schedule
        };
        assert_eq!(tight.due(true, last, at(1)), Err(at(5)));
    }

    #[test]
    fn live_keys_take_requests_and_stop_the_fetcher() {
        let live = LiveKeys::default();
        assert!(live.current().is_none());
        assert_eq!(live.keys_loaded(), 0);
        live.request_refetch();
        assert!(live.refetch_requested());
        let schedule = FetchSchedule {
            refresh: Duration::from_secs(300),
            min_refetch: Duration::ZERO,
        };
        // The request is due at once (min_refetch is 0 here) and is taken.
        assert!(live.wait_for_fetch(schedule, Instant::now()));
        assert!(!live.refetch_requested());
        live.install(KeySet::parse(&doc(&[ec_jwk("a", &new_ec_key())]), Algorithm::Es256).unwrap());
        live.count_failure();
        assert_eq!(
            (live.keys_loaded(), live.fetches_ok(), live.fetches_failed()),
            (1, 1, 1)
        );
        live.stop();
        assert!(!live.wait_for_fetch(schedule, Instant::now()));
    }

    #[test]
    fn der_lengths_use_the_long_form_from_128_bytes() {
        assert_eq!(der_tlv(0x04, &[7; 127])[..2], [0x04, 127]);
        assert_eq!(der_tlv(0x04, &[7; 128])[..3], [0x04, 0x81, 128]);
        assert_eq!(der_tlv(0x04, &[7; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(
            der_integer(&[0, 0, 0x80], 8).unwrap(),
            vec![0x02, 2, 0, 0x80]
        );
        assert_eq!(der_integer(&[0, 0], 8), None);
    }
}
