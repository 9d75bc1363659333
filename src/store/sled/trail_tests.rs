//! The trail's files: appends across segments, reads through the index, removal, a
//! damaged end cut off at opening, and the move of a trail kept in the database by
//! earlier versions.

use super::*;
use crate::store::sled::frames::HEADER;
use crate::store::sled::segment::{name, STRIDE};
use crate::store::StoreError;

fn record(seq: u64) -> Vec<u8> {
    format!(
        "{{\"seq\":{seq},\"pad\":\"{}\"}}",
        "x".repeat(60 + usize::try_from(seq % 7).unwrap())
    )
    .into_bytes()
}

/// Appends records `from..=to` in one batch, checking the head the chain is given.
fn append(trail: &Trail, from: u64, to: u64) {
    trail
        .append(|head| {
            assert_eq!(head.map(|(s, _)| s), from.checked_sub(1).filter(|s| *s > 0));
            (from..=to).map(|s| (s, record(s))).collect()
        })
        .unwrap();
}

fn seqs(records: &[(u64, Vec<u8>)]) -> Vec<u64> {
    records.iter().map(|(s, _)| *s).collect()
}

/// The segments' files, by first sequence number.
fn segments(dir: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = fs::read_dir(dir.join(DIR))
        .unwrap()
        .filter_map(|e| segment::parse_name(e.unwrap().file_name().to_str()?))
        .collect();
    firsts.sort_unstable();
    firsts
}

/// Files under `dir` this process holds open.
fn open_files_in(dir: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.starts_with(dir))
        .count()
}

// Every record reads back, across segments and from where the index points, whether the
// trail was just written or read from its files again.
#[test]
fn appends_read_back_before_and_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40 * STRIDE + 3;
    {
        let trail = Trail::open(dir.path()).unwrap();
        assert_eq!(trail.last(), None);
        assert!(trail.range(0, 10).unwrap().is_empty());
        append(&trail, 1, 1);
        for from in (2..=n).step_by(37) {
            append(&trail, from, (from + 36).min(n));
        }
        assert_eq!(trail.last(), Some((n, record(n))));
    }
    assert!(segments(dir.path()).len() > 3, "{:?}", segments(dir.path()));
    let trail = Trail::open(dir.path()).unwrap();
    assert_eq!(trail.last(), Some((n, record(n))));
    let all = trail.range(0, usize::MAX).unwrap();
    assert_eq!(seqs(&all), (1..=n).collect::<Vec<_>>());
    assert!(all.iter().all(|(s, r)| *r == record(*s)));
    for seq in [1, STRIDE - 1, STRIDE, STRIDE + 1, 2 * STRIDE + 5, n / 2, n] {
        assert_eq!(trail.get(seq).unwrap(), Some(record(seq)), "record {seq}");
        assert_eq!(seqs(&trail.range(seq, 3).unwrap())[0], seq);
    }
    // A range crosses from one segment into the next.
    let second = segments(dir.path())[1];
    assert_eq!(
        seqs(&trail.range(second - 2, 4).unwrap()),
        (second - 2..second + 2).collect::<Vec<_>>()
    );
    assert_eq!(trail.get(n + 1).unwrap(), None);
    assert_eq!(trail.get(0).unwrap(), None);
    // Only the newest segment's file stays open, however many there are.
    assert_eq!(open_files_in(dir.path()), 1);
    // A sequence number that does not follow the newest is refused, and nothing is
    // written.
    assert!(trail.append(|_| vec![(n, record(n))]).is_err());
    assert!(trail.append(|_| vec![(n + 2, record(n)), (n + 1, record(n))]).is_err());
    append(&trail, n + 1, n + 1);
    assert_eq!(trail.range(n, 10).unwrap().len(), 2);
}

// Retention: segments of older records go whole, the one holding both is written anew
// from the first record kept; the rest reads as before, and after reopening.
#[test]
fn removal_keeps_the_rest_and_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let trail = Trail::open(dir.path()).unwrap();
    for from in (1..=600).step_by(50) {
        append(&trail, from, from + 49);
    }
    let before = segments(dir.path());
    assert!(before.len() > 3);
    assert_eq!(trail.remove_before(1).unwrap(), 0);
    let cut = before[2] + 3;
    assert_eq!(trail.remove_before(cut).unwrap(), usize::try_from(cut - 1).unwrap());
    let after = segments(dir.path());
    assert_eq!(after[0], cut);
    assert_eq!(after[1..], before[3..]);
    assert_eq!(seqs(&trail.range(0, 2).unwrap()), [cut, cut + 1]);
    assert_eq!(trail.get(599).unwrap(), Some(record(599)));
    append(&trail, 601, 601);
    drop(trail);
    let trail = Trail::open(dir.path()).unwrap();
    let all = trail.range(0, usize::MAX).unwrap();
    assert_eq!(seqs(&all), (cut..=601).collect::<Vec<_>>());
    assert_eq!(trail.last().unwrap().0, 601);
    // Everything: the trail is empty, and starts again.
    assert_eq!(trail.remove_before(u64::MAX).unwrap(), all.len());
    assert_eq!(trail.last(), None);
    assert!(segments(dir.path()).is_empty());
    append(&trail, 1, 2);
}

#[test]
fn overwrite_replaces_one_record() {
    let trail = Trail::temporary().unwrap();
    for from in (1..=200).step_by(20) {
        append(&trail, from, from + 19);
    }
    trail.overwrite(64, b"{\"seq\":64,\"forged\":true}").unwrap();
    assert_eq!(trail.get(64).unwrap().unwrap(), b"{\"seq\":64,\"forged\":true}");
    assert_eq!(trail.get(65).unwrap(), Some(record(65)));
    assert_eq!(trail.range(0, usize::MAX).unwrap().len(), 200);
    trail.overwrite(200, b"{}").unwrap();
    assert_eq!(trail.last(), Some((200, b"{}".to_vec())));
}

// A crash mid-write: the last frame cut short, or its bytes never written (zeros), or
// changed. The newest segment is cut after the last whole frame, what was cut is kept
// beside it, and appends go on from there.
#[test]
fn a_damaged_end_is_cut_off_and_kept() {
    for damage in ["short", "zeros", "flipped"] {
        let dir = tempfile::tempdir().unwrap();
        {
            let trail = Trail::open(dir.path()).unwrap();
            append(&trail, 1, 20);
        }
        let path = dir.path().join(DIR).join(name(1));
        let whole = fs::read(&path).unwrap();
        let last = whole.len() - (HEADER + record(20).len());
        let mut bytes = whole.clone();
        match damage {
            "short" => bytes.truncate(whole.len() - 3),
            "zeros" => bytes[last..].fill(0),
            _ => *bytes.last_mut().unwrap() ^= 1,
        }
        fs::write(&path, &bytes).unwrap();
        let trail = Trail::open(dir.path()).unwrap();
        assert_eq!(trail.last(), Some((19, record(19))), "{damage}");
        assert_eq!(fs::read(&path).unwrap(), whole[..last], "{damage}");
        let kept = dir.path().join(DIR).join(format!("{}.damaged-{last}", name(1)));
        assert_eq!(fs::read(&kept).unwrap(), bytes[last..], "{damage}");
        append(&trail, 20, 21);
        drop(trail);
        assert_eq!(Trail::open(dir.path()).unwrap().last().unwrap().0, 21);
    }
}

// Damage in an older segment is not a crash's: reading it is an error, never a record
// skipped.
#[test]
fn damage_in_an_older_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let trail = Trail::open(dir.path()).unwrap();
        for from in (1..=300).step_by(30) {
            append(&trail, from, from + 29);
        }
    }
    let path = dir.path().join(DIR).join(name(1));
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let trail = Trail::open(dir.path()).unwrap();
    assert_eq!(trail.last().unwrap().0, 300);
    assert!(matches!(trail.range(0, 10), Err(StoreError::Corrupt { .. })));
}

#[test]
fn a_file_that_is_not_a_trail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(DIR)).unwrap();
    fs::write(dir.path().join(DIR).join(name(1)), b"{\"seq\":1}\n").unwrap();
    assert!(matches!(Trail::open(dir.path()), Err(StoreError::Corrupt { .. })));
}

// A data directory written by a version that kept records in the `audit` tree (one
// record a value, then packs): opening moves them into the files, once, in order, and
// the chain goes on from the newest.
#[tokio::test]
async fn records_kept_in_the_database_move_into_the_files() {
    use crate::store::backend::Backend;
    let dir = tempfile::tempdir().unwrap();
    let key = || crate::store::sealed::SecretKey::from_bytes(&[7; 32]).unwrap();
    {
        let store = crate::store::SledStore::open_with_key(dir.path(), key()).unwrap();
        let tree = store.db().open_tree("audit").unwrap();
        for seq in 1u64..=2 {
            tree.insert(seq.to_be_bytes(), record(seq)).unwrap();
        }
        let (a, b, c) = (record(3), record(4), record(5));
        tree.insert(3u64.to_be_bytes(), super::super::pack::pack([&a[..], &b[..], &c[..]]))
            .unwrap();
        store.db().flush().unwrap();
    }
    // What an interrupted move left: the files hold the first records already.
    {
        let trail = Trail::open(dir.path()).unwrap();
        trail.append(|_| vec![(1, record(1)), (2, record(2))]).unwrap();
    }
    let store = crate::store::SledStore::open_with_key(dir.path(), key()).unwrap();
    assert!(store.db().open_tree("audit").unwrap().is_empty());
    let all = Backend::audit_range(&store, 0, 100).await.unwrap();
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5]);
    assert!(all.iter().all(|(s, r)| *r == record(*s)));
    let mut heads = Vec::new();
    let mut chain = |head: Option<(u64, Vec<u8>)>| {
        heads.push(head.clone().map(|(s, _)| s));
        vec![(6, record(6))]
    };
    Backend::audit_append(&store, &mut chain).await.unwrap();
    assert_eq!(heads, [Some(5)]);
}
