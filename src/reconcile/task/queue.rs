//! Queued: a task waits for one of its project's active slots (`limits.active_tasks_per_project`),
//! taken by priority, then by how long it has waited, then by name.

use std::time::Duration;

use super::{Plan, View};
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::status::Phase;

/// Starts the task when a slot is free and no queued sibling is ahead of it.
pub async fn queued(
    _ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let t = &view.t;
    // A story is built after the stories before it: it builds on what they left.
    if let Some(before) = super::stories::waits_for(view) {
        plan.waiting(
            "StoryOrder",
            format!("waiting for the story before it: {before}"),
        );
        return Ok(Action::await_change());
    }
    let active = view.siblings.iter().filter(|s| s.phase.is_active()).count();
    let limit = view.settings.limits.active_tasks_per_project as usize;
    if active >= limit {
        plan.waiting(
            "ProjectBusy",
            format!(
                "waiting for a free slot ({active}/{limit} active in {})",
                t.project
            ),
        );
        return Ok(Action::await_change());
    }
    // Priority first, then the order tasks were queued in, then name.
    let key = |prio, since, name| (std::cmp::Reverse(prio), since, name);
    let me = key(view.spec.priority, plan.status.phase_since, t.task.clone());
    let ahead = view
        .siblings
        .iter()
        .filter(|s| s.phase == Phase::Queued)
        // A story waiting for the one before it takes no turn.
        .filter(|s| !super::stories::sibling_waits(view, s, plan.phase()))
        .filter(|s| key(s.priority, s.since, s.task.task.clone()) < me)
        .count();
    if active + ahead >= limit {
        plan.waiting(
            "ProjectBusy",
            format!("{ahead} task(s) ahead in the queue of {}", t.project),
        );
        return Ok(Action::await_change());
    }
    // A day budget spent: wait for the next day (or a raise, which wakes the task).
    if let Some((why, midnight)) = super::usage::day_budget_spent(view, plan.now) {
        if plan.status.message.as_deref() != Some(why.as_str()) {
            plan.waiting("DayBudgetReached", why);
        }
        return Ok(Action::requeue(plan.until(midnight)));
    }
    plan.transition(Phase::Preparing, "Starting", "");
    Ok(Action::requeue(Duration::ZERO))
}
