//! Where a question is posted (`questions.thread`), and posting one in a thread of its own.
//!
//! The `auto` rule, in order: a permission request gets its own thread (it is about what
//! the builder may do, not about the work the thread shows); so does any question once the
//! task's thread is long ([`LONG_THREAD`] posts); a question the builder asked within
//! [`CONTEXT_WINDOW`] of reporting work (a todo done, a checkpoint, a deploy, tests, a
//! review, a person's message) is about what the thread shows and goes there; anything else
//! (asked after a quiet spell) gets its own thread. Its message starts that thread in the
//! project's channel, carries the same answer buttons, and the task's thread links to it.

use jiff::SignedDuration;
use serde_json::Value;

use super::{Poster, Thread, record, thread_link};
use crate::chat::slack::api::SlackError;
use crate::chat::slack::blocks::{self, Key, tagged};
use crate::names::{Qid, TaskRef};
use crate::state::snapshot::TaskEntry;
use crate::state::spec::QuestionThread;
use crate::state::status::{MilestoneKind, Question, QuestionKind, SlackThread};

/// A question asked this soon after the builder reported work is about that work.
pub const CONTEXT_WINDOW: SignedDuration = SignedDuration::from_mins(10);

/// A task thread with this many posts is long: new questions get threads of their own.
pub const LONG_THREAD: usize = 40;

/// Where a question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The task's thread.
    Task,
    /// A thread of its own.
    Own,
}

/// Where question `q` of the task goes under `policy`, given what its thread shows.
pub fn placement(
    policy: QuestionThread,
    q: &Question,
    entry: &TaskEntry,
    th: &SlackThread,
) -> Placement {
    match policy {
        QuestionThread::Task => return Placement::Task,
        QuestionThread::Own => return Placement::Own,
        QuestionThread::Auto => {}
    }
    if q.kind == QuestionKind::Permission {
        return Placement::Own;
    }
    let posts = th.posted_seq as usize + th.questions.len() + th.posted.len();
    if posts >= LONG_THREAD {
        return Placement::Own;
    }
    let work = entry.progress.as_ref().and_then(|p| {
        p.milestones.iter().rev().find(|m| {
            m.at <= q.asked_at
                && !matches!(
                    m.kind,
                    MilestoneKind::Phase
                        | MilestoneKind::Question
                        | MilestoneKind::Summary
                        | MilestoneKind::Stall
                )
        })
    });
    match work {
        Some(m) if q.asked_at.duration_since(m.at) <= CONTEXT_WINDOW => Placement::Task,
        _ => Placement::Own,
    }
}

impl Poster {
    /// Posts question `qid` as the start of a thread of its own (unless a crash left it
    /// posted: it is found among the channel's messages), then a pointer in the task's
    /// thread.
    pub(super) async fn own_question(
        &self,
        task: &TaskRef,
        th: &mut Thread,
        qid: &Qid,
        text: &str,
        message: &Value,
        tag: &str,
    ) -> Result<(), SlackError> {
        if th.rec.questions.contains_key(qid) {
            // Read back from the task's thread after a crash: it went there.
            return Ok(());
        }
        let api = &self.bot.api;
        let channel = th.rec.channel_id.clone();
        let key = Key::OwnQuestion(qid.clone());
        let want = key.block_id(task);
        let found = api
            .channel_keys(&channel, 5)
            .await?
            .into_iter()
            .find(|(k, _)| *k == want)
            .map(|(_, ts)| ts);
        let ts = match found {
            Some(ts) => {
                tracing::info!(%task, %qid, "found a question's own thread posted before a crash; not posting it again");
                ts
            }
            None => {
                api.post_reply(&channel, None, &tagged(message, &key, task), true)
                    .await?
            }
        };
        record(&mut th.rec, &key, ts.clone(), Some(tag.to_string()));
        let pointer = Key::Other(format!("own-{qid}"));
        if !th.rec.posted.contains_key(&format!("own-{qid}")) {
            let link = thread_link(&SlackThread {
                channel_id: channel.clone(),
                thread_ts: ts,
                ..SlackThread::default()
            });
            let m = blocks::own_thread_pointer(qid, text, &link);
            let pts = api
                .post(
                    &channel,
                    Some(&th.rec.thread_ts),
                    &tagged(&m, &pointer, task),
                )
                .await?;
            record(&mut th.rec, &pointer, pts, None);
        }
        Ok(())
    }
}
