//! Following a builder's event stream (`GET /event`): it only wakes the task whose session
//! did something and records the last significant event; what happened is read from the
//! history, so a gap in the stream loses nothing.

use super::*;

/// Follows `GET /event` of one server, waking tasks and recording the last event.
pub(super) struct Follower {
    pub(super) client: Client,
    pub(super) tasks: Arc<Mutex<HashMap<String, TaskRef>>>,
    pub(super) wake: Option<WakeTask>,
    pub(super) project: ProjectRef,
    pub(super) state_dir: PathBuf,
}

impl Follower {
    pub(super) async fn run(self) {
        let mut failures = 0u32;
        let name = self.project.builder_name();
        let mut last_saved = 0i64;
        loop {
            match self.client.events().await {
                Ok(mut stream) => {
                    failures = 0;
                    // After any gap, every task of the project re-syncs from the history.
                    self.wake_all();
                    while let Some(ev) = stream.next().await {
                        let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
                        if !significant(&ev) {
                            continue;
                        }
                        if let Some(session) = session_of(&ev)
                            && let Some(task) = self.task_of(session)
                            && let Some(w) = &self.wake
                        {
                            w(&task);
                        }
                        let now = now_ms();
                        if now - last_saved > 1000 {
                            last_saved = now;
                            let line = serde_json::to_vec(&(kind, now)).unwrap_or_default();
                            let _ = write_atomic(
                                &last_event_path(&self.state_dir, &name),
                                &line,
                                0o644,
                            );
                        }
                    }
                    tracing::info!(builder = %name, "OpenCode event stream ended; reconnecting");
                    self.wake_all();
                }
                Err(e) => {
                    tracing::debug!(builder = %name, error = %e, "cannot follow OpenCode events");
                    if failures == 2 {
                        // The server may be down: let the tasks find out and restart it.
                        self.wake_all();
                    }
                }
            }
            failures += 1;
            let backoff =
                Duration::from_millis(250u64 << failures.min(6)).min(Duration::from_secs(10));
            tokio::time::sleep(backoff).await;
        }
    }

    fn task_of(&self, session: &str) -> Option<TaskRef> {
        self.tasks.lock().ok()?.get(session).cloned()
    }

    fn wake_all(&self) {
        let Some(w) = &self.wake else { return };
        let tasks: Vec<TaskRef> = self
            .tasks
            .lock()
            .map(|m| {
                m.values()
                    .filter(|t| t.project == self.project)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for t in tasks {
            w(&t);
        }
    }
}

/// Events worth a reconcile (not the token-by-token deltas).
pub fn significant(ev: &Value) -> bool {
    let kind = ev.get("type").and_then(Value::as_str).unwrap_or("");
    let props = ev.get("properties");
    match kind {
        "todo.updated" | "session.idle" | "session.status" | "session.error" => true,
        k if k.starts_with("question.") || k.starts_with("permission.") => true,
        "message.updated" => props
            .and_then(|p| p.get("info"))
            .is_some_and(|i| i.pointer("/time/completed").is_some() || i.get("error").is_some()),
        "message.part.updated" => props.and_then(|p| p.get("part")).is_some_and(|p| {
            p.get("type").and_then(Value::as_str) == Some("tool")
                && matches!(
                    p.pointer("/state/status").and_then(Value::as_str),
                    Some("completed" | "error" | "running")
                )
        }),
        _ => false,
    }
}

/// The session an event is about.
pub fn session_of(ev: &Value) -> Option<&str> {
    let p = ev.get("properties")?;
    p.get("sessionID")
        .or_else(|| p.pointer("/info/sessionID"))
        .or_else(|| p.pointer("/part/sessionID"))
        .and_then(Value::as_str)
}
