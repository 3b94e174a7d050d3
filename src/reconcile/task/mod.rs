//! The task lifecycle: `Pending → Queued → Preparing → Running ⇄ AwaitingAnswer → Deploying →
//! Testing → InReview → Promoted`, with `Failed`, `Suspended` and `Cancelled`.
//!
//! Each reconcile reads the task's files ([`view`]), passes the gates below (a deleted or
//! invalid spec, cancel, suspend, retry, a ledger that does not parse, a late answer), then
//! takes the next idempotent step of its phase — one file per phase, one signature:
//! `async fn(&Context, &View, &mut Plan) -> Result<Action, ReconcileError>` — and records the
//! result in one commit ([`plan`]). Every external effect is either find-or-create or keyed
//! in the typed ledger [`crate::state::effects::TaskEffects`]; the rule for each is in
//! docs/reconciler.md.

mod deploy;
mod messages;
mod notices;
mod plan;
mod planning;
mod prepare;
mod prompts;
mod questions;
mod queue;
mod review;
mod run;
mod stories;
mod usage;
mod view;
mod work;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use plan::Plan;
pub use view::{Loaded, Sibling, TaskFiles, View};

use super::{Action, Context, ReconcileError};
use crate::state::path::ObjectKey;
use crate::state::status::Phase;

/// Reconciles one object: a task's lifecycle, or a project's builder started ahead of its
/// tasks ([`crate::reconcile::project`]).
pub async fn reconcile(key: ObjectKey, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let t = match key {
        ObjectKey::Task(t) => t,
        ObjectKey::Project(p) => return crate::reconcile::project::reconcile(p, ctx).await,
        ObjectKey::Settings => return Ok(Action::await_change()),
    };
    let mut loaded = None;
    ctx.store
        .read(&mut |head, snap| loaded = Some(Loaded::from_snapshot(head, snap, &t)))?;
    let loaded = loaded.unwrap_or_default();
    plan::catch_up_notifications(&ctx, &t, &loaded.files).await?;
    if loaded.settings.is_none() {
        return Ok(Action::await_change());
    }
    let siblings = loaded.files.siblings.clone();
    let wake_queued = || {
        for s in &siblings {
            if s.phase == Phase::Queued {
                ctx.scheduler.now(ObjectKey::Task(s.task.clone()));
            }
        }
    };
    if !loaded.exists {
        // The whole task directory is gone: its slot (if it had one) is free.
        wake_queued();
        return Ok(Action::await_change());
    }
    if let Some(p) = loaded.owned_file_problems.first() {
        // Never overwrite a status or progress file that did not parse: that would lose the
        // agent cursor or the history. A person has to fix (or delete) it.
        tracing::error!(task = %t, problem = %p, "a reconciler-owned file is invalid; not acting on this task");
        return Ok(Action::await_change());
    }
    let was_active = loaded
        .files
        .status
        .as_ref()
        .is_some_and(|s| s.phase.is_active());
    let mut plan = Plan::new(&t, loaded.head.clone(), &loaded.files, ctx.clock.now());
    let parent = loaded.spec.as_ref().and_then(|s| s.parent.clone());
    let phase_before = plan.phase();
    let action = decide(&ctx, loaded, &mut plan).await?;
    let left_active = was_active && !plan.phase().is_active();
    let moved = plan.phase() != phase_before;
    plan.commit(&ctx).await?;
    if moved && let Some(parent) = parent {
        // A story moved: its parent shows its stories and finishes with them.
        ctx.scheduler.now(ObjectKey::Task(crate::names::TaskRef {
            project: t.project.clone(),
            task: parent,
        }));
    }
    if left_active {
        // A slot in the project freed up: queued siblings may start; and the project's
        // builder may now be idle (a pod is suspended after a while).
        wake_queued();
        ctx.scheduler.now(ObjectKey::Project(t.project.clone()));
    }
    Ok(action)
}

/// The gates, then the step of the task's phase. Writes nothing: the plan holds the result.
pub async fn decide(
    ctx: &Context,
    loaded: Loaded,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let view = match admit(ctx, loaded, plan).await? {
        Ok(view) => view,
        Err(action) => return Ok(action),
    };
    let action = match gates(ctx, &view, plan).await? {
        Some(action) => action,
        None => step(ctx, &view, plan).await?,
    };
    // Why a person is needed now, raised once per reason; look again when one falls due.
    Ok(match notices::update(&view, plan).map(|d| plan.until(d)) {
        None => action,
        Some(due) => match action {
            Action::Requeue(d) => Action::requeue(d.min(due)),
            Action::AwaitChange => Action::requeue(due),
        },
    })
}

/// The step of the current phase.
async fn step(ctx: &Context, view: &View, plan: &mut Plan) -> Result<Action, ReconcileError> {
    match plan.phase() {
        Phase::Pending => {
            // Its builder may start while the task waits for its turn and its workspace.
            ctx.scheduler
                .now(ObjectKey::Project(view.t.project.clone()));
            plan.transition(Phase::Queued, "Queued", "");
            Ok(Action::requeue(Duration::ZERO))
        }
        Phase::Queued => queue::queued(ctx, view, plan).await,
        Phase::Preparing => prepare::preparing(ctx, view, plan).await,
        Phase::Running | Phase::AwaitingAnswer | Phase::Planning => {
            run::running(ctx, view, plan).await
        }
        Phase::AwaitingPlanApproval => planning::awaiting(ctx, view, plan).await,
        Phase::BuildingStories => stories::building(ctx, view, plan).await,
        Phase::Deploying => deploy::deploying(ctx, view, plan).await,
        Phase::Testing => deploy::testing(ctx, view, plan).await,
        Phase::InReview => review::in_review(ctx, view, plan).await,
        Phase::Promoted | Phase::Failed | Phase::Suspended | Phase::Cancelled => {
            Ok(Action::await_change())
        }
    }
}

/// A task is acted on only with a valid `task.yaml` and `project.yaml`; a deleted
/// `task.yaml` cancels it.
async fn admit(
    ctx: &Context,
    loaded: Loaded,
    plan: &mut Plan,
) -> Result<Result<View, Action>, ReconcileError> {
    // The task was deleted: stop, keep the worktree and branches.
    if !loaded.spec_present {
        if loaded.files.status.is_some() && plan.phase() != Phase::Cancelled {
            work::stop_agent(ctx, plan).await?;
            plan.transition(
                Phase::Cancelled,
                "TaskDeleted",
                "task.yaml was deleted; worktree and branches kept",
            );
        }
        return Ok(Err(Action::await_change()));
    }
    // An invalid task.yaml: report where, do nothing else.
    let Some(spec) = loaded.spec else {
        let msg = plan::join_problems(&loaded.spec_problems);
        plan.waiting("InvalidSpec", msg.clone());
        return Ok(Err(plan.blocked("SpecValid", "InvalidSpec", &msg)));
    };
    plan.clear_condition("SpecValid");
    if !loaded.project_problems.is_empty() {
        let msg = plan::join_problems(&loaded.project_problems);
        return Ok(Err(plan.blocked("ProjectReady", "InvalidProject", &msg)));
    }
    let Some(project) = loaded.project else {
        let msg = if loaded.project_present {
            "project.yaml is invalid; see gaffer validate"
        } else {
            "the project has no project.yaml"
        };
        return Ok(Err(plan.blocked("ProjectReady", "NoProject", msg)));
    };
    plan.clear_condition("ProjectReady");
    let Some(settings) = loaded.settings else {
        return Ok(Err(Action::await_change()));
    };
    Ok(Ok(View {
        t: plan.t.clone(),
        head: loaded.head,
        settings,
        project,
        spec,
        files: loaded.files,
    }))
}

/// What comes before any phase: cancel, the terminal phases, suspend and resume, a failed
/// task's retry, a ledger that does not parse, a late answer.
async fn gates(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Option<Action>, ReconcileError> {
    let spec = &view.spec;
    if spec.cancel {
        if plan.phase() != Phase::Cancelled {
            work::stop_agent(ctx, plan).await?;
            plan.transition(
                Phase::Cancelled,
                "Cancelled",
                "cancel: true; worktree and branches kept",
            );
        }
        return Ok(Some(Action::await_change()));
    }
    if matches!(plan.phase(), Phase::Cancelled | Phase::Promoted) {
        return Ok(Some(Action::await_change()));
    }
    // A ledger entry that does not parse: guessing could repeat or skip an effect.
    if let Some(msg) = plan.status.effects.invalid_message() {
        return Ok(Some(plan.blocked("EffectsValid", "InvalidEffects", &msg)));
    }
    plan.clear_condition("EffectsValid");
    if spec.suspend && plan.phase() != Phase::Failed {
        if plan.phase() != Phase::Suspended {
            work::stop_agent(ctx, plan).await?;
            plan.status.effects.suspended_from = Some(plan.phase());
            plan.transition(Phase::Suspended, "Suspended", "suspend: true");
        }
        return Ok(Some(Action::await_change()));
    }
    if plan.phase() == Phase::Suspended {
        let back = match plan.status.effects.suspended_from {
            Some(Phase::Running | Phase::AwaitingAnswer | Phase::Preparing) => Some(Phase::Running),
            Some(p @ (Phase::Deploying | Phase::Testing | Phase::InReview)) => Some(p),
            _ => None,
        };
        resume_through_queue(plan, back, "Resumed", "suspend: false");
        return Ok(Some(Action::requeue(Duration::ZERO)));
    }
    if plan.phase() == Phase::Failed {
        if spec.retry > plan.status.observed_retry {
            plan.status.observed_retry = spec.retry;
            plan.status.attempts = 0;
            plan.status.effects.test_attempts = 0;
            let back = match plan.status.effects.failed_in {
                Some(p @ (Phase::Deploying | Phase::Testing | Phase::InReview)) => Some(p),
                Some(Phase::Running | Phase::AwaitingAnswer) if plan.status.agent.is_some() => {
                    Some(Phase::Running)
                }
                _ => None,
            };
            resume_through_queue(plan, back, "Retry", &format!("retry: {}", spec.retry));
            return Ok(Some(Action::requeue(Duration::ZERO)));
        }
        // Stopped by its budget, and the budget was raised since: carry on.
        if matches!(
            plan.status.reason.as_deref(),
            Some("BudgetExceeded" | "BudgetUnenforceable")
        ) && plan.status.agent.is_some()
            && let usage = plan.status.usage.clone().unwrap_or_default()
            && usage::task_limit(view).is_none_or(|l| l.spent(&usage).is_some_and(|s| s < 1.0))
            && usage::raise_allowed(ctx, view, plan).await?
        {
            let shown = usage::task_limit(view).map_or("no limit".into(), |l| l.to_string());
            // A builder goes back to its session; a planner starts its step again.
            let back = match plan.status.effects.failed_in {
                Some(Phase::Running | Phase::AwaitingAnswer) => Some(Phase::Running),
                _ => None,
            };
            resume_through_queue(
                plan,
                back,
                "BudgetRaised",
                &format!("the budget is now {shown}"),
            );
            return Ok(Some(Action::requeue(Duration::ZERO)));
        }
        return Ok(Some(Action::await_change()));
    }
    // An answer that came after its default was applied, once the work moved on.
    if matches!(
        plan.phase(),
        Phase::Deploying | Phase::Testing | Phase::InReview
    ) && let Some(action) = questions::late_answer(view, plan)
    {
        return Ok(Some(action));
    }
    Ok(None)
}

/// Goes back to work through the queue: the project's slot limit applies again, and
/// Preparing switches the shared worktree back to this task's branch before `back` resumes.
pub(super) fn resume_through_queue(
    plan: &mut Plan,
    back: Option<Phase>,
    reason: &str,
    message: &str,
) {
    plan.status.effects.resume_to = back;
    plan.transition(Phase::Queued, reason, message);
}

/// Runs blocking work (git, files) off the async worker threads.
async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ReconcileError>
where
    T: Send + 'static,
    E: Into<ReconcileError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?.map_err(Into::into)
}
