//! [`SpillCodec`]: how an item becomes bytes on disk and back.

use std::fmt;

/// An item that can be spilled. `decode(encode(x))` must give back `x`; `decode` of any other
/// bytes must return an error, never panic (a record's checksum catches damage on disk, but a
/// record written by an older version of the item type can still reach `decode`).
pub trait SpillCodec: Sized {
    /// Appends the item's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The item from the bytes `encode` wrote.
    ///
    /// # Errors
    /// When the bytes are not an item's.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
}

/// Bytes that are not an item's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    what: String,
}

impl DecodeError {
    /// An error saying what was wrong with the bytes.
    pub fn new(what: impl Into<String>) -> Self {
        DecodeError { what: what.into() }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot decode a spilled item: {}", self.what)
    }
}

impl std::error::Error for DecodeError {}

impl SpillCodec for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

impl SpillCodec for Box<[u8]> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.into())
    }
}

impl SpillCodec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError::new(e.to_string()))
    }
}

impl SpillCodec for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| DecodeError::new(format!("a u64 is 8 bytes, not {}", bytes.len())))?;
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(u64::decode(&[1, 2, 3]).is_err());
        assert!(String::decode(&[0xff, 0xfe]).is_err());
        let mut out = Vec::new();
        7u64.encode(&mut out);
        assert_eq!(u64::decode(&out), Ok(7));
    }
}
