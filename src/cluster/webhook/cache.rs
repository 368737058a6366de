//! The webhook's verdict cache: a least-recently-used map from a token's SHA-256 to the verdict,
//! each entry valid for the TTL.
//!
//! Clearing the whole cache when it is full would let anyone who can send TokenReviews flush it
//! (and so push every genuine user's next request to GitHub) with a few thousand junk tokens.
//! Instead the least recently used entry makes room, and authenticated verdicts and refusals live
//! in separate partitions of [`MAX_ENTRIES`] each: junk tokens (all refused) can only evict other
//! refusals, never the verdict of a user who is actually allowed in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Entries per partition (authenticated / refused).
pub const MAX_ENTRIES: usize = 10_000;

/// A token digest: the key (the token itself is never stored).
pub type Digest = [u8; 32];

/// One least-recently-used map with a capacity.
#[derive(Debug)]
pub struct Lru<V> {
    capacity: usize,
    /// digest → (use stamp, stored at, value)
    entries: HashMap<Digest, (u64, Instant, V)>,
    /// use stamp → digest, oldest first
    order: BTreeMap<u64, Digest>,
    stamp: u64,
}

impl<V: Clone> Lru<V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
        }
    }

    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// The value for `key` if it was stored less than `ttl` ago; marks it as just used. An
    /// expired entry is dropped.
    pub fn get(&mut self, key: &Digest, ttl: Duration) -> Option<V> {
        let (stamp, at) = self.entries.get(key).map(|(s, at, _)| (*s, *at))?;
        self.order.remove(&stamp);
        if at.elapsed() >= ttl {
            self.entries.remove(key);
            return None;
        }
        let fresh = self.next_stamp();
        self.order.insert(fresh, *key);
        let entry = self.entries.get_mut(key)?;
        entry.0 = fresh;
        Some(entry.2.clone())
    }

    /// Stores `value` for `key` (now), evicting the least recently used entry when full.
    pub fn insert(&mut self, key: Digest, value: V) {
        self.remove(&key);
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        let stamp = self.next_stamp();
        self.order.insert(stamp, key);
        self.entries.insert(key, (stamp, Instant::now(), value));
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &Digest) {
        if let Some((stamp, _, _)) = self.entries.remove(key) {
            self.order.remove(&stamp);
        }
    }

    /// The number of entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> Digest {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_be_bytes());
        k
    }

    #[test]
    fn the_least_recently_used_entry_makes_room_not_the_whole_cache() {
        let ttl = Duration::from_secs(60);
        let mut lru = Lru::new(MAX_ENTRIES);
        for i in 0..MAX_ENTRIES as u32 {
            lru.insert(key(i), i);
        }
        assert_eq!(lru.len(), MAX_ENTRIES);
        // Entry 0 is used again: entry 1 is now the least recently used.
        assert_eq!(lru.get(&key(0), ttl), Some(0));
        lru.insert(key(1_000_000), 7);
        assert_eq!(lru.len(), MAX_ENTRIES, "one entry left, not all");
        assert_eq!(lru.get(&key(1), ttl), None, "the least recently used was evicted");
        assert_eq!(lru.get(&key(0), ttl), Some(0), "the recently used one stayed");
        assert_eq!(lru.get(&key(2), ttl), Some(2));
        assert_eq!(lru.get(&key(1_000_000), ttl), Some(7));
        // Ten more: the ten least recently used (3..13) go, in order.
        for i in 0..10 {
            lru.insert(key(2_000_000 + i), 0);
        }
        assert_eq!(lru.len(), MAX_ENTRIES);
        assert!((3..13).all(|i| lru.get(&key(i), ttl).is_none()));
        assert_eq!(lru.get(&key(13), ttl), Some(13));
    }

    #[test]
    fn expired_entries_are_not_served_and_reinsertion_refreshes() {
        let mut lru = Lru::new(4);
        lru.insert(key(1), "a");
        assert_eq!(lru.get(&key(1), Duration::ZERO), None);
        assert!(lru.is_empty(), "the expired entry was dropped");
        lru.insert(key(1), "a");
        lru.insert(key(1), "b");
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.get(&key(1), Duration::from_secs(1)), Some("b"));
        lru.remove(&key(1));
        assert!(lru.is_empty());
    }
}
