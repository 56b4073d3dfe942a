//! The read cursor: which segment and offset the next record to consume starts at.
//!
//! The file holds two 32-byte slots, `[generation u64][segment u64][offset u64][crc u32][0 u32]`.
//! Each save writes the *other* slot with the next generation, in one positioned write, so the
//! slot the last save wrote is never overwritten while it is the newest: a torn save leaves a
//! slot that fails its checksum, and the load takes the valid slot of highest generation (the
//! previous position). Nothing is renamed and nothing is allocated on a save.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const SLOT: usize = 32;

/// A position in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// The segment's number (its file is `seg-<number>.log`).
    pub segment: u64,
    /// The byte offset in the segment.
    pub offset: u64,
}

#[derive(Debug)]
pub(crate) struct Cursor {
    file: File,
    generation: u64,
}

fn encode(generation: u64, at: Position) -> [u8; SLOT] {
    let mut slot = [0u8; SLOT];
    slot[0..8].copy_from_slice(&generation.to_le_bytes());
    slot[8..16].copy_from_slice(&at.segment.to_le_bytes());
    slot[16..24].copy_from_slice(&at.offset.to_le_bytes());
    let crc = crc32fast::hash(&slot[0..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    slot
}

fn decode(slot: &[u8]) -> Option<(u64, Position)> {
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(slot.get(i..i + 8)?);
        Some(u64::from_le_bytes(b))
    };
    let mut crc = [0u8; 4];
    crc.copy_from_slice(slot.get(24..28)?);
    (crc32fast::hash(slot.get(0..24)?) == u32::from_le_bytes(crc)).then_some(())?;
    Some((
        word(0)?,
        Position {
            segment: word(8)?,
            offset: word(16)?,
        },
    ))
}

impl Cursor {
    /// Opens (or creates) the cursor file and reads the newest valid position, if any.
    pub(crate) fn open(path: &Path) -> io::Result<(Cursor, Option<Position>)> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut buf = [0u8; 2 * SLOT];
        let n = read_up_to(&file, &mut buf)?;
        let newest = [0, SLOT]
            .into_iter()
            .filter(|&i| i + SLOT <= n)
            .filter_map(|i| decode(&buf[i..i + SLOT]))
            .max_by_key(|(generation, _)| *generation);
        if n < buf.len() {
            // Allocate both slots now: a save must never need space the disk may not have
            // (an all-zero slot fails its checksum, so it reads as empty).
            file.write_all_at(&[0u8; 2 * SLOT][n..], n as u64)?;
            file.sync_data()?;
        }
        let generation = newest.map_or(0, |(g, _)| g);
        Ok((Cursor { file, generation }, newest.map(|(_, p)| p)))
    }

    /// Saves `at` as the newest position; with `sync`, on stable storage before it returns.
    pub(crate) fn save(&mut self, at: Position, sync: bool) -> io::Result<()> {
        let generation = self.generation + 1;
        let slot = (generation % 2) as usize * SLOT;
        self.file
            .write_all_at(&encode(generation, at), slot as u64)?;
        if sync {
            self.file.sync_data()?;
        }
        self.generation = generation;
        Ok(())
    }

    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_save_wins_and_a_torn_slot_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor");
        let (mut c, at) = Cursor::open(&path).unwrap();
        assert_eq!(at, None);
        let p = |segment, offset| Position { segment, offset };
        c.save(p(1, 10), false).unwrap();
        c.save(p(1, 20), false).unwrap();
        drop(c);
        let (mut c, at) = Cursor::open(&path).unwrap();
        assert_eq!(at, Some(p(1, 20)));
        c.save(p(2, 0), false).unwrap();
        drop(c);
        // Tear the newest slot (generation 3, slot 1): the previous position comes back.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (_, at) = Cursor::open(&path).unwrap();
        assert_eq!(at, Some(p(1, 20)));
    }
}
