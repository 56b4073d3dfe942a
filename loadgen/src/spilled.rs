//! An event as the spill stores it (`--queue spill`): sinkd's binary wire encoding, whose
//! decoder checks every length, so bytes that are not an event are an error, never a panic.

use reactive::spill::{DecodeError, SpillCodec};
use sinkd::wire::{self, Event, Format};

/// An [`Event`] on its way through a spill (a newtype: neither the trait nor the event is
/// loadgen's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spilled(pub Event);

impl SpillCodec for Spilled {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&wire::encode_one(&self.0, Format::Binary));
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::decode_one(bytes, Format::Binary)
            .map(Spilled)
            .map_err(|e| DecodeError::new(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_comes_back_and_bad_bytes_are_an_error() {
        let e = Spilled(Event {
            id: 7,
            key: 3,
            seq: 2,
            ts_ns: 1_700_000_000_000_000_000,
            priority: 1,
            payload: "PAYLOAD".into(),
        });
        let mut bytes = Vec::new();
        e.encode(&mut bytes);
        assert_eq!(Spilled::decode(&bytes), Ok(e));
        for cut in 0..bytes.len() {
            assert!(Spilled::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
