//! The poster's loop: after each state change, again shortly after a failure, recording the
//! threads' `slack.yaml` once posting pauses, and keeping opened Home tabs current.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Poster;
use crate::chat::slack::bot::Bot;
use crate::store::tracker::Wake;

/// How long records may lag behind posts while more posts keep coming.
const RECORD_AFTER: Duration = Duration::from_secs(2);

/// Runs the poster: after each state change, again shortly after a failure, and records
/// the threads' `slack.yaml` once posting pauses.
pub async fn run(bot: Arc<Bot>, mut wakes: mpsc::UnboundedReceiver<Wake>) {
    let mut poster = Poster::new(bot);
    let mut backoff = Duration::from_secs(1);
    let mut retry_at: Option<Instant> = None;
    let mut record_at: Option<Instant> = None;
    // The Home tabs people opened follow the state, at most every REFRESH_EVERY.
    let mut home_at: Option<Instant> = None;
    let mut home_last = Instant::now();
    loop {
        let next = [retry_at, record_at, home_at].into_iter().flatten().min();
        let woke = match next {
            Some(at) => match tokio::time::timeout_at(at, wakes.recv()).await {
                Ok(None) => return,
                Ok(Some(_)) => true,
                Err(_) => false,
            },
            None => match wakes.recv().await {
                None => return,
                Some(_) => true,
            },
        };
        let now = Instant::now();
        if woke || retry_at.is_some_and(|t| t <= now) {
            while wakes.try_recv().is_ok() {}
            match poster.sync_all().await {
                Ok(()) => {
                    retry_at = None;
                    backoff = Duration::from_secs(1);
                }
                Err(_) => {
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
            if poster.behind() && record_at.is_none() {
                record_at = Some(Instant::now() + RECORD_AFTER);
            }
            if home_at.is_none() {
                home_at =
                    Some((home_last + crate::chat::slack::home::REFRESH_EVERY).max(Instant::now()));
            }
        }
        if home_at.is_some_and(|t| t <= Instant::now()) {
            poster.bot.refresh_homes().await;
            home_last = Instant::now();
            home_at = None;
        }
        if record_at.is_some_and(|t| t <= Instant::now()) {
            poster.record();
            record_at = None;
        }
    }
}
