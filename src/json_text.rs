//! The bytes a JSON string cannot hold as they are, found eight at a time: shared by the
//! audit records' encoding (which copies text with none of them whole) and the response
//! field lists' scan (which reads strings up to the next one).

/// The offset of the first byte in `s` that a JSON string must escape: a control
/// character (below 0x20), `"` or `\`. Eight bytes at a time: each word is tested for a
/// byte below 0x20 and for a zero byte after xor with either character, a test whose
/// lowest hit is always a true one (a false hit needs a borrow from a true hit below
/// it); bytes from 0x80 up never hit. The last bytes are the text's last word
/// (overlapping the one before, whose bytes are known clean), or one at a time when the
/// text is shorter than a word.
#[inline]
pub fn special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    let hits = |word: &[u8; 8]| {
        let w = u64::from_le_bytes(*word);
        let below = |w: u64, bound: u64| w.wrapping_sub(ONES * bound) & !w & HIGH;
        below(w, 0x20) | below(w ^ QUOTE, 1) | below(w ^ BACKSLASH, 1)
    };
    let first = |hits: u64| (hits.trailing_zeros() / 8) as usize;
    let (words, tail) = s.as_chunks::<8>();
    for (n, word) in words.iter().enumerate() {
        let found = hits(word);
        if found != 0 {
            return Some(n * 8 + first(found));
        }
    }
    match s.last_chunk::<8>() {
        Some(last) if !tail.is_empty() => Some(hits(last)).filter(|&h| h != 0).map(|h| s.len() - 8 + first(h)),
        Some(_) => None,
        None => tail.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\'),
    }
}

#[cfg(test)]
mod tests {
    use super::special;

    /// The first byte to escape is found wherever it is (in a word, in the tail, in the
    /// overlapping last word, at any of a word's places), among bytes of every other
    /// value, with a later one after it; none where there is none.
    #[test]
    fn finds_the_first_byte_to_escape() {
        let escaped = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        for len in 0..=24 {
            for fill in [b'a', 0x7f, 0x80, 0xff, b'!', b'#', 0x21, b']', 0x20] {
                assert_eq!(special(&vec![fill; len]), None, "{len} x {fill:#x}");
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut text = vec![fill; len];
                        text[at] = b;
                        if at + 1 < len {
                            text[len - 1] = b'"';
                        }
                        let want = if escaped(b) {
                            Some(at)
                        } else {
                            (at + 1 < len).then_some(len - 1)
                        };
                        assert_eq!(special(&text), want, "{b:#x} at {at} of {len}, among {fill:#x}");
                    }
                }
            }
        }
    }
}
