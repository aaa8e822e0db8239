//! One lookup in flight per question: callers asking the same thing while it runs wait for its
//! answer instead of asking the API again (a burst of pod creates in one namespace makes one
//! list call, not one per pod).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// Lookups in flight, by key.
#[derive(Debug)]
pub struct Coalescer<K, V> {
    in_flight: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Self {
            in_flight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Coalescer<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<OnceCell<V>>>> {
        // The map is only ever inserted into or removed from whole: recover it after a panic.
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer of `lookup` for `key`, run once for every caller that asks while it runs.
    /// Should the caller running it be cancelled (its review timed out), a waiting caller runs
    /// its own `lookup` in its place (`OnceCell::get_or_init`), so nobody waits on a lookup that
    /// nobody drives.
    pub async fn run<F, Fut>(&self, key: K, lookup: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self.lock().entry(key.clone()).or_default().clone();
        let value = cell.get_or_init(lookup).await.clone();
        let mut map = self.lock();
        // Only the entry this call shared: a later lookup under the same key may have started.
        if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&key);
        }
        value
    }

    /// How many lookups are in flight.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_lookup() {
        let coalescer = Arc::new(Coalescer::<&str, usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (c, runs, arrived) = (coalescer.clone(), runs.clone(), arrived.clone());
            tasks.push(tokio::spawn(async move {
                // Counted and joined in one poll: once all 8 are counted, all 8 have joined.
                arrived.fetch_add(1, Ordering::SeqCst);
                c.run("ci", || async {
                    runs.fetch_add(1, Ordering::SeqCst);
                    while arrived.load(Ordering::SeqCst) < 8 {
                        tokio::task::yield_now().await;
                    }
                    42
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task"), 42);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(coalescer.is_empty(), "a finished lookup leaves the map");
    }

    #[tokio::test]
    async fn a_cancelled_lookup_is_taken_over() {
        let coalescer = Coalescer::<&str, usize>::default();
        let mut first = Box::pin(coalescer.run("ci", std::future::pending::<usize>));
        // Polled once, then dropped: the entry stays, its cell uninitialised.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        drop(first);
        assert_eq!(coalescer.len(), 1);
        assert_eq!(coalescer.run("ci", || async { 7 }).await, 7);
        assert!(coalescer.is_empty());
    }
}
