//! The record format of a segment: `[len u32 LE][crc u32 LE][payload: len bytes]`, where the
//! CRC-32 (IEEE) covers the four length bytes *and* the payload, so a damaged length is caught
//! as surely as a damaged payload.
//!
//! CRC-32 comes from `crc32fast` (std only, default features off): it is already in the
//! workspace's lock file through `flate2`, so it adds no new code to audit or build, and it
//! picks a SIMD kernel at run time (several GB/s), where a table CRC written here would run at
//! a few hundred MB/s and be one more thing to test.

/// Bytes before a record's payload.
pub(crate) const HEADER: usize = 8;

/// The checksum of a record: over its length field and its payload.
pub(crate) fn checksum(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// Appends the frame of `payload` to `out`. The caller has checked that `payload` fits a `u32`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is at an offset of a segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parse {
    /// A whole, valid record: its payload is `buf[at + HEADER..end]`.
    Record { end: usize },
    /// The bytes end before the record does: a torn write if this is the end of the file.
    Short,
    /// A checksum that does not match, or a length larger than `max_len`.
    Bad,
}

/// Reads the record header at `at` and checks the record against its checksum.
pub(crate) fn parse(buf: &[u8], at: usize, max_len: u32) -> Parse {
    let Some(header) = buf.get(at..at.saturating_add(HEADER)) else {
        return Parse::Short;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > max_len {
        return Parse::Bad;
    }
    let start = at + HEADER;
    let end = start + len as usize;
    match buf.get(start..end) {
        None => Parse::Short,
        Some(payload) if checksum(len, payload) == crc => Parse::Record { end },
        Some(_) => Parse::Bad,
    }
}

/// The first offset after `from` where a valid record starts, if any: how a reader resumes after
/// damage. A false resync needs eight bytes of damage or payload that happen to form a header
/// whose CRC-32 matches what follows (about one chance in 2^32 per offset tried).
pub(crate) fn resync(buf: &[u8], from: usize, max_len: u32) -> Option<usize> {
    (from + 1..buf.len().saturating_sub(HEADER - 1))
        .find(|&at| matches!(parse(buf, at, max_len), Parse::Record { .. }))
}

/// One segment's bytes, checked from `from`: its valid end and the damaged stretches in it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Valid records found.
    pub(crate) records: u64,
    /// Stretches `[start, end)` that hold no valid record (reported and skipped).
    pub(crate) damaged: Vec<(u64, u64)>,
    /// A torn tail: the offset where an incomplete last record starts (dropped).
    pub(crate) torn_at: Option<u64>,
    /// The end of the last valid record (or `from` when there is none).
    pub(crate) valid_end: u64,
}

/// Checks a whole segment from `from`. A stretch that cannot be parsed is damage if a valid record
/// follows it; if none follows, it is a torn tail when it is an incomplete record, else damage
/// running to the end.
pub(crate) fn check(buf: &[u8], from: usize, max_len: u32) -> Checked {
    let mut c = Checked {
        valid_end: from as u64,
        ..Checked::default()
    };
    let mut at = from;
    while at < buf.len() {
        match parse(buf, at, max_len) {
            Parse::Record { end } => {
                c.records += 1;
                at = end;
                c.valid_end = end as u64;
            }
            bad => match resync(buf, at, max_len) {
                Some(next) => {
                    c.damaged.push((at as u64, next as u64));
                    at = next;
                }
                None => {
                    if bad == Parse::Short {
                        c.torn_at = Some(at as u64);
                    } else {
                        c.damaged.push((at as u64, buf.len() as u64));
                    }
                    break;
                }
            },
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            frame(p, &mut out);
        }
        out
    }

    #[test]
    fn a_frame_parses_back() {
        let buf = framed(&[b"hello", b""]);
        assert_eq!(parse(&buf, 0, 1024), Parse::Record { end: 13 });
        assert_eq!(parse(&buf, 13, 1024), Parse::Record { end: 21 });
        assert_eq!(parse(&buf, 21, 1024), Parse::Short);
    }

    #[test]
    fn every_truncation_of_the_last_record_is_a_torn_tail() {
        let buf = framed(&[b"first", b"second record"]);
        let second = 13;
        for cut in second..buf.len() {
            let c = check(&buf[..cut], 0, 1024);
            assert_eq!(c.records, 1, "cut at {cut}");
            assert_eq!(c.valid_end, second as u64);
            if cut == second {
                assert_eq!(c.torn_at, None);
            } else {
                assert_eq!(c.torn_at, Some(second as u64), "cut at {cut}");
            }
            assert!(c.damaged.is_empty());
        }
    }

    #[test]
    fn every_flipped_byte_is_damage_and_the_rest_is_found() {
        let buf = framed(&[b"one", b"two two", b"three three three"]);
        let (a, b) = (11usize, 26usize);
        for i in a..b {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            let c = check(&bad, 0, 1024);
            assert_eq!(c.records, 2, "flip at {i}");
            assert_eq!(c.damaged, vec![(a as u64, b as u64)], "flip at {i}");
        }
    }

    #[test]
    fn an_absurd_length_is_bad_not_an_allocation() {
        let mut buf = framed(&[b"x"]);
        buf[3] = 0xff;
        assert_eq!(parse(&buf, 0, 1024), Parse::Bad);
    }
}
