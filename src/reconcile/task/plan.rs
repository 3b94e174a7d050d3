//! The changes one reconcile makes: the status draft, milestones, question files, the lab
//! record and question documents, committed together by [`Plan::commit`], which then tells
//! the notifiers. Also the small status helpers every phase uses (conditions, links).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::view::TaskFiles;
use crate::chat::Notification;
use crate::names::{Id, Qid, TaskRef};
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::StatePath;
use crate::state::path::ObjectKey;
use crate::state::snapshot::Problem;
use crate::state::status::{
    Condition, ConditionStatus, LabStatus, Link, Milestone, MilestoneKind, Phase, Progress,
    Question, QuestionState, TaskStatus,
};
use crate::store::Update;

/// Milestone texts are cut to this many characters.
const MAX_MILESTONE_CHARS: usize = 500;

/// The changes one reconcile makes, committed together.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The task.
    pub t: TaskRef,
    /// The time of this reconcile (the injected clock).
    pub now: Timestamp,
    /// The status to write.
    pub status: TaskStatus,
    original: Option<TaskStatus>,
    /// All milestones, the new ones at the end.
    pub progress: Progress,
    first_new_milestone: usize,
    /// The task's questions as they will be.
    pub questions: BTreeMap<Qid, Question>,
    /// Questions whose files change.
    pub changed_questions: BTreeSet<Qid>,
    /// The project's lab record, when it changes.
    pub lab: Option<LabStatus>,
    summaries: Vec<String>,
    /// Question documents to create.
    pub docs: Vec<(Id, String)>,
    /// `plan.yaml` as it will be.
    pub plan_status: Option<crate::state::planning::PlanStatus>,
    original_plan: Option<crate::state::planning::PlanStatus>,
    /// Plan documents to write (`Some`) or delete (`None`), by path under `plan/`.
    pub plan_docs: BTreeMap<String, Option<String>>,
    /// Story tasks to create (once: never over an existing `task.yaml`).
    pub child_tasks: Vec<(TaskRef, crate::state::spec::TaskSpec)>,
}

impl Plan {
    /// A plan that starts from the task's files as read.
    pub fn new(t: &TaskRef, head: Option<String>, files: &TaskFiles, now: Timestamp) -> Self {
        let mut status = files.status.clone().unwrap_or_default();
        status.observed_commit = head;
        Self {
            t: t.clone(),
            now,
            status,
            original: files.status.clone(),
            first_new_milestone: files.progress.milestones.len(),
            progress: files.progress.clone(),
            questions: files.questions.clone(),
            changed_questions: BTreeSet::new(),
            lab: None,
            summaries: Vec::new(),
            docs: Vec::new(),
            plan_status: files.plan.clone(),
            original_plan: files.plan.clone(),
            plan_docs: BTreeMap::new(),
            child_tasks: Vec::new(),
        }
    }

    /// The phase the task will be in.
    pub fn phase(&self) -> Phase {
        self.status.phase
    }

    /// The milestones this reconcile adds.
    pub fn new_milestones(&self) -> &[Milestone] {
        &self.progress.milestones[self.first_new_milestone..]
    }

    /// Adds a milestone (its text cut to a size `progress.yaml` can always hold).
    pub fn milestone(
        &mut self,
        kind: MilestoneKind,
        text: impl Into<String>,
        commit: Option<String>,
    ) {
        let mut text: String = text.into();
        if text.chars().count() > MAX_MILESTONE_CHARS {
            // Agent-supplied text is untrusted: keep progress.yaml small enough to parse.
            text = text.chars().take(MAX_MILESTONE_CHARS).collect::<String>() + "…";
        }
        let seq = self.progress.milestones.len() as u32 + 1;
        self.progress.milestones.push(Milestone {
            seq,
            at: self.now,
            kind,
            text,
            commit,
        });
    }

    /// Moves to phase `to`, with the `Ready` condition and a milestone saying so.
    pub fn transition(&mut self, to: Phase, reason: &str, message: impl Into<String>) {
        let from = self.status.phase;
        let message = message.into();
        if to == Phase::InReview && from != Phase::InReview {
            // A new round: approvals of earlier rounds no longer count.
            self.status.review_round += 1;
        }
        self.status.phase = to;
        self.status.phase_since = Some(self.now);
        self.status.reason = Some(reason.to_string());
        self.status.message = (!message.is_empty()).then(|| message.clone());
        let ready = match to {
            Phase::Promoted => ConditionStatus::True,
            _ => ConditionStatus::False,
        };
        set_condition(&mut self.status, "Ready", ready, reason, &message, self.now);
        let text = if message.is_empty() {
            format!("{from} → {to}")
        } else {
            format!("{from} → {to}: {message}")
        };
        self.milestone(MilestoneKind::Phase, text, None);
        self.summaries.push(format!("{} {from} → {to}", self.t));
    }

    /// Says why the task waits, without a transition (and without a commit when unchanged).
    pub fn waiting(&mut self, reason: &str, message: impl Into<String>) {
        self.status.reason = Some(reason.into());
        self.status.message = Some(message.into());
    }

    /// Records a changed question (its file is written).
    pub fn question_changed(&mut self, qid: &Qid, q: Question) {
        self.questions.insert(qid.clone(), q);
        self.changed_questions.insert(qid.clone());
    }

    /// Records that the agent got prompt `id` (once).
    pub fn record_prompt(&mut self, id: &str) {
        if let Some(a) = self.status.agent.as_mut()
            && !a.prompts_sent.iter().any(|p| p == id)
        {
            a.prompts_sent.push(id.into());
        }
    }

    /// Whether the agent got prompt `id`.
    pub fn prompt_sent(&self, id: &str) -> bool {
        self.status
            .agent
            .as_ref()
            .is_some_and(|a| a.prompts_sent.iter().any(|p| p == id))
    }

    /// How many prompts the agent got (for ids unique within a session).
    pub fn prompts_count(&self) -> usize {
        self.status
            .agent
            .as_ref()
            .map_or(0, |a| a.prompts_sent.len())
    }

    /// The session id recorded for the task.
    pub fn session(&self) -> Option<String> {
        self.status
            .agent
            .as_ref()
            .and_then(|a| a.session_id.clone())
    }

    /// Sends feedback (test failures, review comments, a merge to make) to the task's
    /// session as prompt `id` (`feedback-…`), records it, and goes back to `Running`.
    pub async fn send_feedback(
        &mut self,
        ctx: &Context,
        id: &str,
        text: &str,
        reason: &str,
        message: &str,
    ) -> Result<Action, ReconcileError> {
        let Some(session) = self.session() else {
            return Err(ReconcileError::NoSession(id.to_string()));
        };
        let id = format!("{}{id}", crate::agent::scripted::FEEDBACK_PREFIX);
        self.agent(ctx)?.send(&self.t, &session, &id, text).await?;
        self.record_prompt(&id);
        self.transition(Phase::Running, reason, message);
        Ok(Action::requeue(Duration::ZERO))
    }

    /// How long until `at` (zero when it has passed).
    pub fn until(&self, at: Timestamp) -> Duration {
        Duration::from_millis((at.as_millisecond() - self.now.as_millisecond()).max(0) as u64)
    }

    /// The runtime the task's session was made with.
    pub fn agent(
        &self,
        ctx: &Context,
    ) -> Result<Arc<dyn crate::agent::AgentRuntime>, ReconcileError> {
        let kind = self.status.agent.as_ref().map(|a| a.runtime);
        match kind {
            Some(kind) => Ok(ctx.agents.get(kind)?.clone()),
            None => Err(ReconcileError::NoSession(
                "the task has no agent yet".into(),
            )),
        }
    }

    /// Records why the task cannot go on (condition `type_` False) and waits for a change.
    pub fn blocked(&mut self, type_: &str, reason: &str, message: &str) -> Action {
        set_condition(
            &mut self.status,
            type_,
            ConditionStatus::False,
            reason,
            message,
            self.now,
        );
        Action::await_change()
    }

    /// Sets condition `type_` back to True when it was False (the problem went away).
    pub fn clear_condition(&mut self, type_: &str) {
        if self
            .status
            .conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == ConditionStatus::False)
        {
            set_condition(
                &mut self.status,
                type_,
                ConditionStatus::True,
                "Valid",
                "",
                self.now,
            );
        }
    }

    /// Sets link `name` (lab, pr:<repo>, attach).
    pub fn link(&mut self, name: &str, url: String) {
        let links = &mut self.status.links;
        match links.iter_mut().find(|l| l.name == name) {
            Some(l) => l.url = url,
            None => links.push(Link {
                name: name.to_string(),
                url,
            }),
        }
    }

    /// The file updates this plan makes, with the commit summary; empty when nothing worth
    /// a commit changed.
    pub fn updates(&mut self) -> Result<Vec<Update>, ReconcileError> {
        let new_milestones = self.new_milestones().to_vec();
        // The commit message names the transition, or else the first new milestone.
        let summary = match (self.summaries.is_empty(), new_milestones.first()) {
            (false, _) => self.summaries.join("; "),
            (true, Some(m)) => format!("{} {}", self.t, m.text),
            (true, None) => format!("{} status", self.t),
        };
        if !new_milestones.is_empty() {
            // Milestones before this commit's were offered to the notifiers by the
            // catch-up at the start of this reconcile; this commit's are offered after it.
            self.status.effects.notified = self.first_new_milestone;
        }
        let status_changed = {
            let mut a = self.original.clone();
            let mut b = Some(self.status.clone());
            // observedCommit alone is not worth a commit.
            if let Some(a) = a.as_mut() {
                a.observed_commit = None;
            }
            if let Some(b) = b.as_mut() {
                b.observed_commit = None;
            }
            a != b
        };
        let mut updates = Vec::new();
        if !status_changed
            && new_milestones.is_empty()
            && self.changed_questions.is_empty()
            && self.lab.is_none()
            && self.docs.is_empty()
            && self.plan_status == self.original_plan
            && self.plan_docs.is_empty()
        {
            return Ok(updates);
        }
        updates.push(Update::put(
            StatePath::TaskStatus(self.t.clone()),
            yaml(&self.status)?,
            summary.clone(),
        ));
        if !new_milestones.is_empty() {
            updates.push(Update::put(
                StatePath::Progress(self.t.clone()),
                yaml(&self.progress)?,
                summary.clone(),
            ));
        }
        for qid in &self.changed_questions {
            if let Some(q) = self.questions.get(qid) {
                updates.push(Update::put(
                    StatePath::Question(self.t.clone(), qid.clone()),
                    yaml(q)?,
                    format!("{} {qid} {}", self.t, state_word(q.state)),
                ));
            }
        }
        for (batch, text) in &self.docs {
            // Generated once; from then on the document belongs to people.
            let mut u = Update::put(
                StatePath::QuestionDoc(self.t.clone(), batch.clone()),
                text.clone(),
                format!("{} questions/{batch}.md", self.t),
            );
            u.create_only = true;
            updates.push(u);
        }
        if let Some(lab) = &self.lab {
            updates.push(Update::put(
                StatePath::LabStatus(self.t.project.clone()),
                yaml(lab)?,
                summary.clone(),
            ));
        }
        if self.plan_status != self.original_plan
            && let Some(p) = &self.plan_status
        {
            let what = format!("{} plan v{} ({}): {:?}", self.t, p.version, p.step, p.state);
            // With a turn's documents: first, so the commit's subject names the plan's
            // version, step and state.
            let at = if self.plan_docs.is_empty() {
                updates.len()
            } else {
                0
            };
            updates.insert(
                at,
                Update::put(
                    StatePath::PlanStatus(self.t.clone()),
                    yaml(p)?,
                    what.clone(),
                ),
            );
            for (path, text) in &self.plan_docs {
                let sp = StatePath::PlanDoc(self.t.clone(), path.clone());
                updates.push(match text {
                    Some(text) => Update::put(sp, text.clone(), what.clone()),
                    None => Update::delete(sp, what.clone()),
                });
            }
        }
        for (child, spec) in &self.child_tasks {
            let text = crate::state::spec::task_file(spec).map_err(ReconcileError::StoryTask)?;
            let mut u = Update::put(
                StatePath::TaskSpec(child.clone()),
                text,
                format!("{} story task {child}", self.t),
            );
            u.create_only = true;
            updates.push(u);
        }
        Ok(updates)
    }

    /// Writes everything that changed in one commit, then tells people.
    pub async fn commit(mut self, ctx: &Context) -> Result<(), ReconcileError> {
        let updates = self.updates()?;
        if updates.is_empty() {
            return Ok(());
        }
        let others = ctx.store.write(updates).await?;
        ctx.metrics.committed(&ObjectKey::Task(self.t.clone()));
        // Our own commits wake nothing: the story tasks this one made start now.
        for (child, _) in &self.child_tasks {
            ctx.scheduler.now(ObjectKey::Task(child.clone()));
        }
        // Someone else's commits may have come in with ours: their objects still wake.
        ctx.dispatch(&others);
        notify(ctx, &self.t, self.new_milestones()).await
    }
}

/// All problems on one line.
pub fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn state_word(s: QuestionState) -> &'static str {
    match s {
        QuestionState::Open => "asked",
        QuestionState::Provisional => "asked (going on with the recommended option)",
        QuestionState::Answered => "answered",
        QuestionState::Defaulted => "defaulted",
        QuestionState::Overridden => "overridden",
    }
}

fn yaml<T: serde::Serialize>(v: &T) -> Result<String, ReconcileError> {
    Ok(crate::state::yaml::to_string(v)?)
}

/// Sets a kstatus condition, keeping its transition time when its value stays.
pub fn set_condition(
    status: &mut TaskStatus,
    type_: &str,
    value: ConditionStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
            }
            c.status = value;
            c.reason = reason.to_string();
            c.message = message.to_string();
        }
        None => status.conditions.push(Condition {
            type_: type_.to_string(),
            status: value,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
        }),
    }
}

async fn notify(
    ctx: &Context,
    t: &TaskRef,
    milestones: &[Milestone],
) -> Result<(), ReconcileError> {
    for m in milestones {
        ctx.notifier
            .notify(&Notification {
                id: format!("{t}#{}", m.seq),
                task: t.to_string(),
                text: m.text.clone(),
            })
            .await?;
    }
    Ok(())
}

/// Milestones committed but perhaps not delivered (a crash between the two): deliver again;
/// notifiers deliver each id once.
pub async fn catch_up_notifications(
    ctx: &Context,
    t: &TaskRef,
    files: &TaskFiles,
) -> Result<(), ReconcileError> {
    let notified = files.status.as_ref().map_or(0, |s| s.effects.notified);
    let pending: Vec<Milestone> = files
        .progress
        .milestones
        .iter()
        .skip(notified)
        .cloned()
        .collect();
    notify(ctx, t, &pending).await
}
