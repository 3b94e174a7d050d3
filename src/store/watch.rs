//! Wake-ups: what makes gaffer look at the remote again.
//!
//! - a local remote is watched with notify: its `refs/` directory recursively and its root
//!   (for `packed-refs`); Access events are ignored (our own reads cause them) and any other
//!   event means "re-read refs" after a short debounce;
//! - URL remotes are polled with `git ls-remote`, fetching only when the branch moved;
//! - a verified GitHub push webhook calls [`Waker::wake`] directly;
//! - a periodic full resync runs regardless.
//!
//! [`Syncer`] turns wake-ups into [`Wake`]s: it fetches, advances the [`Tracker`] and hands
//! the changed object keys on.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{StoreError, Tracker, Transport, Wake};

/// Why the syncer looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Startup: load everything.
    Start,
    /// A ref changed on disk.
    Refs,
    /// The poller saw the branch move, to this commit when it could tell.
    Poll(Option<gix::ObjectId>),
    /// A push webhook arrived.
    Webhook,
    /// The periodic full resync.
    Resync,
}

/// Sends wake-ups to a [`Syncer`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Waker(mpsc::UnboundedSender<Reason>);

impl Waker {
    /// Asks the syncer to look again.
    pub fn wake(&self, reason: Reason) {
        let _ = self.0.send(reason);
    }
}

/// Creates a waker and the receiving end for [`Syncer::run`].
pub fn channel() -> (Waker, mpsc::UnboundedReceiver<Reason>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Waker(tx), rx)
}

/// Watches a local bare repository's refs; keep the returned watcher alive.
pub fn watch_refs(git_dir: &Path, waker: Waker) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !matches!(event.kind, EventKind::Access(_))
        {
            waker.wake(Reason::Refs);
        }
    })?;
    watcher.watch(&git_dir.join("refs"), RecursiveMode::Recursive)?;
    watcher.watch(git_dir, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Polls the remote's branch with `git ls-remote` every `interval`, waking when it moved.
pub async fn poll(transport: Transport, interval: Duration, waker: Waker) {
    let mut last: Option<String> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let t = transport.clone();
        match tokio::task::spawn_blocking(move || t.remote_head()).await {
            Ok(Ok(head)) => {
                if last.is_some() && head != last {
                    let seen = head
                        .as_deref()
                        .and_then(|h| gix::ObjectId::from_hex(h.as_bytes()).ok());
                    waker.wake(Reason::Poll(seen));
                }
                last = head;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "polling the state remote failed"),
            Err(_) => return,
        }
    }
}

/// Wakes with [`Reason::Resync`] every `interval`.
pub async fn resync_every(interval: Duration, waker: Waker) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        waker.wake(Reason::Resync);
    }
}

/// Turns wake-ups into [`Wake`]s.
#[derive(Debug)]
pub struct Syncer {
    transport: Transport,
    tracker: Arc<RwLock<Tracker>>,
    debounce: Duration,
}

impl Syncer {
    /// A syncer over `transport` that keeps `tracker` current.
    pub fn new(transport: Transport, tracker: Arc<RwLock<Tracker>>) -> Self {
        Self {
            transport,
            tracker,
            debounce: Duration::from_millis(1),
        }
    }

    /// Sets how long to wait for more events after the first.
    pub fn debounce(mut self, d: Duration) -> Self {
        self.debounce = d;
        self
    }

    /// One step: fetch and advance (or reload everything when `full`).
    pub fn step(&self, full: bool) -> Result<Wake, StoreError> {
        self.step_seen(full, None)
    }

    /// [`Syncer::step`], skipping the fetch when `seen` (the remote's head, as the poller
    /// just saw it) is already ours: the commit the poller saw is usually the one this
    /// process just pushed, and the push already told us about it.
    fn step_seen(&self, full: bool, seen: Option<gix::ObjectId>) -> Result<Wake, StoreError> {
        let head = match seen {
            Some(h) if self.transport.head()? == Some(h) => Some(h),
            _ => self.transport.fetch()?,
        };
        let repo = self.transport.repo();
        let mut tracker = self
            .tracker
            .write()
            .map_err(|_| StoreError::WriterStopped("tracker lock poisoned".into()))?;
        if full {
            tracker.resync(&repo, head)
        } else {
            tracker.advance(&repo, head)
        }
    }

    /// Runs until the waker side closes, sending each non-empty wake to `out`.
    pub async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<Reason>,
        out: mpsc::UnboundedSender<Wake>,
    ) {
        let this = Arc::new(self);
        while let Some(first) = rx.recv().await {
            let mut full = matches!(first, Reason::Start | Reason::Resync);
            // The remote's head, when every wake-up of this batch is a poll that saw it.
            let mut seen = match first {
                Reason::Poll(h) => h,
                _ => None,
            };
            if !this.debounce.is_zero() {
                tokio::time::sleep(this.debounce).await;
            }
            while let Ok(r) = rx.try_recv() {
                full |= matches!(r, Reason::Start | Reason::Resync);
                if r != Reason::Poll(seen) {
                    seen = None;
                }
            }
            // A failed step is tried again (with backoff) rather than left for the next
            // wake-up: the change that woke us may be the last one for a long time.
            let mut backoff = Duration::from_millis(200);
            let wake = loop {
                let s = this.clone();
                let known = seen.take();
                match tokio::task::spawn_blocking(move || s.step_seen(full, known)).await {
                    Ok(Ok(wake)) => break wake,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, retry_in = ?backoff, "syncing the state repository failed; will retry");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        while let Ok(r) = rx.try_recv() {
                            full |= matches!(r, Reason::Start | Reason::Resync);
                        }
                    }
                    Err(_) => return,
                }
            };
            tracing::debug!(target: "gaffer::hop", hop = "synced", keys = wake.keys.len(), head = ?wake.head);
            if wake.force_pushed {
                tracing::error!(
                    head = ?wake.head,
                    "the state branch was force-pushed: history was rewritten by someone else; reloaded from the new head"
                );
            }
            if (!wake.keys.is_empty() || wake.full) && out.send(wake).is_err() {
                return;
            }
        }
    }
}
