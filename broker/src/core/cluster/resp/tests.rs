//! The RESP3 decoder and encoder against hand-written wire bytes.

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
