//! Calls to the broker's admin API (same origin, the session cookie rides along).

use gloo_net::http::{Request, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The signed-in admin.
pub use ringcast_shared::AdminSession as Session;

/// An API failure, as the broker words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status (0 when the request did not get an answer).
    pub status: u16,
    /// The broker's `error` message, or what went wrong.
    pub message: String,
}

async fn read<T: DeserializeOwned>(
    response: Result<Response, gloo_net::Error>,
) -> Result<T, ApiError> {
    let response = response.map_err(|e| ApiError {
        status: 0,
        message: e.to_string(),
    })?;
    let status = response.status();
    if response.ok() {
        return response.json::<T>().await.map_err(|e| ApiError {
            status,
            message: e.to_string(),
        });
    }
    #[derive(Deserialize)]
    struct Problem {
        error: String,
    }
    let message = response
        .json::<Problem>()
        .await
        .map_or_else(|_| format!("HTTP {status}"), |p| p.error);
    Err(ApiError { status, message })
}

/// `GET` a JSON document from the admin API.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, ApiError> {
    read(Request::get(path).send().await).await
}

/// `POST` JSON with the CSRF token.
pub async fn post<T: DeserializeOwned>(
    path: &str,
    csrf: &str,
    body: &serde_json::Value,
) -> Result<T, ApiError> {
    let request = Request::post(path)
        .header("X-CSRF-Token", csrf)
        .json(body)
        .map_err(|e| ApiError {
            status: 0,
            message: e.to_string(),
        })?;
    read(request.send().await).await
}

/// Restores the session from the cookie, if any.
pub async fn session() -> Option<Session> {
    get::<Session>("/admin/api/session").await.ok()
}

/// Signs in.
pub async fn sign_in(name: &str, password: &str) -> Result<Session, ApiError> {
    let request = Request::post("/admin/api/login")
        .json(&serde_json::json!({ "name": name, "password": password }))
        .map_err(|e| ApiError {
            status: 0,
            message: e.to_string(),
        })?;
    read(request.send().await).await
}

/// Percent-encodes a path segment.
pub fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'@'
            | b','
            | b';'
            | b'=' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::segment("presence-room 1/x"), "presence-room%201%2Fx");
        assert_eq!(super::segment("private-chat.42"), "private-chat.42");
    }
}
