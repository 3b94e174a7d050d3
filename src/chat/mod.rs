//! Chat notifications: telling people what happened.
//!
//! [`Notifier`] receives one message per milestone, keyed by a stable event id
//! (`<task>#<seq>`). Delivery is find-or-create: [`LogNotifier`] checks its own log for the
//! id before appending, so a reconciler that crashed after posting and before recording it
//! never posts twice. The Slack bot is a separate process that reads the state repository.

pub mod slack;
pub mod webhook;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// A message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Stable id: the same event always has the same id.
    pub id: String,
    /// `category/project/task`.
    pub task: String,
    /// One readable line.
    pub text: String,
}

/// Errors of notifiers.
#[derive(Debug, thiserror::Error)]
#[error("notify: {0}")]
pub struct NotifyError(pub String);

/// Delivers notifications; delivering the same id twice delivers it once.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Delivers `n` unless an earlier call already delivered its id; says whether this call
    /// delivered it.
    async fn notify(&self, n: &Notification) -> Result<bool, NotifyError>;
}

/// One line per notification to a log file (deduplicated by id) and, optionally, stdout.
#[derive(Debug)]
pub struct LogNotifier {
    path: Option<PathBuf>,
    echo: bool,
    /// Ids already in the log, read once from the file and kept up to date.
    delivered: Mutex<Option<std::collections::HashSet<String>>>,
}

impl LogNotifier {
    /// Logs to `path` (when given) and echoes to stdout when `echo`.
    pub fn new(path: Option<PathBuf>, echo: bool) -> Self {
        Self {
            path,
            echo,
            delivered: Mutex::new(None),
        }
    }

    /// The delivered lines, in order, as `(id, task, text)`.
    pub fn read(path: &std::path::Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, '\t');
                Some((
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                    it.next()?.to_string(),
                ))
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<bool, NotifyError> {
        let mut delivered = self
            .delivered
            .lock()
            .map_err(|_| NotifyError("log lock poisoned".into()))?;
        if let Some(path) = &self.path {
            let ids = delivered
                .get_or_insert_with(|| Self::read(path).into_iter().map(|(id, _, _)| id).collect());
            if ids.contains(&n.id) {
                return Ok(false);
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| NotifyError(e.to_string()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| NotifyError(e.to_string()))?;
            let text = n.text.replace(['\n', '\t'], " ");
            writeln!(f, "{}\t{}\t{}", n.id, n.task, text)
                .map_err(|e| NotifyError(e.to_string()))?;
            f.sync_data().map_err(|e| NotifyError(e.to_string()))?;
            ids.insert(n.id.clone());
        }
        if self.echo {
            println!("[{}] {}", n.task, n.text);
        }
        Ok(true)
    }
}
