//! HTTP/1.1 responses.

/// The reason phrase of a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete response with `Content-Length`; `extra_headers` are written as given.
pub fn response(
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &[(&str, &str)],
    keep_alive: bool,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(160 + body.len());
    // Writes into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n"
    } else {
        b"Connection: close\r\n"
    });
    for (name, value) in extra_headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// `{"error": message}` with the given status.
pub fn json_error(status: u16, message: &str, keep_alive: bool) -> Vec<u8> {
    json_error_with(status, message, &[], keep_alive)
}

/// `{"error": message}` with extra headers.
pub fn json_error_with(
    status: u16,
    message: &str,
    extra_headers: &[(&str, &str)],
    keep_alive: bool,
) -> Vec<u8> {
    let body = serde_json::json!({ "error": message }).to_string();
    response(
        status,
        "application/json",
        body.as_bytes(),
        extra_headers,
        keep_alive,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_escapes_the_message_and_sets_length() {
        let bytes = json_error(400, "bad \"x\"", false);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let body = text.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(body, r#"{"error":"bad \"x\""}"#);
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
