//! HTTP/1.1 request heads and chunked bodies.

use std::borrow::Cow;

/// Limits on a request head.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Largest head, request line and headers included.
    pub max_head_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
}

/// The request method.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
    /// Anything else.
    Other,
}

impl Method {
    /// The method as it appears on the request line (empty for [`Method::Other`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other => "",
        }
    }
}

/// How the body's length is known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    ContentLength(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The raw path as sent, without the query, not percent-decoded.
    pub path: String,
    /// The raw query without `?`, or empty.
    pub query: String,
    /// Header names (lower-cased) and trimmed values, back to back: one allocation for all
    /// of them, read through [`RequestHead::header`].
    header_text: String,
    /// Where each header's name and value are in `header_text`, in the order sent.
    header_spans: Vec<HeaderSpan>,
    /// Bytes of the head including the final CRLFCRLF.
    pub head_len: usize,
    /// How the body is delimited.
    pub body: BodyLength,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
}

/// One header's name and value as ranges of [`RequestHead`]'s `header_text`.
#[derive(Clone, Debug)]
struct HeaderSpan {
    name: std::ops::Range<usize>,
    value: std::ops::Range<usize>,
}

/// Header slots parsed on the stack; a limit above this takes them from the heap.
const STACK_HEADERS: usize = 64;

/// Why a head was refused; `status()` is the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is over `max_head_bytes`.
    #[error("request head too large")]
    TooLarge,
    /// More than `max_headers` headers.
    #[error("too many request headers")]
    TooManyHeaders,
    /// Not a well-formed HTTP/1.x request.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Ambiguous or invalid `Content-Length`.
    #[error("invalid Content-Length")]
    BadContentLength,
    /// A transfer coding other than `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Not HTTP/1.0 or 1.1.
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
}

impl HeadError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Malformed(_) | HeadError::BadContentLength => 400,
            HeadError::UnsupportedTransferEncoding => 501,
            HeadError::UnsupportedVersion => 505,
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, within limits.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Result<Option<RequestHead>, HeadError> {
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let storage: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut request = httparse::Request::new(storage);
    let status = match request.parse(buf) {
        Ok(status) => status,
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HeadError::UnsupportedVersion),
        Err(_) => return Err(HeadError::Malformed("bad request line or header")),
    };
    let head_len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if buf.len() > limits.max_head_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
    };
    if head_len > limits.max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    let method = match request.method.unwrap_or_default() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let target = request.path.unwrap_or_default();
    if !target.starts_with('/') {
        return Err(HeadError::Malformed(
            "request target must be an absolute path",
        ));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version = request.version.unwrap_or(1);
    let mut header_text = String::with_capacity(
        request
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len())
            .sum(),
    );
    let mut header_spans = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| HeadError::Malformed("header value is not UTF-8"))?;
        let name_start = header_text.len();
        header_text.extend(header.name.chars().map(|c| c.to_ascii_lowercase()));
        let value_start = header_text.len();
        header_text.push_str(value.trim());
        header_spans.push(HeaderSpan {
            name: name_start..value_start,
            value: value_start..header_text.len(),
        });
    }
    let mut head = RequestHead {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        header_text,
        header_spans,
        head_len,
        body: BodyLength::Empty,
        keep_alive: false,
    };
    head.body = body_length(&head)?;
    head.keep_alive = if version == 1 {
        !head.header_has_token("connection", "close")
    } else {
        head.header_has_token("connection", "keep-alive")
    };
    Ok(Some(head))
}

/// Decides the body length, refusing the ambiguous combinations used for request smuggling.
fn body_length(head: &RequestHead) -> Result<BodyLength, HeadError> {
    let lengths = || head.headers_named("content-length");
    let mut codings = head
        .headers_named("transfer-encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .peekable();
    if codings.peek().is_some() {
        if lengths().next().is_some() {
            return Err(HeadError::BadContentLength);
        }
        let only_chunked = codings
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
            && codings.next().is_none();
        return if only_chunked {
            Ok(BodyLength::Chunked)
        } else {
            Err(HeadError::UnsupportedTransferEncoding)
        };
    }
    let mut length = None;
    for raw in lengths() {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::BadContentLength);
        }
        let n: usize = raw.parse().map_err(|_| HeadError::BadContentLength)?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::BadContentLength);
        }
        length = Some(n);
    }
    Ok(match length {
        None | Some(0) => BodyLength::Empty,
        Some(n) => BodyLength::ContentLength(n),
    })
}

impl RequestHead {
    /// Every value of header `name` (case-insensitive), in the order sent.
    pub fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl DoubleEndedIterator<Item = &'a str> + use<'a, 'n> {
        let text = self.header_text.as_str();
        self.header_spans
            .iter()
            .filter(move |span| {
                text.get(span.name.clone())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .filter_map(move |span| text.get(span.value.clone()))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers_named(name).next()
    }

    /// Whether a comma-separated header contains `token` (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers_named(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// The query's `key=value` pairs, percent-decoded (`+` is a space); a pair needing no
    /// decoding borrows from the query.
    pub fn query_pairs(&self) -> Result<Vec<QueryPair<'_>>, HeadError> {
        let pairs = || self.query.split('&').filter(|s| !s.is_empty());
        let mut out = Vec::with_capacity(pairs().count());
        for pair in pairs() {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((percent_decode(k, true)?, percent_decode(v, true)?));
        }
        Ok(out)
    }

    /// The first decoded value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .ok()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The path's non-empty segments, percent-decoded (borrowed where nothing is escaped).
    pub fn path_segments(&self) -> Result<Vec<Cow<'_, str>>, HeadError> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_decode(s, false))
            .collect()
    }
}

/// A decoded query parameter: its name and value.
pub type QueryPair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); text with neither is
/// returned as it is, without a copy.
fn percent_decode(raw: &str, plus_is_space: bool) -> Result<Cow<'_, str>, HeadError> {
    let bytes = raw.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_is_space && b == b'+'))
    {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(HeadError::Malformed("truncated percent escape"))?;
                let text = std::str::from_utf8(hex)
                    .map_err(|_| HeadError::Malformed("bad percent escape"))?;
                out.push(
                    u8::from_str_radix(text, 16)
                        .map_err(|_| HeadError::Malformed("bad percent escape"))?,
                );
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| HeadError::Malformed("percent-decoded text is not UTF-8"))
}

/// Why a chunked body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Larger than allowed.
    #[error("request body too large")]
    TooLarge,
    /// Not valid chunked encoding.
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
}

impl BodyError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::Malformed(_) => 400,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
    Done,
}

/// A sans-IO decoder of `Transfer-Encoding: chunked` bodies.
#[derive(Debug)]
pub struct ChunkedDecoder {
    max_body_bytes: usize,
    state: ChunkState,
    total: usize,
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

impl ChunkedDecoder {
    /// A decoder refusing bodies over `max_body_bytes`.
    pub fn new(max_body_bytes: usize) -> Self {
        Self {
            max_body_bytes,
            state: ChunkState::Size,
            total: 0,
        }
    }

    /// Consumes as much of `input` as possible, appending body bytes to `out`. Returns the
    /// bytes consumed and whether the body, trailers included, is complete.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), BodyError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match self.state {
                ChunkState::Done => return Ok((used, true)),
                ChunkState::Size | ChunkState::Trailers => {
                    let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if rest.len() > MAX_LINE {
                            return Err(BodyError::Malformed("line too long"));
                        }
                        return Ok((used, false));
                    };
                    let line = &rest[..end];
                    used += end + 2;
                    if self.state == ChunkState::Trailers {
                        if line.is_empty() {
                            self.state = ChunkState::Done;
                        }
                        continue;
                    }
                    let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
                    let size_text = std::str::from_utf8(size_text)
                        .map_err(|_| BodyError::Malformed("bad chunk size"))?;
                    let size_text = size_text.trim();
                    if size_text.is_empty() || size_text.len() > 16 {
                        return Err(BodyError::Malformed("bad chunk size"));
                    }
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| BodyError::Malformed("bad chunk size"))?;
                    if self.total.saturating_add(size) > self.max_body_bytes {
                        return Err(BodyError::TooLarge);
                    }
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok((used, false));
                    }
                    let take = left.min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    used += take;
                    self.total += take;
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok((used, false));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(BodyError::Malformed("chunk not followed by CRLF"));
                    }
                    used += 2;
                    self.state = ChunkState::Size;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 1024,
        max_headers: 8,
    };

    fn parse(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_head(text.as_bytes(), &LIMITS)
    }

    #[test]
    fn parses_method_path_query_headers_and_body_length() {
        let head = parse("POST /apps/1/events?auth_key=k&x=a%20b+c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path, "/apps/1/events");
        assert_eq!(head.query_param("x").as_deref(), Some("a b c"));
        assert_eq!(head.header("HOST"), Some("x"));
        assert_eq!(head.body, BodyLength::ContentLength(5));
        assert!(head.keep_alive);
        assert_eq!(head.head_len, head.head_len.min(100));
    }

    #[test]
    fn query_pairs_borrow_what_needs_no_decoding() {
        let head = parse("GET /a%2Fb/c?plain=v&spaced=a+b&escaped=%41 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        let pairs = head.query_pairs().unwrap();
        assert!(matches!(
            pairs[0],
            (Cow::Borrowed("plain"), Cow::Borrowed("v"))
        ));
        assert_eq!(pairs[1].1, "a b");
        assert!(matches!(pairs[1].1, Cow::Owned(_)));
        assert_eq!(pairs[2].1, "A");
        let segments = head.path_segments().unwrap();
        assert_eq!(segments, ["a/b", "c"]);
        assert!(matches!(segments[1], Cow::Borrowed("c")));
    }

    #[test]
    fn repeated_headers_are_read_in_order_whatever_their_case() {
        let head = parse(
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for:  2.2.2.2 \r\n\r\n",
        )
        .unwrap()
        .unwrap();
        let values: Vec<&str> = head.headers_named("X-FORWARDED-FOR").collect();
        assert_eq!(values, ["1.1.1.1", "2.2.2.2"]);
        assert_eq!(
            head.headers_named("x-forwarded-for").next_back(),
            Some("2.2.2.2")
        );
        assert_eq!(head.header("host"), None);
    }

    #[test]
    fn incomplete_heads_wait_until_the_limit() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(1100));
        assert_eq!(parse(&long).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn header_count_limit_is_inclusive() {
        let at_limit = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(8));
        assert!(parse(&at_limit).unwrap().is_some());
        let over = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(9));
        assert_eq!(parse(&over).unwrap_err().status(), 431);
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n",
        ] {
            assert_eq!(
                parse(text).unwrap_err(),
                HeadError::BadContentLength,
                "{text:?}"
            );
        }
        let gzip = "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(parse(gzip).unwrap_err().status(), 501);
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(parse(chunked).unwrap().unwrap().body, BodyLength::Chunked);
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(
            !parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(parse("\x00\x01\x02\r\n\r\n").unwrap_err().status(), 400);
        assert_eq!(parse("GET * HTTP/1.1\r\n\r\n").unwrap_err().status(), 400);
        assert!(parse("GET / HTTP/2.0\r\n\r\n").is_err());
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        let head = parse("GET /apps/1/channels/%23server-to-user-1/users HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            head.path_segments().unwrap(),
            ["apps", "1", "channels", "#server-to-user-1", "users"]
        );
        let bad = parse("GET /a%zz HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(bad.path_segments().is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_splits() {
        let body = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 0..body.len() {
            let mut decoder = ChunkedDecoder::new(100);
            let mut out = Vec::new();
            let (used, done) = decoder.decode(&body[..split], &mut out).unwrap();
            assert!(!done);
            let mut rest = body[used..].to_vec();
            let (used2, done) = decoder.decode(&rest, &mut out).unwrap();
            rest.drain(..used2);
            assert!(done && rest.is_empty(), "split {split}");
            assert_eq!(out, b"Wikipedia");
        }
    }

    #[test]
    fn chunked_body_limit_is_inclusive() {
        let mut out = Vec::new();
        assert!(
            ChunkedDecoder::new(9)
                .decode(b"9\r\n123456789\r\n0\r\n\r\n", &mut out)
                .unwrap()
                .1
        );
        let err = ChunkedDecoder::new(8).decode(b"9\r\n123456789\r\n0\r\n\r\n", &mut Vec::new());
        assert_eq!(err.unwrap_err().status(), 413);
        let err = ChunkedDecoder::new(8).decode(b"zz\r\n", &mut Vec::new());
        assert_eq!(err.unwrap_err().status(), 400);
    }
}
