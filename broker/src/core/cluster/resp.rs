//! The Redis protocol (RESP2 and RESP3), sans-IO.
//!
//! Commands go out as arrays of bulk strings. Replies are decoded in two passes over the same
//! header reader: a scan that checks a complete (possibly nested) value is buffered and finds
//! where it ends, without allocating, then a parse of exactly those bytes, frozen, so bulk
//! strings are slices of the received buffer rather than copies.
//!
//! Invariants of [`Decoder::decode`]: "not complete yet" is `Ok(None)` and an error is `Err`,
//! and neither consumes anything; `Ok(Some(_))` consumes exactly the value's bytes. Every
//! length is checked against the limits before anything is sized by it, and recursion is
//! bounded by `max_depth` (attributes are skipped in a loop, not by recursion).

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// Writes a command as an array of bulk strings (`*N\r\n$len\r\narg\r\n...`).
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    // 1 type byte + up to 20 digits + CRLF per header, + CRLF after each argument.
    const HEADER_BYTES: usize = 23;
    let size: usize = args.iter().map(|a| a.len() + HEADER_BYTES + 2).sum();
    out.reserve(size + HEADER_BYTES);
    put_header(out, b'*', args.len());
    for arg in args {
        put_header(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

/// `kind`, `n` in decimal, CRLF; without allocating (commands are encoded once per publish).
fn put_header(out: &mut BytesMut, kind: u8, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_u8(kind);
    out.put_slice(&digits[start..]);
    out.put_slice(b"\r\n");
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+text`.
    Simple(Bytes),
    /// `-text` or `!len` (blob error).
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// `$len` payload.
    Bulk(Bytes),
    /// `$-1`, `*-1` (RESP2) or `_` (RESP3).
    Null,
    /// `#t` / `#f`.
    Boolean(bool),
    /// `,` a double (`inf`, `-inf` and `nan` included).
    Double(f64),
    /// `(` an integer of any size, as its digits.
    BigNumber(Bytes),
    /// `=len` text, without its three-letter format and colon (`txt:`).
    Verbatim(Bytes),
    /// `*n` elements.
    Array(Vec<Value>),
    /// `~n` elements.
    Set(Vec<Value>),
    /// `%n` pairs.
    Map(Vec<(Value, Value)>),
    /// `>n` elements: an out-of-band message (pub/sub).
    Push(Vec<Value>),
}

impl Value {
    /// The bytes of a simple, bulk or verbatim string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Simple(b) | Value::Bulk(b) | Value::Verbatim(b) => Some(b),
            _ => None,
        }
    }

    /// An integer, or a string of decimal digits (Lua numbers sometimes arrive as strings).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            other => parse_i64(other.as_bytes()?),
        }
    }

    /// The elements of an array, set or push.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is an error reply (`-` or `!`).
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }

    /// The text of an error reply (invalid UTF-8 replaced), e.g. `NOSCRIPT No matching script`.
    pub fn error_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Error(text) => Some(String::from_utf8_lossy(text)),
            _ => None,
        }
    }
}

/// Why bytes from Redis could not be decoded. The connection cannot be resynchronized after
/// any of these: the caller drops it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A value started with a byte that is no RESP type.
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// A length was not a number, or was negative where no null is allowed.
    #[error("malformed RESP length")]
    BadLength,
    /// An integer (`:`) was not a 64-bit decimal number.
    #[error("malformed RESP integer")]
    BadInteger,
    /// A double (`,`) was not a number.
    #[error("malformed RESP double")]
    BadDouble,
    /// A boolean (`#`) was neither `t` nor `f`.
    #[error("malformed RESP boolean")]
    BadBoolean,
    /// A big number (`(`) was not an optionally signed string of digits.
    #[error("malformed RESP big number")]
    BadBigNumber,
    /// A null (`_`) had something before its CRLF.
    #[error("malformed RESP null")]
    BadNull,
    /// A verbatim string (`=`) did not start with a three-byte format and a colon.
    #[error("malformed RESP verbatim string")]
    BadVerbatim,
    /// A bulk payload was not followed by CRLF.
    #[error("missing CRLF after a RESP payload")]
    MissingCrlf,
    /// A length, element count or line was over the configured limit.
    #[error("RESP {what} over the limit of {limit}")]
    OverLimit {
        /// What was counted.
        what: &'static str,
        /// The configured limit.
        limit: usize,
    },
    /// Aggregates nested deeper than the limit.
    #[error("RESP aggregates nested deeper than {limit}")]
    TooDeep {
        /// The configured `max_depth`.
        limit: usize,
    },
}

/// Decoding limits; decoding itself keeps no state between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    /// Largest bulk string, blob error or verbatim string; also the longest simple string,
    /// error line or big number.
    pub max_bulk_bytes: usize,
    /// Most elements one aggregate may announce (pairs, for maps and attributes).
    pub max_elements: usize,
    /// Most aggregates nested in one another (`*1\r\n:1\r\n` needs 1).
    pub max_depth: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            max_bulk_bytes: 64 << 20,
            max_elements: 1 << 20,
            max_depth: 8,
        }
    }
}

/// The longest header line carrying a length or an integer: a sign and 19 digits, with room
/// for leading zeros. Longer means garbage, not "wait for more".
const MAX_NUMBER_LINE: usize = 32;
/// The longest double line accepted (Redis writes at most 17 significant digits).
const MAX_DOUBLE_LINE: usize = 128;

/// Which aggregate a header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Array,
    Set,
    Map,
    Push,
    /// Attributes: a map describing the value that follows it; skipped.
    Attribute,
}

/// What a value's header says, with the byte ranges of any payload.
enum Head {
    Simple(Range<usize>),
    Error(Range<usize>),
    Integer(i64),
    Null,
    Boolean(bool),
    Double(f64),
    BigNumber(Range<usize>),
    Bulk(Range<usize>),
    BlobError(Range<usize>),
    Verbatim(Range<usize>),
    /// An aggregate announcing this many elements (pairs for maps and attributes).
    Aggregate(Aggregate, usize),
}

impl Decoder {
    /// Decodes one value from the front of `buf`, consuming exactly its bytes; `Ok(None)` if
    /// `buf` does not hold a complete value yet. Neither `Ok(None)` nor `Err` consumes anything.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Value>, RespError> {
        let Some(end) = self.scan(buf, 0, 0)? else {
            return Ok(None);
        };
        let frozen = buf.split_to(end).freeze();
        let (value, _) = self.parse(&frozen, 0, 0)?;
        Ok(Some(value))
    }

    /// Reads the header of the value at `at`, `depth` aggregates deep: what it is and where
    /// its elements (for aggregates) or the next value begin. Blob payloads are checked to be
    /// complete and followed by CRLF. `None` if more bytes are needed.
    fn head(
        &self,
        buf: &[u8],
        at: usize,
        depth: usize,
    ) -> Result<Option<(Head, usize)>, RespError> {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let start = at + 1;
        // The longest line each type allows, and the error for one that runs past it.
        let (max_line, too_long) = match kind {
            b'+' | b'-' | b'(' => (
                self.max_bulk_bytes,
                RespError::OverLimit {
                    what: "line bytes",
                    limit: self.max_bulk_bytes,
                },
            ),
            b':' => (MAX_NUMBER_LINE, RespError::BadInteger),
            b'$' | b'!' | b'=' | b'*' | b'~' | b'%' | b'>' | b'|' => {
                (MAX_NUMBER_LINE, RespError::BadLength)
            }
            b',' => (MAX_DOUBLE_LINE, RespError::BadDouble),
            b'#' => (1, RespError::BadBoolean),
            b'_' => (0, RespError::BadNull),
            other => return Err(RespError::UnknownType(other)),
        };
        let Some(line_end) = find_crlf(buf, start, max_line, too_long)? else {
            return Ok(None);
        };
        let line = buf.get(start..line_end).unwrap_or_default();
        let next = line_end + 2;
        let head = match kind {
            b'+' => Head::Simple(start..line_end),
            b'-' => Head::Error(start..line_end),
            b':' => Head::Integer(parse_i64(line).ok_or(RespError::BadInteger)?),
            b'_' => Head::Null,
            b'#' => match line {
                b"t" => Head::Boolean(true),
                b"f" => Head::Boolean(false),
                _ => return Err(RespError::BadBoolean),
            },
            b',' => Head::Double(parse_f64(line).ok_or(RespError::BadDouble)?),
            b'(' => {
                let digits = match line {
                    [b'-' | b'+', rest @ ..] => rest,
                    _ => line,
                };
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(RespError::BadBigNumber);
                }
                Head::BigNumber(start..line_end)
            }
            b'$' | b'!' | b'=' => {
                let Some(len) =
                    self.length(line, kind == b'$', self.max_bulk_bytes, "bulk bytes")?
                else {
                    return Ok(Some((Head::Null, next)));
                };
                let end = next.saturating_add(len);
                let Some(after) = buf.get(end..end.saturating_add(2)) else {
                    return Ok(None);
                };
                if after != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                let payload = next..end;
                let head = match kind {
                    b'$' => Head::Bulk(payload),
                    b'!' => Head::BlobError(payload),
                    _ => {
                        if len < 4 || buf.get(next + 3) != Some(&b':') {
                            return Err(RespError::BadVerbatim);
                        }
                        Head::Verbatim(next + 4..end)
                    }
                };
                return Ok(Some((head, end + 2)));
            }
            _ => {
                let aggregate = match kind {
                    b'*' => Aggregate::Array,
                    b'~' => Aggregate::Set,
                    b'%' => Aggregate::Map,
                    b'>' => Aggregate::Push,
                    _ => Aggregate::Attribute,
                };
                let Some(n) = self.length(
                    line,
                    aggregate == Aggregate::Array,
                    self.max_elements,
                    "aggregate elements",
                )?
                else {
                    return Ok(Some((Head::Null, next)));
                };
                if depth >= self.max_depth {
                    return Err(RespError::TooDeep {
                        limit: self.max_depth,
                    });
                }
                Head::Aggregate(aggregate, n)
            }
        };
        Ok(Some((head, next)))
    }

    /// A length header: `None` for the RESP2 null (`-1`) where `null_allowed`.
    fn length(
        &self,
        line: &[u8],
        null_allowed: bool,
        limit: usize,
        what: &'static str,
    ) -> Result<Option<usize>, RespError> {
        let n = parse_i64(line).ok_or(RespError::BadLength)?;
        if n == -1 && null_allowed {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| RespError::BadLength)?;
        if n > limit {
            return Err(RespError::OverLimit { what, limit });
        }
        Ok(Some(n))
    }

    /// Where the value starting at `at`, `depth` aggregates deep, ends if all of it is buffered.
    fn scan(&self, buf: &[u8], mut at: usize, depth: usize) -> Result<Option<usize>, RespError> {
        loop {
            let Some((head, mut next)) = self.head(buf, at, depth)? else {
                return Ok(None);
            };
            let Head::Aggregate(aggregate, n) = head else {
                return Ok(Some(next));
            };
            let per_entry = if matches!(aggregate, Aggregate::Map | Aggregate::Attribute) {
                2
            } else {
                1
            };
            for _ in 0..n {
                for _ in 0..per_entry {
                    match self.scan(buf, next, depth + 1)? {
                        Some(end) => next = end,
                        None => return Ok(None),
                    }
                }
            }
            if aggregate != Aggregate::Attribute {
                return Ok(Some(next));
            }
            // The attribute is done; the value it describes follows at the same depth.
            at = next;
        }
    }

    /// Parses the value at `at`, which `scan` found complete.
    fn parse(&self, buf: &Bytes, mut at: usize, depth: usize) -> Result<(Value, usize), RespError> {
        loop {
            // Incomplete cannot happen after a successful scan; it is an error, not a panic.
            let (head, mut next) = self.head(buf, at, depth)?.ok_or(RespError::MissingCrlf)?;
            let value = match head {
                Head::Simple(r) => Value::Simple(buf.slice(r)),
                Head::Error(r) | Head::BlobError(r) => Value::Error(buf.slice(r)),
                Head::Integer(n) => Value::Integer(n),
                Head::Null => Value::Null,
                Head::Boolean(b) => Value::Boolean(b),
                Head::Double(d) => Value::Double(d),
                Head::BigNumber(r) => Value::BigNumber(buf.slice(r)),
                Head::Bulk(r) => Value::Bulk(buf.slice(r)),
                Head::Verbatim(r) => Value::Verbatim(buf.slice(r)),
                Head::Aggregate(aggregate, n) => {
                    // Every element takes at least three bytes ("_\r\n"), and all of them are
                    // buffered, so this capacity is bounded by what was received.
                    let capacity = n.min(buf.len().saturating_sub(next) / 3);
                    if matches!(aggregate, Aggregate::Map | Aggregate::Attribute) {
                        let mut pairs = Vec::with_capacity(capacity);
                        for _ in 0..n {
                            let (k, after) = self.parse(buf, next, depth + 1)?;
                            let (v, after) = self.parse(buf, after, depth + 1)?;
                            pairs.push((k, v));
                            next = after;
                        }
                        if aggregate == Aggregate::Attribute {
                            at = next;
                            continue;
                        }
                        Value::Map(pairs)
                    } else {
                        let mut items = Vec::with_capacity(capacity);
                        for _ in 0..n {
                            let (item, after) = self.parse(buf, next, depth + 1)?;
                            items.push(item);
                            next = after;
                        }
                        match aggregate {
                            Aggregate::Set => Value::Set(items),
                            Aggregate::Push => Value::Push(items),
                            _ => Value::Array(items),
                        }
                    }
                }
            };
            return Ok((value, next));
        }
    }
}

/// The index of the CRLF ending the line that starts at `start`, if buffered. A line longer
/// than `max_line` bytes is `too_long` as soon as enough bytes are there to tell.
fn find_crlf(
    buf: &[u8],
    start: usize,
    max_line: usize,
    too_long: RespError,
) -> Result<Option<usize>, RespError> {
    let window_end = start.saturating_add(max_line).saturating_add(2);
    let window = buf
        .get(start..window_end.min(buf.len()))
        .unwrap_or_default();
    if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
        return Ok(Some(start + i));
    }
    if buf.len() >= window_end {
        return Err(too_long);
    }
    Ok(None)
}

/// A decimal `i64` with an optional sign, without allocating.
fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulating negatively reaches i64::MIN, whose magnitude has no positive i64.
        n = n.checked_mul(10)?;
        n = if negative {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Value>, RespError> {
        let mut buf = BytesMut::from(bytes);
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        while let Some(v) = decoder.decode(&mut buf)? {
            out.push(v);
        }
        assert!(buf.is_empty(), "left over: {buf:?}");
        Ok(out)
    }

    fn one(bytes: &[u8]) -> Value {
        let mut values = decode_all(bytes).unwrap();
        assert_eq!(values.len(), 1);
        values.remove(0)
    }

    fn err_with(decoder: Decoder, bytes: &[u8]) -> RespError {
        let mut buf = BytesMut::from(bytes);
        let mut decoder = decoder;
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(&buf[..], bytes, "an error consumed bytes");
        err
    }

    fn err(bytes: &[u8]) -> RespError {
        err_with(Decoder::default(), bytes)
    }

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn simple(s: &str) -> Value {
        Value::Simple(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// One value of every type, back to back, as a RESP3 server could send them.
    const EVERY_TYPE: &[u8] = b"+OK\r\n-ERR no\r\n:-42\r\n$5\r\nhe\r\no\r\n$-1\r\n*-1\r\n_\r\n\
#t\r\n#f\r\n,1.5\r\n,-inf\r\n(-123456789012345678901234567890\r\n=7\r\ntxt:abc\r\n\
!3\r\nbad\r\n*2\r\n:1\r\n$1\r\na\r\n~1\r\n:1\r\n%1\r\n+k\r\n:2\r\n\
>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n|1\r\n+ttl\r\n:3\r\n:7\r\n$0\r\n\r\n*0\r\n";

    fn every_type_values() -> Vec<Value> {
        vec![
            simple("OK"),
            Value::Error(Bytes::from_static(b"ERR no")),
            Value::Integer(-42),
            bulk("he\r\no"),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Boolean(true),
            Value::Boolean(false),
            Value::Double(1.5),
            Value::Double(f64::NEG_INFINITY),
            Value::BigNumber(Bytes::from_static(b"-123456789012345678901234567890")),
            Value::Verbatim(Bytes::from_static(b"abc")),
            Value::Error(Bytes::from_static(b"bad")),
            Value::Array(vec![Value::Integer(1), bulk("a")]),
            Value::Set(vec![Value::Integer(1)]),
            Value::Map(vec![(simple("k"), Value::Integer(2))]),
            Value::Push(vec![bulk("message"), bulk("ch"), bulk("x")]),
            Value::Integer(7),
            bulk(""),
            Value::Array(vec![]),
        ]
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        out.clear();
        encode_command(&[], &mut out);
        assert_eq!(&out[..], b"*0\r\n");
    }

    #[test]
    fn encoded_commands_decode_to_the_same_arguments() {
        let long = vec![b'x'; 1234567];
        let args: [&[u8]; 4] = [b"PUBLISH", b"ringcast#events", &long[..], b"\r\n\0"];
        let mut out = BytesMut::new();
        encode_command(&args, &mut out);
        let decoded = one(&out).into_array().unwrap();
        let decoded: Vec<&[u8]> = decoded.iter().map(|v| &v.as_bytes().unwrap()[..]).collect();
        assert_eq!(decoded, args);
    }

    #[test]
    fn every_type_decodes() {
        assert_eq!(decode_all(EVERY_TYPE).unwrap(), every_type_values());
    }

    #[test]
    fn doubles_include_infinities_and_nan() {
        assert_eq!(one(b",inf\r\n"), Value::Double(f64::INFINITY));
        assert_eq!(one(b",-1e3\r\n"), Value::Double(-1000.0));
        assert_eq!(one(b",10\r\n"), Value::Double(10.0));
        assert!(matches!(one(b",nan\r\n"), Value::Double(d) if d.is_nan()));
    }

    #[test]
    fn integers_span_the_whole_i64_range() {
        assert_eq!(one(b":-9223372036854775808\r\n"), Value::Integer(i64::MIN));
        assert_eq!(one(b":9223372036854775807\r\n"), Value::Integer(i64::MAX));
        assert_eq!(one(b":+5\r\n"), Value::Integer(5));
        assert_eq!(err(b":9223372036854775808\r\n"), RespError::BadInteger);
    }

    #[test]
    fn resp2_pubsub_messages_are_arrays() {
        assert_eq!(
            one(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nframe\r\n"),
            Value::Array(vec![bulk("message"), bulk("ch"), bulk("frame")])
        );
    }

    #[test]
    fn hello_3_reply_is_a_map() {
        let reply = b"%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n\
$7\r\nmodules\r\n*0\r\n";
        assert_eq!(
            one(reply),
            Value::Map(vec![
                (bulk("server"), bulk("redis")),
                (bulk("proto"), Value::Integer(3)),
                (bulk("modules"), Value::Array(vec![])),
            ])
        );
    }

    #[test]
    fn attributes_are_skipped_wherever_they_appear() {
        assert_eq!(one(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"), Value::Integer(7));
        assert_eq!(
            one(b"*2\r\n|1\r\n+a\r\n*1\r\n:0\r\n:1\r\n:2\r\n"),
            Value::Array(vec![Value::Integer(1), Value::Integer(2)])
        );
        assert_eq!(one(b"|0\r\n|0\r\n$1\r\nz\r\n"), bulk("z"));
    }

    #[test]
    fn a_long_chain_of_attributes_does_not_recurse() {
        let mut bytes = b"|0\r\n".repeat(200_000);
        bytes.extend_from_slice(b":1\r\n");
        assert_eq!(one(&bytes), Value::Integer(1));
        bytes.truncate(bytes.len() - 1);
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
    }

    #[test]
    fn nested_values_and_back_to_back_values() {
        let values = decode_all(b"*2\r\n*1\r\n:1\r\n%0\r\n+next\r\n").unwrap();
        assert_eq!(
            values,
            vec![
                Value::Array(vec![
                    Value::Array(vec![Value::Integer(1)]),
                    Value::Map(vec![])
                ]),
                simple("next"),
            ]
        );
        assert_eq!(
            one(b">2\r\n%1\r\n~1\r\n#t\r\n*1\r\n_\r\n>0\r\n"),
            Value::Push(vec![
                Value::Map(vec![(
                    Value::Set(vec![Value::Boolean(true)]),
                    Value::Array(vec![Value::Null])
                )]),
                Value::Push(vec![]),
            ])
        );
    }

    #[test]
    fn every_truncation_waits_and_consumes_nothing() {
        // Cut inside each value of a multi-value buffer: the values before the cut decode,
        // the cut one waits without consuming anything.
        let expected = every_type_values();
        for end in 0..EVERY_TYPE.len() {
            let mut buf = BytesMut::from(&EVERY_TYPE[..end]);
            let mut decoder = Decoder::default();
            let mut decoded = Vec::new();
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(v)) => decoded.push(v),
                    Ok(None) => {
                        assert_eq!(buf.len(), before, "cut at {end} consumed bytes");
                        break;
                    }
                    Err(e) => panic!("cut at {end}: {e}"),
                }
            }
            assert_eq!(decoded[..], expected[..decoded.len()], "cut at {end}");
            // The rest arriving completes every value.
            buf.extend_from_slice(&EVERY_TYPE[end..]);
            while let Some(v) = decoder.decode(&mut buf).unwrap() {
                decoded.push(v);
            }
            assert_eq!(decoded, expected, "cut at {end}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn every_truncation_of_one_nested_value_waits() {
        let whole: &[u8] = b"*3\r\n$5\r\nhello\r\n>2\r\n+a\r\n:12\r\n%1\r\n$1\r\nk\r\n_\r\n";
        for end in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..end]);
            assert_eq!(Decoder::default().decode(&mut buf), Ok(None), "{end}");
            assert_eq!(buf.len(), end);
        }
    }

    #[test]
    fn bulk_strings_at_the_limit_decode_and_one_more_byte_is_refused() {
        let mut small = Decoder {
            max_bulk_bytes: 4,
            ..Decoder::default()
        };
        let mut buf = BytesMut::from(&b"$4\r\nfour\r\n"[..]);
        assert_eq!(small.decode(&mut buf), Ok(Some(bulk("four"))));
        let over = RespError::OverLimit {
            what: "bulk bytes",
            limit: 4,
        };
        assert_eq!(err_with(small, b"$5\r\n"), over);
        assert_eq!(err_with(small, b"!5\r\n"), over);
        assert_eq!(err_with(small, b"=5\r\n"), over);
        // Lines are bounded by the same limit, once enough bytes are there to tell.
        let mut buf = BytesMut::from(&b"+four\r\n"[..]);
        assert_eq!(small.decode(&mut buf), Ok(Some(simple("four"))));
        let mut buf = BytesMut::from(&b"+four\r"[..]);
        assert_eq!(small.decode(&mut buf), Ok(None));
        let line = RespError::OverLimit {
            what: "line bytes",
            limit: 4,
        };
        assert_eq!(err_with(small, b"+fives\r\n"), line);
        assert_eq!(err_with(small, b"-fives\r"), line);
        assert_eq!(err_with(small, b"(123456"), line);
    }

    #[test]
    fn aggregates_at_the_element_limit_decode_and_one_more_is_refused() {
        let mut small = Decoder {
            max_elements: 2,
            ..Decoder::default()
        };
        let mut buf = BytesMut::from(&b"*2\r\n:1\r\n:2\r\n%2\r\n:1\r\n:2\r\n:3\r\n:4\r\n"[..]);
        assert!(small.decode(&mut buf).unwrap().is_some());
        assert!(small.decode(&mut buf).unwrap().is_some());
        let over = RespError::OverLimit {
            what: "aggregate elements",
            limit: 2,
        };
        for kind in [b'*', b'~', b'%', b'>', b'|'] {
            assert_eq!(err_with(small, &[kind, b'3', b'\r', b'\n']), over);
        }
    }

    #[test]
    fn nesting_at_the_depth_limit_decodes_and_one_deeper_is_refused() {
        let mut small = Decoder {
            max_depth: 2,
            ..Decoder::default()
        };
        let mut buf = BytesMut::from(&b"*1\r\n*1\r\n:1\r\n"[..]);
        assert!(small.decode(&mut buf).unwrap().is_some());
        let mut buf = BytesMut::from(&b"*1\r\n*0\r\n"[..]);
        assert!(small.decode(&mut buf).unwrap().is_some());
        let too_deep = RespError::TooDeep { limit: 2 };
        // Refused as soon as the third header is there, before its elements.
        assert_eq!(err_with(small, b"*1\r\n*1\r\n*0\r\n"), too_deep);
        assert_eq!(err_with(small, b"*1\r\n>1\r\n%1\r\n"), too_deep);
        assert_eq!(err_with(small, b"*1\r\n*1\r\n|0\r\n:1\r\n"), too_deep);
        let mut flat = Decoder {
            max_depth: 0,
            ..Decoder::default()
        };
        let mut buf = BytesMut::from(&b":1\r\n"[..]);
        assert!(flat.decode(&mut buf).unwrap().is_some());
        assert_eq!(err_with(flat, b"*0\r\n"), RespError::TooDeep { limit: 0 });
    }

    #[test]
    fn negative_lengths_are_null_only_for_resp2_bulks_and_arrays() {
        assert_eq!(one(b"$-1\r\n"), Value::Null);
        assert_eq!(one(b"*-1\r\n"), Value::Null);
        for bad in [
            &b"$-2\r\n"[..],
            b"*-2\r\n",
            b"!-1\r\n",
            b"=-1\r\n",
            b"~-1\r\n",
            b">-1\r\n",
            b"%-1\r\n",
            b"|-1\r\n",
            b"$-9223372036854775808\r\n",
        ] {
            assert_eq!(err(bad), RespError::BadLength, "{bad:?}");
        }
    }

    #[test]
    fn garbage_is_refused_without_consuming() {
        assert_eq!(err(b"?"), RespError::UnknownType(b'?'));
        assert_eq!(err(b"*1\r\n\0"), RespError::UnknownType(0));
        assert_eq!(err(b"$x\r\n"), RespError::BadLength);
        assert_eq!(err(b"$\r\n"), RespError::BadLength);
        assert_eq!(err(b"$1 \r\n"), RespError::BadLength);
        assert_eq!(err(&[b'7'; 40]), RespError::UnknownType(b'7'));
        let mut long_length = b"$".to_vec();
        long_length.extend([b'7'; 40]);
        assert_eq!(err(&long_length), RespError::BadLength);
        assert_eq!(err(b":1x\r\n"), RespError::BadInteger);
        assert_eq!(err(b":\r\n"), RespError::BadInteger);
        assert_eq!(err(b"#x\r\n"), RespError::BadBoolean);
        assert_eq!(err(b"#ttt"), RespError::BadBoolean);
        assert_eq!(err(b"_junk\r\n"), RespError::BadNull);
        assert_eq!(err(b",abc\r\n+x\r\n"), RespError::BadDouble);
        assert_eq!(err(b"(12a\r\n"), RespError::BadBigNumber);
        assert_eq!(err(b"(\r\n"), RespError::BadBigNumber);
        assert_eq!(err(b"(-+5\r\n"), RespError::BadBigNumber);
        assert_eq!(err(b"=3\r\nabc\r\n"), RespError::BadVerbatim);
        assert_eq!(err(b"=5\r\ntxtab\r\n"), RespError::BadVerbatim);
        assert_eq!(err(b"$1\r\nab\r\n"), RespError::MissingCrlf);
        // A bad element fails the whole value, even when later elements are missing.
        assert_eq!(err(b"*3\r\n:1\r\n#?\r\n"), RespError::BadBoolean);
    }

    #[test]
    fn a_long_big_number_split_anywhere_waits() {
        let mut bytes = b"(".to_vec();
        bytes.extend(std::iter::repeat_n(b'9', 300));
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r\n");
        let value = Decoder::default().decode(&mut buf).unwrap().unwrap();
        assert!(matches!(value, Value::BigNumber(b) if b.len() == 300));
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing_before_the_bytes_arrive() {
        let mut buf = BytesMut::from(&b"*1000000\r\n:1\r\n"[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&b"$60000000\r\nab"[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        let mut roomy = Decoder {
            max_bulk_bytes: usize::MAX,
            max_elements: usize::MAX,
            max_depth: 8,
        };
        let mut buf = BytesMut::from(&b"$9223372036854775807\r\nab"[..]);
        assert_eq!(roomy.decode(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&b"%9223372036854775807\r\n:1\r\n"[..]);
        assert_eq!(roomy.decode(&mut buf), Ok(None));
    }

    #[test]
    fn bulk_strings_share_the_received_memory() {
        let mut buf = BytesMut::from(&b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nframe\r\n"[..]);
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.len();
        let value = Decoder::default().decode(&mut buf).unwrap().unwrap();
        let items = value.into_array().unwrap();
        for item in &items {
            let bytes = item.as_bytes().unwrap();
            assert!(
                range.contains(&(bytes.as_ptr() as usize)),
                "{item:?} was copied"
            );
        }
        assert_eq!(&items[2].as_bytes().unwrap()[..], b"frame");
    }

    #[test]
    fn corrupted_input_never_panics_and_consumes_consistently() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let small = Decoder {
            max_bulk_bytes: 16,
            max_elements: 4,
            max_depth: 3,
        };
        for i in 0..2000 {
            let mut bytes = EVERY_TYPE.to_vec();
            for _ in 0..1 + i % 6 {
                let r = next();
                let at = (r as usize) % bytes.len();
                bytes[at] = (r >> 32) as u8;
            }
            let chunk = 1 + (next() as usize) % 64;
            let mut decoder = if i % 2 == 0 {
                Decoder::default()
            } else {
                small
            };
            let mut buf = BytesMut::new();
            'chunks: for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    let before = buf.len();
                    match decoder.decode(&mut buf) {
                        Ok(Some(_)) => assert!(buf.len() < before),
                        Ok(None) => {
                            assert_eq!(buf.len(), before);
                            break;
                        }
                        Err(_) => {
                            assert_eq!(buf.len(), before);
                            break 'chunks;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn helpers_read_values() {
        assert_eq!(bulk("12").as_int(), Some(12));
        assert_eq!(bulk("1x").as_int(), None);
        assert_eq!(Value::Integer(3).as_int(), Some(3));
        assert_eq!(Value::Null.as_int(), None);
        assert_eq!(simple("OK").as_bytes().map(|b| &b[..]), Some(&b"OK"[..]));
        assert_eq!(Value::Integer(1).as_bytes(), None);
        assert_eq!(Value::Integer(1).into_array(), None);
        assert_eq!(
            Value::Set(vec![Value::Null]).into_array(),
            Some(vec![Value::Null])
        );
        let error = one(b"-NOSCRIPT No matching script\r\n");
        assert!(error.is_error());
        assert_eq!(
            error.error_text().as_deref(),
            Some("NOSCRIPT No matching script")
        );
        assert_eq!(
            one(b"!4\r\nE\xffrr\r\n").error_text().as_deref(),
            Some("E\u{fffd}rr")
        );
        assert!(!simple("OK").is_error());
        assert_eq!(simple("OK").error_text(), None);
    }
}
