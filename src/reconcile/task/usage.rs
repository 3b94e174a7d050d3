//! Usage: what a task's model requests used, counted once each (they come with the
//! builder's events, past the same cursor) into the task's total and its days (in the
//! business time zone), so a project's or a day's spend is a sum over the state repository;
//! and the task budget it is held to.

use jiff::Timestamp;
use minijinja::context;

use super::prompts::{self, Prompt};
use super::{Plan, View};
use crate::agent::AgentRuntime;
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::spec::{Amount, BudgetSpec};
use crate::state::status::{MilestoneKind, Phase, Usage};

/// Adds what the builder's finished requests used.
pub fn record(view: &View, plan: &mut Plan, used: &[(Timestamp, Usage)]) {
    if used.is_empty() {
        return;
    }
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    for (at, u) in used {
        plan.status.usage.get_or_insert_with(Usage::default).add(u);
        let day = at.to_zoned(tz.clone()).date().to_string();
        plan.status.usage_by_day.entry(day).or_default().add(u);
    }
}

/// The task budget in force: the task's, else the project's, else `gaffer.yaml`'s.
pub fn task_limit(view: &View) -> Option<Amount> {
    BudgetSpec::task_limit(
        view.spec.budget.as_ref(),
        view.project.budget.as_ref(),
        &view.settings.budget,
    )
}

/// Whether the task budget in force may be taken as a person's raise: one set in `task.yaml`
/// counts only when its last change comes from someone allowed to decide (an author listed
/// and signed, or a delegate such as the Slack bot naming an allowed person in `by:`), as an
/// answer would; one from `project.yaml` or `gaffer.yaml` is configuration. `Err` says why
/// not, once per refused budget (a milestone).
pub async fn raise_allowed(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<bool, ReconcileError> {
    let Some(own) = view.spec.budget.as_ref().filter(|b| b.task.is_some()) else {
        return Ok(true);
    };
    let path = crate::state::StatePath::TaskSpec(view.t.clone()).to_path();
    let sig = super::questions::last_change(ctx, view, &path).await?;
    match super::questions::authorize(&view.settings, sig.as_ref(), own.by.as_deref()) {
        Ok(_) => Ok(true),
        Err(why) => {
            let named = own.task.map(|l| l.to_string()).unwrap_or_default();
            if plan.status.effects.budget_raise_ignored.as_deref() != Some(named.as_str()) {
                plan.status.effects.budget_raise_ignored = Some(named.clone());
                plan.milestone(
                    MilestoneKind::Error,
                    format!(
                        "✋ budget {named} in task.yaml not taken: {}",
                        why.replacen("answer", "change", 1)
                    ),
                    None,
                );
            }
            Ok(false)
        }
    }
}

/// The day budget that holds the task's start, if one is spent today: why, and when the
/// day ends (midnight in the business time zone).
pub fn day_budget_spent(view: &View, now: Timestamp) -> Option<(String, Timestamp)> {
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let today = now.to_zoned(tz.clone());
    let day = today.date().to_string();
    let midnight = today
        .date()
        .tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map_or(now, |z| z.timestamp());
    let project_limit = view
        .project
        .budget
        .as_ref()
        .and_then(|b| b.project_per_day)
        .or(view.settings.budget.project_per_day);
    let empty = Usage::default();
    let checks = [
        (
            project_limit,
            view.project_by_day.get(&day).unwrap_or(&empty),
            format!("{}'s budget for the day", view.t.project),
        ),
        (
            view.settings.budget.per_day,
            view.all_by_day.get(&day).unwrap_or(&empty),
            "the budget for the day (every project)".to_string(),
        ),
    ];
    checks.into_iter().find_map(|(limit, used, what)| {
        let l = limit?;
        // Unknown spend (a money budget and a model without a price) holds too: money is
        // never spent by default.
        let spent = l.spent(used).is_none_or(|s| s >= 1.0);
        spent.then(|| {
            (
                format!(
                    "{what} is spent ({} of {l}); waiting for {} or a raise",
                    l.show_spent(used),
                    midnight.to_zoned(tz.clone()).strftime("%a %d %b %H:%M %Z")
                ),
                midnight,
            )
        })
    })
}

/// The reason a task waits while its budget is spent.
pub const REACHED: &str = "BudgetReached";

/// The task budget: people told at 80 % (once per budget); at 100 % the builder's turn is
/// stopped and the task waits for a person to raise the budget until the question deadline,
/// then fails with `BudgetExceeded`; a raise carries on in the same session. `Some` when
/// this step ends here.
pub async fn budget(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    agent: &dyn AgentRuntime,
    session: &str,
) -> Result<Option<Action>, ReconcileError> {
    // A planner stopped at its budget waits in Planning; a builder in AwaitingAnswer.
    let waiting = plan.status.reason.as_deref() == Some(REACHED)
        && matches!(plan.phase(), Phase::AwaitingAnswer | Phase::Planning);
    let back = match plan.phase() {
        Phase::Planning => Phase::Planning,
        _ => Phase::Running,
    };
    let usage = plan.status.usage.clone().unwrap_or_default();
    let limit = task_limit(view);
    let spent = limit.and_then(|l| l.spent(&usage));
    if waiting {
        match (limit, spent) {
            (Some(l), Some(s)) if s >= 1.0 => {
                let deadline = plan.status.effects.budget_deadline.unwrap_or(plan.now);
                if deadline <= plan.now {
                    plan.status.effects.budget_deadline = None;
                    plan.status.effects.failed_in = Some(back);
                    plan.transition(
                        Phase::Failed,
                        "BudgetExceeded",
                        format!(
                            "spent {} of the task budget {l}; nobody raised it by the deadline \
                             (raise it with gaffer budget to carry on)",
                            l.show_spent(&usage)
                        ),
                    );
                    return Ok(Some(Action::await_change()));
                }
                return Ok(Some(Action::requeue(plan.until(deadline))));
            }
            _ if !raise_allowed(ctx, view, plan).await? => {
                let deadline = plan.status.effects.budget_deadline.unwrap_or(plan.now);
                return Ok(Some(Action::requeue(plan.until(deadline))));
            }
            _ => {
                // Raised (or the budget removed): carry on in the same session.
                plan.status.effects.budget_deadline = None;
                let shown = limit.map_or("no limit".to_string(), |l| l.to_string());
                let id = format!("budget-raised-{}", plan.prompts_count());
                let text = prompts::render(Prompt::BudgetRaised, context! { limit => &shown })?;
                agent.send(&view.t, session, &id, &text).await?;
                plan.record_prompt(&id);
                plan.transition(back, "BudgetRaised", format!("the budget is now {shown}"));
                return Ok(Some(Action::requeue(std::time::Duration::ZERO)));
            }
        }
    }
    if let Some(l @ Amount::Money(_)) = limit
        && spent.is_none()
    {
        // The model has no price: a money budget cannot be kept, and money is never spent
        // by default. A token budget lets it carry on.
        agent.interrupt(&view.t, session).await?;
        plan.status.effects.failed_in = Some(back);
        plan.transition(
            Phase::Failed,
            "BudgetUnenforceable",
            format!(
                "the model has no price, so the task budget {l} cannot be kept: set a token \
                 budget (gaffer budget {} --set 2M) to carry on",
                view.t
            ),
        );
        return Ok(Some(Action::await_change()));
    }
    let (Some(l), Some(s)) = (limit, spent) else {
        return Ok(None);
    };
    if s >= 0.8 && plan.status.effects.budget_warned.as_deref() != Some(&l.to_string()) {
        plan.status.effects.budget_warned = Some(l.to_string());
        plan.milestone(
            MilestoneKind::Error,
            format!(
                "💸 {:.0} % of the task budget spent: {} of {l}",
                s * 100.0,
                l.show_spent(&usage)
            ),
            None,
        );
    }
    if s < 1.0 {
        return Ok(None);
    }
    // Spent: no more model requests until a person decides.
    agent.interrupt(&view.t, session).await?;
    let (timeout, _, _) = super::questions::policy(view);
    let deadline = crate::hours::deadline(plan.now, timeout, &view.settings.business_hours)
        .unwrap_or(plan.now);
    plan.status.effects.budget_deadline = Some(deadline);
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let waits_in = match back {
        Phase::Planning => Phase::Planning,
        _ => Phase::AwaitingAnswer,
    };
    plan.transition(
        waits_in,
        REACHED,
        format!(
            "spent {} of the task budget {l}: raise it (gaffer budget {} --set …) or the task \
             stops at {}",
            l.show_spent(&usage),
            view.t,
            deadline.to_zoned(tz).strftime("%a %H:%M %Z")
        ),
    );
    Ok(Some(Action::requeue(plan.until(deadline))))
}
