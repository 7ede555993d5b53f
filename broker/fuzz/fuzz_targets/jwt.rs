//! Arbitrary tokens against each kind of verifying key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::core::auth::jwt::{ClaimNames, VerifyOptions, VerifyingKey, verify};

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let names = ClaimNames::default();
    let keys = [
        VerifyingKey::hs256(b"fuzz-secret-of-at-least-32-bytes!!"),
        VerifyingKey::from_public_pem(include_str!("../../testdata/jwt/ec-public.pem")).unwrap(),
        VerifyingKey::from_public_pem(include_str!("../../testdata/jwt/rsa-public.pem")).unwrap(),
    ];
    for key in &keys {
        let opts = VerifyOptions {
            key,
            issuer: Some("iss"),
            audience: Some("aud"),
            leeway_secs: 30,
            claims: &names,
            max_user_id_chars: 128,
            authorized_parties: &[],
        };
        let _ = verify(token, &opts, 1_800_000_000);
    }
});
