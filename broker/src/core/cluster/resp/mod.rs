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
mod tests;
