//! Unmasking payloads in place (RFC 6455 5.3): a word-at-a-time routine and a naive reference.
//!
//! Safe code only: the fast path XORs 8-byte words against a key widened to a `u64` (four
//! words per 32-byte block, a shape LLVM turns into vector instructions); the tail is done
//! byte by byte.

/// Bytes per word; a multiple of 4 so every word starts at the same key phase.
const WORD: usize = 8;

/// Bytes per block of the fast path: four words.
const BLOCK: usize = 4 * WORD;

/// XOR one word (exactly `WORD` bytes) with the widened key.
#[inline(always)]
fn xor_word(word: &mut [u8], key: u64) {
    let mut w = [0u8; WORD];
    w.copy_from_slice(word);
    word.copy_from_slice(&(u64::from_le_bytes(w) ^ key).to_le_bytes());
}

/// XOR `buf` with `key`, starting at key byte `offset % 4`; processes whole words at a time.
pub fn unmask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotating the little-endian value right by 8 bits moves key byte 1 to position 0.
    let phase = (offset & 3) as u32;
    let key = u32::from_le_bytes(key).rotate_right(8 * phase);
    let wide = u64::from(key) | (u64::from(key) << 32);
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        for word in block.chunks_exact_mut(WORD) {
            xor_word(word, wide);
        }
    }
    let mut words = blocks.into_remainder().chunks_exact_mut(WORD);
    for word in &mut words {
        xor_word(word, wide);
    }
    // Fewer than 8 bytes left; each 4-byte step keeps the key phase.
    let tail = words.into_remainder();
    let (half, rest) = tail.split_at_mut(tail.len() & 4);
    if let Ok(half) = <&mut [u8; 4]>::try_from(half) {
        *half = (u32::from_le_bytes(*half) ^ key).to_le_bytes();
    }
    for (byte, k) in rest.iter_mut().zip(key.to_le_bytes()) {
        *byte ^= k;
    }
}

/// The byte-at-a-time reference implementation of [`unmask`].
pub fn unmask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset.wrapping_add(i)) & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmask_rfc_example_hello() {
        // RFC 6455 5.7: a masked "Hello".
        let mut buf = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        unmask(&mut buf, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&buf, b"Hello");
    }

    #[test]
    fn unmask_is_an_involution() {
        let orig: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut buf = orig.clone();
        unmask(&mut buf, [9, 8, 7, 6], 3);
        assert_ne!(buf, orig);
        unmask(&mut buf, [9, 8, 7, 6], 3);
        assert_eq!(buf, orig);
    }

    #[test]
    fn unmask_matches_naive_for_all_offsets_and_lengths() {
        let key = [0xA5, 0x3C, 0x01, 0xFF];
        for len in 0..300 {
            let orig: Vec<u8> = (0..len).map(|i| (i * 31 + 17) as u8).collect();
            for offset in 0..8 {
                let mut fast = orig.clone();
                let mut slow = orig.clone();
                unmask(&mut fast, key, offset);
                unmask_naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unmask_in_pieces_equals_unmask_at_once() {
        let key = [1, 2, 3, 4];
        let orig: Vec<u8> = (0..257u32).map(|i| i as u8).collect();
        let mut whole = orig.clone();
        unmask(&mut whole, key, 0);
        for split in 0..orig.len() {
            let mut parts = orig.clone();
            let (a, b) = parts.split_at_mut(split);
            unmask(a, key, 0);
            unmask(b, key, split);
            assert_eq!(parts, whole, "split {split}");
        }
    }

    #[test]
    fn unmask_offset_near_usize_max_does_not_overflow() {
        let mut a = [0u8; 40];
        let mut b = [0u8; 40];
        unmask(&mut a, [1, 2, 3, 4], usize::MAX);
        unmask_naive(&mut b, [1, 2, 3, 4], usize::MAX);
        assert_eq!(a, b);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn unmask_equals_naive(
                data in proptest::collection::vec(any::<u8>(), 0..300),
                key in any::<[u8; 4]>(),
                offset in 0usize..16,
            ) {
                let mut fast = data.clone();
                let mut slow = data;
                unmask(&mut fast, key, offset);
                unmask_naive(&mut slow, key, offset);
                prop_assert_eq!(fast, slow);
            }
        }
    }
}
