//! The messages nodes exchange over the cluster's pub/sub channel.
//!
//! A message is one tag byte and length-prefixed fields (u16 big-endian lengths), with the
//! bulk part (an event's frame, a resource's JSON) last and unprefixed, so that decoding an
//! event slices its frame out of the received buffer instead of copying it.

use bytes::{BufMut, Bytes, BytesMut};

use super::{Command, NodeId};
use crate::core::app::Revocation;
use crate::core::ids::SocketId;

const EVENT: u8 = b'E';
const NOTICE: u8 = b'P';
/// A notice that carries its member's `user_info` before the frame.
const NOTICE_WITH_INFO: u8 = b'Q';
const ONLINE: u8 = b'N';
const OFFLINE: u8 = b'F';
const TERMINATE: u8 = b'T';
const REVOKE: u8 = b'R';
const RESOURCE_SET: u8 = b'S';
const RESOURCE_DELETE: u8 = b'D';

/// One pub/sub message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// Deliver `frame` to the channel's subscribers on every node.
    Event {
        /// The app's id.
        app: String,
        /// The channel's name.
        channel: String,
        /// The socket that must not receive it.
        except: Option<SocketId>,
        /// The complete WebSocket frame.
        frame: Bytes,
        /// A presence notice (`member_added` / `member_removed`): delivered like any event,
        /// but never kept as a cache channel's last event.
        notice: bool,
        /// A `member_removed` notice's `user_info` JSON text, which Socket.IO's
        /// `presence:leaving` carries and the Pusher frame does not; sent on notices only.
        member_info: Option<String>,
    },
    /// A signed-in user came online on the cluster (first socket on any node) or went
    /// offline (last socket gone): for watchlists.
    UserStatus {
        /// The app's id.
        app: String,
        /// The user.
        user: String,
        /// Online (true) or offline.
        online: bool,
    },
    /// A command from node `origin` (which applied it already).
    Command {
        /// The sending node.
        origin: NodeId,
        /// The command.
        command: Command,
    },
}

/// Why a message could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// It ended inside a field.
    #[error("message truncated")]
    Truncated,
    /// Unknown tag byte.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A field that must be text is not UTF-8, or a value is malformed.
    #[error("malformed field: {0}")]
    Malformed(&'static str),
}

impl Envelope {
    /// Encodes the message.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            Envelope::Event {
                app,
                channel,
                except,
                frame,
                notice,
                member_info,
            } => {
                out.reserve(8 + app.len() + channel.len() + frame.len());
                let info = member_info.as_deref().filter(|_| *notice);
                out.put_u8(match (notice, info) {
                    (false, _) => EVENT,
                    (true, None) => NOTICE,
                    (true, Some(_)) => NOTICE_WITH_INFO,
                });
                put_str(&mut out, app);
                put_str(&mut out, channel);
                put_str(&mut out, &except.map(|s| s.to_string()).unwrap_or_default());
                if let Some(info) = info {
                    put_str(&mut out, info);
                }
                out.put_slice(frame);
            }
            Envelope::UserStatus { app, user, online } => {
                out.put_u8(if *online { ONLINE } else { OFFLINE });
                put_str(&mut out, app);
                put_str(&mut out, user);
            }
            Envelope::Command { origin, command } => match command {
                Command::Terminate { app, user } => {
                    out.put_u8(TERMINATE);
                    put_str(&mut out, origin.as_str());
                    put_str(&mut out, app);
                    put_str(&mut out, user);
                }
                Command::Revoke {
                    app,
                    revocation,
                    until_unix,
                } => {
                    out.put_u8(REVOKE);
                    put_str(&mut out, origin.as_str());
                    put_str(&mut out, app);
                    put_str(&mut out, &revocation.key());
                    out.put_u64(*until_unix);
                }
                Command::Resource {
                    app,
                    kind,
                    id,
                    json,
                } => {
                    out.put_u8(if json.is_some() {
                        RESOURCE_SET
                    } else {
                        RESOURCE_DELETE
                    });
                    put_str(&mut out, origin.as_str());
                    put_str(&mut out, app);
                    put_str(&mut out, kind);
                    put_str(&mut out, id);
                    if let Some(json) = json {
                        out.put_slice(json.as_bytes());
                    }
                }
            },
        }
        out.freeze()
    }

    /// Decodes a message; an event's frame shares `message`'s memory.
    pub fn decode(message: &Bytes) -> Result<Envelope, WireError> {
        let mut reader = Reader {
            buf: message,
            at: 0,
        };
        let tag = reader.u8()?;
        match tag {
            EVENT | NOTICE | NOTICE_WITH_INFO => {
                let app = reader.string()?;
                let channel = reader.string()?;
                let except = reader.string()?;
                let except = if except.is_empty() {
                    None
                } else {
                    Some(SocketId::parse(&except).ok_or(WireError::Malformed("socket id"))?)
                };
                let member_info = match tag {
                    NOTICE_WITH_INFO => Some(reader.string()?),
                    _ => None,
                };
                let frame = message.slice(reader.at..);
                Ok(Envelope::Event {
                    app,
                    channel,
                    except,
                    frame,
                    notice: tag != EVENT,
                    member_info,
                })
            }
            ONLINE | OFFLINE => Ok(Envelope::UserStatus {
                app: reader.string()?,
                user: reader.string()?,
                online: tag == ONLINE,
            }),
            TERMINATE | REVOKE | RESOURCE_SET | RESOURCE_DELETE => {
                let origin =
                    NodeId::parse(&reader.string()?).ok_or(WireError::Malformed("node id"))?;
                let app = reader.string()?;
                let command = match tag {
                    TERMINATE => Command::Terminate {
                        app,
                        user: reader.string()?,
                    },
                    REVOKE => Command::Revoke {
                        app,
                        revocation: Revocation::parse(&reader.string()?)
                            .ok_or(WireError::Malformed("revocation"))?,
                        until_unix: reader.u64()?,
                    },
                    _ => {
                        let kind = reader.string()?;
                        let id = reader.string()?;
                        let json = (tag == RESOURCE_SET)
                            .then(|| reader.rest_string())
                            .transpose()?;
                        Command::Resource {
                            app,
                            kind,
                            id,
                            json,
                        }
                    }
                };
                Ok(Envelope::Command { origin, command })
            }
            other => Err(WireError::UnknownTag(other)),
        }
    }
}

fn put_str(out: &mut BytesMut, s: &str) {
    // Every field written here is bounded well below 64 KiB by validation (names, ids,
    // socket ids); a longer one is cut rather than corrupting the framing.
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.put_u16(bytes.len() as u16);
    out.put_slice(bytes);
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).ok_or(WireError::Truncated)?;
        let slice = self.buf.get(self.at..end).ok_or(WireError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let bytes: [u8; 8] = self.take(8)?.try_into().map_err(|_| WireError::Truncated)?;
        Ok(u64::from_be_bytes(bytes))
    }

    fn string(&mut self) -> Result<String, WireError> {
        let len: [u8; 2] = self.take(2)?.try_into().map_err(|_| WireError::Truncated)?;
        let bytes = self.take(u16::from_be_bytes(len) as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed("text"))
    }

    fn rest_string(&mut self) -> Result<String, WireError> {
        let rest = self.buf.get(self.at..).unwrap_or_default();
        self.at = self.buf.len();
        String::from_utf8(rest.to_vec()).map_err(|_| WireError::Malformed("text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::parse("a1b2").unwrap()
    }

    #[test]
    fn an_event_round_trips_and_its_frame_is_a_slice_of_the_message() {
        let event = Envelope::Event {
            app: "100001".into(),
            channel: "presence-room".into(),
            except: SocketId::parse("123.456"),
            frame: Bytes::from_static(b"\x81\x05hello"),
            notice: false,
            member_info: None,
        };
        let message = event.encode();
        let decoded = Envelope::decode(&message).unwrap();
        assert_eq!(decoded, event);
        let Envelope::Event { frame, .. } = decoded else {
            unreachable!()
        };
        let range = message.as_ptr() as usize..message.as_ptr() as usize + message.len();
        assert!(range.contains(&(frame.as_ptr() as usize)));
    }

    #[test]
    fn events_and_notices_without_exclusion_round_trip() {
        for (notice, member_info) in [(false, None), (true, None), (true, Some("{\"n\":1}"))] {
            let event = Envelope::Event {
                app: "1".into(),
                channel: "c".into(),
                except: None,
                frame: Bytes::new(),
                notice,
                member_info: member_info.map(String::from),
            };
            assert_eq!(Envelope::decode(&event.encode()).unwrap(), event);
        }
    }

    #[test]
    fn user_statuses_round_trip_and_truncations_are_errors() {
        for online in [true, false] {
            let status = Envelope::UserStatus {
                app: "1".into(),
                user: "alice".into(),
                online,
            };
            let message = status.encode();
            assert_eq!(Envelope::decode(&message).unwrap(), status);
            for end in 0..message.len() {
                assert!(Envelope::decode(&message.slice(..end)).is_err(), "{end}");
            }
        }
    }

    #[test]
    fn commands_round_trip() {
        for command in [
            Command::Terminate {
                app: "1".into(),
                user: "u-7".into(),
            },
            Command::Revoke {
                app: "1".into(),
                revocation: Revocation::Token("t1".into()),
                until_unix: 1_800_000_000,
            },
            Command::Resource {
                app: "1".into(),
                kind: "escrow".into(),
                id: "42".into(),
                json: Some(r#"{"status":"DISPUTED"}"#.into()),
            },
            Command::Resource {
                app: "1".into(),
                kind: "escrow".into(),
                id: "42".into(),
                json: None,
            },
        ] {
            let envelope = Envelope::Command {
                origin: node(),
                command,
            };
            assert_eq!(Envelope::decode(&envelope.encode()).unwrap(), envelope);
        }
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let message = Envelope::Command {
            origin: node(),
            command: Command::Revoke {
                app: "1".into(),
                revocation: Revocation::Token("t1".into()),
                until_unix: 5,
            },
        }
        .encode();
        for end in 0..message.len() {
            assert!(Envelope::decode(&message.slice(..end)).is_err(), "{end}");
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(
            Envelope::decode(&Bytes::from_static(b"Zxx")),
            Err(WireError::UnknownTag(b'Z'))
        );
        let bad_socket = Bytes::from_static(b"E\x00\x011\x00\x01c\x00\x03abc");
        assert!(Envelope::decode(&bad_socket).is_err());
        let bad_node = Bytes::from_static(b"T\x00\x02a b\x00\x011\x00\x01u");
        assert!(Envelope::decode(&bad_node).is_err());
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let len = (seed >> 58) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed >> (i % 8 * 8)) as u8 ^ i as u8)
                .collect();
            let _ = Envelope::decode(&Bytes::from(bytes));
        }
    }
}
