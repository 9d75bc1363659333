//! Packs: consecutive audit records that earlier versions kept in one value of the audit
//! tree, under the first one's sequence number; read once, when they are moved into the
//! trail's file.
//!
//! A pack is [`MARK`] then, per record, its length (`u32`, big-endian) and its bytes. A
//! value that does not start with the mark is a single record: a record is JSON, so it
//! never does, and trails written one record a value read as they always did.

use crate::store::{Result, StoreError};

/// The first byte of a pack.
const MARK: u8 = 0;
/// One value holding `records`, in order (as earlier versions wrote them).
#[cfg(test)]
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
}
