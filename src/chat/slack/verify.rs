//! Verifying Events API requests: `X-Slack-Signature` is `v0=` + HMAC-SHA256 of
//! `v0:{X-Slack-Request-Timestamp}:{body}` with the app's signing secret. Requests older (or
//! newer) than five minutes are refused, the signature is compared in constant time, and a
//! signature seen before within the window is a replay.
//!
//! The signatures accepted within the window are also written to a file in the bot's data
//! dir before the request is acted on, so a request captured and replayed after the bot
//! restarts is still refused. The data dir, not the state repository: the record is only
//! this process's, lives five minutes, and a commit per click would be noise in the history
//! that people read. The file holds at most [`MAX_SEEN`] entries; past that, requests are
//! refused until old ones leave the window, never forgotten early.

use std::collections::VecDeque;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds.
pub const WINDOW_SECS: i64 = 300;

/// Signatures remembered at most (within one window).
pub const MAX_SEEN: usize = 10_000;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header is missing or malformed.
    #[error("missing or malformed {0}")]
    Malformed(&'static str),
    /// The timestamp is outside the five-minute window.
    #[error("request timestamp {0}s away from now (more than 5 minutes)")]
    Stale(i64),
    /// The signature does not match.
    #[error("bad signature")]
    BadSignature,
    /// The same signed request was seen before.
    #[error("replayed request")]
    Replay,
    /// More signed requests within the window than can be remembered.
    #[error("too many requests within five minutes")]
    Full,
    /// The record of accepted requests could not be written: refused rather than forgotten.
    #[error("cannot record the request: {0}")]
    Record(String),
}

/// Checks signed requests with one signing secret.
pub struct Verifier {
    secret: Vec<u8>,
    seen: Mutex<VecDeque<(i64, Vec<u8>)>>,
    /// Where accepted signatures are kept across restarts.
    record: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl Verifier {
    /// A verifier for `secret` (never logged).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
            seen: Mutex::new(VecDeque::new()),
            record: None,
        }
    }

    /// A verifier that remembers accepted signatures in `path` (`<timestamp> <hex>` lines),
    /// starting with those an earlier process recorded there.
    pub fn with_record(secret: impl Into<Vec<u8>>, path: impl Into<std::path::PathBuf>) -> Self {
        let path = path.into();
        let seen = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (ts, sig) = l.split_once(' ')?;
                Some((ts.parse().ok()?, hex::decode(sig.trim()).ok()?))
            })
            .collect();
        Self {
            secret: secret.into(),
            seen: Mutex::new(seen),
            record: Some(path),
        }
    }

    /// Appends an accepted signature to the record, durably; rewrites the record without
    /// the expired ones when some left the window.
    fn remember(&self, seen: &VecDeque<(i64, Vec<u8>)>, pruned: bool) -> Result<(), VerifyError> {
        let Some(path) = &self.record else {
            return Ok(());
        };
        let fail = |e: std::io::Error| VerifyError::Record(format!("{}: {e}", path.display()));
        if pruned {
            let text: String = seen
                .iter()
                .map(|(t, s)| format!("{t} {}\n", hex::encode(s)))
                .collect();
            return crate::fsutil::write_atomic(path, text.as_bytes(), Some(0o600)).map_err(fail);
        }
        use std::io::Write as _;
        let Some((t, s)) = seen.back() else {
            return Ok(());
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(fail)?;
        f.write_all(format!("{t} {}\n", hex::encode(s)).as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(fail)
    }

    /// The `X-Slack-Signature` value for `timestamp` and `body` (for fakes and tests).
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v0={}",
            hex::encode(self.mac(timestamp, body).finalize().into_bytes())
        )
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(format!("v0:{timestamp}:").as_bytes());
        mac.update(body);
        mac
    }

    /// Accepts the request once, at `now` (Unix seconds).
    pub fn verify(
        &self,
        now: i64,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let ts: i64 = timestamp
            .and_then(|t| t.trim().parse().ok())
            .ok_or(VerifyError::Malformed("X-Slack-Request-Timestamp"))?;
        let sig = signature
            .and_then(|s| s.trim().strip_prefix("v0="))
            .and_then(|h| hex::decode(h).ok())
            .ok_or(VerifyError::Malformed("X-Slack-Signature"))?;
        let skew = now - ts;
        if skew.abs() > WINDOW_SECS {
            return Err(VerifyError::Stale(skew));
        }
        self.mac(ts, body)
            .verify_slice(&sig)
            .map_err(|_| VerifyError::BadSignature)?;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = seen.len();
        seen.retain(|(t, _)| (now - t).abs() <= WINDOW_SECS);
        let pruned = seen.len() != before;
        if seen.iter().any(|(_, s)| *s == sig) {
            return Err(VerifyError::Replay);
        }
        if seen.len() >= MAX_SEEN {
            return Err(VerifyError::Full);
        }
        seen.push_back((ts, sig));
        if let Err(e) = self.remember(&seen, pruned) {
            seen.pop_back();
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_pass_once_and_everything_else_is_refused() {
        let v = Verifier::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=x&command=%2Fopencode&text=start";
        let now = 1_700_000_000;
        let sig = v.sign(now - 10, body);
        let ts = (now - 10).to_string();
        assert_eq!(v.verify(now, Some(&ts), Some(&sig), body), Ok(()));
        assert_eq!(
            v.verify(now, Some(&ts), Some(&sig), body),
            Err(VerifyError::Replay)
        );
        let other = Verifier::new("another secret");
        let forged = other.sign(now, body);
        assert_eq!(
            v.verify(now, Some(&now.to_string()), Some(&forged), body),
            Err(VerifyError::BadSignature)
        );
        let tampered = v.sign(now, body);
        assert_eq!(
            v.verify(
                now,
                Some(&now.to_string()),
                Some(&tampered),
                b"token=x&text=stop"
            ),
            Err(VerifyError::BadSignature)
        );
        let old = now - 301;
        assert_eq!(
            v.verify(now, Some(&old.to_string()), Some(&v.sign(old, body)), body),
            Err(VerifyError::Stale(301))
        );
        assert_eq!(
            v.verify(now, None, Some(&sig), body),
            Err(VerifyError::Malformed("X-Slack-Request-Timestamp"))
        );
        assert_eq!(
            v.verify(now, Some(&ts), Some("v1=abc"), body),
            Err(VerifyError::Malformed("X-Slack-Signature"))
        );
    }

    #[test]
    fn a_replay_after_a_restart_is_still_refused() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("slack-seen");
        let body = b"payload=%7B%22type%22%3A%22block_actions%22%7D";
        let now = 1_700_000_000;
        let first = Verifier::with_record("secret", &record);
        let sig = first.sign(now, body);
        let ts = now.to_string();
        assert_eq!(first.verify(now, Some(&ts), Some(&sig), body), Ok(()));
        drop(first);
        // A new process, the same data dir: the captured request is refused.
        let again = Verifier::with_record("secret", &record);
        assert_eq!(
            again.verify(now + 60, Some(&ts), Some(&sig), body),
            Err(VerifyError::Replay)
        );
        // Once out of the window the record forgets it (and the request is stale anyway).
        let later = now + WINDOW_SECS + 10;
        let fresh = again.sign(later, body);
        assert_eq!(
            again.verify(later, Some(&later.to_string()), Some(&fresh), body),
            Ok(())
        );
        let kept = std::fs::read_to_string(&record).unwrap();
        assert_eq!(kept.lines().count(), 1, "{kept}");
    }

    #[test]
    fn matches_slacks_documented_example() {
        // The example in Slack's "Verifying requests from Slack" guide.
        let v = Verifier::new("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            v.sign(1531420618, body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }
}
