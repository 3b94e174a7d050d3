//! Reading only what is new in a session: the settled start of each session's history
//! ([`Tail`]) is kept in memory and in `<data>/opencode/tails/<session>.json`, so a poll — in
//! this process or after a restart — asks OpenCode only for the messages after it.

use super::history::{Message, Tail};
use super::*;

/// The first page asked for beyond what is already known to be unsettled.
const FIRST_PAGE: usize = 8;

fn tail_path(dir: &Path, session: &str) -> Option<PathBuf> {
    // Session ids come from OpenCode (`ses_…`): only such a name becomes a path.
    let ok = !session.is_empty()
        && session.len() <= 64
        && session
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then(|| dir.join("tails").join(format!("{session}.json")))
}

/// Removes a finished session's settled start from `<data>/opencode` (`gaffer gc`); true
/// when there was one.
pub fn remove_tail_file(state_dir: &Path, session: &str) -> bool {
    tail_path(state_dir, session).is_some_and(|p| std::fs::remove_file(p).is_ok())
}

impl Inner {
    /// The session's settled start, from memory or its file (nothing settled when neither).
    fn tail(&self, session: &str) -> Tail {
        if let Some(t) = self.tails.lock().ok().and_then(|m| m.get(session).cloned()) {
            return t;
        }
        tail_path(&self.cfg.state_dir, session)
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Keeps a settled start that moved on. Losing the file costs one full read, never an
    /// event: what is settled stays settled, so an older file is still right.
    pub(super) fn keep_tail(&self, session: &str, tail: &Tail) {
        let changed = self
            .tails
            .lock()
            .map(|mut m| m.insert(session.to_string(), tail.clone()).as_ref() != Some(tail))
            .unwrap_or(false);
        if changed
            && let Some(p) = tail_path(&self.cfg.state_dir, session)
            && let Ok(bytes) = serde_json::to_vec(tail)
            && let Err(e) = write_atomic(&p, &bytes, 0o644)
        {
            tracing::debug!(session, error = %e, "cannot keep the session's settled start");
        }
    }

    /// Forgets a session's settled start (its task is gone).
    pub(super) fn forget_tail(&self, session: &str) {
        if let Ok(mut m) = self.tails.lock() {
            m.remove(session);
        }
        if let Some(p) = tail_path(&self.cfg.state_dir, session) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The messages after the session's settled start, and that start: the whole history
    /// when nothing is settled yet or the settled message is gone.
    pub(super) async fn unsettled(
        &self,
        client: &Client,
        session: &str,
    ) -> Result<(Tail, Vec<Message>), client::ClientError> {
        let tail = self.tail(session);
        if let Some(last) = &tail.last_id {
            match client.messages_after(session, last, FIRST_PAGE).await? {
                Some(after) => return Ok((tail, after)),
                None => {
                    tracing::info!(
                        session,
                        "the session's history changed under gaffer; reading it all"
                    );
                }
            }
        }
        Ok((Tail::default(), client.messages(session).await?))
    }
}
