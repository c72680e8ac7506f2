//! Conflation keys and the index that finds the waiting frames of a key without a scan.
//!
//! Pure data: no I/O, no clock. The index exists only while a slow connection needs it (see
//! [`KeyIndex`]); a connection that keeps up never hashes a key.

use std::{
    collections::{hash_map::RandomState, HashMap},
    hash::{BuildHasher, Hasher},
    sync::OnceLock,
};

/// What makes two published frames interchangeable: same topic, same key within the topic.
///
/// `Copy`, 16 bytes, compared and hashed as two integers: offering a keyed frame allocates
/// nothing. `topic` is the topic's id in the worker's topic table. `key` is opaque to the
/// queue: an id interned per topic (exact) or a 64-bit hash of the key string (two keys of a
/// topic collide with probability about n²/2⁶⁵ for n keys, and a collision would conflate
/// them). The topic table decides which; the queue only compares for equality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConflationKey {
    /// The key within the topic (interned id or 64-bit hash).
    pub key: u64,
    /// The topic's id in the worker's topic table.
    pub topic: u32,
}

impl ConflationKey {
    /// A key for `key` within `topic`.
    pub const fn new(topic: u32, key: u64) -> Self {
        Self { key, topic }
    }
}

/// What the index knows of one key: the id of its newest waiting frame and how many of its
/// frames are waiting (queued, not started, not removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Waiting {
    /// Id of the newest waiting frame with the key.
    pub(super) newest: u32,
    /// Waiting frames with the key (at least 1: a key with none has no entry).
    pub(super) count: u32,
}

/// Key → its newest waiting data frame and the number of its waiting frames, or not built at
/// all.
///
/// Ids are data-lane ids: the slot at the front of the data lane has id `base` (kept by the
/// queue), the next `base + 1`, wrapping in `u32` (a lane never holds 2³² slots). Removed
/// frames (tombstones) keep their slot, and so their id, until the lane is compacted, which
/// resets the index.
///
/// While not `live`, the map is empty and nothing maintains it: a connection whose queue stays
/// under half its bound pays nothing for conflation. The first offer that needs a lookup
/// builds it with one pass over the data lane; from then on every push, pop, conflation and
/// discard keeps it exact, until the data lane runs empty or is compacted, which makes it not
/// live again (its capacity is kept until the lanes are released by `shrink`).
#[derive(Debug, Default)]
pub(super) struct KeyIndex {
    map: HashMap<ConflationKey, Waiting, KeyHasherBuilder>,
    live: bool,
}

impl KeyIndex {
    /// Whether the index is built and must be maintained.
    pub(super) fn is_live(&self) -> bool {
        self.live
    }

    /// Build from `(id, key)` of every waiting keyed frame in the data lane, front to back, so
    /// each key maps to its newest frame and its count.
    pub(super) fn build(&mut self, keyed: impl Iterator<Item = (u32, ConflationKey)>) {
        self.map.clear();
        for (id, key) in keyed {
            let w = self.map.entry(key).or_insert(Waiting {
                newest: id,
                count: 0,
            });
            w.newest = id;
            w.count += 1;
        }
        self.live = true;
    }

    /// The newest waiting frame of `key` and the count (only meaningful while live).
    pub(super) fn get(&self, key: &ConflationKey) -> Option<Waiting> {
        debug_assert!(self.live);
        self.map.get(key).copied()
    }

    /// A keyed frame with `id` was appended to the data lane.
    pub(super) fn pushed(&mut self, key: ConflationKey, id: u32) {
        if self.live {
            let w = self.map.entry(key).or_insert(Waiting {
                newest: id,
                count: 0,
            });
            w.newest = id;
            w.count += 1;
        }
    }

    /// The newest waiting frame of `key` was removed and a frame with `key` and `id` appended
    /// in its stead: same count, new newest.
    pub(super) fn replaced(&mut self, key: ConflationKey, id: u32) {
        if self.live {
            let w = self.map.get_mut(&key);
            debug_assert!(w.is_some(), "a replaced key is indexed");
            if let Some(w) = w {
                w.newest = id;
            }
        }
    }

    /// The oldest waiting frame of `key` left the front of the data lane (it is being
    /// written): one fewer waiting, and no entry once none is.
    pub(super) fn popped(&mut self, key: ConflationKey) {
        if !self.live {
            return;
        }
        if let Some(w) = self.map.get_mut(&key) {
            w.count -= 1;
            if w.count == 0 {
                self.map.remove(&key);
            }
        } else {
            debug_assert!(false, "a popped key is indexed");
        }
    }

    /// The data lane is empty or was compacted: forget everything (the capacity stays for the
    /// next episode).
    pub(super) fn reset(&mut self) {
        self.map.clear();
        self.live = false;
    }

    /// Number of keys indexed.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The entries, for checking against a rebuild.
    #[cfg(test)]
    pub(super) fn snapshot(&self) -> HashMap<ConflationKey, Waiting> {
        self.map.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Bytes the index may hold per entry in the worst case: key, entry and control byte, over
    /// a table that has just doubled (load 7/16 of its buckets).
    pub(super) const WORST_BYTES_PER_ENTRY: usize =
        (std::mem::size_of::<(ConflationKey, Waiting)>() + 1) * 16 / 7 + 1;
}

/// Builds [`KeyHasher`]s seeded with one random value per process.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyHasherBuilder {
    seed: u64,
}

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x636f_7265_6361_7374_u64));
        Self { seed }
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.seed)
    }
}

/// A folded-multiply hasher for the two integers of a [`ConflationKey`]: a few cycles instead
/// of SipHash's tens. The random seed keeps the bucket layout unpredictable to a publisher
/// choosing keys, and the table never holds more entries than the queue holds frames.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyHasher(u64);

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for KeyHasher {
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = fold(self.0 ^ n, MUL);
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold(self.0, self.0 ^ MUL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_sixteen_bytes_and_copy() {
        assert_eq!(std::mem::size_of::<ConflationKey>(), 16);
        let k = ConflationKey::new(3, 7);
        let same = k;
        assert_eq!(k, same);
        assert_ne!(k, ConflationKey::new(4, 7));
        assert_ne!(k, ConflationKey::new(3, 8));
    }

    #[test]
    fn hashes_spread_over_low_and_high_bits() {
        let b = KeyHasherBuilder::default();
        let mut low = std::collections::HashSet::new();
        let mut high = std::collections::HashSet::new();
        for key in 0..256u64 {
            let h = b.hash_one(ConflationKey::new(1, key));
            low.insert(h & 0xff);
            high.insert(h >> 57);
        }
        // Sequential keys must not land in a handful of buckets or control groups.
        assert!(low.len() > 120, "low bits: {}", low.len());
        assert!(high.len() > 100, "high bits: {}", high.len());
    }

    #[test]
    fn index_tracks_the_newest_frame_and_count_of_each_key() {
        let a = ConflationKey::new(1, 1);
        let b = ConflationKey::new(1, 2);
        let w = |newest, count| Some(Waiting { newest, count });
        let mut ix = KeyIndex::default();
        ix.pushed(a, 0); // not live: ignored
        assert!(!ix.is_live());
        ix.build([(0, a), (1, b), (2, a)].into_iter());
        assert_eq!(ix.get(&a), w(2, 2));
        assert_eq!(ix.get(&b), w(1, 1));
        ix.popped(a); // the older frame of `a`: the entry stays, one fewer waiting
        assert_eq!(ix.get(&a), w(2, 1));
        ix.replaced(a, 3); // its newest removed, a new one appended
        assert_eq!(ix.get(&a), w(3, 1));
        ix.popped(b);
        assert_eq!(ix.get(&b), None);
        ix.pushed(b, 4);
        ix.pushed(b, 5);
        assert_eq!(ix.get(&b), w(5, 2));
        assert_eq!(ix.len(), 2);
        ix.reset();
        assert!(!ix.is_live());
        assert_eq!(ix.len(), 0);
    }
}
