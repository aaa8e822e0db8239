//! A small map of lookup answers that expire: the one cache of [`super::KubeCluster`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A map whose entries expire `ttl` after insertion and that never holds more than `max`
/// entries: when full, expired entries go first, then the oldest one. Time is passed in so
/// tests need no clock.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// A cache; `ttl` zero or `max` zero disables it.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        // A panic while holding the lock cannot leave the map half-updated: recover it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    /// The value stored under `key`, if it has not expired at `now`.
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((at, v)) if self.fresh(*at, now) => Some(v.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key` as of `now`.
    pub fn insert(&self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.max && !entries.contains_key(&key) {
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < self.ttl);
            if entries.len() >= self.max
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now, value));
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.insert("a", 1, t0);
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(4)), Some(1));
        assert_eq!(cache.get(&"a", t0 + Duration::from_secs(5)), None);
        assert!(cache.is_empty(), "an expired entry is dropped when read");
    }

    #[test]
    fn full_cache_drops_expired_entries_first_then_the_oldest() {
        let cache = TtlCache::new(Duration::from_secs(5), 2);
        let t0 = Instant::now();
        cache.insert("old", 1, t0);
        cache.insert("newer", 2, t0 + Duration::from_secs(1));
        cache.insert("third", 3, t0 + Duration::from_secs(2));
        assert_eq!(cache.len(), 2);
        let now = t0 + Duration::from_secs(2);
        assert_eq!(cache.get(&"old", now), None);
        assert_eq!(cache.get(&"newer", now), Some(2));
        assert_eq!(cache.get(&"third", now), Some(3));

        // Both expired by now: they make room before anything fresh is evicted.
        let later = t0 + Duration::from_secs(10);
        cache.insert("fourth", 4, later);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_never_grows_beyond_its_bound() {
        let cache = TtlCache::new(Duration::from_secs(60), 16);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            cache.insert(i, i, t0 + Duration::from_millis(i));
        }
        assert_eq!(cache.len(), 16);
        assert_eq!(cache.get(&999, t0 + Duration::from_secs(1)), Some(999));
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = TtlCache::new(Duration::ZERO, 16);
        cache.insert("a", 1, Instant::now());
        assert!(cache.is_empty());
    }
}
