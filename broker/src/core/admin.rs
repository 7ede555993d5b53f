//! Admin sign-in and sessions for the dashboard, sans-IO.
//!
//! Admins are configured with an argon2 password hash (PHC string; `ringcast hash-password`
//! makes one). A sign-in creates a session: a random token for an `HttpOnly`,
//! `SameSite=Strict` cookie, and a separate CSRF token that every state-changing call must
//! echo in a header. Sessions expire; failed sign-ins are limited per client address.
//! Time is a parameter, randomness comes from `ring`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::rand::{SecureRandom, SystemRandom};

use crate::core::auth::jwt;
use crate::core::options::{JwtConfig, JwtKeys};
use crate::core::rate_limit::{KeyedLimiter, Rate};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ringcast_admin";
/// The header state-changing calls carry the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Failed sign-ins allowed per client address per minute.
pub const FAILED_SIGNINS_PER_MINUTE: u32 = 5;
/// Most sessions kept; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 1000;
/// Client addresses whose failures are remembered.
const MAX_FAILING_ADDRESSES: usize = 10_000;

/// A configured admin (`[[admins]]`).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    /// Sign-in name.
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
}

/// A signed-in admin.
#[derive(Clone, Debug)]
pub struct Session {
    /// Who.
    pub admin: String,
    /// The token state-changing calls must send in [`CSRF_HEADER`].
    pub csrf: String,
    /// When the session ends.
    pub expires: Instant,
}

/// Why a sign-in failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SignInError {
    /// Unknown name or wrong password (not told apart, on purpose).
    BadCredentials,
    /// Too many failures from this address: retry after this long.
    Throttled(Duration),
}

/// How admin tokens are checked (`[admin_jwt]`); its `required` has no meaning here.
pub struct AdminTokens {
    jwt: JwtConfig,
}

impl AdminTokens {
    /// From the `[admin_jwt]` options.
    pub fn new(config: &JwtConfig) -> Self {
        Self {
            jwt: config.clone(),
        }
    }
}

/// Accounts, live sessions and the failed-sign-in limiter.
pub struct Admins {
    accounts: Vec<AdminAccount>,
    tokens: Option<AdminTokens>,
    sessions: HashMap<String, Session>,
    failures: KeyedLimiter<IpAddr>,
    rng: SystemRandom,
}

impl Admins {
    /// The configured admins, and how admin tokens are checked (if they may be used).
    pub fn new(accounts: Vec<AdminAccount>, tokens: Option<AdminTokens>) -> Self {
        Self {
            accounts,
            tokens,
            sessions: HashMap::new(),
            failures: KeyedLimiter::new(
                Rate {
                    capacity: FAILED_SIGNINS_PER_MINUTE,
                    period: Duration::from_secs(60),
                },
                MAX_FAILING_ADDRESSES,
            ),
            rng: SystemRandom::new(),
        }
    }

    /// Whether any admin can sign in with a password.
    pub fn has_accounts(&self) -> bool {
        !self.accounts.is_empty()
    }

    /// Checks a name and password; on success opens a session and returns its token.
    /// Failures count against `from`; past the limit even a right password is refused.
    pub fn sign_in(
        &mut self,
        name: &str,
        password: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<(String, Session), SignInError> {
        if let Err(wait) = self.failures.check(&from, now) {
            return Err(SignInError::Throttled(wait));
        }
        let account = self.accounts.iter().find(|a| a.name == name);
        // Verify against a real hash even for an unknown name, so timing tells nothing.
        let hash = account.map_or(DUMMY_HASH, |a| a.password_hash.as_str());
        if !verify_password(hash, password) || account.is_none() {
            let _ = self.failures.try_acquire(&from, now);
            return Err(SignInError::BadCredentials);
        }
        Ok(self.open_session(name, now))
    }

    /// Checks a JWT from `[admin_jwt]`: valid, unexpired, with role `admin`; on success opens
    /// a session named after its user id claim. Failures count like wrong passwords.
    pub fn sign_in_with_token(
        &mut self,
        token: &str,
        from: IpAddr,
        now: Instant,
        now_unix: u64,
    ) -> Result<(String, Session), SignInError> {
        if let Err(wait) = self.failures.check(&from, now) {
            return Err(SignInError::Throttled(wait));
        }
        let admin = self.tokens.as_ref().and_then(|t| {
            // The loader refuses `jwks_url` in `[admin_jwt]`, so the key is the table's own.
            let JwtKeys::Static(key) = &t.jwt.keys else {
                return None;
            };
            let identity = jwt::verify(token, &t.jwt.verify_options(key, 64), now_unix).ok()?;
            identity
                .roles
                .iter()
                .any(|r| r == "admin")
                .then(|| identity.user_id.unwrap_or_else(|| "token".to_owned()))
        });
        let Some(admin) = admin else {
            let _ = self.failures.try_acquire(&from, now);
            return Err(SignInError::BadCredentials);
        };
        Ok(self.open_session(&admin, now))
    }

    /// Opens a session for an admin who has proved who they are.
    pub fn open_session(&mut self, admin: &str, now: Instant) -> (String, Session) {
        self.sweep(now);
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(t, _)| t.clone())
        {
            self.sessions.remove(&oldest);
        }
        let token = self.random_hex();
        let session = Session {
            admin: admin.to_owned(),
            csrf: self.random_hex(),
            expires: now + SESSION_TTL,
        };
        self.sessions.insert(token.clone(), session.clone());
        (token, session)
    }

    /// The live session of a cookie token.
    pub fn session(&self, token: &str, now: Instant) -> Option<&Session> {
        self.sessions.get(token).filter(|s| s.expires > now)
    }

    /// Ends a session.
    pub fn sign_out(&mut self, token: &str) {
        self.sessions.remove(token);
    }

    /// Drops expired sessions.
    pub fn sweep(&mut self, now: Instant) {
        self.sessions.retain(|_, s| s.expires > now);
    }

    fn random_hex(&self) -> String {
        let mut bytes = [0u8; 32];
        // SystemRandom only fails if the OS has no randomness, which Linux always has.
        if self.rng.fill(&mut bytes).is_err() {
            panic!("the operating system's random number generator failed");
        }
        hex::encode(bytes)
    }
}

/// A fresh random password (20 characters from an unambiguous alphabet).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    // Bytes at or above the largest multiple of the alphabet's size are skipped, so every
    // character is equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut bytes = [0u8; 32];
        if rng.fill(&mut bytes).is_err() {
            panic!("the operating system's random number generator failed");
        }
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < limit)
                .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
                .take(20 - out.len()),
        );
    }
    out
}

/// A PHC string for `password` (argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    if SystemRandom::new().fill(&mut salt).is_err() {
        panic!("the operating system's random number generator failed");
    }
    let salt = SaltString::encode_b64(&salt).unwrap_or_else(|_| unreachable!("16 bytes fit"));
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_else(|_| unreachable!("default parameters with a 16-byte salt are valid"))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `hash` is a PHC string argon2 can check.
pub fn is_password_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

/// The hash of a password nobody has, checked when the name is unknown.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0b6Q2wZ8gK0yK7s8Hq0T2y7S6v1bX8m7d3o2p1q4r5s";

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_SECRET: &str = "an admin token secret of 32+ bytes!";

    fn admins() -> Admins {
        let tokens = AdminTokens::new(&JwtConfig::hs256(TOKEN_SECRET));
        Admins::new(
            vec![AdminAccount {
                name: "ops".into(),
                password_hash: hash_password("correct horse"),
            }],
            Some(tokens),
        )
    }

    #[test]
    fn a_token_with_role_admin_opens_a_session_and_others_count_as_failures() {
        let mut admins = admins();
        let now = Instant::now();
        let unix = 1_800_000_000;
        let token = |roles: serde_json::Value, exp: u64| {
            jwt::sign_hs256(
                &serde_json::json!({"sub": "dana", "roles": roles, "exp": exp}),
                TOKEN_SECRET.as_bytes(),
            )
        };
        let (_, session) = admins
            .sign_in_with_token(
                &token(serde_json::json!(["admin"]), unix + 60),
                HOME,
                now,
                unix,
            )
            .unwrap();
        assert_eq!(session.admin, "dana");
        for bad in [
            token(serde_json::json!(["user"]), unix + 60),
            token(serde_json::json!(["admin"]), unix - 600),
            "not.a.token".to_owned(),
        ] {
            assert_eq!(
                admins
                    .sign_in_with_token(&bad, HOME, now, unix)
                    .unwrap_err(),
                SignInError::BadCredentials
            );
        }
        // Without [admin_jwt] no token signs anyone in.
        let mut none = Admins::new(Vec::new(), None);
        assert!(
            none.sign_in_with_token(
                &token(serde_json::json!(["admin"]), unix + 60),
                HOME,
                now,
                unix
            )
            .is_err()
        );
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_right_password_opens_a_session_that_expires() {
        let mut admins = admins();
        let now = Instant::now();
        let (token, session) = admins.sign_in("ops", "correct horse", HOME, now).unwrap();
        assert_eq!(session.admin, "ops");
        assert_eq!(token.len(), 64);
        assert_ne!(token, session.csrf);
        assert!(
            admins
                .session(&token, now + Duration::from_secs(60))
                .is_some()
        );
        assert!(admins.session(&token, now + SESSION_TTL).is_none());
        admins.sign_out(&token);
        assert!(admins.session(&token, now).is_none());
    }

    #[test]
    fn wrong_passwords_and_unknown_names_look_the_same_and_are_throttled() {
        let mut admins = admins();
        let now = Instant::now();
        assert_eq!(
            admins.sign_in("ops", "wrong", HOME, now).unwrap_err(),
            SignInError::BadCredentials
        );
        assert_eq!(
            admins
                .sign_in("nobody", "correct horse", HOME, now)
                .unwrap_err(),
            SignInError::BadCredentials
        );
        for _ in 2..FAILED_SIGNINS_PER_MINUTE {
            let _ = admins.sign_in("ops", "wrong", HOME, now);
        }
        // Past the limit, even the right password waits.
        assert!(matches!(
            admins.sign_in("ops", "correct horse", HOME, now),
            Err(SignInError::Throttled(_))
        ));
        // Another address is unaffected, and the limit refills.
        let elsewhere: IpAddr = "127.0.0.2".parse().unwrap();
        assert!(
            admins
                .sign_in("ops", "correct horse", elsewhere, now)
                .is_ok()
        );
        let later = now + Duration::from_secs(61);
        assert!(admins.sign_in("ops", "correct horse", HOME, later).is_ok());
    }

    #[test]
    fn hashes_are_salted_and_checked() {
        let (a, b) = (hash_password("pw"), hash_password("pw"));
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(is_password_hash(&a));
        assert!(verify_password(&a, "pw") && verify_password(&b, "pw"));
        assert!(!verify_password(&a, "pw2"));
        assert!(!verify_password("not a hash", "pw"));
        assert!(!is_password_hash("plain text"));
        assert!(is_password_hash(DUMMY_HASH));
    }
}
