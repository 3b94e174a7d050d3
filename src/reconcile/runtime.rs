//! The controller runtime, in kube-runtime's shape: a queue keyed by object with
//! de-duplication, at most one reconcile per object at a time, `Action::requeue` /
//! `await_change`, jittered exponential backoff on errors (reset after success), bounded
//! concurrency, and a graceful shutdown that lets running reconciles finish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use crate::state::path::ObjectKey;

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Action {
    /// Reconcile again after this long, even if nothing changes.
    Requeue(Duration),
    /// Reconcile again only when something changes.
    AwaitChange,
}

impl Action {
    /// Reconcile again after `d`.
    pub fn requeue(d: Duration) -> Self {
        Action::Requeue(d)
    }

    /// Reconcile again when something changes.
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// Backoff after errors: 800 ms doubling to 30 s, with jitter; reset by a success.
pub fn backoff(failures: u32) -> Duration {
    let base = 800u64.saturating_mul(1u64 << failures.min(6)).min(30_000);
    let jitter = fastrand::u64(0..=base / 4);
    Duration::from_millis(base - base / 8 + jitter)
}

/// Handle for scheduling reconciles; cheap to clone.
#[derive(Debug, Clone)]
pub struct Scheduler(mpsc::UnboundedSender<(ObjectKey, Duration)>);

impl Scheduler {
    /// Reconciles `key` after `delay` (merged with any earlier schedule of it).
    pub fn schedule(&self, key: ObjectKey, delay: Duration) {
        let _ = self.0.send((key, delay));
    }

    /// Reconciles `key` as soon as possible.
    pub fn now(&self, key: ObjectKey) {
        self.schedule(key, Duration::ZERO);
    }
}

/// Creates a scheduler and the receiver [`run`] consumes.
pub fn scheduler() -> (Scheduler, mpsc::UnboundedReceiver<(ObjectKey, Duration)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Scheduler(tx), rx)
}

/// Runs reconciles until `shutdown` resolves, then waits for running ones to finish.
pub async fn run<F, Fut, E>(
    mut rx: mpsc::UnboundedReceiver<(ObjectKey, Duration)>,
    concurrency: usize,
    stats: Arc<super::metrics::ReconcileMetrics>,
    reconcile: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(ObjectKey) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(ObjectKey, Result<Action, String>)>();
    let mut due: BTreeMap<ObjectKey, Instant> = BTreeMap::new();
    let mut running: HashSet<ObjectKey> = HashSet::new();
    let mut dirty: HashSet<ObjectKey> = HashSet::new();
    let mut failures: HashMap<ObjectKey, u32> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        let next = due.values().min().copied();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending::<()>().await,
            }
        };
        stats
            .queue_depth
            .store(due.len() as u64, std::sync::atomic::Ordering::Relaxed);
        tokio::select! {
            () = &mut shutdown => break,
            msg = rx.recv() => {
                let Some((key, delay)) = msg else { break };
                let at = Instant::now() + delay;
                if running.contains(&key) && delay.is_zero() {
                    dirty.insert(key);
                } else {
                    let e = due.entry(key).or_insert(at);
                    if at < *e { *e = at; }
                }
            }
            Some((key, result)) = done_rx.recv() => {
                running.remove(&key);
                stats.reconciles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut again = match result {
                    Ok(Action::Requeue(d)) => { failures.remove(&key); Some(d) }
                    Ok(Action::AwaitChange) => { failures.remove(&key); None }
                    Err(e) => {
                        let n = failures.entry(key.clone()).or_insert(0);
                        *n += 1;
                        let d = backoff(*n - 1);
                        tracing::warn!(object = %key, error = %e, retry_in = ?d, "reconcile failed");
                        Some(d)
                    }
                };
                if dirty.remove(&key) {
                    again = Some(Duration::ZERO);
                }
                if let Some(d) = again {
                    let at = Instant::now() + d;
                    let e = due.entry(key).or_insert(at);
                    if at < *e { *e = at; }
                }
            }
            () = sleep => {
                let now = Instant::now();
                let ready: Vec<ObjectKey> = due
                    .iter()
                    .filter(|(k, at)| **at <= now && !running.contains(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in ready {
                    due.remove(&key);
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    running.insert(key.clone());
                    let f = reconcile.clone();
                    let done = done_tx.clone();
                    tokio::spawn(async move {
                        let result = f(key.clone()).await.map_err(|e| e.to_string());
                        drop(permit);
                        let _ = done.send((key, result));
                    });
                }
                // Keys due while still running wait for their reconcile to finish.
                if due.values().all(|at| *at > now) {
                    continue;
                }
                for (k, at) in due.iter_mut() {
                    if running.contains(k) && *at <= now {
                        *at = now + Duration::from_millis(20);
                    }
                }
            }
        }
    }
    // Graceful shutdown: let in-flight reconciles finish.
    let _ = permits.acquire_many(concurrency.max(1) as u32).await;
}
