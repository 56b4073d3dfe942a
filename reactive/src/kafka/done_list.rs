//! What a commit's metadata carries: the offsets past the commit point that were already
//! written and acknowledged. A commit point is the first record not yet acknowledged, so a
//! member that dies leaves behind it everything acknowledged out of order past that point;
//! without this list its successor would write them all again. With it, the replay after a
//! crash is the records in flight (and those acknowledged since the last commit), not
//! everything finished past the slowest one.
//!
//! The format, `d1:` then runs `GAP+LEN` in hex separated by commas: each run starts `GAP`
//! offsets after the end of the previous one (the first after the commit point) and covers
//! `LEN + 1` offsets. It is cut at [`MAX_LEN`] bytes (Kafka's default limit on commit metadata
//! is 4,096): what is cut off is written again after a crash, never skipped. Anything that
//! does not parse is ignored the same way.

/// The longest metadata written, in bytes.
pub(crate) const MAX_LEN: usize = 3_000;
const PREFIX: &str = "d1:";

/// Encodes `offsets` (any order, duplicates allowed) past `point`.
pub(crate) fn encode(point: i64, offsets: impl IntoIterator<Item = i64>) -> String {
    let mut v: Vec<i64> = offsets.into_iter().filter(|&o| o > point).collect();
    if v.is_empty() {
        return String::new();
    }
    v.sort_unstable();
    v.dedup();
    let mut out = String::from(PREFIX);
    let mut end = point; // the last offset covered so far
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        let run = format!(
            "{}{:x}+{:x}",
            if out.len() > PREFIX.len() { "," } else { "" },
            start - end,
            j - i
        );
        if out.len() + run.len() > MAX_LEN {
            break;
        }
        out += &run;
        end = v[j];
        i = j + 1;
    }
    out
}

/// The offsets `metadata` lists past `point` (none when it is not this format).
pub(crate) fn decode(point: i64, metadata: &str) -> Vec<i64> {
    let Some(body) = metadata.strip_prefix(PREFIX) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut end = point;
    for run in body.split(',').filter(|r| !r.is_empty()) {
        let Some((gap, len)) = run.split_once('+') else {
            return Vec::new();
        };
        let (Ok(gap), Ok(len)) = (i64::from_str_radix(gap, 16), u32::from_str_radix(len, 16))
        else {
            return Vec::new();
        };
        let Some(start) = end.checked_add(gap).filter(|_| gap > 0) else {
            return Vec::new();
        };
        // A run longer than any metadata could list is not ours.
        if out.len() + len as usize > 1_000_000 {
            return Vec::new();
        }
        out.extend((0..=i64::from(len)).map(|k| start + k));
        end = start + i64::from(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        let offsets = [12, 13, 14, 20, 22, 23, 100];
        let m = encode(10, offsets);
        assert_eq!(m, "d1:2+2,6+0,2+1,4d+0");
        assert_eq!(decode(10, &m), offsets);
        assert_eq!(encode(10, [3, 10]), "", "nothing past the point");
        assert_eq!(decode(10, ""), Vec::<i64>::new());
    }

    #[test]
    fn garbage_is_ignored_never_trusted() {
        for bad in [
            "x",
            "d1:zz+1",
            "d1:0+1",
            "d1:-1+0",
            "d1:1",
            "d1:1+ffffffffff",
            "d1:7fffffffffffffff+0,7fffffffffffffff+0",
        ] {
            let d = decode(5, bad);
            assert!(d.is_empty() || d.iter().all(|&o| o > 5), "{bad}: {d:?}");
        }
    }

    #[test]
    fn a_long_list_is_cut_not_broken() {
        let offsets: Vec<i64> = (0..5_000).map(|i| 2 * i + 1).collect(); // no two adjacent
        let m = encode(0, offsets.iter().copied());
        assert!(m.len() <= MAX_LEN);
        let back = decode(0, &m);
        assert!(!back.is_empty() && back.len() < offsets.len());
        assert_eq!(back, offsets[..back.len()], "a prefix of the list, exactly");
    }

    proptest::proptest! {
        #[test]
        fn any_set_round_trips(point in 0i64..1000, set in proptest::collection::btree_set(0i64..3000, 0..300)) {
            let m = encode(point, set.iter().copied());
            let want: Vec<i64> = set.iter().copied().filter(|&o| o > point).collect();
            proptest::prop_assert_eq!(decode(point, &m), want);
        }
    }
}
