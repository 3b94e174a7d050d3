//! Replies in a task's thread: a few words act on the task (`stop`, `pause`, `resume`,
//! `retry`, `status`), anything else is a message for its builder.
//!
//! Each act is committed as the spec change a person would make (`cancel: true`,
//! `suspend: true|false`, `retry: N+1` in `task.yaml`, the rest of the file kept as it was)
//! and confirmed in the thread; a message becomes `messages/<id>.yaml`, which the reconciler
//! delivers to the builder's session once. Only users in `authors.slack_users` may do either;
//! anyone else is told so, only them, and nothing is committed. Slack may deliver an event
//! twice: a message's file is named by its Slack timestamp and created once, and an act is
//! remembered by its timestamp for the life of the process.

use std::sync::Arc;

use serde_json::{Value, json};

use super::actions::str_at;
use super::blocks::escape;
use super::bot::Bot;
use crate::names::{Id, TaskRef};
use crate::state::StatePath;
use crate::state::spec::{MessageSpec, TaskSpec, refuses_messages};
use crate::state::status::Phase;
use crate::store::Update;

/// A word that acts on the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// `stop` (or `cancel`): `cancel: true`.
    Stop,
    /// `pause` (or `suspend`): `suspend: true`.
    Pause,
    /// `resume` (or `unpause`): `suspend: false`.
    Resume,
    /// `retry`: `retry: N+1` on a failed task.
    Retry,
    /// `status`: a summary only the asker sees.
    Status,
}

impl Word {
    /// The word a whole reply is, if it is one (case, surrounding space and a final `.` or
    /// `!` do not matter); anything longer is a message.
    pub fn parse(text: &str) -> Option<Word> {
        let w = text
            .trim()
            .trim_end_matches(['.', '!'])
            .trim()
            .to_ascii_lowercase();
        Some(match w.as_str() {
            "stop" | "cancel" => Word::Stop,
            "pause" | "suspend" => Word::Pause,
            "resume" | "unpause" => Word::Resume,
            "retry" => Word::Retry,
            "status" => Word::Status,
            _ => return None,
        })
    }

    /// The spec change it makes to `spec` in `phase`: the key, its new value, the spec as it
    /// will read, and the confirmation; or why it does nothing.
    fn change(
        self,
        spec: &TaskSpec,
        phase: Phase,
    ) -> Result<(&'static str, String, TaskSpec, &'static str), String> {
        let done = matches!(phase, Phase::Promoted | Phase::Cancelled);
        let mut next = spec.clone();
        match self {
            Word::Stop if done => Err(format!("the task is already {phase}")),
            Word::Stop if spec.cancel => Err("stopping it was already asked".into()),
            Word::Stop => {
                next.cancel = true;
                Ok(("cancel", "true".into(), next, "🛑 stop"))
            }
            Word::Pause if done => Err(format!("the task is {phase}: nothing runs to pause")),
            Word::Pause if spec.suspend => Err("it is already paused".into()),
            Word::Pause => {
                next.suspend = true;
                Ok(("suspend", "true".into(), next, "⏸ pause"))
            }
            Word::Resume if !spec.suspend => Err(format!("it is not paused (it is {phase})")),
            Word::Resume => {
                next.suspend = false;
                Ok(("suspend", "false".into(), next, "▶️ resume"))
            }
            Word::Retry if phase != Phase::Failed => Err(format!(
                "there is nothing to retry: the task is {phase}, not Failed"
            )),
            Word::Retry => {
                next.retry = spec.retry + 1;
                Ok(("retry", next.retry.to_string(), next, "🔁 retry"))
            }
            Word::Status => Err("status changes nothing".into()),
        }
    }
}

/// `slack-<user>-<seconds>-<micros>`: a thread reply's message id, from its Slack timestamp.
pub fn message_id(user: &str, ts: &str) -> Option<Id> {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    Id::new(format!(
        "slack-{}-{secs}-{micros}",
        user.to_ascii_lowercase()
    ))
    .ok()
}

/// When a Slack message was posted (its `ts` is seconds.micros since the epoch).
fn ts_time(ts: &str) -> Option<jiff::Timestamp> {
    let (secs, micros) = ts.split_once('.').unwrap_or((ts, "0"));
    let secs: i64 = secs.parse().ok()?;
    let micros: i64 = format!("{micros:0<6}").get(..6)?.parse().ok()?;
    jiff::Timestamp::new(secs, (micros * 1000) as i32).ok()
}

/// `text` without a leading mention of the bot (`<@U…> stop`).
fn without_mention<'a>(text: &'a str, bot_user: &str) -> &'a str {
    let t = text.trim_start();
    t.strip_prefix(&format!("<@{bot_user}>"))
        .unwrap_or(t)
        .trim()
}

impl Bot {
    /// An Events API event (the `event` of an `event_callback`): thread replies and the
    /// Home tab being opened; everything else is acknowledged and ignored.
    pub async fn on_event(self: &Arc<Self>, event: &Value) {
        match str_at(event, &["type"]) {
            "message" => self.on_message(event).await,
            "app_home_opened" if str_at(event, &["tab"]) == "home" => {
                self.home_opened(str_at(event, &["user"])).await
            }
            _ => {}
        }
    }

    /// The task whose thread is `thread_ts` in `channel`.
    fn task_of_thread(&self, channel: &str, thread_ts: &str) -> Option<TaskRef> {
        let known = self
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(channel.to_string(), thread_ts.to_string()))
            .cloned();
        known.or_else(|| {
            self.read(|s| {
                s.tasks()
                    .find(|(_, e)| {
                        e.slack
                            .as_deref()
                            .is_some_and(|th| th.channel_id == channel && th.thread_ts == thread_ts)
                    })
                    .map(|(t, _)| t)
            })
        })
    }

    async fn on_message(self: &Arc<Self>, event: &Value) {
        // A person's new message: not an edit, a join, or a bot's (the bot's own included).
        let subtype = str_at(event, &["subtype"]);
        if !(subtype.is_empty() || subtype == "thread_broadcast") || !event["bot_id"].is_null() {
            return;
        }
        let user = str_at(event, &["user"]).to_string();
        let (channel, ts, thread) = (
            str_at(event, &["channel"]).to_string(),
            str_at(event, &["ts"]).to_string(),
            str_at(event, &["thread_ts"]).to_string(),
        );
        if user.is_empty() || user == self.bot_user || thread.is_empty() || thread == ts {
            return;
        }
        let Some(task) = self.task_of_thread(&channel, &thread) else {
            return;
        };
        let first = self
            .seen_replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(format!("{channel}/{ts}"));
        if !first {
            return;
        }
        let tell = |text: String| {
            let bot = self.clone();
            let (channel, thread, user) = (channel.clone(), thread.clone(), user.clone());
            async move {
                if let Err(e) = bot
                    .api
                    .post_ephemeral_in(&channel, Some(&thread), &user, &text)
                    .await
                {
                    tracing::warn!(error = %e, "cannot answer a thread reply");
                }
            }
        };
        if !self.may_act(&user) {
            tracing::info!(%user, %task, "thread reply refused: not in authors.slack_users");
            tell(format!(
                "Sorry <@{user}>, only the people listed in gaffer.yaml authors.slack_users can \
                 talk to this task's builder; nothing was sent."
            ))
            .await;
            return;
        }
        let text = without_mention(str_at(event, &["text"]), &self.bot_user).to_string();
        let outcome = match Word::parse(&text) {
            Some(Word::Status) => Ok(self.read(|s| task_status(s, &task))),
            Some(word) => self.act(&user, &task, word, &channel, &thread).await,
            None => self.message(&user, &task, &text, &ts).await,
        };
        match outcome {
            Ok(text) if text.is_empty() => {}
            Ok(text) | Err(text) => tell(text).await,
        }
    }

    /// Commits the spec change `word` makes and confirms it in the thread; `Ok("")` when
    /// confirmed there, otherwise what to tell the person.
    async fn act(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        word: Word,
        channel: &str,
        thread: &str,
    ) -> Result<String, String> {
        let (key, value, what) = self.commit_word(user, task, word, " in its thread").await?;
        let confirm = format!("{what} asked by <@{user}>: committed `{key}: {value}` to `{task}`");
        let message = json!({"text": confirm, "blocks": [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(&confirm, 500)}]}]});
        match self.api.post(channel, Some(thread), &message).await {
            Ok(_) => Ok(String::new()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot confirm in the thread");
                Ok(confirm)
            }
        }
    }

    /// Commits the spec change `word` makes to `task` for `user` (`where_` says where it was
    /// asked); returns the key, its value and what it was, or why nothing was done.
    async fn commit_word(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        word: Word,
        where_: &str,
    ) -> Result<(&'static str, String, &'static str), String> {
        let (spec, phase) = self.spec_and_phase(task)?;
        let (key, value, next, what) = word
            .change(&spec, phase)
            .map_err(|why| format!("Nothing done for `{task}`: {why}."))?;
        self.edit_task(
            user,
            task,
            key,
            &value,
            &next,
            &format!("{what} by Slack user {user}{where_}"),
        )
        .await?;
        Ok((key, value, what))
    }

    /// `task`'s spec and phase, or why it cannot be changed.
    fn spec_and_phase(&self, task: &TaskRef) -> Result<(TaskSpec, Phase), String> {
        let (spec, phase) = self.read(|s| {
            let e = s.task(task);
            (
                e.and_then(|e| e.spec.as_deref().cloned()),
                e.and_then(|e| e.status.as_ref().map(|st| st.phase))
                    .unwrap_or_default(),
            )
        });
        let spec = spec.ok_or_else(|| format!("{task} has no valid task.yaml to change"))?;
        Ok((spec, phase))
    }

    /// Commits `task.yaml` of `task` with `key: value` — that line changed, the rest of the
    /// person's file as it was — for `user`, checking it then reads as `next`.
    pub(super) async fn edit_task(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        key: &str,
        value: &str,
        next: &TaskSpec,
        why: &str,
    ) -> Result<(), String> {
        let path = StatePath::TaskSpec(task.clone());
        let head = self
            .tracker
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .head();
        let raw = head
            .and_then(|h| self.file_at(h, &path.to_path()))
            .and_then(|b| String::from_utf8(b).ok());
        let edited = raw
            .map(|r| crate::state::yaml::set_top_level(&r, key, value))
            .filter(|t| {
                crate::state::yaml::parse::<TaskSpec>(t.as_bytes())
                    .ok()
                    .as_ref()
                    == Some(next)
            });
        let body = match edited {
            Some(b) => b,
            None => crate::state::spec::task_file(next)?,
        };
        let update = Update::put(path, body, format!("{task}: {key}: {value} ({why})"));
        self.commit_before_ack(user, update, "the change").await
    }

    /// A click on a spent budget's buttons: the task's budget set to `amount` for `user`
    /// (`budget: {task: …, by: <user>}`, which the reconciler takes as that person's
    /// decision), or the task stopped (`cancel: true`). Says what was done.
    pub(super) async fn raise_budget(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        amount: Option<crate::state::spec::Amount>,
    ) -> Result<String, String> {
        let Some(amount) = amount else {
            self.commit_word(user, task, Word::Stop, "").await?;
            return Ok(format!("🛑 `{task}` stops: committed `cancel: true`."));
        };
        let (spec, _) = self.spec_and_phase(task)?;
        let mut next = spec.clone();
        next.budget = Some(crate::state::spec::BudgetSpec {
            task: Some(amount),
            by: Some(user.to_string()),
            ..spec.budget.clone().unwrap_or_default()
        });
        let value = format!("{{task: \"{amount}\", by: {user}}}");
        self.edit_task(
            user,
            task,
            "budget",
            &value,
            &next,
            &format!("budget raised to {amount} by Slack user {user}"),
        )
        .await?;
        Ok(format!(
            "💸 `{task}`'s budget is now {amount}; it carries on."
        ))
    }

    /// Commits `messages/<id>.yaml` for the builder, or says why not.
    async fn message(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        text: &str,
        ts: &str,
    ) -> Result<String, String> {
        let phase = self
            .read(|s| {
                s.task(task)
                    .filter(|e| e.spec.is_some())
                    .map(|e| e.status.as_ref().map(|st| st.phase).unwrap_or_default())
            })
            .ok_or_else(|| format!("{task} no longer exists; nothing was sent"))?;
        if let Some(why) = refuses_messages(phase) {
            return Err(format!("Not sent to `{task}`'s builder: {why}."));
        }
        let message = MessageSpec {
            text: text.to_string(),
            by: Some(user.to_string()),
            at: ts_time(ts),
        };
        if let Some(why) = message.problem() {
            return Err(format!("Not sent: {why}."));
        }
        let id = message_id(user, ts).ok_or("this Slack message cannot be named; not sent")?;
        let body = crate::state::yaml::to_string(&message).map_err(|e| e.to_string())?;
        let mut update = Update::put(
            StatePath::Message(task.clone(), id),
            body,
            format!("{task}: message from Slack user {user}"),
        );
        update.create_only = true;
        self.commit_before_ack(user, update, "the message").await?;
        Ok(match phase {
            Phase::Running | Phase::AwaitingAnswer | Phase::Planning => format!(
                "📨 Sent to `{task}`'s builder; it reads it after its current step (the thread \
                 shows 💬 when it has)."
            ),
            p => format!(
                "📨 Kept for `{task}`'s builder: it is not working now ({p}) and gets it when \
                 it runs again."
            ),
        })
    }
}

/// `status` in a thread: the task's phase and why, its last milestone, what waits for a
/// person, and its links.
pub fn task_status(snap: &crate::state::snapshot::Snapshot, task: &TaskRef) -> String {
    let Some(e) = snap.task(task) else {
        return format!("{task} no longer exists.");
    };
    let title = e.spec.as_ref().map(|s| s.title.as_str()).unwrap_or("");
    let mut lines = vec![format!("*`{task}`* {}", escape(title, 150))];
    match e.status.as_deref() {
        Some(st) => {
            let mut l = format!("Phase: *{}*", st.phase);
            if let Some(r) = &st.reason {
                l.push_str(&format!(" ({r})"));
            }
            if let Some(m) = st.message.as_deref().filter(|m| !m.is_empty()) {
                l.push_str(&format!(" — {}", escape(m, 300)));
            }
            lines.push(l);
        }
        None => lines.push("Phase: *Pending* (not picked up yet)".into()),
    }
    if let Some(m) = e.progress.as_ref().and_then(|p| p.milestones.last()) {
        lines.push(format!(
            "Last: {} ({})",
            escape(&m.text, 300),
            m.at.strftime("%Y-%m-%d %H:%M UTC")
        ));
    }
    for (qid, q) in e.questions.iter().filter(|(_, q)| q.decision.is_none()) {
        lines.push(format!("❓ {qid}: {}", escape(&q.text, 200)));
    }
    if let Some(st) = e.status.as_deref() {
        for l in &st.links {
            lines.push(format!(
                "🔗 {}: {}",
                escape(&l.name, 60),
                escape(&l.url, 300)
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_whole_replies() {
        assert_eq!(Word::parse("stop"), Some(Word::Stop));
        assert_eq!(Word::parse("  Pause! "), Some(Word::Pause));
        assert_eq!(Word::parse("RESUME."), Some(Word::Resume));
        assert_eq!(Word::parse("retry"), Some(Word::Retry));
        assert_eq!(Word::parse("status"), Some(Word::Status));
        assert_eq!(Word::parse("stop using RS256"), None);
        assert_eq!(Word::parse("please retry"), None);
    }

    #[test]
    fn words_change_only_what_they_mean() {
        let spec: TaskSpec = crate::state::yaml::parse(b"title: T\n").unwrap();
        let (k, v, next, _) = Word::Stop.change(&spec, Phase::Running).unwrap();
        assert_eq!((k, v.as_str(), next.cancel), ("cancel", "true", true));
        assert!(Word::Stop.change(&spec, Phase::Promoted).is_err());
        assert!(Word::Retry.change(&spec, Phase::Running).is_err());
        let (_, v, next, _) = Word::Retry.change(&spec, Phase::Failed).unwrap();
        assert_eq!((v.as_str(), next.retry), ("1", 1));
        assert!(Word::Resume.change(&spec, Phase::Running).is_err());
        let paused = Word::Pause.change(&spec, Phase::Running).unwrap().2;
        assert!(Word::Pause.change(&paused, Phase::Suspended).is_err());
        assert!(
            !Word::Resume
                .change(&paused, Phase::Suspended)
                .unwrap()
                .2
                .suspend
        );
    }

    #[test]
    fn a_spec_edit_keeps_the_rest_of_the_file() {
        let text = "# my task\ntitle: T  # short\ncancel: false\ndescription: |\n  a\n  b\n";
        let out = crate::state::yaml::set_top_level(text, "cancel", "true");
        assert_eq!(
            out,
            "# my task\ntitle: T  # short\ncancel: true\ndescription: |\n  a\n  b\n"
        );
        let out = crate::state::yaml::set_top_level("title: T", "retry", "2");
        assert_eq!(out, "title: T\nretry: 2\n");
    }

    #[test]
    fn message_ids_come_from_slack_timestamps() {
        assert_eq!(
            message_id("U0ABC", "1733000000.000100").unwrap().as_str(),
            "slack-u0abc-1733000000-000100"
        );
        assert!(message_id("U0ABC", "../x").is_none());
        assert_eq!(
            ts_time("1733000000.000100").unwrap(),
            jiff::Timestamp::new(1_733_000_000, 100_000).unwrap()
        );
        assert_eq!(without_mention("<@UBOT> stop", "UBOT"), "stop");
    }
}
