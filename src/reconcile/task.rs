//! The task lifecycle: `Pending → Queued → Preparing → Running ⇄ AwaitingAnswer → Deploying →
//! Testing → InReview → Promoted`, with `Failed`, `Suspended` and `Cancelled`.
//!
//! Each reconcile reads the task's files from the snapshot, takes the next idempotent step,
//! and records the result (status, progress milestones, question files) in one commit.
//! Every external effect is either find-or-create or keyed by an id recorded in status; the
//! rule for each is in docs/reconciler.md.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::{Action, Context, ReconcileError};
use crate::agent::{AgentEvent, AskKind, SessionRequest};
use crate::chat::Notification;
use crate::forge::{Change, ChangeRequest};
use crate::lab::DeployRequest;
use crate::names::{Qid, RepoName, TaskRef};
use crate::state::StatePath;
use crate::state::path::ObjectKey;
use crate::state::snapshot::Problem;
use crate::state::spec::{
    AnswerSpec, ApprovalSpec, ContinuePolicy, OnTimeout, PermissionReply, ProjectSpec, Settings,
    TaskSpec,
};
use crate::state::status::{
    AgentStatus, ChangeStatus, Condition, ConditionStatus, DecidedBy, Decision, Deploy, LabStatus,
    Link, Milestone, MilestoneKind, Phase, Progress, Question, QuestionKind, QuestionState,
    TaskStatus,
};
use crate::store::Update;

/// What the reconcile of one task reads, copied out of the snapshot.
#[derive(Debug, Clone, Default)]
struct View {
    head: Option<String>,
    settings: Option<Settings>,
    project: Option<ProjectSpec>,
    project_present: bool,
    lab: Option<LabStatus>,
    exists: bool,
    spec: Option<TaskSpec>,
    spec_present: bool,
    spec_problems: Vec<Problem>,
    project_problems: Vec<Problem>,
    /// A reconciler-owned file of the task does not parse (hand-edited, or too large).
    owned_file_problems: Vec<Problem>,
    status: Option<TaskStatus>,
    progress: Progress,
    questions: BTreeMap<Qid, Question>,
    answers: BTreeMap<Qid, AnswerSpec>,
    approvals: Vec<(crate::names::Id, ApprovalSpec)>,
    /// Question documents by batch.
    question_docs: BTreeMap<crate::names::Id, String>,
    /// Other tasks of the project: (task, phase, priority, since).
    siblings: Vec<(
        TaskRef,
        Phase,
        crate::state::spec::Priority,
        Option<Timestamp>,
    )>,
}

impl View {
    fn load(ctx: &Context, t: &TaskRef) -> Result<Self, ReconcileError> {
        let tracker = ctx
            .tracker
            .read()
            .map_err(|_| ReconcileError::Other("tracker lock poisoned".into()))?;
        let snap = tracker.snapshot();
        let mut v = View {
            head: tracker.head().map(|h| h.to_string()),
            settings: snap.settings.clone(),
            ..View::default()
        };
        let Some(pe) = snap.projects.get(&t.project) else {
            return Ok(v);
        };
        v.project = pe.spec.clone();
        v.project_problems = snap
            .problems_of(&StatePath::Project(t.project.clone()).to_path())
            .to_vec();
        v.project_present = pe.spec_present;
        v.lab = pe.lab.clone();
        for (name, te) in &pe.tasks {
            let tr = TaskRef {
                project: t.project.clone(),
                task: name.clone(),
            };
            if &tr == t {
                continue;
            }
            let phase = te.status.as_ref().map_or(Phase::Pending, |s| s.phase);
            let prio = te.spec.as_ref().map(|s| s.priority).unwrap_or_default();
            let since = te.status.as_ref().and_then(|s| s.phase_since);
            v.siblings.push((tr, phase, prio, since));
        }
        let Some(te) = pe.tasks.get(&t.task) else {
            return Ok(v);
        };
        v.exists = true;
        v.spec = te.spec.as_deref().cloned();
        v.spec_present = te.spec_present;
        v.spec_problems = snap
            .problems_of(&StatePath::TaskSpec(t.clone()).to_path())
            .to_vec();
        v.status = te.status.as_deref().cloned();
        for path in [
            StatePath::TaskStatus(t.clone()),
            StatePath::Progress(t.clone()),
        ] {
            v.owned_file_problems
                .extend(snap.problems_of(&path.to_path()).iter().cloned());
        }
        v.progress = te.progress.clone().unwrap_or_default();
        v.questions = te
            .questions
            .iter()
            .map(|(k, q)| (k.clone(), (**q).clone()))
            .collect();
        v.answers = te
            .answers
            .iter()
            .map(|(k, a)| (k.clone(), (**a).clone()))
            .collect();
        v.approvals = te
            .approvals
            .iter()
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        v.question_docs = te.question_docs.clone();
        Ok(v)
    }
}

/// Milestone texts are cut to this many characters.
const MAX_MILESTONE_CHARS: usize = 500;

/// The changes one reconcile makes, committed together.
struct Plan {
    t: TaskRef,
    now: Timestamp,
    status: TaskStatus,
    original: Option<TaskStatus>,
    progress: Progress,
    first_new_milestone: usize,
    questions: BTreeMap<Qid, Question>,
    changed_questions: BTreeSet<Qid>,
    lab: Option<LabStatus>,
    summaries: Vec<String>,
    /// Question documents to create.
    docs: Vec<(crate::names::Id, String)>,
}

impl Plan {
    fn new(t: &TaskRef, view: &View, now: Timestamp) -> Self {
        let mut status = view.status.clone().unwrap_or_default();
        status.observed_commit = view.head.clone();
        Self {
            t: t.clone(),
            now,
            status,
            original: view.status.clone(),
            first_new_milestone: view.progress.milestones.len(),
            progress: view.progress.clone(),
            questions: view.questions.clone(),
            changed_questions: BTreeSet::new(),
            lab: None,
            summaries: Vec::new(),
            docs: Vec::new(),
        }
    }

    fn phase(&self) -> Phase {
        self.status.phase
    }

    fn milestone(&mut self, kind: MilestoneKind, text: impl Into<String>, commit: Option<String>) {
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

    fn transition(&mut self, to: Phase, reason: &str, message: impl Into<String>) {
        let from = self.status.phase;
        let message = message.into();
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

    fn question_changed(&mut self, qid: &Qid, q: Question) {
        self.questions.insert(qid.clone(), q);
        self.changed_questions.insert(qid.clone());
    }

    /// Records that the agent got prompt `id` (once).
    fn record_prompt(&mut self, id: &str) {
        if let Some(a) = self.status.agent.as_mut()
            && !a.prompts_sent.iter().any(|p| p == id)
        {
            a.prompts_sent.push(id.into());
        }
    }

    /// Sends feedback (test failures, review comments, a merge to make) to the task's
    /// session as prompt `id` (`feedback-…`), records it, and goes back to `Running`.
    async fn send_feedback(
        &mut self,
        ctx: &Context,
        t: &TaskRef,
        id: &str,
        text: &str,
        reason: &str,
        message: &str,
    ) -> Result<Action, ReconcileError> {
        let Some(session) = self
            .status
            .agent
            .as_ref()
            .and_then(|a| a.session_id.clone())
        else {
            return Err(ReconcileError::Other(format!(
                "no agent session to send {id} to"
            )));
        };
        let id = format!("{}{id}", crate::agent::scripted::FEEDBACK_PREFIX);
        self.agent(ctx)?.send(t, &session, &id, text).await?;
        self.record_prompt(&id);
        self.transition(Phase::Running, reason, message);
        Ok(Action::requeue(Duration::ZERO))
    }

    /// How long until `at` (zero when it has passed).
    fn until(&self, at: Timestamp) -> Duration {
        Duration::from_millis((at.as_millisecond() - self.now.as_millisecond()).max(0) as u64)
    }

    /// The runtime the task's session was made with.
    fn agent(&self, ctx: &Context) -> Result<Arc<dyn crate::agent::AgentRuntime>, ReconcileError> {
        let name = self
            .status
            .agent
            .as_ref()
            .map_or("", |a| a.runtime.as_str());
        Ok(ctx.agents.by_name(name)?.clone())
    }

    fn effect(&self, key: &str) -> Option<&str> {
        self.status.effects.get(key).map(String::as_str)
    }

    fn set_effect(&mut self, key: &str, value: impl Into<String>) {
        self.status.effects.insert(key.to_string(), value.into());
    }

    /// Writes everything that changed in one commit, then tells people.
    async fn commit(mut self, ctx: &Context) -> Result<(), ReconcileError> {
        let new_milestones: Vec<Milestone> =
            self.progress.milestones[self.first_new_milestone..].to_vec();
        let mut updates = Vec::new();
        // The commit message names the transition, or else the first new milestone.
        let summary = match (self.summaries.is_empty(), new_milestones.first()) {
            (false, _) => self.summaries.join("; "),
            (true, Some(m)) => format!("{} {}", self.t, m.text),
            (true, None) => format!("{} status", self.t),
        };
        if !new_milestones.is_empty() {
            // Milestones before this commit's were offered to the notifiers by the
            // catch-up at the start of this reconcile; this commit's are offered below.
            let notified = self.first_new_milestone.to_string();
            self.set_effect("notified", notified);
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
        if !status_changed
            && new_milestones.is_empty()
            && self.changed_questions.is_empty()
            && self.lab.is_none()
            && self.docs.is_empty()
        {
            return Ok(());
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
        ctx.writer.write(updates).await?;
        ctx.metrics.committed(&ObjectKey::Task(self.t.clone()));
        ctx.refresh().await?;
        notify(ctx, &self.t, &new_milestones).await?;
        Ok(())
    }
}

/// Records why the task cannot go on (condition `type_` False) and waits for a change.
fn blocked(plan: &mut Plan, type_: &str, reason: &str, message: &str) -> Action {
    set_condition(
        &mut plan.status,
        type_,
        ConditionStatus::False,
        reason,
        message,
        plan.now,
    );
    Action::await_change()
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sets condition `type_` back to True when it was False (the problem went away).
fn clear_condition(status: &mut TaskStatus, type_: &str, now: Timestamp) {
    if status
        .conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == ConditionStatus::False)
    {
        set_condition(status, type_, ConditionStatus::True, "Valid", "", now);
    }
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
    crate::state::yaml::to_string(v).map_err(|e| ReconcileError::Other(e.to_string()))
}

fn set_condition(
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
async fn catch_up_notifications(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
) -> Result<(), ReconcileError> {
    let notified: usize = view
        .status
        .as_ref()
        .and_then(|s| s.effects.get("notified"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let pending: Vec<Milestone> = view
        .progress
        .milestones
        .iter()
        .skip(notified)
        .cloned()
        .collect();
    notify(ctx, t, &pending).await
}

/// Reconciles one object; only tasks have work of their own.
pub async fn reconcile(key: ObjectKey, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ObjectKey::Task(t) = key else {
        return Ok(Action::await_change());
    };
    let view = View::load(&ctx, &t)?;
    catch_up_notifications(&ctx, &t, &view).await?;
    let Some(settings) = view.settings.clone() else {
        return Ok(Action::await_change());
    };
    if !view.exists {
        // The whole task directory is gone: its slot (if it had one) is free.
        for (s, phase, _, _) in &view.siblings {
            if *phase == Phase::Queued {
                ctx.scheduler.now(ObjectKey::Task(s.clone()));
            }
        }
        return Ok(Action::await_change());
    }
    if let Some(p) = view.owned_file_problems.first() {
        // Never overwrite a status or progress file that did not parse: that would lose the
        // agent cursor or the history. A person has to fix (or delete) it.
        tracing::error!(task = %t, problem = %p, "a reconciler-owned file is invalid; not acting on this task");
        return Ok(Action::await_change());
    }
    let mut plan = Plan::new(&t, &view, ctx.clock.now());
    let action = step(&ctx, &t, &view, &settings, &mut plan).await?;
    let left_active =
        view.status.as_ref().is_some_and(|s| s.phase.is_active()) && !plan.phase().is_active();
    plan.commit(&ctx).await?;
    if left_active {
        // A slot in the project freed up: queued siblings may start.
        for (s, phase, _, _) in &view.siblings {
            if *phase == Phase::Queued {
                ctx.scheduler.now(ObjectKey::Task(s.clone()));
            }
        }
    }
    Ok(action)
}

async fn stop_agent(ctx: &Context, t: &TaskRef, plan: &Plan) -> Result<(), ReconcileError> {
    if let Some(session) = plan
        .status
        .agent
        .as_ref()
        .and_then(|a| a.session_id.clone())
    {
        match plan.agent(ctx)?.stop(t, &session).await {
            Ok(()) | Err(crate::agent::AgentError::NoSession(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn step(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    // The task was deleted: stop, keep the worktree and branches.
    if !view.spec_present {
        if view.status.is_some() && plan.phase() != Phase::Cancelled {
            stop_agent(ctx, t, plan).await?;
            plan.transition(
                Phase::Cancelled,
                "TaskDeleted",
                "task.yaml was deleted; worktree and branches kept",
            );
        }
        return Ok(Action::await_change());
    }
    // An invalid task.yaml: report where, do nothing else.
    let Some(spec) = view.spec.clone() else {
        let msg = join_problems(&view.spec_problems);
        plan.status.message = Some(msg.clone());
        plan.status.reason = Some("InvalidSpec".into());
        return Ok(blocked(plan, "SpecValid", "InvalidSpec", &msg));
    };
    clear_condition(&mut plan.status, "SpecValid", plan.now);
    if !view.project_problems.is_empty() {
        let msg = join_problems(&view.project_problems);
        return Ok(blocked(plan, "ProjectReady", "InvalidProject", &msg));
    }
    let Some(project) = view.project.clone() else {
        let msg = if view.project_present {
            "project.yaml is invalid; see gaffer validate"
        } else {
            "the project has no project.yaml"
        };
        return Ok(blocked(plan, "ProjectReady", "NoProject", msg));
    };
    clear_condition(&mut plan.status, "ProjectReady", plan.now);

    if spec.cancel {
        if plan.phase() != Phase::Cancelled {
            stop_agent(ctx, t, plan).await?;
            plan.transition(
                Phase::Cancelled,
                "Cancelled",
                "cancel: true; worktree and branches kept",
            );
        }
        return Ok(Action::await_change());
    }
    if matches!(plan.phase(), Phase::Cancelled | Phase::Promoted) {
        return Ok(Action::await_change());
    }
    if spec.suspend && plan.phase() != Phase::Failed {
        if plan.phase() != Phase::Suspended {
            stop_agent(ctx, t, plan).await?;
            let from = plan.phase();
            plan.set_effect("suspendedFrom", from.as_str());
            plan.transition(Phase::Suspended, "Suspended", "suspend: true");
        }
        return Ok(Action::await_change());
    }
    if plan.phase() == Phase::Suspended {
        let back = match plan.effect("suspendedFrom") {
            Some("Running") | Some("AwaitingAnswer") => Some(Phase::Running),
            Some("Preparing") => Some(Phase::Running),
            Some("Deploying") => Some(Phase::Deploying),
            Some("Testing") => Some(Phase::Testing),
            Some("InReview") => Some(Phase::InReview),
            _ => None,
        };
        resume_through_queue(plan, back, "Resumed", "suspend: false");
        return Ok(Action::requeue(Duration::ZERO));
    }
    if plan.phase() == Phase::Failed {
        if spec.retry > plan.status.observed_retry {
            plan.status.observed_retry = spec.retry;
            plan.status.attempts = 0;
            plan.status.effects.remove("testAttempts");
            let back = match plan.effect("failedIn") {
                Some("Deploying") => Some(Phase::Deploying),
                Some("Testing") => Some(Phase::Testing),
                Some("InReview") => Some(Phase::InReview),
                Some("Running") | Some("AwaitingAnswer") if plan.status.agent.is_some() => {
                    Some(Phase::Running)
                }
                _ => None,
            };
            resume_through_queue(plan, back, "Retry", &format!("retry: {}", spec.retry));
            return Ok(Action::requeue(Duration::ZERO));
        }
        return Ok(Action::await_change());
    }

    // An answer that came after its default was applied, once the work moved on.
    if matches!(
        plan.phase(),
        Phase::Deploying | Phase::Testing | Phase::InReview
    ) && let Some(action) = late_answer(view, plan)
    {
        return Ok(action);
    }
    match plan.phase() {
        Phase::Pending => {
            plan.transition(Phase::Queued, "Queued", "");
            Ok(Action::requeue(Duration::ZERO))
        }
        Phase::Queued => queued(t, view, settings, &spec, plan),
        Phase::Preparing => preparing(ctx, t, settings, &spec, &project, plan).await,
        Phase::Running | Phase::AwaitingAnswer => {
            running(ctx, t, view, settings, &spec, &project, plan).await
        }
        Phase::Deploying => deploying(ctx, t, view, settings, &project, plan).await,
        Phase::Testing => testing(ctx, t, view, &project, plan).await,
        Phase::InReview => in_review(ctx, t, view, settings, &spec, &project, plan).await,
        Phase::Promoted | Phase::Failed | Phase::Suspended | Phase::Cancelled => {
            Ok(Action::await_change())
        }
    }
}

/// Goes back to work through the queue: the project's slot limit applies again, and
/// Preparing switches the shared worktree back to this task's branch before `back` resumes.
fn resume_through_queue(plan: &mut Plan, back: Option<Phase>, reason: &str, message: &str) {
    match back {
        Some(p) => plan.set_effect("resumeTo", p.as_str()),
        None => {
            plan.status.effects.remove("resumeTo");
        }
    }
    plan.transition(Phase::Queued, reason, message);
}

fn queued(
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    spec: &TaskSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let active = view
        .siblings
        .iter()
        .filter(|(_, p, _, _)| p.is_active())
        .count();
    let limit = settings.limits.active_tasks_per_project as usize;
    if active >= limit {
        plan.status.message = Some(format!(
            "waiting for a free slot ({active}/{limit} active in {})",
            t.project
        ));
        plan.status.reason = Some("ProjectBusy".into());
        return Ok(Action::await_change());
    }
    // Priority first, then the order tasks were queued in, then name.
    let me = (
        std::cmp::Reverse(spec.priority),
        plan.status.phase_since,
        t.task.clone(),
    );
    let ahead = view
        .siblings
        .iter()
        .filter(|(_, p, _, _)| *p == Phase::Queued)
        .filter(|(s, _, prio, since)| (std::cmp::Reverse(*prio), *since, s.task.clone()) < me)
        .count();
    if active + ahead >= limit {
        plan.status.reason = Some("ProjectBusy".into());
        plan.status.message = Some(format!(
            "{ahead} task(s) ahead in the queue of {}",
            t.project
        ));
        return Ok(Action::await_change());
    }
    plan.transition(Phase::Preparing, "Starting", "");
    Ok(Action::requeue(Duration::ZERO))
}

fn task_prompt(
    t: &TaskRef,
    spec: &TaskSpec,
    worktrees: &BTreeMap<RepoName, std::path::PathBuf>,
    project: &ProjectSpec,
) -> String {
    let mut p = format!(
        "# Task: {}\n\nProject: {}\nBranch: {}\n\n",
        spec.title,
        t.project,
        t.branch()
    );
    if !spec.description.is_empty() {
        p.push_str(&spec.description);
        p.push_str("\n\n");
    }
    p.push_str("## Repositories (git worktrees, already on the branch)\n");
    for (name, dir) in worktrees {
        p.push_str(&format!("- {name}: {}\n", dir.display()));
    }
    p.push_str(
        "\n## How to work\n- Keep a todo list and complete items as you go; each completed item is reported.\n\
         - When you need a decision, ask with the question tool: list the recommended option first and\n  \
           end its label with \" (Recommended)\". You may be answered at once with the recommended\n  \
           option and told later if a person chose differently.\n",
    );
    if let Some(lab) = &project.lab {
        p.push_str(&format!(
            "- Your work is deployed from {} to the lab namespace {}; LAB_NAMESPACE and LAB_URL are set for tests.\n",
            lab.overlay.value,
            t.project.lab_namespace()
        ));
        if let Some(test) = &lab.test {
            p.push_str(&format!("- The lab tests run with: {test}\n"));
        }
    }
    p.push_str(&format!(
        "- When the task is complete, end with a final message whose last line is\n  \
         `{} <one-line summary of what you did>`. Do not write that line before the work is done.\n",
        crate::agent::opencode::history::DONE_MARKER
    ));
    p
}

async fn preparing(
    ctx: &Context,
    t: &TaskRef,
    settings: &Settings,
    spec: &TaskSpec,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let ws = ctx.workspaces.clone();
    let (tt, pp) = (t.clone(), project.clone());
    let repos = blocking(move || ws.prepare(&tt, &pp)).await?;
    for (name, rs) in repos {
        let entry = plan.status.repos.entry(name).or_insert(rs.clone());
        entry.branch = rs.branch;
        if entry.base_commit.is_none() {
            entry.base_commit = rs.base_commit;
        }
        entry.head_commit = rs.head_commit;
    }
    let worktrees: BTreeMap<RepoName, std::path::PathBuf> = project
        .repos
        .iter()
        .map(|r| {
            (
                r.name.value.clone(),
                ctx.workspaces.repo_dir(t, &r.name.value),
            )
        })
        .collect();
    // The builder runs its own work in the lab: its access is set up before it starts.
    let env = match &project.lab {
        Some(_) => ctx
            .lab
            .builder_access(&t.project, &settings.lab_host(&t.project.project))
            .await
            .map_err(|e| ReconcileError::Other(format!("lab access for the builder: {e}")))?,
        None => Vec::new(),
    };
    let req = SessionRequest {
        task: t.clone(),
        title: spec.title.clone(),
        permissions: project.agent.permissions.clone(),
        project_dir: ctx.workspaces.project_dir(t),
        worktrees: worktrees.clone(),
        model: project.agent.model.clone(),
        agent: project.agent.agent.clone(),
        script: project.agent.script.clone(),
        env,
    };
    let existing = plan
        .status
        .agent
        .as_ref()
        .and_then(|a| a.session_id.clone());
    let agent_rt = ctx.agents.for_spec(project.agent.runtime)?;
    let session = agent_rt.ensure_session(&req, existing.as_deref()).await?;
    let prompt = task_prompt(t, spec, &worktrees, project);
    agent_rt.send(t, &session.id, "task", &prompt).await?;
    let mut agent = plan.status.agent.clone().unwrap_or_else(|| {
        Box::new(AgentStatus {
            runtime: agent_rt.name().to_string(),
            session_id: None,
            port: None,
            tmux: None,
            prompts_sent: Vec::new(),
        })
    });
    agent.session_id = Some(session.id.clone());
    agent.port = session.port;
    agent.tmux = session.tmux.clone();
    if !agent.prompts_sent.iter().any(|p| p == "task") {
        agent.prompts_sent.push("task".into());
    }
    plan.status.agent = Some(agent);
    if let Some(tmux) = &session.tmux {
        upsert_link(
            &mut plan.status.links,
            "attach",
            format!("tmux attach -t {tmux}"),
        );
    }
    let resume_to = plan.status.effects.remove("resumeTo");
    match resume_to.as_deref() {
        Some(to) if to != "Running" => {
            let to = match to {
                "Deploying" => Phase::Deploying,
                "Testing" => Phase::Testing,
                _ => Phase::InReview,
            };
            plan.transition(to, "Resumed", "workspace back on the task's branch");
        }
        Some(_) => {
            let id = format!(
                "resume-{}",
                plan.status
                    .agent
                    .as_ref()
                    .map_or(0, |a| a.prompts_sent.len())
            );
            agent_rt
                .send(
                    t,
                    &session.id,
                    &id,
                    "You were paused and are resumed now; carry on where you left off.",
                )
                .await?;
            plan.record_prompt(&id);
            plan.transition(
                Phase::Running,
                "Resumed",
                "workspace back on the task's branch",
            );
        }
        None => plan.transition(
            Phase::Running,
            "AgentStarted",
            format!("workspace ready, session {}", session.id),
        ),
    }
    Ok(Action::requeue(Duration::ZERO))
}

fn human_pause(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn short_hash(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..4])
}

/// Nudges a stopped agent gets before the task fails.
const MAX_NUDGES: u32 = 2;

fn first_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect();
    lines.join(" / ")
}

fn upsert_link(links: &mut Vec<Link>, name: &str, url: String) {
    match links.iter_mut().find(|l| l.name == name) {
        Some(l) => l.url = url,
        None => links.push(Link {
            name: name.to_string(),
            url,
        }),
    }
}

/// The question policy in force: task overrides, then project, then gaffer.yaml.
fn policy(
    settings: &Settings,
    project: &ProjectSpec,
    spec: &TaskSpec,
) -> (jiff::SignedDuration, OnTimeout, ContinuePolicy) {
    let g = &settings.questions;
    let p = project.questions.clone().unwrap_or_default();
    let t = spec.questions.clone().unwrap_or_default();
    let timeout = t.timeout.or(p.timeout).unwrap_or(g.timeout);
    (
        timeout.get(),
        t.on_timeout.or(p.on_timeout).unwrap_or(g.on_timeout),
        t.continue_.or(p.continue_).unwrap_or(g.continue_),
    )
}

/// Whether an approval's `by:` may approve.
fn allowed(settings: &Settings, who: Option<&str>) -> bool {
    who.is_some_and(|w| {
        settings.authors.answers.iter().any(|a| a == w)
            || settings.authors.slack_users.iter().any(|a| a == w)
    })
}

/// Who an answer counts as coming from, if its commit's author may answer: a person listed
/// in `authors.answers`, or the Slack bot on behalf of a user listed in `authors.slack_users`.
fn authorize(
    settings: &Settings,
    author: Option<&str>,
    by: Option<&str>,
) -> Result<String, String> {
    let bot = crate::store::Identity::slack_bot().email;
    match author {
        Some(a) if a == bot => match by {
            Some(u) if settings.authors.slack_users.iter().any(|s| s == u) => Ok(u.to_string()),
            Some(u) => Err(format!(
                "answer from Slack user {u} ignored: not listed in gaffer.yaml authors.slack_users"
            )),
            None => Err("answer from the Slack bot ignored: it names no Slack user (by:)".into()),
        },
        Some(a) if settings.authors.answers.iter().any(|s| s == a) => Ok(a.to_string()),
        Some(a) => Err(format!(
            "answer committed by {a} ignored: not listed in gaffer.yaml authors.answers"
        )),
        None => Err("answer ignored: its commit author could not be read".into()),
    }
}

/// Who committed the last change (up to `head`) of `path`: the Slack bot when it was the
/// committer (it commits for people, with them as authors), else the commit's author.
async fn commit_author(
    ctx: &Context,
    head: Option<&str>,
    path: &str,
) -> Result<Option<String>, ReconcileError> {
    let Some(head) = head.map(str::to_string) else {
        return Ok(None);
    };
    let dir = ctx.transport.repo().git_dir().to_path_buf();
    let path = path.to_string();
    let out = tokio::task::spawn_blocking(move || {
        crate::git::Git::new(&dir).run(["log", "-1", "--format=%ae%n%ce", &head, "--", &path])
    })
    .await
    .map_err(|e| ReconcileError::Other(e.to_string()))?;
    let out = out.ok().unwrap_or_default();
    let mut lines = out.lines().map(str::trim);
    let (author, committer) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let bot = crate::store::Identity::slack_bot().email;
    Ok(Some(if committer == bot { committer } else { author })
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

async fn running(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    spec: &TaskSpec,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let Some(session) = plan
        .status
        .agent
        .as_ref()
        .and_then(|a| a.session_id.clone())
    else {
        plan.transition(
            Phase::Preparing,
            "NoSession",
            "no agent session recorded; preparing again",
        );
        return Ok(Action::requeue(Duration::ZERO));
    };
    let (timeout, on_timeout, cont) = policy(settings, project, spec);
    let agent = plan.agent(ctx)?;

    people_answers(ctx, t, view, settings, plan).await?;
    let mut next_deadline = deadlines(ctx, t, project, on_timeout, plan).await?;
    apply_decisions(ctx, t, project, agent.as_ref(), &session, plan).await?;

    // A retry after a transient error, once its pause is over.
    if let Some(at) = plan
        .effect("retryAt")
        .and_then(|a| a.parse::<Timestamp>().ok())
        && at <= plan.now
    {
        let id = format!("retry-{}", plan.status.attempts);
        agent
            .send(
                t,
                &session,
                &id,
                "The last request failed with a transient error; please continue.",
            )
            .await?;
        plan.status.effects.remove("retryAt");
        plan.record_prompt(&id);
    }

    // What the agent did since last time.
    let cursor: u64 = plan
        .effect("agentCursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let polled = agent.poll(t, &session, cursor).await?;
    plan.set_effect("agentCursor", polled.cursor.to_string());
    if let Some(cut) = &polled.interrupted {
        // The runtime restarted under a turn: the agent needs to be told to carry on.
        let id = format!("resume-{cut}");
        if !plan
            .status
            .agent
            .as_ref()
            .is_some_and(|a| a.prompts_sent.contains(&id))
        {
            agent
                .send(
                    t,
                    &session,
                    &id,
                    "The OpenCode server was restarted and your last turn was cut off. Check the \
                     state of the files you were working on and carry on with the task.",
                )
                .await?;
            plan.record_prompt(&id);
            plan.milestone(
                MilestoneKind::Error,
                "⚠ the agent's server restarted mid-turn; resumed the session",
                None,
            );
        }
    }
    let mut finished = None;
    let mut turn_ended = None;
    let mut relay_now = false;
    let mut asked_now = 0usize;
    if polled
        .events
        .iter()
        .any(|e| !matches!(e, AgentEvent::TurnEnded(_)))
    {
        // The agent is getting on: nudges start counting afresh.
        plan.status.effects.remove("nudges");
    }
    for event in polled.events {
        if !matches!(event, AgentEvent::TurnEnded(_)) {
            // Only a turn that ended last (nothing after it yet) needs a nudge.
            turn_ended = None;
        }
        match event {
            AgentEvent::Todo(text) => {
                plan.milestone(MilestoneKind::Todo, format!("✔ {text}"), None)
            }
            AgentEvent::Edited(files) => {
                let commits = checkpoint(
                    ctx,
                    t,
                    project,
                    plan,
                    &format!("edited {}", files.join(", ")),
                )
                .await?;
                let commit = commits.values().next().cloned();
                plan.milestone(
                    MilestoneKind::Checkpoint,
                    format!("📝 edited {}", files.join(", ")),
                    commit,
                );
            }
            AgentEvent::Question(mut asked) => {
                if asked.kind == AskKind::Permission {
                    // Permission requests recommend the project's default reply.
                    let default = match project.agent.permission_default {
                        PermissionReply::Once => "once",
                        PermissionReply::Always => "always",
                        PermissionReply::Reject => "reject",
                    };
                    if let Some(i) = asked.options.iter().position(|o| o.label == default) {
                        let o = asked.options.remove(i);
                        asked.options.insert(0, o);
                    }
                }
                // The agent's question is untrusted input: make it a valid question file
                // (unique labels; free text when there are no options), or it would be
                // dropped on re-read and the agent would wait forever.
                let mut seen = BTreeSet::new();
                asked.options.retain(|o| seen.insert(o.label.clone()));
                if asked.options.is_empty() {
                    asked.custom = true;
                }
                let qid = Qid::new(format!("q-{:03}", plan.questions.len() + 1))
                    .map_err(|e| ReconcileError::Other(e.to_string()))?;
                let deadline = crate::hours::deadline(plan.now, timeout, &settings.business_hours)
                    .map_err(|e| ReconcileError::Other(e.to_string()))?;
                let state = match cont {
                    ContinuePolicy::Immediately => QuestionState::Provisional,
                    ContinuePolicy::AtDeadline => QuestionState::Open,
                };
                // Going on at once: the work from here lands on a provisional branch.
                let (point, provisional_branch, parent_branch) =
                    if state == QuestionState::Provisional {
                        let (branch, parent, point) = branch_off(ctx, t, project, &qid).await?;
                        (point, Some(branch), Some(parent))
                    } else {
                        (BTreeMap::new(), None, None)
                    };
                let q = Question {
                    kind: match asked.kind {
                        AskKind::Question => QuestionKind::Question,
                        AskKind::Permission => QuestionKind::Permission,
                    },
                    text: asked.text.clone(),
                    header: asked.header.clone(),
                    recommended: asked.recommended(),
                    options: asked.options.clone(),
                    multiple: asked.multiple,
                    custom: asked.custom,
                    asked_at: plan.now,
                    deadline: Some(deadline),
                    state,
                    request_id: Some(asked.request_id.clone()),
                    decision: None,
                    point,
                    provisional_branch,
                    parent_branch,
                    problems: Vec::new(),
                };
                let tz = settings
                    .business_hours
                    .time_zone()
                    .unwrap_or(jiff::tz::TimeZone::UTC);
                let when = deadline
                    .to_zoned(tz)
                    .strftime("%a %d %b %H:%M %Z")
                    .to_string();
                let going_on = if state == QuestionState::Provisional {
                    format!("; going on with {}", q.recommended)
                } else {
                    String::new()
                };
                plan.milestone(
                    MilestoneKind::Question,
                    format!(
                        "❓ {qid}: {} (recommended: {}; deadline {when}{going_on})",
                        q.text, q.recommended
                    ),
                    None,
                );
                next_deadline = Some(next_deadline.map_or(deadline, |d| d.min(deadline)));
                if state == QuestionState::Provisional {
                    // Its provisional answer goes to the agent on the next step, right away.
                    relay_now = true;
                }
                asked_now += 1;
                plan.question_changed(&qid, q);
            }
            AgentEvent::Finished(summary) => finished = Some(summary),
            AgentEvent::TurnEnded(text) => turn_ended = Some(text),
            AgentEvent::Failed { message, retryable } => {
                plan.set_effect("failedIn", "Running");
                if retryable && plan.status.attempts < 3 {
                    plan.status.attempts += 1;
                    // Overload and rate limits pass: try again after a growing pause.
                    let pause = ctx.settings.retry_pause * 2u32.pow(plan.status.attempts - 1);
                    let at = plan
                        .now
                        .checked_add(jiff::SignedDuration::try_from(pause).unwrap_or_default())
                        .unwrap_or(plan.now);
                    plan.set_effect("retryAt", at.to_string());
                    plan.milestone(
                        MilestoneKind::Error,
                        format!("⚠ {message} (retrying in {})", human_pause(pause)),
                        None,
                    );
                } else {
                    plan.transition(Phase::Failed, "AgentFailed", message);
                    return Ok(Action::await_change());
                }
            }
        }
    }
    // Several questions at once: one document to annotate them all.
    let waiting: Vec<(Qid, Question)> = plan
        .questions
        .iter()
        .filter(|(q, qq)| {
            matches!(qq.state, QuestionState::Open | QuestionState::Provisional)
                && plan.effect(&format!("doc.{q}")).is_none()
                && plan.effect(&format!("moot.{q}")).is_none()
        })
        .map(|(q, qq)| (q.clone(), qq.clone()))
        .collect();
    if waiting.len() >= 3 || (asked_now >= 2 && waiting.len() >= 2) {
        let n = view.question_docs.len() + plan.docs.len() + 1;
        let batch = crate::names::Id::new(format!("batch-{n:03}"))
            .map_err(|e| ReconcileError::Other(e.to_string()))?;
        let tz = settings
            .business_hours
            .time_zone()
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let text = crate::state::doc::render(&t.to_string(), &spec.title, &waiting, &tz);
        for (q, _) in &waiting {
            plan.set_effect(&format!("doc.{q}"), batch.to_string());
        }
        plan.milestone(
            MilestoneKind::Question,
            format!(
                "🗒 questions/{batch}.md: {} questions to annotate in one place",
                waiting.len()
            ),
            None,
        );
        plan.docs.push((batch, text));
    }
    let open = plan
        .questions
        .values()
        .any(|q| q.state == QuestionState::Open);
    if finished.is_none()
        && let Some(text) = turn_ended
        && !polled.waiting
        && !open
    {
        // The agent stopped without saying it is done: checkpoint, show what it said, and
        // nudge it (twice at most) before giving up.
        let commits = checkpoint(ctx, t, project, plan, "turn ended").await?;
        plan.milestone(
            if commits.is_empty() {
                MilestoneKind::Summary
            } else {
                MilestoneKind::Checkpoint
            },
            format!("💬 turn ended: {}", first_lines(&text, 3)),
            commits.values().next().cloned(),
        );
        let nudges: u32 = plan
            .effect("nudges")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if nudges >= MAX_NUDGES {
            plan.set_effect("failedIn", "Running");
            plan.transition(
                Phase::Failed,
                "AgentStopped",
                "the agent stopped without reporting the task done; edit the task (retry: N) \
                 to resume it",
            );
            return Ok(Action::await_change());
        }
        let id = format!("nudge-{}", polled.cursor);
        agent
            .send(
                t,
                &session,
                &id,
                "You ended your turn without reporting the task complete. If it is complete, reply \
                 with a final message whose last line is `DONE: <one-line summary>`. If you need a \
                 decision, ask with the question tool. Otherwise carry on with the task.",
            )
            .await?;
        plan.set_effect("nudges", (nudges + 1).to_string());
        plan.record_prompt(&id);
    }
    if let Some(summary) = finished {
        checkpoint(ctx, t, project, plan, "done").await?;
        plan.milestone(MilestoneKind::Todo, format!("🏁 {summary}"), None);
        plan.set_effect("agentDone", summary);
    }
    if plan.effect("agentDone").is_some() {
        // The work is deployed from the task's branch: provisional work waits for its answer
        // (or its deadline) first.
        let pending: Vec<String> = plan
            .questions
            .iter()
            .filter(|(q, qq)| {
                qq.state == QuestionState::Provisional
                    && plan.effect(&format!("moot.{q}")).is_none()
            })
            .map(|(q, _)| q.to_string())
            .collect();
        if pending.is_empty() {
            plan.status.effects.remove("agentDone");
            plan.transition(Phase::Deploying, "AgentDone", "");
            return Ok(Action::requeue(Duration::ZERO));
        }
        let why = format!(
            "the agent is done; its work waits on the answer to {} (or the deadline)",
            pending.join(", ")
        );
        if plan.status.message.as_deref() != Some(why.as_str()) {
            plan.status.reason = Some("ProvisionalWork".into());
            plan.status.message = Some(why);
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
    let every = settings.progress.summary_every.get();
    let quiet_since = plan
        .progress
        .milestones
        .last()
        .map_or(plan.status.phase_since.unwrap_or(plan.now), |m| m.at);
    let due = quiet_since.checked_add(every).unwrap_or(plan.now);
    if plan.phase() == Phase::Running && !polled.waiting && due <= plan.now {
        let mut text = agent.summary(t, &session).await?;
        let bases: BTreeMap<RepoName, String> = plan
            .status
            .repos
            .iter()
            .filter_map(|(r, s)| s.base_commit.clone().map(|b| (r.clone(), b)))
            .collect();
        let ws = ctx.workspaces.clone();
        let (tt, pp) = (t.clone(), project.clone());
        let files = blocking(move || ws.changed_files(&tt, &pp, &bases)).await?;
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
    }
    let next_summary = due
        .checked_add(every)
        .ok()
        .filter(|_| due <= plan.now)
        .unwrap_or(due);
    let mut wait = match next_deadline {
        _ if relay_now => Duration::ZERO,
        Some(d) if polled.waiting || open => plan.until(d).min(Duration::from_secs(30)),
        _ if polled.waiting || open => Duration::from_secs(30),
        // A runtime that wakes the task itself is polled only as a safety net.
        _ if agent.wakes() => Duration::from_secs(30),
        _ => ctx.settings.poll_interval,
    };
    if let Some(d) = next_deadline {
        // Deadlines are kept even while the agent works on (provisional answers).
        wait = wait.min(plan.until(d));
    }
    wait = wait.min(plan.until(next_summary).max(Duration::from_secs(1)));
    if let Some(at) = plan
        .effect("retryAt")
        .and_then(|a| a.parse::<Timestamp>().ok())
    {
        wait = wait.min(plan.until(at));
    }
    Ok(Action::requeue(wait))
}

/// People's answers: answer files, then annotated question documents for questions that
/// have no answer file; each becomes a decision once its commit's author may answer.
async fn people_answers(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    struct Given {
        qid: Qid,
        choice: Vec<String>,
        free_text: bool,
        note: Option<String>,
        by: Option<String>,
        at: Option<Timestamp>,
        path: String,
    }
    let mut given: Vec<Given> = Vec::new();
    for (qid, answer) in &view.answers {
        let (choice, free_text) = match (&answer.choice, &answer.text) {
            (Some(c), _) => (
                c.value.labels().into_iter().map(str::to_string).collect(),
                false,
            ),
            (None, Some(text)) => (vec![text.clone()], true),
            (None, None) => continue,
        };
        given.push(Given {
            qid: qid.clone(),
            choice,
            free_text,
            note: answer.note.clone(),
            by: answer.by.clone(),
            at: answer.at,
            path: StatePath::Answer(t.clone(), qid.clone()).to_path(),
        });
    }
    for (batch, text) in &view.question_docs {
        let path = StatePath::QuestionDoc(t.clone(), batch.clone()).to_path();
        for (qid, a) in crate::state::doc::parse(text) {
            let Some(q) = plan.questions.get(&qid).cloned() else {
                continue;
            };
            if view.answers.contains_key(&qid) {
                continue;
            }
            match crate::state::doc::interpret(&a, &q) {
                Ok(Some(ans)) => given.push(Given {
                    free_text: !ans.choice.iter().all(|c| q.has_option(c)),
                    qid,
                    choice: ans.choice,
                    note: ans.note,
                    by: None,
                    at: None,
                    path: path.clone(),
                }),
                Ok(None) => {}
                Err(e) => {
                    let why = format!("{path}:{e}; nothing was answered from it");
                    if !q.problems.contains(&why) {
                        let mut q = q;
                        q.problems.push(why);
                        plan.question_changed(&qid, q);
                    }
                }
            }
        }
    }
    for g in given {
        let qid = &g.qid;
        let Some(q) = plan.questions.get(qid).cloned() else {
            continue;
        };
        let choice = g.choice;
        let already = q.decision.as_ref().is_some_and(|d| {
            d.decided_by == DecidedBy::Human && d.choice == choice && d.note == g.note
        });
        if already {
            continue;
        }
        let mut q = q;
        let author = commit_author(ctx, view.head.as_deref(), &g.path).await?;
        if author.as_deref() == Some(crate::store::Identity::reconciler().email.as_str()) {
            // A document as generated, not annotated by anyone yet.
            continue;
        }
        let who = match authorize(settings, author.as_deref(), g.by.as_deref()) {
            Ok(who) => who,
            Err(why) => {
                if !q.problems.contains(&why) {
                    q.problems.push(why);
                    plan.question_changed(qid, q);
                }
                continue;
            }
        };
        let valid = choice.iter().all(|c| q.has_option(c)) || (q.custom && g.free_text);
        if !valid {
            let why = format!(
                "answer {:?} ignored: not one of the options",
                choice.join(", ")
            );
            if !q.problems.contains(&why) {
                q.problems.push(why);
                plan.question_changed(qid, q);
            }
            continue;
        }
        let overriding = matches!(
            q.state,
            QuestionState::Defaulted | QuestionState::Provisional | QuestionState::Overridden
        ) && choice != vec![q.recommended.clone()];
        q.state = if overriding {
            QuestionState::Overridden
        } else {
            QuestionState::Answered
        };
        q.decision = Some(Decision {
            choice: choice.clone(),
            decided_by: DecidedBy::Human,
            by: Some(who.clone()),
            at: g.at.unwrap_or(plan.now),
            note: g.note.clone(),
        });
        let source = if g.path.ends_with(".md") {
            format!(" in {}", g.path.rsplit('/').next().unwrap_or(""))
        } else {
            String::new()
        };
        plan.milestone(
            MilestoneKind::Question,
            format!("✅ {qid} answered {} by {who}{source}", choice.join(", ")),
            None,
        );
        plan.question_changed(qid, q);
    }

    Ok(())
}

/// Applies passed deadlines (the recommended option, as `timeout-default`) and returns the
/// nearest deadline still to come.
async fn deadlines(
    ctx: &Context,
    t: &TaskRef,
    project: &ProjectSpec,
    on_timeout: OnTimeout,
    plan: &mut Plan,
) -> Result<Option<Timestamp>, ReconcileError> {
    let mut next_deadline: Option<Timestamp> = None;
    for (qid, q) in plan.questions.clone() {
        if !matches!(q.state, QuestionState::Open | QuestionState::Provisional) {
            continue;
        }
        let Some(deadline) = q.deadline else { continue };
        if deadline <= plan.now && on_timeout == OnTimeout::Recommended {
            let mut q = q;
            if q.provisional_branch.is_none() {
                // The agent goes on from here with the default: mark the point, so a later
                // human answer can still set this work aside.
                let (branch, parent, point) = branch_off(ctx, t, project, &qid).await?;
                q.point = point;
                q.provisional_branch = Some(branch);
                q.parent_branch = Some(parent);
            }
            q.state = QuestionState::Defaulted;
            q.decision = Some(Decision {
                choice: vec![q.recommended.clone()],
                decided_by: DecidedBy::TimeoutDefault,
                by: None,
                at: plan.now,
                note: None,
            });
            plan.milestone(
                MilestoneKind::Question,
                format!("⏰ {qid} defaulted to {} at the deadline", q.recommended),
                None,
            );
            plan.question_changed(&qid, q);
        } else if deadline > plan.now {
            next_deadline = Some(next_deadline.map_or(deadline, |d: Timestamp| d.min(deadline)));
        }
    }
    Ok(next_deadline)
}

/// Applies decisions to the work and relays them to the agent, once each: the first answer
/// the agent hears; a confirmation fast-forwards the parent branch; a different answer sets
/// the provisional work aside and tells the agent.
async fn apply_decisions(
    ctx: &Context,
    t: &TaskRef,
    project: &ProjectSpec,
    agent: &dyn crate::agent::AgentRuntime,
    session: &str,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let qids: Vec<Qid> = plan.questions.keys().cloned().collect();
    for qid in qids {
        // Read afresh: confirming an outer question re-parents the ones asked on top of it.
        let Some(q) = plan.questions.get(&qid).cloned() else {
            continue;
        };
        if plan.effect(&format!("moot.{qid}")).is_some() {
            continue;
        }
        let Some(request) = q.request_id.clone() else {
            continue;
        };
        let relayed_key = format!("relayed.{qid}");
        let decision = q
            .decision
            .as_ref()
            .map(|d| (d.choice.clone(), d.note.clone()));
        let provisional = q.provisional_branch.clone().zip(q.parent_branch.clone());
        // The agent hears one answer per question, once: the decision, or the recommended
        // option when the work goes on provisionally. What it heard first is what its work
        // since then is based on.
        if plan.effect(&relayed_key).is_none() {
            let first = match (&decision, &provisional) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(_)) => Some((vec![q.recommended.clone()], None)),
                _ => None,
            };
            if let Some((choice, note)) = first {
                let reply = crate::agent::Reply {
                    request_id: &request,
                    question: &q.text,
                    choice: &choice,
                    note: note.as_deref(),
                };
                agent.answer(t, session, &reply).await?;
                plan.set_effect(&relayed_key, choice.join("\u{1f}"));
            }
        }
        let (Some((branch, parent)), Some((choice, note))) = (provisional, decision) else {
            continue;
        };
        let applied_key = format!("applied.{qid}");
        let heard = plan.effect(&relayed_key).map(str::to_string);
        let agreed = heard.as_deref() == Some(choice.join("\u{1f}").as_str());
        if heard.is_none() {
            continue;
        }
        let want = if agreed {
            format!("confirm:{}", choice.join("\u{1f}"))
        } else {
            format!("aside:{}", choice.join("\u{1f}"))
        };
        if plan.effect(&applied_key) == Some(want.as_str()) {
            continue;
        }
        let ws = ctx.workspaces.clone();
        if agreed {
            let (tt, pp, par, br) = (t.clone(), project.clone(), parent.clone(), branch.clone());
            let tips = blocking(move || ws.confirm(&tt, &pp, &par, &br)).await?;
            plan.milestone(
                MilestoneKind::Question,
                format!("✅ {qid} confirmed: {parent} fast-forwarded to {branch}"),
                tips.values().next().cloned(),
            );
            // Questions asked on top of this one now build on its parent.
            for (other, oq) in plan.questions.clone() {
                if oq.parent_branch.as_deref() == Some(branch.as_str()) {
                    let mut oq = oq;
                    oq.parent_branch = Some(parent.clone());
                    plan.question_changed(&other, oq);
                }
            }
        } else {
            // A different answer: stop the agent, keep its work since the question on the
            // provisional branch, put the worktree back where the question was asked.
            agent.interrupt(t, session).await?;
            let (tt, pp, par, br, pt) = (
                t.clone(),
                project.clone(),
                parent.clone(),
                branch.clone(),
                q.point.clone(),
            );
            let kept = blocking(move || ws.set_aside(&tt, &pp, &par, &br, &pt)).await?;
            let kept_at = kept
                .iter()
                .map(|(r, c)| format!("{r} {}", &c[..c.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", ");
            let mut text = format!(
                "A person answered your earlier question \"{}\": {}.",
                q.text,
                choice.join(", ")
            );
            if let Some(n) = &note {
                text.push_str(&format!(" Their note: {n}"));
            }
            text.push_str(&format!(
                " You had gone on with \"{}\". That work was set aside on branch {branch} \
                 ({kept_at}) and the worktree was reset to where you asked the question, on \
                 {parent}. Continue the task with this answer; reuse from the set-aside work \
                 only what still fits.",
                q.recommended
            ));
            let id = format!("override-{qid}-{}", short_hash(&want));
            agent.send(t, session, &id, &text).await?;
            plan.record_prompt(&id);
            // Whatever the agent reported done is undone: it works again.
            plan.status.effects.remove("agentDone");
            plan.milestone(
                MilestoneKind::Question,
                format!(
                    "↩ {qid}: work since the question set aside on {branch}; worktree reset to the question point"
                ),
                kept.values().next().cloned(),
            );
            // Questions asked during the work set aside no longer apply.
            for (other, oq) in plan.questions.clone() {
                if other != qid
                    && oq.asked_at >= q.asked_at
                    && matches!(oq.state, QuestionState::Provisional | QuestionState::Open)
                {
                    let mut oq = oq;
                    oq.state = QuestionState::Overridden;
                    let why = format!("asked during work set aside by the answer to {qid}");
                    if !oq.problems.contains(&why) {
                        oq.problems.push(why);
                    }
                    plan.set_effect(&format!("moot.{other}"), qid.to_string());
                    plan.question_changed(&other, oq);
                }
            }
        }
        plan.set_effect(&applied_key, want);
    }
    Ok(())
}

/// Records each worktree's actual head. A checkpoint made just before a crash is not
/// reported again when its step is replayed, so status must read the heads, not remember them.
async fn sync_heads(
    ctx: &Context,
    t: &TaskRef,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let ws = ctx.workspaces.clone();
    let (tt, pp) = (t.clone(), project.clone());
    let heads = blocking(move || ws.heads(&tt, &pp)).await?;
    for (repo, head) in heads {
        if let Some(rs) = plan.status.repos.get_mut(&repo) {
            rs.head_commit = Some(head);
        }
    }
    Ok(())
}

/// Commits the worktrees' changes and records the new heads; returns them per repo.
async fn checkpoint(
    ctx: &Context,
    t: &TaskRef,
    project: &ProjectSpec,
    plan: &mut Plan,
    message: &str,
) -> Result<BTreeMap<RepoName, String>, ReconcileError> {
    let ws = ctx.workspaces.clone();
    let (tt, pp, m) = (t.clone(), project.clone(), message.to_string());
    let commits = blocking(move || ws.checkpoint(&tt, &pp, &m)).await?;
    for (repo, head) in &commits {
        if let Some(rs) = plan.status.repos.get_mut(repo) {
            rs.head_commit = Some(head.clone());
        }
    }
    Ok(commits)
}

/// Runs blocking work (git, files) off the async worker threads.
async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ReconcileError>
where
    T: Send + 'static,
    E: Into<ReconcileError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ReconcileError::Other(e.to_string()))?
        .map_err(Into::into)
}

/// Starts provisional work for `qid`: its branch, the parent branch and the question point.
async fn branch_off(
    ctx: &Context,
    t: &TaskRef,
    project: &ProjectSpec,
    qid: &Qid,
) -> Result<(String, String, BTreeMap<RepoName, String>), ReconcileError> {
    let branch = t.provisional_branch(qid);
    let ws = ctx.workspaces.clone();
    let (tt, pp, b) = (t.clone(), project.clone(), branch.clone());
    let (parent, point) = blocking(move || ws.branch_off(&tt, &pp, &b)).await?;
    Ok((branch, parent, point))
}

async fn deploying(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let Some(lab) = &project.lab else {
        plan.transition(
            Phase::InReview,
            "NoLab",
            "the project has no lab; going to review",
        );
        return Ok(Action::requeue(Duration::ZERO));
    };
    let overlay = ctx
        .workspaces
        .project_dir(t)
        .join("repos")
        .join(&lab.overlay.value);
    let commits: BTreeMap<RepoName, String> = plan
        .status
        .repos
        .iter()
        .filter_map(|(k, v)| v.head_commit.clone().map(|h| (k.clone(), h)))
        .collect();
    let images = match image_build(ctx, project, lab, plan).await? {
        Ok(images) => images,
        Err(action) => return Ok(action),
    };
    // Refresh the builder's lab access once per deploy, not on every pass while an image
    // builds (its token lasts two days; the kubeconfig is rewritten in place, so a running
    // builder picks the new one up).
    if let Err(e) = ctx
        .lab
        .builder_access(&t.project, &settings.lab_host(&t.project.project))
        .await
    {
        tracing::warn!(task = %t, error = %e, "could not refresh the builder's lab access");
    }
    let req = DeployRequest {
        project: t.project.clone(),
        task: t.task.clone(),
        overlay,
        host: settings.lab_host(&t.project.project),
        commits: commits.clone(),
        images,
        tool: lab.tool,
        previous: view
            .lab
            .as_ref()
            .filter(|l| !l.deleted)
            .map(|l| l.inventory.clone())
            .unwrap_or_default(),
    };
    let out = match ctx.lab.deploy(&req).await {
        Ok(out) => out,
        Err(e) => {
            plan.set_effect("failedIn", "Deploying");
            plan.transition(Phase::Failed, "DeployFailed", e.to_string());
            return Ok(Action::await_change());
        }
    };
    let mut lab_status = view.lab.clone().unwrap_or_default();
    lab_status.observed_commit = view.head.clone();
    lab_status.namespace = out.namespace.clone();
    if lab_status.created_at.is_none() || lab_status.deleted {
        // New, or made again after `gaffer lab cleanup` removed it.
        lab_status.created_at = Some(plan.now);
        lab_status.deleted = false;
    }
    lab_status.mode = Some(out.mode.clone());
    lab_status.inventory = out.inventory.clone();
    lab_status.urls = out.urls.clone();
    lab_status.last_deploy = Some(Deploy {
        task: t.task.clone(),
        commits,
        at: plan.now,
        no_op: out.no_op,
    });
    plan.lab = Some(lab_status);
    if let Some(url) = out.urls.first() {
        upsert_link(&mut plan.status.links, "lab", url.clone());
    }
    plan.milestone(
        MilestoneKind::Deploy,
        format!(
            "🚀 {} {} objects to {}{}",
            if out.mode == "render-only" {
                "rendered"
            } else {
                "deployed"
            },
            out.inventory.len(),
            out.namespace,
            if out.no_op { " (unchanged)" } else { "" }
        ),
        None,
    );
    if let Some(url) = out.urls.first() {
        plan.milestone(MilestoneKind::Deploy, format!("🔗 Lab: {url}"), None);
    }
    if lab.test.is_some() {
        plan.transition(Phase::Testing, "Deployed", "");
    } else {
        plan.transition(Phase::InReview, "Deployed", "no lab.test configured");
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// The image overrides of a deploy: when `lab.image` names a workflow, the task branch is
/// pushed, the workflow dispatched (once per commit) and waited for, and the image it pushed
/// (`<registry>:<sha>`) replaces `lab.image.name` in the render. `Err` is what to do while
/// the build runs or after it failed.
async fn image_build(
    ctx: &Context,
    project: &ProjectSpec,
    lab: &crate::state::spec::LabSpec,
    plan: &mut Plan,
) -> Result<Result<BTreeMap<String, String>, Action>, ReconcileError> {
    let Some(img) = &lab.image else {
        return Ok(Ok(BTreeMap::new()));
    };
    let forge = ctx.forge_for(project)?;
    let Some(repo) = project.repos.iter().find(|r| r.name.value == img.repo) else {
        plan.transition(
            Phase::Failed,
            "ImageBuildFailed",
            format!(
                "lab.image.repo {} is not one of the project's repos",
                img.repo
            ),
        );
        return Ok(Err(Action::await_change()));
    };
    let Some(gh) = repo
        .github
        .clone()
        .or_else(|| crate::forge::github::repo_of_url(&repo.url))
    else {
        plan.transition(
            Phase::Failed,
            "ImageBuildFailed",
            format!(
                "{} is not on GitHub: set `github: owner/name` on the repo",
                repo.url
            ),
        );
        return Ok(Err(Action::await_change()));
    };
    let Some(rs) = plan.status.repos.get(&img.repo).cloned() else {
        return Err(ReconcileError::Other(format!(
            "no workspace repo {}",
            img.repo
        )));
    };
    let Some(head) = rs.head_commit.clone() else {
        return Err(ReconcileError::Other(format!(
            "{} has no head yet",
            img.repo
        )));
    };
    let mirror = ctx.workspaces.mirror_dir(&repo.url);
    let branch = rs.branch.clone();
    blocking(move || crate::forge::push_branch(&mirror, &branch).map_err(ReconcileError::from))
        .await?;
    let key = format!("imageBuild.{head}");
    let dispatched = plan.status.effects.contains_key(&key);
    let waiting = |plan: &mut Plan, msg: String| {
        plan.status.reason = Some("ImageBuilding".into());
        plan.status.message = Some(msg);
        Action::requeue(ctx.settings.forge_poll.min(Duration::from_secs(15)))
    };
    match forge
        .build_image(&gh, &img.workflow, &rs.branch, &head, !dispatched)
        .await
    {
        Ok(crate::forge::ImageBuild::Dispatched) => {
            plan.set_effect(&key, "dispatched");
            plan.milestone(
                MilestoneKind::Deploy,
                format!(
                    "🏗 image build dispatched: {} on {} ({})",
                    img.workflow,
                    rs.branch,
                    &head[..head.len().min(12)]
                ),
                None,
            );
            Ok(Err(waiting(
                plan,
                format!("building the image ({})", img.workflow),
            )))
        }
        Ok(crate::forge::ImageBuild::Running(url)) => Ok(Err(waiting(
            plan,
            format!("building the image {url}").trim().to_string(),
        ))),
        Ok(crate::forge::ImageBuild::Built) => {
            let registry = img
                .registry
                .clone()
                .unwrap_or_else(|| format!("ghcr.io/{}", gh.to_lowercase()));
            let image = format!("{registry}:{head}");
            if plan.status.effects.get(&key).map(String::as_str) != Some("built") {
                plan.set_effect(&key, "built");
                plan.milestone(
                    MilestoneKind::Deploy,
                    format!("🏗 image built: {image}"),
                    None,
                );
            }
            Ok(Ok(BTreeMap::from([(img.name.clone(), image)])))
        }
        Err(crate::forge::ForgeError::RateLimited { until }) => Ok(Err(rate_limited(plan, until))),
        Err(e) => {
            plan.set_effect("failedIn", "Deploying");
            plan.transition(Phase::Failed, "ImageBuildFailed", e.to_string());
            Ok(Err(Action::await_change()))
        }
    }
}

async fn testing(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let Some(test) = project.lab.as_ref().and_then(|l| l.test.clone()) else {
        plan.transition(Phase::InReview, "NoTests", "");
        return Ok(Action::requeue(Duration::ZERO));
    };
    let argv: Vec<String> = test.split_whitespace().map(str::to_string).collect();
    let Some(first_repo) = project.repos.first() else {
        return Err(ReconcileError::Other("project has no repos".into()));
    };
    let workdir = ctx.workspaces.repo_dir(t, &first_repo.name.value);
    let url = plan
        .status
        .links
        .iter()
        .find(|l| l.name == "lab")
        .map(|l| l.url.clone())
        .unwrap_or_default();
    let results = ctx
        .tests
        .run(&argv, &workdir, &t.project.lab_namespace(), &url)
        .await?;
    let line = crate::lab::tests::summary_line(&results);
    let mut lab_status = plan
        .lab
        .clone()
        .or_else(|| view.lab.clone())
        .unwrap_or_default();
    lab_status.tests = Some(results.clone());
    plan.lab = Some(lab_status);
    plan.milestone(MilestoneKind::Test, line, None);
    if results.failed == 0 {
        plan.status.effects.remove("testAttempts");
        plan.transition(Phase::InReview, "TestsPassed", "");
        return Ok(Action::requeue(Duration::ZERO));
    }
    // Test attempts are counted apart from agent retries, and reset by `retry:`.
    let attempts: u32 = plan
        .effect("testAttempts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + 1;
    plan.set_effect("testAttempts", attempts.to_string());
    if attempts > ctx.settings.max_test_retries {
        plan.set_effect("failedIn", "Testing");
        plan.transition(
            Phase::Failed,
            "TestsFailing",
            format!("lab tests still failing after {attempts} attempts"),
        );
        return Ok(Action::await_change());
    }
    let mut text = format!(
        "The lab tests failed ({} of {}):\n",
        results.failed,
        results.passed + results.failed
    );
    for f in &results.failures {
        text.push_str(&format!("- {}: {}\n", f.name, f.message));
    }
    text.push_str("Please fix them; the work is deployed and tested again when you are done.\n");
    // Unique for the session (a retry must not reuse an id the runtime already saw) and
    // stable when this step is replayed after a crash.
    let sent = plan
        .status
        .agent
        .as_ref()
        .map_or(0, |a| a.prompts_sent.len());
    plan.send_feedback(
        ctx,
        t,
        &format!("tests-{sent}"),
        &text,
        "TestsFailed",
        "test failures sent back to the agent",
    )
    .await
}

async fn in_review(
    ctx: &Context,
    t: &TaskRef,
    view: &View,
    settings: &Settings,
    spec: &TaskSpec,
    project: &ProjectSpec,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    sync_heads(ctx, t, project, plan).await?;
    let forge = ctx.forge_for(project)?;
    let method = project
        .forge
        .as_ref()
        .map(|f| f.merge_method)
        .unwrap_or_default();
    let github = project
        .forge
        .as_ref()
        .is_some_and(|f| f.kind == crate::state::spec::ForgeKind::Github);
    // Open (or find) a change per repo with commits beyond its base, in a stable order; push
    // new work and keep the body up to date.
    let mut repos: Vec<_> = project.repos.iter().collect();
    repos.sort_by(|a, b| a.name.value.cmp(&b.name.value));
    let questions: Vec<(String, &Question)> = view
        .questions
        .iter()
        .map(|(q, v)| (q.to_string(), v))
        .collect();
    for repo in &repos {
        let name = repo.name.value.clone();
        let Some(rs) = plan.status.repos.get(&name).cloned() else {
            continue;
        };
        let Some(head) = rs.head_commit.clone() else {
            continue;
        };
        if rs.change.is_none() && rs.head_commit == rs.base_commit {
            continue;
        }
        if rs.change.as_ref().is_some_and(|c| c.state == "merged") {
            continue;
        }
        let status_now = plan.status.clone();
        let lab = plan.lab.clone().or_else(|| view.lab.clone());
        let body = crate::forge::body::render(&crate::forge::body::BodyInput {
            task: t,
            spec,
            status: &status_now,
            progress: Some(&view.progress),
            questions: questions.clone(),
            lab: lab.as_ref(),
            repo: name.as_str(),
        })
        .map_err(|e| ReconcileError::Other(format!("pull request body: {e}")))?;
        let body_key = format!("prBody.{name}");
        let digest = short_hash(&format!("{}\n{body}", spec.title));
        let pushed = rs.change.as_ref().and_then(|c| c.pushed.clone());
        if pushed.as_deref() == Some(head.as_str())
            && plan.status.effects.get(&body_key) == Some(&digest)
        {
            continue;
        }
        let req = ChangeRequest {
            repo_url: repo.url.clone(),
            mirror: ctx.workspaces.mirror_dir(&repo.url),
            head_branch: rs.branch.clone(),
            base: repo.base.clone(),
            title: spec.title.clone(),
            body,
            repo: repo
                .github
                .clone()
                .or_else(|| crate::forge::github::repo_of_url(&repo.url)),
        };
        let change = match forge.open_change(&req).await {
            Ok(c) => c,
            Err(crate::forge::ForgeError::RateLimited { until }) => {
                return Ok(rate_limited(plan, until));
            }
            Err(e) => return Err(e.into()),
        };
        let first = rs.change.is_none();
        if let Some(rs) = plan.status.repos.get_mut(&name) {
            rs.change = Some(ChangeStatus {
                number: change.number,
                url: Some(change.url.clone()),
                state: change.state.clone(),
                merge_commit: change.merge_commit.clone(),
                pushed: Some(change.head_sha.clone()),
            });
        }
        plan.set_effect(&body_key, digest);
        upsert_link(
            &mut plan.status.links,
            &format!("pr:{name}"),
            change.url.clone(),
        );
        if first {
            plan.milestone(
                MilestoneKind::Review,
                format!("🔀 {name}: change #{} opened", change.number),
                None,
            );
        } else if pushed.as_deref() != Some(change.head_sha.as_str()) {
            plan.milestone(
                MilestoneKind::Review,
                format!(
                    "⬆️ {name}: change #{} updated to {}",
                    change.number,
                    &change.head_sha[..change.head_sha.len().min(12)]
                ),
                None,
            );
        }
    }
    // Approval: an approvals/ file committed by an allowed author (or by the Slack bot for an
    // allowed Slack user), or an approving review of the current head by an allowed reviewer
    // who is not the change's author.
    let mut approver = None;
    for (id, a) in &view.approvals {
        if !allowed(settings, Some(a.by.as_str())) {
            continue;
        }
        let path = StatePath::Approval(t.clone(), id.clone()).to_path();
        let author = commit_author(ctx, view.head.as_deref(), &path).await?;
        match authorize(settings, author.as_deref(), Some(a.by.as_str())) {
            Ok(who) if who == a.by => {
                approver = Some(who);
                break;
            }
            Ok(_) | Err(_) => {
                // Said once per approval file.
                let key = format!("approvalIgnored.{id}");
                if !plan.status.effects.contains_key(&key) {
                    plan.set_effect(&key, author.clone().unwrap_or_default());
                    plan.milestone(
                        MilestoneKind::Error,
                        format!(
                            "⚠️ approval {id} ignored: committed by {}, who may not approve as {}",
                            author.as_deref().unwrap_or("someone unknown"),
                            a.by
                        ),
                        None,
                    );
                }
            }
        }
    }
    let mut requested: Vec<(String, u64, crate::forge::Review)> = Vec::new();
    let mut review_approvals = Vec::new();
    for (repo, cs, head, change) in unmerged(plan, &repos, spec) {
        let name = repo.name.value.clone();
        let reviews = match forge.reviews(&change).await {
            Ok(r) => r,
            Err(crate::forge::ForgeError::RateLimited { until }) => {
                return Ok(rate_limited(plan, until));
            }
            Err(e) => return Err(e.into()),
        };
        // Each reviewer's latest verdict counts (comments do not change it).
        let mut latest: BTreeMap<String, crate::forge::Review> = BTreeMap::new();
        for r in reviews.reviews {
            if matches!(
                r.state.as_str(),
                "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
            ) {
                latest.insert(r.user.clone(), r);
            }
        }
        let mut approved_here = None;
        for (user, r) in latest {
            if user == reviews.author || !settings.authors.reviewers.contains(&user) {
                continue;
            }
            match r.state.as_str() {
                "APPROVED" if r.commit_id == head => approved_here = Some(user),
                "CHANGES_REQUESTED"
                    if !plan
                        .status
                        .effects
                        .contains_key(&format!("review.{}", r.id)) =>
                {
                    requested.push((name.to_string(), cs.number, r));
                }
                _ => {}
            }
        }
        review_approvals.push(approved_here);
    }
    if !requested.is_empty() {
        return changes_requested(ctx, t, plan, requested).await;
    }
    if approver.is_none()
        && !review_approvals.is_empty()
        && let Some(Some(user)) = review_approvals.first()
    {
        // A review approves the task when it approves one of its changes and no other
        // change waits on changes.
        approver = Some(format!("{user} (GitHub review)"));
    }
    let Some(approver) = approver else {
        plan.status.reason = Some("AwaitingApproval".into());
        plan.status.message =
            Some("waiting for an approval (a review, gaffer approve or Slack)".into());
        return Ok(if github {
            // Without webhooks, reviews are polled (conditional requests: free when unchanged).
            Action::requeue(ctx.settings.forge_poll)
        } else {
            Action::await_change()
        });
    };
    for (repo, cs, head, change) in unmerged(plan, &repos, spec) {
        let name = repo.name.value.clone();
        match forge.merge(&change, &head, method).await {
            Ok(merged) => {
                if let Some(rs) = plan.status.repos.get_mut(&name)
                    && let Some(c) = rs.change.as_mut()
                {
                    c.state = "merged".into();
                    c.merge_commit = merged.merge_commit.clone();
                }
                plan.milestone(
                    MilestoneKind::Review,
                    format!("✅ {name}: change #{} merged", cs.number),
                    merged.merge_commit.clone(),
                );
            }
            Err(crate::forge::ForgeError::Blocked(why)) => {
                let asked = format!("mergeAsked.{name}");
                if why.contains("not mergeable") && !plan.status.effects.contains_key(&asked) {
                    // Conflicts with the base: the builder can resolve them (once; after that
                    // the task waits here for a person).
                    plan.set_effect(&asked, "sent");
                    return merge_conflict(ctx, t, plan, &name, &repo.base, cs.number, &why).await;
                }
                let why = format!("{name} #{}: {why}", cs.number);
                if plan.status.message.as_deref() != Some(why.as_str()) {
                    plan.milestone(
                        MilestoneKind::Error,
                        format!("⛔ merge blocked: {why}"),
                        None,
                    );
                }
                plan.status.reason = Some("MergeBlocked".into());
                plan.status.message = Some(why);
                return Ok(if github {
                    Action::requeue(ctx.settings.forge_poll)
                } else {
                    Action::await_change()
                });
            }
            Err(crate::forge::ForgeError::RateLimited { until }) => {
                return Ok(rate_limited(plan, until));
            }
            Err(e) => return Err(e.into()),
        }
    }
    plan.transition(Phase::Promoted, "Merged", format!("approved by {approver}"));
    Ok(Action::await_change())
}

/// Asks the builder to bring the base branch in and resolve the conflicts, then back to
/// `Running` (the approval stays; the merge is tried again after the lab).
async fn merge_conflict(
    ctx: &Context,
    t: &TaskRef,
    plan: &mut Plan,
    repo: &RepoName,
    base: &str,
    number: u64,
    why: &str,
) -> Result<Action, ReconcileError> {
    let text = format!(
        "Pull request {repo} #{number} cannot be merged: {why}.\nPlease merge the latest `{base}` \
         into your branch in repos/{repo} (git fetch origin && git merge origin/{base}), \
         resolve the conflicts and commit.\n"
    );
    plan.milestone(
        MilestoneKind::Error,
        format!("⛔ {repo} #{number} conflicts with {base}; asked the builder to merge it in"),
        None,
    );
    plan.send_feedback(
        ctx,
        t,
        &format!("merge-{repo}-{number}"),
        &text,
        "MergeConflict",
        "asked the agent to resolve conflicts",
    )
    .await
}

/// A person's answer that came after the work went on (a default applied at the deadline,
/// then someone chose differently): back to `Running`, where answers are applied and the
/// work since the question is set aside. Once per answer.
fn late_answer(view: &View, plan: &mut Plan) -> Option<Action> {
    for (qid, a) in &view.answers {
        let Some(q) = plan.questions.get(qid).or_else(|| view.questions.get(qid)) else {
            continue;
        };
        let mut chosen: Vec<String> = a
            .choice
            .as_ref()
            .map(|c| c.value.labels().into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        if chosen.is_empty()
            && let Some(t) = &a.text
        {
            chosen.push(t.clone());
        }
        let differs = match &q.decision {
            Some(d) => d.decided_by == DecidedBy::TimeoutDefault && d.choice != chosen,
            None => false,
        };
        let key = format!("lateAnswer.{qid}");
        let seen = format!("{chosen:?} {:?}", a.by);
        if differs && plan.status.effects.get(&key) != Some(&seen) {
            plan.set_effect(&key, seen);
            plan.transition(
                Phase::Running,
                "AnswerChanged",
                format!("{qid} answered after its default was applied; applying it"),
            );
            return Some(Action::requeue(Duration::ZERO));
        }
    }
    None
}

/// The repos whose change is recorded and not merged yet, in `repos`' order: the repo, its
/// change, its head and the forge's view of it.
fn unmerged<'a>(
    plan: &Plan,
    repos: &[&'a crate::state::spec::RepoSpec],
    spec: &TaskSpec,
) -> Vec<(
    &'a crate::state::spec::RepoSpec,
    ChangeStatus,
    String,
    Change,
)> {
    repos
        .iter()
        .filter_map(|repo| {
            let rs = plan.status.repos.get(&repo.name.value)?;
            let (cs, head) = (rs.change.clone()?, rs.head_commit.clone()?);
            (cs.state != "merged").then(|| {
                let change = change_of_status(repo, rs, &cs, spec, &head);
                (*repo, cs, head, change)
            })
        })
        .collect()
}

/// The forge's view of a recorded change.
fn change_of_status(
    repo: &crate::state::spec::RepoSpec,
    rs: &crate::state::status::RepoStatus,
    cs: &ChangeStatus,
    spec: &TaskSpec,
    head: &str,
) -> Change {
    Change {
        number: cs.number,
        repo_url: repo.url.clone(),
        head_branch: rs.branch.clone(),
        base: repo.base.clone(),
        title: spec.title.clone(),
        state: cs.state.clone(),
        head_sha: head.to_string(),
        merge_commit: None,
        url: cs.url.clone().unwrap_or_default(),
        repo: repo
            .github
            .clone()
            .or_else(|| crate::forge::github::repo_of_url(&repo.url)),
    }
}

/// Waits for the forge's rate limit to reset, saying so.
fn rate_limited(plan: &mut Plan, until: Timestamp) -> Action {
    plan.status.reason = Some("RateLimited".into());
    plan.status.message = Some(format!("the forge's rate limit resets at {until}"));
    let wait = until.duration_since(plan.now).as_secs().max(1) as u64;
    Action::requeue(Duration::from_secs(wait))
}

/// Sends review comments that ask for changes to the builder and goes back to `Running`.
async fn changes_requested(
    ctx: &Context,
    t: &TaskRef,
    plan: &mut Plan,
    requested: Vec<(String, u64, crate::forge::Review)>,
) -> Result<Action, ReconcileError> {
    let mut text = String::from("Reviewers asked for changes to your pull requests:\n");
    let mut ids = Vec::new();
    for (repo, number, r) in &requested {
        text.push_str(&format!("\n{} on {repo} #{number}:\n", r.user));
        if !r.body.trim().is_empty() {
            text.push_str(&format!("{}\n", r.body.trim()));
        }
        for c in &r.comments {
            text.push_str(&format!("- {c}\n"));
        }
        ids.push(r.id.to_string());
    }
    text.push_str(
        "\nPlease address them; when you are done the work is deployed, tested and the pull \
         requests are updated.\n",
    );
    // Recorded with the prompt, in one status commit (a failed send records nothing).
    for (repo, number, r) in &requested {
        plan.set_effect(&format!("review.{}", r.id), "sent");
        plan.milestone(
            MilestoneKind::Review,
            format!(
                "💬 {} asked for changes on {repo} #{number}; sent to the builder",
                r.user
            ),
            None,
        );
    }
    plan.send_feedback(
        ctx,
        t,
        &format!("review-{}", ids.join("-")),
        &text,
        "ChangesRequested",
        "review comments sent back to the agent",
    )
    .await
}
