//! Running (and AwaitingAnswer): people's answers and deadlines first, then a fold over what
//! the builder did since the last look (todos, edits, questions, its end of turn, failures),
//! then where that leaves the task, and a pure [`next_look`] for when to look again.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use minijinja::context;

use super::prompts::{self, Prompt};
use super::{Plan, View, blocking, questions, work};
use crate::agent::{AgentEvent, AgentRuntime, Polled};
use crate::names::RepoName;
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::status::{MilestoneKind, Phase};

/// Nudges a stopped agent gets before the task fails.
const MAX_NUDGES: u32 = 2;

/// Transient agent errors retried before the task fails.
const MAX_AGENT_RETRIES: u32 = 3;

/// What the fold over the builder's events leaves behind.
#[derive(Debug, Default)]
struct Seen {
    /// The builder said it is done (its summary).
    finished: Option<String>,
    /// Its last event was the end of a turn, with this text.
    turn_ended: Option<String>,
    /// A provisional answer goes to it on the next step, right away.
    relay_now: bool,
    /// Questions asked in this batch.
    asked_now: usize,
    /// The nearest deadline of a question asked in this batch.
    deadline: Option<Timestamp>,
}

/// How many decisions the plan holds and has applied (a change means one was taken).
fn decisions(plan: &Plan) -> usize {
    plan.questions
        .values()
        .filter(|q| q.decision.is_some())
        .count()
        + plan.status.effects.applied.len()
        + plan.status.effects.relayed.len()
}

/// Polls the builder, unless a person's decision for the task reaches the state first
/// (`None`).
async fn poll_unless_decided(
    ctx: &Context,
    view: &View,
    agent: &dyn AgentRuntime,
    session: &str,
    plan: &Plan,
) -> Result<Option<Polled>, ReconcileError> {
    let mut changes = ctx.changes.subscribe();
    if decisions_arrived(ctx, view) {
        return Ok(None);
    }
    let poll = agent.poll(&view.t, session, plan.status.effects.agent_cursor);
    tokio::pin!(poll);
    loop {
        tokio::select! {
            polled = &mut poll => return Ok(Some(polled?)),
            Ok(()) = changes.changed() => {
                if decisions_arrived(ctx, view) {
                    return Ok(None);
                }
            }
        }
    }
}

/// Whether answers (files or annotated question documents) for the task changed since
/// `view` was read.
fn decisions_arrived(ctx: &Context, view: &View) -> bool {
    let mut moved = false;
    let _ = ctx.store.read(&mut |_, snap| {
        moved = snap.task(&view.t).is_some_and(|e| {
            e.answers.len() != view.answers.len()
                || e.messages.len() != view.messages.len()
                || e.answers
                    .iter()
                    .any(|(q, a)| view.answers.get(q) != Some(&**a))
                || e.question_docs != view.question_docs
        });
    });
    moved
}

/// Drives the builder while it works.
pub async fn running(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let t = &view.t;
    let Some(session) = plan.session() else {
        plan.transition(
            Phase::Preparing,
            "NoSession",
            "no agent session recorded; preparing again",
        );
        return Ok(Action::requeue(Duration::ZERO));
    };
    let agent = plan.agent(ctx)?;
    // A spent budget: the builder does nothing more until a person raises it.
    if let Some(action) = super::usage::budget(ctx, view, plan, agent.as_ref(), &session).await? {
        return Ok(action);
    }

    let decided = decisions(plan);
    questions::people_answers(ctx, view, plan).await?;
    let mut next_deadline = questions::deadlines(ctx, view, plan).await?;
    questions::apply_decisions(ctx, view, agent.as_ref(), &session, plan).await?;
    if decisions(plan) != decided {
        // A decision was taken and applied: record it now, and look at the builder (which
        // can take seconds when it is busy) on the next round, right after.
        return Ok(Action::requeue(Duration::ZERO));
    }

    // What people said to the builder, in order, once each.
    super::messages::deliver(ctx, view, agent.as_ref(), &session, plan).await?;

    // A retry after a transient error, once its pause is over.
    if let Some(at) = plan.status.effects.retry_at
        && at <= plan.now
    {
        let id = format!("retry-{}", plan.status.attempts);
        let text = prompts::render(Prompt::Retry, context! {})?;
        agent.send(t, &session, &id, &text).await?;
        plan.status.effects.retry_at = None;
        plan.record_prompt(&id);
    }

    // What the agent did since last time. A busy builder can take seconds to answer; a
    // person's decision arriving meanwhile does not wait for it: the poll (it only reads) is
    // given up and the task goes round again, decisions first.
    let Some(polled) = poll_unless_decided(ctx, view, agent.as_ref(), &session, plan).await? else {
        tracing::debug!(target: "gaffer::hop", hop = "poll-preempted", task = %t);
        return Ok(Action::requeue(Duration::ZERO));
    };
    plan.status.effects.agent_cursor = polled.cursor;
    super::usage::record(view, plan, &polled.usage);
    if let Some(cut) = &polled.interrupted {
        // The runtime restarted under a turn: the agent needs to be told to carry on.
        let id = format!("resume-{cut}");
        if !plan.prompt_sent(&id) {
            let text = prompts::render(Prompt::Interrupted, context! {})?;
            agent.send(t, &session, &id, &text).await?;
            plan.record_prompt(&id);
            plan.milestone(
                MilestoneKind::Error,
                "⚠ the agent's server restarted mid-turn; resumed the session",
                None,
            );
        }
    }
    let seen = match fold(ctx, view, plan, &polled).await? {
        Ok(seen) => seen,
        Err(action) => return Ok(action),
    };
    // What this look's requests cost: at the budget, the turn stops here.
    if let Some(action) = super::usage::budget(ctx, view, plan, agent.as_ref(), &session).await? {
        questions::question_document(view, plan, seen.asked_now)?;
        return Ok(action);
    }
    if let Some(d) = seen.deadline {
        next_deadline = Some(next_deadline.map_or(d, |n| n.min(d)));
    }
    questions::question_document(view, plan, seen.asked_now)?;
    let open = questions::any_open(&plan.questions);
    if seen.finished.is_none()
        && let Some(text) = &seen.turn_ended
        && !polled.waiting
        && !open
        && let Some(action) =
            nudge(ctx, view, plan, agent.as_ref(), &session, &polled, text).await?
    {
        return Ok(action);
    }
    if plan.phase() == Phase::Planning {
        // The planner asks and is answered like a builder; its turn's end is the plan's
        // next version (it edits no repository, so there is nothing to checkpoint).
        if let Some(summary) = seen.finished {
            return super::planning::turn_done(ctx, view, plan, &summary).await;
        }
    } else if let Some(summary) = seen.finished {
        work::checkpoint(ctx, view, plan, "done").await?;
        plan.milestone(MilestoneKind::Todo, format!("🏁 {summary}"), None);
        plan.status.effects.agent_done = Some(summary);
    }
    if plan.status.effects.agent_done.is_some() {
        // The work is deployed from the task's branch: provisional work waits for its answer
        // (or its deadline) first.
        let pending = questions::pending_provisional(plan);
        if pending.is_empty() {
            plan.status.effects.agent_done = None;
            plan.transition(Phase::Deploying, "AgentDone", "");
            return Ok(Action::requeue(Duration::ZERO));
        }
        let why = format!(
            "the agent is done; its work waits on the answer to {} (or the deadline)",
            pending.join(", ")
        );
        if plan.status.message.as_deref() != Some(why.as_str()) {
            plan.waiting("ProvisionalWork", why);
        }
    }
    if open && plan.phase() == Phase::Running {
        plan.transition(
            Phase::AwaitingAnswer,
            "QuestionAsked",
            "a question waits for a person",
        );
    } else if !open && plan.phase() == Phase::AwaitingAnswer {
        plan.transition(Phase::Running, "Answered", "");
    }
    // Nothing significant for a while: say where the work stands.
    let every = view.settings.progress.summary_every.get();
    let quiet_since = plan
        .progress
        .milestones
        .last()
        .map_or(plan.status.phase_since.unwrap_or(plan.now), |m| m.at);
    let due = quiet_since.checked_add(every).unwrap_or(plan.now);
    if plan.phase() == Phase::Running && !polled.waiting && due <= plan.now {
        summary(ctx, view, plan, agent.as_ref(), &session).await?;
    }
    let next_summary = due
        .checked_add(every)
        .ok()
        .filter(|_| due <= plan.now)
        .unwrap_or(due);
    let until_stall = stall_watch(view, plan, polled.waiting || open);
    Ok(Action::requeue(next_look(&Look {
        relay_now: seen.relay_now,
        blocked: polled.waiting || open,
        wakes: agent.wakes(),
        poll_interval: ctx.settings.poll_interval,
        until_deadline: next_deadline.map(|d| plan.until(d)),
        until_summary: plan.until(next_summary),
        until_retry: plan.status.effects.retry_at.map(|at| plan.until(at)),
        until_stall,
    })))
}

/// The stall watchdog: a running builder with no event for `progress.stall_after` gets one
/// "no progress" milestone (and notice); it clears itself, with a milestone, when anything
/// happens again. Returns how long until the builder would count as stalled.
fn stall_watch(view: &View, plan: &mut Plan, blocked: bool) -> Option<Duration> {
    use crate::state::status::MilestoneKind as K;
    // Anything the builder did, a person said or the task went through; not gaffer's own
    // summaries and stall notes.
    let last = plan
        .progress
        .milestones
        .iter()
        .rev()
        .find(|m| !matches!(m.kind, K::Summary | K::Stall))
        .map(|m| (m.at, first_lines(&m.text, 1)));
    let since = [plan.status.phase_since, last.as_ref().map(|m| m.0)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(plan.now);
    if let Some(stalled) = plan.status.effects.stalled_since
        && since > stalled
    {
        plan.status.effects.stalled_since = None;
        let mins = (since.as_second() - stalled.as_second()) / 60;
        plan.milestone(K::Stall, format!("▶️ moving again after {mins} min"), None);
    }
    if plan.phase() != Phase::Running || blocked || plan.status.effects.stalled_since.is_some() {
        return None;
    }
    let after = view.settings.progress.stall_after.get();
    let at = since.checked_add(after).unwrap_or(plan.now);
    if at > plan.now {
        return Some(plan.until(at));
    }
    let what = last.map(|m| format!(", last: {}", m.1)).unwrap_or_default();
    let mins = (plan.now.as_second() - since.as_second()) / 60;
    plan.status.effects.stalled_since = Some(since);
    plan.milestone(
        K::Stall,
        format!("⏳ no progress for {mins} min{what}"),
        None,
    );
    None
}

/// Folds the builder's events into the plan: milestones, checkpoints, question files and
/// failures. `Err` is the action when an event ends the step (the task failed).
async fn fold(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    polled: &Polled,
) -> Result<Result<Seen, Action>, ReconcileError> {
    let mut seen = Seen::default();
    if polled
        .events
        .iter()
        .any(|e| !matches!(e, AgentEvent::TurnEnded(_)))
    {
        // The agent is getting on: nudges start counting afresh.
        plan.status.effects.nudges = 0;
    }
    for event in polled.events.iter().cloned() {
        if !matches!(event, AgentEvent::TurnEnded(_)) {
            // Only a turn that ended last (nothing after it yet) needs a nudge.
            seen.turn_ended = None;
        }
        match event {
            AgentEvent::Todo(text) => {
                plan.milestone(MilestoneKind::Todo, format!("✔ {text}"), None)
            }
            AgentEvent::Edited(files) => {
                // OpenCode names files by absolute path: the project's history and its
                // people see them relative to the workspace, never the host's layout.
                let base = ctx.workspaces.builder_dir(&view.t.project, &view.project);
                let files: Vec<String> =
                    files.iter().map(|f| workspace_relative(f, &base)).collect();
                let what = format!("edited {}", files.join(", "));
                let commits = work::checkpoint(ctx, view, plan, &what).await?;
                let commit = commits.values().next().cloned();
                plan.milestone(MilestoneKind::Checkpoint, format!("📝 {what}"), commit);
            }
            AgentEvent::Question(asked) => {
                let (qid, deadline) = questions::ask(ctx, view, plan, asked).await?;
                seen.deadline = Some(seen.deadline.map_or(deadline, |d| d.min(deadline)));
                if plan
                    .questions
                    .get(&qid)
                    .is_some_and(|q| q.provisional_branch.is_some())
                {
                    // Its provisional answer goes to the agent on the next step, right away.
                    seen.relay_now = true;
                }
                seen.asked_now += 1;
            }
            AgentEvent::Finished(summary) => seen.finished = Some(summary),
            AgentEvent::TurnEnded(text) => seen.turn_ended = Some(text),
            AgentEvent::Failed { message, retryable } => {
                plan.status.effects.failed_in = Some(match plan.phase() {
                    Phase::Planning => Phase::Planning,
                    _ => Phase::Running,
                });
                if retryable && plan.status.attempts < MAX_AGENT_RETRIES {
                    plan.status.attempts += 1;
                    // Overload and rate limits pass: try again after a growing pause.
                    let pause = ctx.settings.retry_pause * 2u32.pow(plan.status.attempts - 1);
                    let at = plan
                        .now
                        .checked_add(jiff::SignedDuration::try_from(pause).unwrap_or_default())
                        .unwrap_or(plan.now);
                    plan.status.effects.retry_at = Some(at);
                    plan.milestone(
                        MilestoneKind::Error,
                        format!("⚠ {message} (retrying in {})", human_pause(pause)),
                        None,
                    );
                } else {
                    plan.transition(Phase::Failed, "AgentFailed", message);
                    return Ok(Err(Action::await_change()));
                }
            }
        }
    }
    Ok(Ok(seen))
}

/// The agent stopped without saying it is done: checkpoint, show what it said, and nudge it
/// (twice at most) before giving up. `Some` when the task failed.
async fn nudge(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    agent: &dyn AgentRuntime,
    session: &str,
    polled: &Polled,
    text: &str,
) -> Result<Option<Action>, ReconcileError> {
    let commits = work::checkpoint(ctx, view, plan, "turn ended").await?;
    plan.milestone(
        if commits.is_empty() {
            MilestoneKind::Summary
        } else {
            MilestoneKind::Checkpoint
        },
        format!("💬 turn ended: {}", first_lines(text, 3)),
        commits.values().next().cloned(),
    );
    let nudges = plan.status.effects.nudges;
    if nudges >= MAX_NUDGES {
        plan.status.effects.failed_in = Some(match plan.phase() {
            Phase::Planning => Phase::Planning,
            _ => Phase::Running,
        });
        plan.transition(
            Phase::Failed,
            "AgentStopped",
            "the agent stopped without reporting the task done; edit the task (retry: N) \
             to resume it",
        );
        return Ok(Some(Action::await_change()));
    }
    let id = format!("nudge-{}", polled.cursor);
    let prompt = prompts::render(Prompt::Nudge, context! {})?;
    agent.send(&view.t, session, &id, &prompt).await?;
    plan.status.effects.nudges = nudges + 1;
    plan.record_prompt(&id);
    Ok(None)
}

/// The periodic summary: changed files and the agent's own word on where it stands.
async fn summary(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    agent: &dyn AgentRuntime,
    session: &str,
) -> Result<(), ReconcileError> {
    let mut text = agent.summary(&view.t, session).await?;
    let bases: BTreeMap<RepoName, String> = plan
        .status
        .repos
        .iter()
        .filter_map(|(r, s)| s.base_commit.clone().map(|b| (r.clone(), b)))
        .collect();
    let ws = ctx.workspaces.clone();
    let (t, p) = (view.t.clone(), view.project.clone());
    let files = blocking(move || ws.changed_files(&t, &p, &bases)).await?;
    let shown: Vec<&str> = files.iter().take(8).map(String::as_str).collect();
    let more = files.len().saturating_sub(shown.len());
    let files = match (files.len(), more) {
        (0, _) => "no files changed yet".to_string(),
        (_, 0) => format!("files changed: {}", shown.join(", ")),
        _ => format!("files changed: {} and {more} more", shown.join(", ")),
    };
    text = if text.is_empty() {
        files
    } else {
        format!("{files}; {text}")
    };
    plan.milestone(MilestoneKind::Summary, format!("🧾 {text}"), None);
    Ok(())
}

/// What decides when a running task is looked at again.
#[derive(Debug, Clone, PartialEq)]
pub struct Look {
    /// A provisional answer waits to be relayed.
    pub relay_now: bool,
    /// The builder is blocked on a question.
    pub blocked: bool,
    /// The runtime wakes the task itself when something happens.
    pub wakes: bool,
    /// How often a runtime that does not wake is polled.
    pub poll_interval: Duration,
    /// Until the nearest question deadline.
    pub until_deadline: Option<Duration>,
    /// Until the next periodic summary.
    pub until_summary: Duration,
    /// Until a transient error's retry.
    pub until_retry: Option<Duration>,
    /// Until the builder would count as stalled.
    pub until_stall: Option<Duration>,
}

/// When to look again: at once when an answer waits to be relayed; otherwise the poll
/// interval (every 30 s as a safety net for a blocked builder or one that wakes the task
/// itself), never past a deadline, a retry, or (by at least a second) the next summary.
pub fn next_look(l: &Look) -> Duration {
    let safety_net = Duration::from_secs(30);
    let mut wait = if l.relay_now {
        Duration::ZERO
    } else if l.blocked || l.wakes {
        safety_net
    } else {
        l.poll_interval
    };
    if let Some(d) = l.until_deadline {
        // Deadlines are kept even while the agent works on (provisional answers).
        wait = wait.min(d);
    }
    wait = wait.min(l.until_summary.max(Duration::from_secs(1)));
    if let Some(r) = l.until_retry {
        wait = wait.min(r);
    }
    if let Some(s) = l.until_stall {
        wait = wait.min(s);
    }
    wait
}

/// `path` relative to the workspace `base` when it is inside it; a path elsewhere is shown
/// by its file name only.
pub fn workspace_relative(path: &str, base: &std::path::Path) -> String {
    let p = std::path::Path::new(path);
    if !p.is_absolute() {
        return path.to_string();
    }
    match p.strip_prefix(base) {
        Ok(rel) => rel.display().to_string(),
        Err(_) => p
            .file_name()
            .map(|n| format!("…/{}", n.to_string_lossy()))
            .unwrap_or_else(|| "…".into()),
    }
}

fn human_pause(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    lines.join(" / ")
}
