//! Posting: each task's thread follows its status commits, in order, each post once.
//!
//! Every message the bot posts carries a key in its first block's `block_id`
//! (`gaffer:parent:<task>`, `gaffer:m:<seq>`, `gaffer:q:<qid>`, `gaffer:x:<name>`), and
//! `slack.yaml` records what was posted. The record is written after posting, so a crash in
//! between can leave it behind Slack; the first time a process touches a thread it reads the
//! thread back (`conversations.replies`) and takes the keys it finds as posted. A post is
//! therefore never repeated and never skipped, whenever the bot is killed.
//!
//! Per task, [`plan`] (pure) lists what the thread lacks; [`Poster`] does it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use super::api::SlackError;
use super::blocks::{self, Key, tagged};
use super::bot::Bot;
use crate::names::{ProjectRef, Qid, TaskRef};
use crate::state::StatePath;
use crate::state::snapshot::TaskEntry;
use crate::state::status::{DecidedBy, Link, Phase, Question, SlackThread};
use crate::store::Update;

/// One thing a thread lacks.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Start the thread (or find the one a crash left unrecorded) with this parent message.
    Thread {
        /// The parent message.
        message: Value,
        /// The phase it shows.
        phase: Phase,
        /// What else it shows (its links).
        tag: String,
    },
    /// Update the parent message to show `phase` (and its links, `tag`).
    Parent {
        /// The parent message.
        message: Value,
        /// The phase it shows.
        phase: Phase,
        /// What else it shows (its links).
        tag: String,
    },
    /// Post a message in the thread.
    Post {
        /// Its key.
        key: Key,
        /// The message.
        message: Value,
        /// Also show it in the channel.
        broadcast: bool,
        /// What it shows, for messages updated later.
        tag: Option<String>,
    },
    /// Post a question in a thread of its own (found again in the channel after a crash)
    /// and point to it from the task's thread.
    OwnQuestion {
        /// The question.
        qid: Qid,
        /// Its text (for the pointer in the task's thread).
        text: String,
        /// Its message.
        message: Value,
        /// What it shows.
        tag: String,
    },
    /// Update a posted message (a question or a review) to show `tag`.
    Update {
        /// The message's key.
        key: Key,
        /// The new content.
        message: Value,
        /// What it shows now.
        tag: String,
    },
}

/// What the question message should show.
pub fn question_tag(q: &Question) -> String {
    match &q.decision {
        None => "open".into(),
        Some(d) => format!(
            "{}:{}:{}:{}",
            match d.decided_by {
                DecidedBy::Human => "human",
                DecidedBy::TimeoutDefault => "default",
            },
            d.choice.join(","),
            d.by.as_deref().unwrap_or(""),
            d.note.as_deref().unwrap_or("")
        ),
    }
}

/// The `shown` entry of what the parent message shows besides its phase.
const PARENT_TAG: &str = "parent";

/// A short stable hash for message keys.
fn short_hash(parts: &[&str]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

/// Context [`plan`] needs besides the task.
pub struct PlanContext<'a> {
    /// The business time zone, for deadlines.
    pub tz: &'a jiff::tz::TimeZone,
    /// A web view of the state repository, for question document links.
    pub browse_url: Option<&'a str>,
    /// For a story task: a link to its parent task's thread, once that thread exists.
    pub parent_thread: Option<String>,
    /// Who a notice mentions (`notify.mention`, else `authors.slack_users`).
    pub mentions: &'a [String],
    /// Where questions go (`questions.thread`, the task's or project's override first).
    pub question_thread: crate::state::spec::QuestionThread,
}

/// A link to a thread's parent message (Slack opens it in the app).
pub fn thread_link(thread: &SlackThread) -> String {
    format!(
        "https://slack.com/archives/{}/p{}",
        thread.channel_id,
        thread.thread_ts.replace('.', "")
    )
}

/// What `task`'s thread lacks, in posting order. `thread` is what has been posted.
pub fn plan(
    task: &TaskRef,
    entry: &TaskEntry,
    thread: Option<&SlackThread>,
    cx: &PlanContext<'_>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let Some(spec) = &entry.spec else {
        return ops;
    };
    let status = entry.status.as_deref();
    let phase = status.map_or(Phase::Pending, |s| s.phase);
    let reason = status.and_then(|s| s.reason.as_deref());
    // A story's thread names the task whose plan it is part of.
    let title = match (&spec.parent, &spec.story) {
        (Some(p), Some(n)) => format!("{} (story {n} of {p})", spec.title),
        (Some(p), None) => format!("{} (a story of {p})", spec.title),
        _ => spec.title.clone(),
    };
    let all_links: Vec<Link> = status.map(|s| s.links.clone()).unwrap_or_default();
    let link_parts: Vec<&str> = all_links
        .iter()
        .flat_map(|l| [l.name.as_str(), l.url.as_str()])
        .collect();
    let parent_tag = short_hash(&link_parts);
    let mut parent = blocks::thread_parent(
        task,
        &title,
        phase,
        reason,
        &all_links,
        status.and_then(|s| s.usage.as_ref()),
    );
    if let (Some(p), Some(link)) = (&spec.parent, &cx.parent_thread)
        && let Some(b) = parent["blocks"].as_array_mut()
    {
        b.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": format!("A story of <{}|{}>", blocks::escape(link, 500), blocks::escape(p.as_str(), 100))}]}));
    }
    match thread {
        None => ops.push(Op::Thread {
            message: parent,
            phase,
            tag: parent_tag,
        }),
        Some(th)
            if th.shown_phase != Some(phase)
                || th.shown.get(PARENT_TAG).map(String::as_str) != Some(parent_tag.as_str()) =>
        {
            ops.push(Op::Parent {
                message: parent,
                phase,
                tag: parent_tag,
            })
        }
        Some(_) => {}
    }
    let empty = SlackThread::default();
    let th = thread.unwrap_or(&empty);
    if let Some(progress) = &entry.progress {
        for m in progress.milestones.iter().filter(|m| m.seq > th.posted_seq) {
            ops.push(Op::Post {
                key: Key::Milestone(m.seq),
                message: blocks::milestone(m),
                broadcast: false,
                tag: None,
            });
        }
    }
    // Questions: new ones posted (and broadcast), posted ones updated when decided.
    let new: Vec<&Qid> = entry
        .questions
        .keys()
        .filter(|q| !th.questions.contains_key(*q))
        .collect();
    if new.len() >= 2
        && let Some((doc, _)) = entry
            .question_docs
            .iter()
            .rev()
            .find(|(d, _)| !th.posted.contains_key(d.as_str()))
    {
        let path = StatePath::QuestionDoc(task.clone(), doc.clone()).to_path();
        let url = match cx.browse_url {
            Some(base) => format!("{}/{path}", base.trim_end_matches('/')),
            None => path,
        };
        let qids: Vec<Qid> = new.iter().map(|q| (*q).clone()).collect();
        ops.push(Op::Post {
            key: Key::Other(doc.to_string()),
            message: blocks::question_batch(task, &url, &qids),
            broadcast: true,
            tag: None,
        });
    }
    for (qid, q) in &entry.questions {
        let tag = question_tag(q);
        let message = if q.decision.is_some() {
            blocks::decided(task, qid, q)
        } else {
            let deadline = q.deadline.map_or_else(
                || "none".to_string(),
                |d| {
                    d.to_zoned(cx.tz.clone())
                        .strftime("%a %d %b %H:%M %Z")
                        .to_string()
                },
            );
            blocks::question(task, qid, q, &deadline)
        };
        if !th.questions.contains_key(qid) {
            match own::placement(cx.question_thread, q, entry, th) {
                own::Placement::Task => ops.push(Op::Post {
                    key: Key::Question(qid.clone()),
                    message,
                    broadcast: true,
                    tag: Some(tag),
                }),
                own::Placement::Own => ops.push(Op::OwnQuestion {
                    qid: qid.clone(),
                    text: q.text.clone(),
                    message,
                    tag,
                }),
            }
        } else if th.shown.get(qid.as_str()) != Some(&tag) {
            let key = if th.own_threads.contains(qid) {
                Key::OwnQuestion(qid.clone())
            } else {
                Key::Question(qid.clone())
            };
            ops.push(Op::Update { key, message, tag });
        }
    }
    if let Some(p) = entry.plan.as_deref() {
        // The current version's message (with its buttons), and older ones kept true.
        let url = |path: &str| match cx.browse_url {
            Some(base) => format!("{}/{path}", base.trim_end_matches('/')),
            None => path.to_string(),
        };
        for v in 1..=p.version {
            let key = super::planning::key(v);
            let tag = super::planning::tag(p, v);
            if !th.posted.contains_key(&key) {
                // A version is shown once it waits for a person (a `full` plan's earlier
                // steps are versions too, but nobody is asked about them).
                let decided = p.approved.as_ref().is_some_and(|a| a.version == v);
                if v == p.version
                    && (decided || p.state == crate::state::planning::PlanState::AwaitingApproval)
                {
                    ops.push(Op::Post {
                        message: super::planning::message(task, p, v, &url),
                        key: Key::Other(key),
                        broadcast: true,
                        tag: Some(tag),
                    });
                }
            } else if th.shown.get(&key) != Some(&tag) {
                ops.push(Op::Update {
                    message: super::planning::message(task, p, v, &url),
                    key: Key::Other(key),
                    tag,
                });
            }
        }
    }
    let links: Vec<Link> = status
        .map(|s| {
            s.links
                .iter()
                .filter(|l| !l.name.starts_with("pr:"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if !links.is_empty() {
        let parts: Vec<&str> = links
            .iter()
            .flat_map(|l| [l.name.as_str(), l.url.as_str()])
            .collect();
        let key = format!("links-{}", short_hash(&parts));
        if !th.posted.contains_key(&key) {
            ops.push(Op::Post {
                key: Key::Other(key),
                message: blocks::links(&links),
                broadcast: false,
                tag: None,
            });
        }
    }
    let changes: Vec<Link> = status
        .map(|s| {
            s.links
                .iter()
                .filter(|l| l.name.starts_with("pr:"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Once the changes are opened (the reconciler then waits for an approval): posting
    // earlier would offer a button without the links.
    if phase == Phase::InReview && (reason == Some("AwaitingApproval") || !changes.is_empty()) {
        let parts: Vec<&str> = changes.iter().map(|l| l.url.as_str()).collect();
        let key = format!("review-{}", short_hash(&parts));
        if !th.posted.contains_key(&key) {
            ops.push(Op::Post {
                message: blocks::approve(task, &changes, &key),
                key: Key::Other(key),
                broadcast: false,
                tag: Some("open".into()),
            });
        }
    }
    // Notices, once each when released: a mention pushes them to people's phones.
    for n in status
        .map(|s| s.notices.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|n| n.released)
    {
        let key = format!("notice-{}", n.key);
        if !th.posted.contains_key(&key) {
            // A spent budget comes with its buttons: raise it, or stop.
            let limit = n
                .key
                .strip_prefix("budget:")
                .and_then(|l| crate::state::spec::Amount::parse(l).ok());
            ops.push(Op::Post {
                message: match limit {
                    Some(l) => blocks::budget_notice(task, &n.text, cx.mentions, l),
                    None => blocks::notice(&n.text, cx.mentions),
                },
                key: Key::Other(key),
                broadcast: false,
                tag: None,
            });
        }
    }
    if phase == Phase::Promoted {
        for key in th.posted.keys().filter(|k| k.starts_with("review-")) {
            if th.shown.get(key).map(String::as_str) != Some("promoted") {
                ops.push(Op::Update {
                    key: Key::Other(key.clone()),
                    message: blocks::promoted(task, &changes),
                    tag: "promoted".into(),
                });
            }
        }
    }
    ops
}

/// One thread as this process knows it.
#[derive(Debug, Clone)]
struct Thread {
    rec: SlackThread,
    /// Whether the thread was read back from Slack since this process started.
    verified: bool,
}

/// Keeps every task's thread up to date.
pub struct Poster {
    bot: Arc<Bot>,
    threads: HashMap<TaskRef, Thread>,
    /// Tasks already finished when the bot first saw them: no thread for old news.
    backlog: HashSet<TaskRef>,
    first: bool,
    /// Threads whose `slack.yaml` is behind.
    unrecorded: std::collections::BTreeSet<TaskRef>,
}

impl Poster {
    /// A poster for `bot`.
    pub fn new(bot: Arc<Bot>) -> Self {
        Self {
            bot,
            threads: HashMap::new(),
            backlog: HashSet::new(),
            first: true,
            unrecorded: Default::default(),
        }
    }

    /// Brings every task's thread up to date; `Err` when something must be retried.
    pub async fn sync_all(&mut self) -> Result<(), SlackError> {
        let work = self.plan_all();
        let mut failed = None;
        for (task, entry_thread, channel, ops) in work {
            if let Err(e) = self.execute(&task, entry_thread, channel, ops).await {
                tracing::warn!(task = %task, error = %e, "posting to Slack failed; will retry");
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    #[allow(clippy::type_complexity)]
    fn plan_all(&mut self) -> Vec<(TaskRef, Option<SlackThread>, String, Vec<Op>)> {
        let first = std::mem::replace(&mut self.first, false);
        let bot = self.bot.clone();
        bot.read(|snap| {
            let tz = snap
                .settings
                .as_ref()
                .and_then(|s| s.business_hours.time_zone().ok())
                .unwrap_or(jiff::tz::TimeZone::UTC);
            let mentions: Vec<String> = snap
                .settings
                .as_ref()
                .map(|s| {
                    if s.notify.mention.is_empty() {
                        s.authors.slack_users.clone()
                    } else {
                        s.notify.mention.clone()
                    }
                })
                .unwrap_or_default();
            let mut work = Vec::new();
            for (task, entry) in snap.tasks() {
                // A story's thread links to its parent's, once the parent has one.
                let parent_thread = entry
                    .spec
                    .as_ref()
                    .and_then(|s| s.parent.clone())
                    .and_then(|p| {
                        let pt = TaskRef {
                            project: task.project.clone(),
                            task: p,
                        };
                        let known = self.threads.get(&pt).map(|t| t.rec.clone());
                        known.or_else(|| snap.task(&pt)?.slack.as_deref().cloned())
                    })
                    .map(|t| thread_link(&t));
                let project = snap
                    .projects
                    .get(&task.project)
                    .and_then(|p| p.spec.as_ref());
                let question_thread = entry
                    .spec
                    .as_ref()
                    .and_then(|s| s.questions.as_ref())
                    .and_then(|q| q.thread)
                    .or_else(|| {
                        project
                            .and_then(|p| p.questions.as_ref())
                            .and_then(|q| q.thread)
                    })
                    .or_else(|| snap.settings.as_ref().map(|s| s.questions.thread))
                    .unwrap_or_default();
                let cx = PlanContext {
                    tz: &tz,
                    browse_url: bot.browse_url.as_deref(),
                    parent_thread,
                    mentions: &mentions,
                    question_thread,
                };
                let known = self.threads.get(&task).map(|t| &t.rec);
                let recorded = entry.slack.as_deref();
                let thread = known.or(recorded);
                if thread.is_none() {
                    let done = entry
                        .status
                        .as_ref()
                        .is_some_and(|s| matches!(s.phase, Phase::Promoted | Phase::Cancelled));
                    if first && done {
                        self.backlog.insert(task.clone());
                    }
                    if self.backlog.contains(&task) {
                        continue;
                    }
                }
                let ops = plan(&task, entry, thread, &cx);
                if ops.is_empty() {
                    continue;
                }
                let channel = snap
                    .projects
                    .get(&task.project)
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|p| p.slack.as_ref())
                    .and_then(|s| s.channel.clone())
                    .unwrap_or_else(|| task.project.builder_name());
                work.push((task, recorded.cloned(), channel, ops));
            }
            work
        })
    }

    async fn execute(
        &mut self,
        task: &TaskRef,
        recorded: Option<SlackThread>,
        channel_name: String,
        ops: Vec<Op>,
    ) -> Result<(), SlackError> {
        let mut th = match self.threads.get(task) {
            Some(t) => t.clone(),
            None => match recorded {
                Some(rec) => Thread {
                    rec,
                    verified: false,
                },
                None => {
                    let Some(Op::Thread {
                        message,
                        phase,
                        tag,
                    }) = ops.first()
                    else {
                        return Ok(());
                    };
                    let mut th = self
                        .open_thread(task, &channel_name, message, *phase)
                        .await?;
                    th.rec.shown.insert(PARENT_TAG.into(), tag.clone());
                    th
                }
            },
        };
        let new_thread = !self.threads.contains_key(task) && recorded_none(&ops);
        let mut dirty = !th.verified || new_thread;
        let result = self.apply(task, &mut th, &ops, &mut dirty).await;
        self.bot
            .threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (th.rec.channel_id.clone(), th.rec.thread_ts.clone()),
                task.clone(),
            );
        self.threads.insert(task.clone(), th);
        if dirty {
            self.unrecorded.insert(task.clone());
        }
        if new_thread {
            // Where the thread is matters most: record it at once.
            self.record();
        }
        result
    }

    /// Whether some thread's record is behind what was posted.
    pub fn behind(&self) -> bool {
        !self.unrecorded.is_empty()
    }

    /// Commits the `slack.yaml` of every thread whose record is behind, in one commit.
    /// Records may lag behind Slack (the thread is read back after a restart), so this is
    /// batched rather than done after every post.
    pub fn record(&mut self) {
        let mut updates = Vec::new();
        for task in std::mem::take(&mut self.unrecorded) {
            let Some(th) = self.threads.get(&task) else {
                continue;
            };
            match crate::state::yaml::to_string(&th.rec) {
                Ok(body) => updates.push(Update::put(
                    StatePath::Slack(task.clone()),
                    body,
                    format!("{task} Slack thread posted through #{}", th.rec.posted_seq),
                )),
                Err(e) => {
                    tracing::error!(task = %task, error = %e, "cannot record the Slack thread")
                }
            }
        }
        if !updates.is_empty()
            && let Err(e) = self.bot.writer.submit(updates)
        {
            tracing::error!(error = %e, "cannot record the Slack threads");
        }
    }

    async fn apply(
        &mut self,
        task: &TaskRef,
        th: &mut Thread,
        ops: &[Op],
        dirty: &mut bool,
    ) -> Result<(), SlackError> {
        let api = &self.bot.api;
        if !th.verified {
            let keys = api
                .thread_keys(&th.rec.channel_id, &th.rec.thread_ts)
                .await?;
            merge_keys(&mut th.rec, keys);
            th.verified = true;
        }
        let (channel, thread_ts) = (th.rec.channel_id.clone(), th.rec.thread_ts.clone());
        for op in ops {
            match op {
                Op::Thread { .. } => {}
                Op::Parent {
                    message,
                    phase,
                    tag,
                } => {
                    api.update(&channel, &thread_ts, &tagged(message, &Key::Parent, task))
                        .await?;
                    th.rec.shown_phase = Some(*phase);
                    th.rec.shown.insert(PARENT_TAG.into(), tag.clone());
                    *dirty = true;
                }
                Op::Post {
                    key,
                    message,
                    broadcast,
                    tag,
                } => {
                    if posted(&th.rec, key) {
                        continue;
                    }
                    let ts = api
                        .post_reply(
                            &channel,
                            Some(&thread_ts),
                            &tagged(message, key, task),
                            *broadcast,
                        )
                        .await?;
                    record(&mut th.rec, key, ts, tag.clone());
                    *dirty = true;
                }
                Op::OwnQuestion {
                    qid,
                    text,
                    message,
                    tag,
                } => {
                    self.own_question(task, th, qid, text, message, tag).await?;
                    *dirty = true;
                }
                Op::Update { key, message, tag } => {
                    let ts = match key {
                        Key::Question(q) | Key::OwnQuestion(q) => th.rec.questions.get(q).cloned(),
                        Key::Other(n) => th.rec.posted.get(n).cloned(),
                        _ => None,
                    };
                    let Some(ts) = ts else { continue };
                    api.update(&channel, &ts, &tagged(message, key, task))
                        .await?;
                    th.rec.shown.insert(key_name(key), tag.clone());
                    *dirty = true;
                }
            }
        }
        Ok(())
    }

    /// Finds the thread a crash left unrecorded, or starts it.
    async fn open_thread(
        &mut self,
        task: &TaskRef,
        channel_name: &str,
        message: &Value,
        phase: Phase,
    ) -> Result<Thread, SlackError> {
        let channel = self.channel(&task.project, channel_name).await?;
        let api = &self.bot.api;
        let want = Key::Parent.block_id(task);
        let found = api
            .channel_keys(&channel, 5)
            .await?
            .into_iter()
            .find(|(k, _)| *k == want);
        let message = tagged(message, &Key::Parent, task);
        let (ts, verified) = match found {
            Some((_, ts)) => {
                // Posted before a crash: show the current phase, then read the thread back.
                tracing::info!(task = %task, %ts, "found the thread's parent posted before a crash; not posting it again");
                api.update(&channel, &ts, &message).await?;
                (ts, false)
            }
            None => (api.post(&channel, None, &message).await?, true),
        };
        Ok(Thread {
            rec: SlackThread {
                channel_id: channel,
                thread_ts: ts,
                shown_phase: Some(phase),
                ..SlackThread::default()
            },
            verified,
        })
    }

    /// The project's channel, found or created (and joined) once per process.
    async fn channel(&self, project: &ProjectRef, name: &str) -> Result<String, SlackError> {
        let cached = self
            .bot
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(project)
            .cloned();
        if let Some(id) = cached {
            return Ok(id);
        }
        check_channel_name(name)?;
        let id = self.bot.api.ensure_channel(name).await?;
        self.bot
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(project.clone(), id.clone());
        Ok(id)
    }
}

fn recorded_none(ops: &[Op]) -> bool {
    matches!(ops.first(), Some(Op::Thread { .. }))
}

/// Slack channel names: lowercase letters, digits, `-` and `_`, at most 80.
fn check_channel_name(name: &str) -> Result<(), SlackError> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SlackError::Message(format!(
            "channel name {name:?} (project.yaml slack.channel): use at most 80 lowercase \
             letters, digits, '-' or '_'"
        )))
    }
}

use self::keys::{key_name, merge_keys, posted, record};

pub use self::looping::run;

mod keys;
mod looping;
mod own;
#[cfg(test)]
mod tests;
