//! JWT connection auth with keys from a JWKS URL, against a real HTTP server on 127.0.0.1
//! whose document the test swaps: kid choice, rotation, `azp`, and a broken document.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use ringcast::config::{Config, JwksSource, JwtConfig, JwtKeys};
use ringcast::core::auth::jwks::FetchSchedule;
use ringcast::core::auth::jwt::{Algorithm, sign_es256};
use serde_json::{Value, json};
use support::{KEY, TestServer, WsClient, http};

/// An HTTP server answering every request with the current document, counting requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    fn start(document: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let document = Arc::new(Mutex::new(document));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (document, requests, stop) = (document.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            stream.set_nonblocking(false).unwrap();
                            stream
                                .set_read_timeout(Some(Duration::from_secs(2)))
                                .unwrap();
                            let mut head = Vec::new();
                            let mut byte = [0u8; 1];
                            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                                match stream.read(&mut byte) {
                                    Ok(1) => head.push(byte[0]),
                                    _ => break,
                                }
                            }
                            requests.fetch_add(1, Ordering::SeqCst);
                            let body = document.lock().unwrap().clone();
                            let response = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = stream.write_all(response.as_bytes());
                            let _ = stream.write_all(&body);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Self {
            url,
            document,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn serve(&self, document: Vec<u8>) {
        *self.document.lock().unwrap() = document;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn new_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

/// A JWKS document of P-256 keys, each named by its kid (the public key is 0x04 || x || y).
fn jwks(keys: &[(&str, &EcdsaKeyPair)]) -> Vec<u8> {
    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, key)| {
            let point = key.public_key().as_ref();
            json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
                   "x": b64(&point[1..33]), "y": b64(&point[33..65])})
        })
        .collect();
    json!({ "keys": keys }).to_string().into_bytes()
}

/// The claims every test token carries: user `u1`, a minute to live.
fn claims() -> Value {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    json!({"sub": "u1", "exp": exp})
}

fn token(kid: &str, key: &EcdsaKeyPair, extra: Value) -> String {
    let mut claims = claims();
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    sign_es256(&claims, Some(kid), key).unwrap()
}

/// An ES256 app whose keys come from `url`, refreshed every `refresh_secs`, and fetched
/// again a second after the last fetch when a token names an unknown kid.
fn jwks_app(url: &str, refresh_secs: u64, authorized_parties: &[&str]) -> impl FnOnce(&mut Config) {
    app_for(url, Algorithm::Es256, refresh_secs, authorized_parties)
}

fn app_for(
    url: &str,
    algorithm: Algorithm,
    refresh_secs: u64,
    authorized_parties: &[&str],
) -> impl FnOnce(&mut Config) {
    let source = JwksSource {
        schedule: FetchSchedule {
            refresh: Duration::from_secs(refresh_secs),
            min_refetch: Duration::from_secs(1),
        },
        ..JwksSource::new(url, algorithm)
    };
    let parties = authorized_parties.iter().map(|p| (*p).to_owned()).collect();
    move |config| {
        config.apps[0].jwt = Some(JwtConfig {
            required: true,
            leeway_secs: 0,
            authorized_parties: parties,
            ..JwtConfig::with_keys(JwtKeys::Jwks(source))
        });
    }
}

/// Connects with `token`: the client once `connection_established` came, else the
/// `pusher:error` the server sent (it then closes).
fn connect(addr: SocketAddr, token: &str) -> Result<WsClient, Value> {
    let mut client = WsClient::open(addr, &format!("/app/{KEY}?protocol=7&token={token}"));
    match client.recv() {
        Some(hello) if hello["event"] == "pusher:connection_established" => Ok(client),
        other => Err(other.unwrap_or(Value::Null)),
    }
}

/// Runs `attempt` every 100 ms, at most 50 times and for at most 5 s: its first success,
/// or its last failure.
fn retry<T, E>(mut attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut outcome = attempt();
    for _ in 1..50 {
        if outcome.is_ok() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        outcome = attempt();
    }
    outcome
}

/// [`connect`], retried until admitted (see [`retry`]).
fn admitted_soon(addr: SocketAddr, token: &str) -> Result<WsClient, Value> {
    retry(|| connect(addr, token))
}

/// The value of `series` on `/metrics`, if it is there.
fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let (_, text) = http(addr, "GET", "/metrics", "");
    let text = text.as_str()?.to_owned();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn assert_refused(refusal: &Value, says: &str) {
    assert_eq!(refusal["event"], "pusher:error", "{refusal}");
    assert_eq!(refusal["data"]["code"], 4009, "{refusal}");
    let message = refusal["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{refusal}");
}

#[test]
fn a_rotated_key_is_admitted_after_the_refetch_and_the_retired_one_is_refused() {
    let (a, b) = (new_key(), new_key());
    let provider = JwksServer::start(jwks(&[("a", &a)]));
    // No scheduled refresh during the test: only the unknown kid can make the broker look.
    let server = TestServer::start_with(1, jwks_app(&provider.url, 3600, &[]));

    let token_a = token("a", &a, json!({}));
    let first = admitted_soon(server.addr, &token_a);
    assert!(first.is_ok(), "key a never admitted: {:?}", first.err());

    provider.serve(jwks(&[("b", &b)]));
    let token_b = token("b", &b, json!({}));
    let rotated = admitted_soon(server.addr, &token_b);
    assert!(rotated.is_ok(), "key b never admitted: {:?}", rotated.err());
    // The start's fetch and the refetch the unknown kid asked for (an hour before any refresh).
    assert!(provider.requests() >= 2, "{}", provider.requests());

    // The set that holds b no longer holds a.
    let mut retired = WsClient::open(
        server.addr,
        &format!("/app/{KEY}?protocol=7&token={token_a}"),
    );
    assert_refused(&retired.recv().unwrap(), "unknown key id");
    assert_eq!(retired.recv().unwrap(), json!({"close": 4009}));

    // A renewal chooses its key the same way.
    let mut renewing = rotated.unwrap();
    let renew = |token: &str| json!({"event": "ringcast:renew", "data": {"token": token}});
    renewing.send(&renew(&token("b", &b, json!({}))));
    renewing.recv_until(Duration::from_secs(5), |v| v["event"] == "ringcast:renewed");
    renewing.send(&renew(&token_a));
    let failed = renewing.recv_until(Duration::from_secs(5), |v| {
        v["event"] == "ringcast:renew_failed"
    });
    let reason = failed["data"].as_str().unwrap_or_default();
    assert!(reason.contains("unknown key id"), "{failed}");

    let app = "{app=\"100001\"}";
    assert_eq!(
        metric(server.addr, &format!("ringcast_app_jwks_keys{app}")),
        Some(1.0)
    );
    let fetches = metric(
        server.addr,
        &format!("ringcast_app_jwks_fetches_total{app}"),
    );
    assert!(fetches.is_some_and(|n| n >= 2.0), "{fetches:?}");
}

#[test]
fn authorized_parties_admit_the_listed_azp_only() {
    let a = new_key();
    let provider = JwksServer::start(jwks(&[("a", &a)]));
    let server =
        TestServer::start_with(1, jwks_app(&provider.url, 1, &["https://app.example.com"]));
    let allowed = token("a", &a, json!({"azp": "https://app.example.com"}));
    let admitted = admitted_soon(server.addr, &allowed);
    assert!(
        admitted.is_ok(),
        "allowed azp never admitted: {:?}",
        admitted.err()
    );

    let other = token("a", &a, json!({"azp": "https://evil.example.com"}));
    let refusal = connect(server.addr, &other).err().unwrap();
    assert_refused(&refusal, "azp is not one of the app's authorized_parties");
    let missing = token("a", &a, json!({}));
    let refusal = connect(server.addr, &missing).err().unwrap();
    assert_refused(&refusal, "no azp claim");
}

#[test]
fn a_broken_document_is_counted_and_the_keys_in_use_stay() {
    let a = new_key();
    let provider = JwksServer::start(jwks(&[("a", &a)]));
    let server = TestServer::start_with(1, jwks_app(&provider.url, 1, &[]));
    let token_a = token("a", &a, json!({}));
    let first = admitted_soon(server.addr, &token_a);
    assert!(first.is_ok(), "key a never admitted: {:?}", first.err());

    provider.serve(b"{\"keys\": \"not a list\"".to_vec());
    let failures = "ringcast_app_jwks_fetch_failures_total{app=\"100001\"}";
    let failed = retry(|| {
        metric(server.addr, failures)
            .filter(|n| *n >= 1.0)
            .ok_or(())
    });
    assert!(failed.is_ok(), "no failed fetch counted");
    assert!(
        connect(server.addr, &token_a).is_ok(),
        "the old key was dropped"
    );
}

/// The RSA key of `testdata/jwt` (PKCS#8).
fn fixture_rsa_key() -> RsaKeyPair {
    let pem = std::fs::read_to_string(format!(
        "{}/testdata/jwt/rsa-private.pem",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap()
}

/// An RS256 token naming `kid`, signed with `key`.
fn rs256_token(kid: &str, key: &RsaKeyPair) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn an_rs256_set_as_clerk_publishes_it_admits_its_tokens_and_skips_other_key_types() {
    let rsa = fixture_rsa_key();
    let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public());
    let ec = new_key();
    let mut document: Value = serde_json::from_slice(&jwks(&[("e1", &ec)])).unwrap();
    document["keys"].as_array_mut().unwrap().push(json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "r1",
        "n": URL_SAFE_NO_PAD.encode(&components.n),
        "e": URL_SAFE_NO_PAD.encode(&components.e),
    }));
    let provider = JwksServer::start(document.to_string().into_bytes());
    let server = TestServer::start_with(1, app_for(&provider.url, Algorithm::Rs256, 3600, &[]));

    let admitted = admitted_soon(server.addr, &rs256_token("r1", &rsa));
    assert!(
        admitted.is_ok(),
        "RS256 key never admitted: {:?}",
        admitted.err()
    );
    // The EC key of the same document is no key for an RS256 app.
    let refusal = connect(server.addr, &token("e1", &ec, json!({})))
        .err()
        .unwrap();
    assert_refused(&refusal, "unknown key id");
}
