//! The RFC 6455 frame codec: a decoder that yields whole messages and encoders for frames.
//!
//! Decoding is zero-copy for unfragmented frames: the frame is split off the caller's
//! buffer, unmasked in place and frozen into the message's `Bytes`. Lengths are checked
//! against the limits from the header alone, before the payload is awaited or allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::close;

/// A frame opcode.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation,
    /// A UTF-8 text message (first fragment).
    Text,
    /// A binary message (first fragment).
    Binary,
    /// Connection close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

impl Opcode {
    /// The opcode for a wire value, if it is one RFC 6455 defines.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// Which side decodes: a server reads masked client frames, a client unmasked server frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Decodes frames from clients (must be masked).
    Server,
    /// Decodes frames from servers (must not be masked).
    Client,
}

/// Size limits, checked before allocating.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// Largest single frame payload.
    pub max_frame_bytes: usize,
    /// Largest message (all fragments together).
    pub max_message_bytes: usize,
}

/// A complete message.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Text, valid UTF-8.
    Text(Bytes),
    /// Binary data.
    Binary(Bytes),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close, with its code and reason if the frame had them.
    Close(Option<CloseFrame>),
}

/// The body of a close frame.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct CloseFrame {
    /// The close code.
    pub code: u16,
    /// The reason text.
    pub reason: String,
}

/// A violation of RFC 6455 by the peer; the connection must be closed with `close_code()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A framing rule was broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// Text that is not UTF-8.
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A frame or message over the limits.
    #[error("message too big")]
    TooBig,
}

impl WsError {
    /// The close code RFC 6455 prescribes.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close::PROTOCOL_ERROR,
            WsError::InvalidUtf8 => close::INVALID_PAYLOAD,
            WsError::TooBig => close::MESSAGE_TOO_BIG,
        }
    }
}

/// A fragmented message being assembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: BytesMut,
    /// Bytes of `data` already known to be valid UTF-8 (text only).
    checked: usize,
}

/// Decodes frames into messages, keeping the state of a fragmented message between calls.
#[derive(Debug)]
pub struct MessageDecoder {
    role: Role,
    limits: FrameLimits,
    partial: Option<Box<Partial>>,
}

struct Header {
    fin: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

impl MessageDecoder {
    /// A decoder for `role` with `limits`.
    pub fn new(role: Role, limits: FrameLimits) -> Self {
        Self {
            role,
            limits,
            partial: None,
        }
    }

    /// Decodes the next complete message from the front of `buf`, consuming its bytes.
    /// `Ok(None)` means more bytes are needed. Control frames interleaved in a fragmented
    /// message are returned as soon as they arrive; the fragment state is kept.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let frame_len = header.header_len + header.payload_len;
            if buf.len() < frame_len {
                // Make room for the rest once, rather than growing step by step.
                buf.reserve(frame_len - buf.len());
                return Ok(None);
            }
            let mut frame = buf.split_to(frame_len);
            frame.advance(header.header_len);
            if let Some(mask) = header.mask {
                apply_mask(&mut frame, mask);
            }
            if let Some(message) = self.on_frame(header.fin, header.opcode, frame)? {
                return Ok(Some(message));
            }
        }
    }

    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let [b0, b1, ..] = *buf else { return Ok(None) };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(WsError::Protocol("unknown opcode"))?;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(WsError::Protocol("client frames must be masked")),
            (Role::Client, true) => {
                return Err(WsError::Protocol("server frames must not be masked"));
            }
            _ => {}
        }
        let (payload_len, mut header_len) = match b1 & 0x7F {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol(
                        "64-bit length with the most significant bit set",
                    ));
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(WsError::Protocol("fragmented control frame"));
            }
            if payload_len > 125 {
                return Err(WsError::Protocol("control frame payload over 125 bytes"));
            }
        }
        let payload_len = usize::try_from(payload_len).map_err(|_| WsError::TooBig)?;
        if payload_len > self.limits.max_frame_bytes {
            return Err(WsError::TooBig);
        }
        let mask = if masked {
            let Some(bytes) = buf.get(header_len..header_len + 4) else {
                return Ok(None);
            };
            header_len += 4;
            Some([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            None
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len,
            payload_len,
        }))
    }

    fn on_frame(
        &mut self,
        fin: bool,
        opcode: Opcode,
        payload: BytesMut,
    ) -> Result<Option<Message>, WsError> {
        match opcode {
            Opcode::Ping => Ok(Some(Message::Ping(payload.freeze()))),
            Opcode::Pong => Ok(Some(Message::Pong(payload.freeze()))),
            Opcode::Close => parse_close(&payload).map(|c| Some(Message::Close(c))),
            Opcode::Text | Opcode::Binary => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol(
                        "new message before the fragmented one ended",
                    ));
                }
                if payload.len() > self.limits.max_message_bytes {
                    return Err(WsError::TooBig);
                }
                let text = opcode == Opcode::Text;
                if fin {
                    if text {
                        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
                        return Ok(Some(Message::Text(payload.freeze())));
                    }
                    return Ok(Some(Message::Binary(payload.freeze())));
                }
                let mut partial = Box::new(Partial {
                    text,
                    data: payload,
                    checked: 0,
                });
                check_utf8_prefix(&mut partial)?;
                self.partial = Some(partial);
                Ok(None)
            }
            Opcode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                };
                if partial.data.len() + payload.len() > self.limits.max_message_bytes {
                    return Err(WsError::TooBig);
                }
                partial.data.extend_from_slice(&payload);
                check_utf8_prefix(partial)?;
                if !fin {
                    return Ok(None);
                }
                let Some(partial) = self.partial.take() else {
                    return Ok(None);
                };
                if partial.text {
                    if partial.checked != partial.data.len() {
                        return Err(WsError::InvalidUtf8);
                    }
                    Ok(Some(Message::Text(partial.data.freeze())))
                } else {
                    Ok(Some(Message::Binary(partial.data.freeze())))
                }
            }
        }
    }
}

/// Validates the not-yet-checked part of a fragmented text message, so invalid bytes fail at
/// the fragment that brought them; a truncated sequence at the end waits for more.
fn check_utf8_prefix(partial: &mut Partial) -> Result<(), WsError> {
    if !partial.text {
        return Ok(());
    }
    let rest = &partial.data[partial.checked..];
    match std::str::from_utf8(rest) {
        Ok(_) => partial.checked = partial.data.len(),
        Err(err) => {
            if err.error_len().is_some() {
                return Err(WsError::InvalidUtf8);
            }
            partial.checked += err.valid_up_to();
        }
    }
    Ok(())
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, WsError> {
    match payload {
        [] => Ok(None),
        [_] => Err(WsError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !close::is_valid_received_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// XORs `data` with the 4-byte mask, eight bytes at a time.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask phase is 0 again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Length of a server frame header for a payload of `payload_len` bytes.
pub fn header_len(payload_len: usize) -> usize {
    match payload_len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

fn put_header(
    dst: &mut impl BufMut,
    fin: bool,
    opcode: Opcode,
    payload_len: usize,
    mask: Option<[u8; 4]>,
) {
    dst.put_u8(if fin { 0x80 } else { 0 } | opcode.as_u8());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload_len {
        0..=125 => dst.put_u8(mask_bit | payload_len as u8),
        126..=0xFFFF => {
            dst.put_u8(mask_bit | 126);
            dst.put_u16(payload_len as u16);
        }
        _ => {
            dst.put_u8(mask_bit | 127);
            dst.put_u64(payload_len as u64);
        }
    }
    if let Some(mask) = mask {
        dst.put_slice(&mask);
    }
}

/// A complete server frame (FIN, unmasked).
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, true, opcode, payload.len(), None);
    out.extend_from_slice(payload);
    out.freeze()
}

/// Appends a complete server frame (FIN, unmasked) to `dst`.
pub fn encode_frame_into(dst: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    dst.reserve(header_len(payload.len()) + payload.len());
    put_header(dst, true, opcode, payload.len(), None);
    dst.extend_from_slice(payload);
}

/// A close frame; the reason is cut on a character boundary to fit the 125-byte limit.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(Opcode::Close, &payload)
}

/// A masked client frame, for tests and the load generator.
pub fn encode_client_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4], fin: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(header_len(payload.len()) + 4 + payload.len());
    put_header(&mut out, fin, opcode, payload.len(), Some(mask));
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn limits(max: usize) -> FrameLimits {
        FrameLimits {
            max_frame_bytes: max,
            max_message_bytes: max,
        }
    }

    fn server() -> MessageDecoder {
        MessageDecoder::new(Role::Server, limits(1 << 20))
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Message>, WsError> {
        server().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn decodes_the_rfc_masked_hello_example() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            decode_one(&bytes).unwrap(),
            Some(Message::Text(Bytes::from_static(b"Hello")))
        );
    }

    #[test]
    fn round_trips_every_length_encoding() {
        for len in [0usize, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut buf =
                BytesMut::from(&encode_client_frame(Opcode::Binary, &payload, MASK, true)[..]);
            let msg = server().decode(&mut buf).unwrap().unwrap();
            assert_eq!(
                msg,
                Message::Binary(Bytes::from(payload.clone())),
                "len {len}"
            );
            assert!(buf.is_empty());
            let server_frame = encode_frame(Opcode::Binary, &payload);
            assert_eq!(server_frame.len(), header_len(len) + len);
            let mut buf = BytesMut::from(&server_frame[..]);
            let mut client = MessageDecoder::new(Role::Client, limits(1 << 20));
            assert_eq!(
                client.decode(&mut buf).unwrap(),
                Some(Message::Binary(Bytes::from(payload)))
            );
        }
    }

    #[test]
    fn truncated_input_at_every_position_needs_more_bytes() {
        let mut stream = encode_client_frame(Opcode::Text, b"first", MASK, false);
        stream.extend(encode_client_frame(Opcode::Ping, b"p", MASK, true));
        stream.extend(encode_client_frame(
            Opcode::Continuation,
            "é second".as_bytes(),
            MASK,
            true,
        ));
        stream.extend(encode_client_frame(Opcode::Binary, &[7; 300], MASK, true));
        let mut decoder = server();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &byte in &stream {
            buf.extend_from_slice(&[byte]);
            while let Some(msg) = decoder.decode(&mut buf).unwrap() {
                got.push(msg);
            }
        }
        assert_eq!(
            got,
            [
                Message::Ping(Bytes::from_static(b"p")),
                Message::Text(Bytes::from("firsté second")),
                Message::Binary(Bytes::from(vec![7; 300])),
            ]
        );
    }

    #[test]
    fn rejects_unmasked_client_frame_and_masked_server_frame() {
        assert_eq!(
            decode_one(&[0x81, 0x01, b'a']),
            Err(WsError::Protocol("client frames must be masked"))
        );
        let mut client = MessageDecoder::new(Role::Client, limits(100));
        let masked = encode_client_frame(Opcode::Text, b"a", MASK, true);
        assert!(client.decode(&mut BytesMut::from(&masked[..])).is_err());
    }

    #[test]
    fn rejects_reserved_bits_and_unknown_opcodes() {
        for first in [0xC1u8, 0xA1, 0x91, 0x83, 0x8B, 0x8F] {
            let mut frame = encode_client_frame(Opcode::Text, b"x", MASK, true);
            frame[0] = first;
            assert_eq!(
                decode_one(&frame).unwrap_err().close_code(),
                1002,
                "{first:#x}"
            );
        }
    }

    #[test]
    fn control_frames_must_be_final_and_short() {
        let frame = encode_client_frame(Opcode::Ping, b"x", MASK, false);
        assert_eq!(
            decode_one(&frame),
            Err(WsError::Protocol("fragmented control frame"))
        );
        assert!(decode_one(&encode_client_frame(Opcode::Ping, &[0; 125], MASK, true)).is_ok());
        let frame = encode_client_frame(Opcode::Ping, &[0; 126], MASK, true);
        assert_eq!(
            decode_one(&frame),
            Err(WsError::Protocol("control frame payload over 125 bytes"))
        );
    }

    #[test]
    fn fragment_order_is_enforced() {
        let frame = encode_client_frame(Opcode::Continuation, b"x", MASK, true);
        assert_eq!(decode_one(&frame).unwrap_err().close_code(), 1002);
        let mut stream = encode_client_frame(Opcode::Text, b"a", MASK, false);
        stream.extend(encode_client_frame(Opcode::Text, b"b", MASK, true));
        let mut buf = BytesMut::from(&stream[..]);
        assert_eq!(server().decode(&mut buf).unwrap_err().close_code(), 1002);
    }

    #[test]
    fn sixty_four_bit_length_with_high_bit_is_a_protocol_error() {
        let mut frame = vec![0x82, 0xFF];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        frame.extend_from_slice(&MASK);
        assert_eq!(decode_one(&frame).unwrap_err().close_code(), 1002);
    }

    #[test]
    fn frame_size_limit_is_inclusive_and_decided_from_the_header() {
        let mut decoder = MessageDecoder::new(Role::Server, limits(100));
        let ok = encode_client_frame(Opcode::Binary, &[1; 100], MASK, true);
        assert!(
            decoder
                .decode(&mut BytesMut::from(&ok[..]))
                .unwrap()
                .is_some()
        );
        let big = encode_client_frame(Opcode::Binary, &[1; 101], MASK, true);
        // Only the header arrived: refused without waiting for the payload.
        let mut buf = BytesMut::from(&big[..8]);
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig));
    }

    #[test]
    fn message_size_limit_counts_all_fragments() {
        let limits = FrameLimits {
            max_frame_bytes: 100,
            max_message_bytes: 150,
        };
        let mut decoder = MessageDecoder::new(Role::Server, limits);
        let mut stream = encode_client_frame(Opcode::Binary, &[1; 100], MASK, false);
        stream.extend(encode_client_frame(
            Opcode::Continuation,
            &[1; 50],
            MASK,
            true,
        ));
        stream.extend(encode_client_frame(Opcode::Binary, &[1; 100], MASK, false));
        stream.extend(encode_client_frame(
            Opcode::Continuation,
            &[1; 51],
            MASK,
            true,
        ));
        let mut buf = BytesMut::from(&stream[..]);
        assert!(matches!(decoder.decode(&mut buf), Ok(Some(Message::Binary(b))) if b.len() == 150));
        assert_eq!(decoder.decode(&mut buf), Err(WsError::TooBig));
    }

    #[test]
    fn invalid_utf8_fails_at_the_fragment_that_brings_it() {
        let mut decoder = server();
        let first = encode_client_frame(Opcode::Text, b"ok \xff", MASK, false);
        assert_eq!(
            decoder.decode(&mut BytesMut::from(&first[..])),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_accepted() {
        let euro = "€".as_bytes();
        let mut stream = encode_client_frame(Opcode::Text, &euro[..1], MASK, false);
        stream.extend(encode_client_frame(
            Opcode::Continuation,
            &euro[1..],
            MASK,
            true,
        ));
        let mut buf = BytesMut::from(&stream[..]);
        assert_eq!(
            server().decode(&mut buf).unwrap(),
            Some(Message::Text(Bytes::from("€")))
        );
    }

    #[test]
    fn truncated_utf8_at_the_end_of_a_message_is_invalid() {
        let euro = "€".as_bytes();
        let mut stream = encode_client_frame(Opcode::Text, &euro[..1], MASK, false);
        stream.extend(encode_client_frame(
            Opcode::Continuation,
            &euro[1..2],
            MASK,
            true,
        ));
        assert_eq!(
            server().decode(&mut BytesMut::from(&stream[..])),
            Err(WsError::InvalidUtf8)
        );
        assert_eq!(
            decode_one(&encode_client_frame(Opcode::Text, &euro[..2], MASK, true)),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn close_frames_are_validated() {
        assert_eq!(
            decode_one(&encode_client_frame(Opcode::Close, &[], MASK, true)).unwrap(),
            Some(Message::Close(None))
        );
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let msg = decode_one(&encode_client_frame(Opcode::Close, &payload, MASK, true)).unwrap();
        assert_eq!(
            msg,
            Some(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            })))
        );
        assert_eq!(
            decode_one(&encode_client_frame(Opcode::Close, &[3], MASK, true))
                .unwrap_err()
                .close_code(),
            1002
        );
        let reserved = 1005u16.to_be_bytes();
        assert_eq!(
            decode_one(&encode_client_frame(Opcode::Close, &reserved, MASK, true))
                .unwrap_err()
                .close_code(),
            1002
        );
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        assert_eq!(
            decode_one(&encode_client_frame(Opcode::Close, &bad_reason, MASK, true)),
            Err(WsError::InvalidUtf8)
        );
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let frame = encode_close(4000, &"é".repeat(100));
        assert!(frame.len() <= 2 + 125);
        let mut client = MessageDecoder::new(Role::Client, limits(1000));
        let Some(Message::Close(Some(close))) =
            client.decode(&mut BytesMut::from(&frame[..])).unwrap()
        else {
            panic!()
        };
        assert_eq!(close.code, 4000);
        assert_eq!(close.reason.chars().count(), 61);
    }

    #[test]
    fn masking_matches_a_bytewise_xor_at_every_length() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }
}
