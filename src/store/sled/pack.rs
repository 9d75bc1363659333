//! Packs: consecutive audit records kept in one value of the audit tree, under the first
//! one's sequence number, so that a batch of records costs the tree one insert per pack
//! rather than one per record (an insert is most of what appending a record costs).
//!
//! A pack is [`MARK`] then, per record, its length (`u32`, big-endian) and its bytes. A
//! value that does not start with the mark is a single record: a record is JSON, so it
//! never does, and trails written one record a value read as they always did.

use crate::store::{Result, StoreError};

/// The first byte of a pack.
const MARK: u8 = 0;
/// Records are packed until a pack reaches this size. It keeps a full leaf of the tree
/// (17 values) inside one page that the log writes inline.
pub(super) const BYTES: usize = 6 * 1024;

/// One value holding `records`, in order.
pub(super) fn pack<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![MARK];
    for r in records {
        let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The records of a stored value, in order.
pub(super) fn unpack(value: &[u8]) -> Result<Vec<&[u8]>> {
    let Some((&MARK, mut rest)) = value.split_first() else {
        return Ok(vec![value]);
    };
    let mut records = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("a record's length is cut short"))?;
        let len = usize::try_from(u32::from_be_bytes(*len)).unwrap_or(usize::MAX);
        if len > tail.len() {
            return Err(corrupt("a record is cut short"));
        }
        let (record, tail) = tail.split_at(len);
        records.push(record);
        rest = tail;
    }
    if records.is_empty() {
        return Err(corrupt("a pack holds no record"));
    }
    Ok(records)
}

/// `records` (sequence number, bytes) cut into runs for packs: consecutive numbers, each
/// run as long as it stays under [`BYTES`] (a single larger record is a run of its own).
pub(super) fn runs(records: &[(u64, Vec<u8>)]) -> Vec<&[(u64, Vec<u8>)]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, (seq, bytes)) in records.iter().enumerate() {
        let follows = i > start && records[i - 1].0.checked_add(1) == Some(*seq);
        let fits = size + 4 + bytes.len() <= BYTES;
        if i > start && !(follows && fits) {
            out.push(&records[start..i]);
            start = i;
            size = 0;
        }
        size += 4 + bytes.len();
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt {
        tree: "audit",
        source: serde::de::Error::custom(format!("a pack of records: {what}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_round_trip_and_single_records_read_as_one() {
        let records: [&[u8]; 3] = [b"{\"seq\":1}", b"", b"{\"seq\":3}"];
        let value = pack(records);
        assert_eq!(unpack(&value).unwrap(), records);
        assert_eq!(unpack(b"{\"seq\":7}").unwrap(), [b"{\"seq\":7}"]);
    }

    #[test]
    fn a_cut_pack_is_refused() {
        let value = pack([b"{\"seq\":1}".as_slice(), b"{\"seq\":2}"]);
        for end in 1..value.len() {
            let cut = &value[..end];
            let whole_records = unpack(cut).map(|r| r.len());
            assert!(
                whole_records.is_err() || end == 1 + 4 + 9,
                "cut at {end}: {whole_records:?}"
            );
        }
        assert!(unpack(&[MARK]).is_err());
    }

    // A trail written one record a value reads on, and packs are appended after it; a
    // range, a get and a removal cross from the old values into packs.
    #[tokio::test]
    async fn packs_follow_single_records() {
        use crate::store::backend::Backend;
        let sled = crate::store::SledStore::temporary().unwrap();
        let tree = sled.db().open_tree("audit").unwrap();
        let store: &dyn Backend = &sled;
        for seq in 1u64..=2 {
            tree.insert(seq.to_be_bytes(), format!("{{\"seq\":{seq}}}").as_bytes())
                .unwrap();
        }
        let mut heads = Vec::new();
        let mut chain = |head: Option<(u64, Vec<u8>)>| {
            heads.push(head.clone());
            let next = head.map_or(1, |(seq, _)| seq + 1);
            (next..next + 3)
                .map(|s| (s, format!("{{\"seq\":{s}}}").into_bytes()))
                .collect()
        };
        store.audit_append(&mut chain).await.unwrap();
        store.audit_append(&mut chain).await.unwrap();
        assert_eq!(heads[0], Some((2, b"{\"seq\":2}".to_vec())));
        assert_eq!(heads[1], Some((5, b"{\"seq\":5}".to_vec())));
        assert_eq!(tree.len(), 4, "two old values and two packs");
        let all = store.audit_range(0, 100).await.unwrap();
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
        assert!(all.iter().all(|(s, b)| *b == format!("{{\"seq\":{s}}}").into_bytes()));
        assert_eq!(
            store
                .audit_range(4, 3)
                .await
                .unwrap()
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
            [4, 5, 6]
        );
        assert_eq!(store.audit_get(7).await.unwrap().unwrap(), b"{\"seq\":7}");
        assert_eq!(store.audit_get(9).await.unwrap(), None);
        assert_eq!(store.audit_remove_before(4).await.unwrap(), 3);
        assert_eq!(store.audit_range(0, 100).await.unwrap()[0].0, 4);
        assert_eq!(store.audit_last().await.unwrap().unwrap().0, 8);
    }

    #[test]
    fn runs_are_consecutive_and_bounded() {
        let big = vec![b'x'; BYTES / 3];
        let records: Vec<(u64, Vec<u8>)> = (1..=7)
            .map(|s| (s, big.clone()))
            .chain([(9, b"gap".to_vec())])
            .collect();
        let runs = runs(&records);
        let shape: Vec<Vec<u64>> = runs.iter().map(|r| r.iter().map(|(s, _)| *s).collect()).collect();
        assert_eq!(shape, [vec![1, 2], vec![3, 4], vec![5, 6], vec![7], vec![9]]);
        let huge = vec![(1, vec![b'x'; BYTES * 2]), (2, b"a".to_vec())];
        assert_eq!(super::runs(&huge).len(), 2);
        assert!(super::runs(&[]).is_empty());
    }
}
