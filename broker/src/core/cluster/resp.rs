//! The Redis protocol (RESP2 and RESP3), sans-IO.
//!
//! Commands go out as arrays of bulk strings. Replies are decoded in two passes: a scan that
//! finds where a complete (possibly nested) value ends without allocating, then a parse of
//! exactly those bytes, frozen, so bulk strings are slices of the received buffer rather than
//! copies. "Not complete yet" is `Ok(None)` and consumes nothing.

use bytes::{BufMut, Bytes, BytesMut};

/// Writes a command as an array of bulk strings.
pub fn encode_command(args: &[&[u8]], out: &mut BytesMut) {
    let size: usize = args.iter().map(|a| a.len() + 16).sum();
    out.reserve(size + 16);
    put_header(out, b'*', args.len());
    for arg in args {
        put_header(out, b'$', arg.len());
        out.put_slice(arg);
        out.put_slice(b"\r\n");
    }
}

fn put_header(out: &mut BytesMut, kind: u8, n: usize) {
    out.put_u8(kind);
    out.put_slice(n.to_string().as_bytes());
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
    /// `$-1`, `*-1` or `_`.
    Null,
    /// `#t` / `#f`.
    Boolean(bool),
    /// `,` a double.
    Double(f64),
    /// `(` digits.
    BigNumber(Bytes),
    /// `=len` text, without its three-letter format and colon.
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

    /// An integer (or a string of digits, as Lua numbers sometimes arrive).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            other => std::str::from_utf8(other.as_bytes()?).ok()?.parse().ok(),
        }
    }

    /// The elements of an array, set or push.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(items) | Value::Set(items) | Value::Push(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Value::Error(_))
    }
}

/// Why bytes from Redis could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    /// A value started with an unknown type byte.
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or integer was not a number.
    #[error("malformed number in a RESP header")]
    BadNumber,
    /// A line or payload did not end with CRLF.
    #[error("missing CRLF after a RESP value")]
    MissingCrlf,
    /// A length was over the configured limit.
    #[error("RESP value over the limit ({0})")]
    TooLarge(&'static str),
    /// Aggregates nested deeper than the limit.
    #[error("RESP aggregates nested too deeply")]
    TooDeep,
}

/// Decoding limits.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    /// Largest bulk string.
    pub max_bulk_bytes: usize,
    /// Most elements in one aggregate.
    pub max_elements: usize,
    /// Deepest nesting.
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

/// The line from `at` up to CRLF: `(line, position after CRLF)`; `None` if incomplete.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RespError::BadNumber)
}

impl Decoder {
    /// Decodes one value from the front of `buf`, consuming exactly its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Value>, RespError> {
        let Some(end) = self.scan(buf, 0, 0)? else {
            return Ok(None);
        };
        let frozen = buf.split_to(end).freeze();
        let (value, _) = self.parse(&frozen, 0)?;
        Ok(Some(value))
    }

    /// Where the value starting at `at` ends, if it is complete.
    fn scan(&self, buf: &[u8], at: usize, depth: usize) -> Result<Option<usize>, RespError> {
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        if depth > self.max_depth {
            return Err(RespError::TooDeep);
        }
        let Some((header, mut next)) = line(buf, at + 1) else {
            // A header longer than any valid one will never complete.
            if buf.len() - at > 64 && !matches!(kind, b'+' | b'-') {
                return Err(RespError::MissingCrlf);
            }
            return Ok(None);
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                if kind == b':' {
                    number(header)?;
                }
                Ok(Some(next))
            }
            b'$' | b'!' | b'=' => {
                let len = number(header)?;
                if len < 0 {
                    return if len == -1 && kind == b'$' {
                        Ok(Some(next))
                    } else {
                        Err(RespError::BadNumber)
                    };
                }
                let len = len as usize;
                if len > self.max_bulk_bytes {
                    return Err(RespError::TooLarge("bulk length"));
                }
                let end = next + len;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(RespError::MissingCrlf);
                }
                Ok(Some(end + 2))
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(header)?;
                if n < 0 {
                    return if n == -1 && kind == b'*' {
                        Ok(Some(next))
                    } else {
                        Err(RespError::BadNumber)
                    };
                }
                let n = n as usize;
                if n > self.max_elements {
                    return Err(RespError::TooLarge("element count"));
                }
                let items = if matches!(kind, b'%' | b'|') {
                    n * 2
                } else {
                    n
                };
                for _ in 0..items {
                    match self.scan(buf, next, depth + 1)? {
                        Some(end) => next = end,
                        None => return Ok(None),
                    }
                }
                if kind == b'|' {
                    // An attribute precedes the value it describes.
                    return self.scan(buf, next, depth);
                }
                Ok(Some(next))
            }
            other => Err(RespError::UnknownType(other)),
        }
    }

    /// Parses a value already known to be complete.
    fn parse(&self, buf: &Bytes, at: usize) -> Result<(Value, usize), RespError> {
        let kind = *buf.get(at).ok_or(RespError::MissingCrlf)?;
        let (header, next) = line(buf, at + 1).ok_or(RespError::MissingCrlf)?;
        let text = |b: &[u8]| buf.slice_ref(b);
        let value = match kind {
            b'+' => Value::Simple(text(header)),
            b'-' => Value::Error(text(header)),
            b':' => Value::Integer(number(header)?),
            b'_' => Value::Null,
            b'#' => Value::Boolean(header == b"t"),
            b',' => Value::Double(
                std::str::from_utf8(header)
                    .ok()
                    .and_then(|s| match s {
                        "inf" => Some(f64::INFINITY),
                        "-inf" => Some(f64::NEG_INFINITY),
                        s => s.parse().ok(),
                    })
                    .ok_or(RespError::BadNumber)?,
            ),
            b'(' => Value::BigNumber(text(header)),
            b'$' | b'!' | b'=' => {
                let len = number(header)?;
                if len < 0 {
                    return Ok((Value::Null, next));
                }
                let end = next + len as usize;
                let payload = buf.slice(next..end);
                let value = match kind {
                    b'$' => Value::Bulk(payload),
                    b'!' => Value::Error(payload),
                    _ => Value::Verbatim(if payload.get(3) == Some(&b':') {
                        payload.slice(4..)
                    } else {
                        payload
                    }),
                };
                return Ok((value, end + 2));
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                let n = number(header)?;
                if n < 0 {
                    return Ok((Value::Null, next));
                }
                let n = n as usize;
                let mut at = next;
                if matches!(kind, b'%' | b'|') {
                    let mut pairs = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        let (k, after) = self.parse(buf, at)?;
                        let (v, after) = self.parse(buf, after)?;
                        pairs.push((k, v));
                        at = after;
                    }
                    if kind == b'|' {
                        return self.parse(buf, at);
                    }
                    return Ok((Value::Map(pairs), at));
                }
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let (item, after) = self.parse(buf, at)?;
                    items.push(item);
                    at = after;
                }
                let value = match kind {
                    b'*' => Value::Array(items),
                    b'~' => Value::Set(items),
                    _ => Value::Push(items),
                };
                return Ok((value, at));
            }
            other => return Err(RespError::UnknownType(other)),
        };
        Ok((value, next))
    }
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

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = BytesMut::new();
        encode_command(&[b"SET", b"k", b""], &mut out);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn every_type_decodes() {
        assert_eq!(one(b"+OK\r\n"), Value::Simple(Bytes::from_static(b"OK")));
        assert_eq!(
            one(b"-ERR no\r\n"),
            Value::Error(Bytes::from_static(b"ERR no"))
        );
        assert_eq!(one(b":-42\r\n"), Value::Integer(-42));
        assert_eq!(one(b"$5\r\nhe\r\no\r\n"), bulk("he\r\no"));
        assert_eq!(one(b"$-1\r\n"), Value::Null);
        assert_eq!(one(b"*-1\r\n"), Value::Null);
        assert_eq!(one(b"_\r\n"), Value::Null);
        assert_eq!(one(b"#t\r\n"), Value::Boolean(true));
        assert_eq!(one(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(one(b",inf\r\n"), Value::Double(f64::INFINITY));
        assert_eq!(
            one(b"(123\r\n"),
            Value::BigNumber(Bytes::from_static(b"123"))
        );
        assert_eq!(
            one(b"=7\r\ntxt:abc\r\n"),
            Value::Verbatim(Bytes::from_static(b"abc"))
        );
        assert_eq!(
            one(b"!3\r\nbad\r\n"),
            Value::Error(Bytes::from_static(b"bad"))
        );
        assert_eq!(
            one(b"*2\r\n:1\r\n$1\r\na\r\n"),
            Value::Array(vec![Value::Integer(1), bulk("a")])
        );
        assert_eq!(one(b"~1\r\n:1\r\n"), Value::Set(vec![Value::Integer(1)]));
        assert_eq!(
            one(b"%1\r\n+k\r\n:2\r\n"),
            Value::Map(vec![(
                Value::Simple(Bytes::from_static(b"k")),
                Value::Integer(2)
            )])
        );
        assert_eq!(
            one(b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"),
            Value::Push(vec![bulk("message"), bulk("ch"), bulk("x")])
        );
    }

    #[test]
    fn attributes_are_skipped() {
        assert_eq!(one(b"|1\r\n+ttl\r\n:3\r\n:7\r\n"), Value::Integer(7));
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
                Value::Simple(Bytes::from_static(b"next")),
            ]
        );
    }

    #[test]
    fn every_truncation_waits_and_consumes_nothing() {
        let whole: &[u8] = b"*3\r\n$5\r\nhello\r\n>2\r\n+a\r\n:12\r\n%1\r\n$1\r\nk\r\n_\r\n";
        for end in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..end]);
            assert_eq!(Decoder::default().decode(&mut buf), Ok(None), "{end}");
            assert_eq!(buf.len(), end);
        }
        assert!(decode_all(whole).is_ok());
    }

    #[test]
    fn limits_and_garbage_are_errors() {
        let small = Decoder {
            max_bulk_bytes: 4,
            max_elements: 2,
            max_depth: 2,
        };
        let err = |d: Decoder, b: &[u8]| d.clone().decode(&mut BytesMut::from(b)).unwrap_err();
        assert_eq!(
            err(small, b"$5\r\nhello\r\n"),
            RespError::TooLarge("bulk length")
        );
        assert_eq!(
            err(small, b"*3\r\n:1\r\n:2\r\n:3\r\n"),
            RespError::TooLarge("element count")
        );
        assert_eq!(
            err(small, b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
            RespError::TooDeep
        );
        let any = Decoder::default();
        assert_eq!(err(any, b"?x\r\n"), RespError::UnknownType(b'?'));
        assert_eq!(err(any, b"$-2\r\n"), RespError::BadNumber);
        assert_eq!(err(any, b":1x\r\n"), RespError::BadNumber);
        assert_eq!(err(any, b"$1\r\nab\r\n"), RespError::MissingCrlf);
        assert_eq!(err(any, b"*-5\r\n"), RespError::BadNumber);
    }

    #[test]
    fn a_huge_announced_length_allocates_nothing_before_the_bytes_arrive() {
        let mut buf = BytesMut::from(&b"*1000000\r\n:1\r\n"[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&b"$60000000\r\nab"[..]);
        assert_eq!(Decoder::default().decode(&mut buf), Ok(None));
    }

    #[test]
    fn bulk_strings_share_the_received_memory() {
        let mut buf = BytesMut::from(&b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$5\r\nframe\r\n"[..]);
        let start = buf.as_ptr() as usize;
        let range = start..start + buf.len();
        let value = Decoder::default().decode(&mut buf).unwrap().unwrap();
        let items = value.into_array().unwrap();
        let payload = items[2].as_bytes().unwrap();
        assert_eq!(&payload[..], b"frame");
        assert!(range.contains(&(payload.as_ptr() as usize)));
    }

    #[test]
    fn corrupted_input_never_panics() {
        let seed_input: &[u8] =
            b"*3\r\n$5\r\nhello\r\n>2\r\n+a\r\n:12\r\n%1\r\n$1\r\nk\r\n,1.5\r\n";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut bytes = seed_input.to_vec();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize) % bytes.len();
                bytes[at] = (state >> 32) as u8;
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let mut decoder = Decoder::default();
            while let Ok(Some(_)) = decoder.decode(&mut buf) {}
        }
    }

    #[test]
    fn helpers_read_values() {
        assert_eq!(bulk("12").as_int(), Some(12));
        assert_eq!(Value::Integer(3).as_int(), Some(3));
        assert!(Value::Error(Bytes::new()).is_error());
        assert_eq!(Value::Integer(1).into_array(), None);
    }
}
