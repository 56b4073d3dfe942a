//! sinkd's wire format: one event, or a batch of events, as JSON or as compact binary.
//!
//! # JSON (`Content-Type: application/json`)
//! One event is an object, a batch is an array of them:
//! ```json
//! {"id":7,"key":3,"seq":2,"ts_ns":1700000000000000000,"priority":1,"payload":"…"}
//! ```
//! `id` identifies the event (the audit counts duplicates and missing ids by it), `seq` orders
//! the events of one `key` (the audit counts a `seq` lower than the last seen for its key as an
//! ordering violation), `ts_ns` is the producer's intended send time in nanoseconds, `priority`
//! its class (0 is the lowest).
//!
//! # Binary (`Content-Type: application/vnd.sinkd.events`)
//! Each event is 37 bytes of header and its payload, all integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | id (u64) |
//! | 8 | key (u64) |
//! | 8 | seq (u64) |
//! | 8 | ts_ns (i64) |
//! | 1 | priority (u8) |
//! | 4 | payload length n (u32) |
//! | n | payload |
//!
//! A batch is events back to back; `/write` takes exactly one.

use serde::{Deserialize, Serialize};

/// The JSON content type.
pub const JSON: &str = "application/json";
/// The binary content type.
pub const BINARY: &str = "application/vnd.sinkd.events";

const HEADER: usize = 37;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique id, dense from 0 for one producer run.
    pub id: u64,
    /// The ordering key.
    pub key: u64,
    /// Position within the key.
    pub seq: u64,
    /// Intended send time, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    /// Priority class; 0 is the lowest.
    #[serde(default)]
    pub priority: u8,
    /// The payload.
    #[serde(default)]
    pub payload: String,
}

/// The body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON: an object, or an array for a batch.
    Json,
    /// The binary format described in the [module docs](self).
    Binary,
}

impl Format {
    /// The format a `Content-Type` names, ignoring parameters such as `charset`.
    pub fn from_content_type(value: &str) -> Option<Format> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(JSON) {
            Some(Format::Json)
        } else if essence.eq_ignore_ascii_case(BINARY) {
            Some(Format::Binary)
        } else {
            None
        }
    }

    /// The `Content-Type` value.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Binary => BINARY,
        }
    }
}

/// Why a body could not be decoded. Its text is sent back with the 400.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The JSON did not parse as an event (`what`: "event") or a batch of them.
    #[error("invalid JSON {what}: {source}")]
    Json {
        /// What was expected.
        what: &'static str,
        /// Why not.
        #[source]
        source: serde_json::Error,
    },
    /// `/write` got a number of events other than one.
    #[error("/write takes exactly one event, got {0}")]
    NotOne(usize),
    /// `/write/batch` got no event.
    #[error("empty batch")]
    EmptyBatch,
    /// A binary body ended inside an event's fixed header.
    #[error("truncated binary event header at byte {offset}")]
    TruncatedHeader {
        /// Where the event began.
        offset: usize,
    },
    /// A binary event's payload runs past the end of the body.
    #[error("binary event at byte {offset} declares a {len}-byte payload past the end of the body")]
    TruncatedPayload {
        /// Where the event began.
        offset: usize,
        /// The payload length it declared.
        len: usize,
    },
    /// A binary event's payload is not UTF-8.
    #[error("binary event at byte {offset}: payload is not UTF-8")]
    NotUtf8 {
        /// Where the event began.
        offset: usize,
    },
}

/// Encodes one event.
pub fn encode_one(event: &Event, format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(event).unwrap_or_default(),
        Format::Binary => {
            let mut out = Vec::with_capacity(HEADER + event.payload.len());
            put_binary(&mut out, event);
            out
        }
    }
}

/// Encodes a batch.
pub fn encode_batch(events: &[Event], format: Format) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(events).unwrap_or_default(),
        Format::Binary => {
            let size = events.iter().map(|e| HEADER + e.payload.len()).sum();
            let mut out = Vec::with_capacity(size);
            for event in events {
                put_binary(&mut out, event);
            }
            out
        }
    }
}

fn put_binary(out: &mut Vec<u8>, e: &Event) {
    out.extend_from_slice(&e.id.to_le_bytes());
    out.extend_from_slice(&e.key.to_le_bytes());
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.extend_from_slice(&e.ts_ns.to_le_bytes());
    out.push(e.priority);
    let len = u32::try_from(e.payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&e.payload.as_bytes()[..len as usize]);
}

/// Decodes the body of `/write`: exactly one event.
pub fn decode_one(body: &[u8], format: Format) -> Result<Event, DecodeError> {
    match format {
        Format::Json => serde_json::from_slice(body).map_err(|source| DecodeError::Json {
            what: "event",
            source,
        }),
        Format::Binary => {
            let mut events = decode_binary(body)?;
            if events.len() != 1 {
                return Err(DecodeError::NotOne(events.len()));
            }
            Ok(events.remove(0))
        }
    }
}

/// Decodes the body of `/write/batch`: one or more events.
pub fn decode_batch(body: &[u8], format: Format) -> Result<Vec<Event>, DecodeError> {
    let events = match format {
        Format::Json => {
            serde_json::from_slice::<Vec<Event>>(body).map_err(|source| DecodeError::Json {
                what: "batch (expected an array of events)",
                source,
            })?
        }
        Format::Binary => decode_binary(body)?,
    };
    if events.is_empty() {
        return Err(DecodeError::EmptyBatch);
    }
    Ok(events)
}

fn decode_binary(mut body: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::with_capacity(body.len() / (HEADER + 64) + 1);
    let mut offset = 0usize;
    while !body.is_empty() {
        if body.len() < HEADER {
            return Err(DecodeError::TruncatedHeader { offset });
        }
        let u64_at = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap_or_default());
        let len = u32::from_le_bytes(body[33..37].try_into().unwrap_or_default()) as usize;
        let Some(payload) = body.get(HEADER..HEADER + len) else {
            return Err(DecodeError::TruncatedPayload { offset, len });
        };
        let payload = std::str::from_utf8(payload).map_err(|_| DecodeError::NotUtf8 { offset })?;
        events.push(Event {
            id: u64_at(0),
            key: u64_at(8),
            seq: u64_at(16),
            ts_ns: u64_at(24) as i64,
            priority: body[32],
            payload: payload.to_owned(),
        });
        body = &body[HEADER + len..];
        offset += HEADER + len;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u64) -> Event {
        Event {
            id,
            key: id % 3,
            seq: id / 3,
            ts_ns: -5 + id as i64,
            priority: (id % 4) as u8,
            payload: "é".repeat(id as usize),
        }
    }

    #[test]
    fn both_formats_round_trip() {
        let batch: Vec<Event> = (0..5).map(event).collect();
        for format in [Format::Json, Format::Binary] {
            assert_eq!(
                decode_batch(&encode_batch(&batch, format), format).unwrap(),
                batch
            );
            assert_eq!(
                decode_one(&encode_one(&batch[3], format), format).unwrap(),
                batch[3]
            );
        }
    }

    #[test]
    fn malformed_bodies_are_errors_with_a_reason() {
        assert!(
            decode_one(b"{", Format::Json)
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
        assert!(decode_one(br#"{"id":1}"#, Format::Json).is_err());
        assert!(
            decode_batch(b"[]", Format::Json)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            decode_batch(&[0u8; 10], Format::Binary)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        let mut bad = encode_one(&event(1), Format::Binary);
        bad[35] = 200;
        assert!(
            decode_one(&bad, Format::Binary)
                .unwrap_err()
                .to_string()
                .contains("past the end")
        );
        let two = encode_batch(&[event(1), event(2)], Format::Binary);
        assert!(
            decode_one(&two, Format::Binary)
                .unwrap_err()
                .to_string()
                .contains("exactly one")
        );
    }

    #[test]
    fn content_types_are_matched_by_essence() {
        assert_eq!(
            Format::from_content_type("application/json; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type(BINARY), Some(Format::Binary));
        assert_eq!(Format::from_content_type("text/plain"), None);
    }
}
