//! Notices: why a task needs a person, raised once per reason and pushed (by the Slack bot,
//! with a mention) when due.
//!
//! They are derived from where the task stands after its step — an open question, a plan or
//! a change waiting for approval, a failure, a stall — so every path that leads there raises
//! one, and none is raised twice (the key names the reason: `question:q-001`, `plan:2`,
//! `review:1`, `failed:0`, `stall:<since>`). In business hours a notice is due at once;
//! outside them it waits for the next business morning, unless its deadline is sooner
//! (`notify.hold_outside_hours`). The reconciler releases a notice when it is due (on the
//! injected clock, waking for it), and the bot only pushes released ones.

use jiff::Timestamp;

use super::{Plan, View};
use crate::state::status::{Notice, Phase, QuestionState};

/// Notices kept per task (the oldest released ones are dropped beyond this).
const KEEP: usize = 30;

/// A reason a person is needed now.
struct Reason {
    key: String,
    text: String,
    deadline: Option<Timestamp>,
}

/// The reasons the task needs a person, as it stands in `plan`.
fn reasons(view: &View, plan: &Plan) -> Vec<Reason> {
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let when = |t: Timestamp| t.to_zoned(tz.clone()).strftime("%a %H:%M %Z").to_string();
    let t = &view.t;
    let head = format!("{} · {}", t.project, t.task);
    let short = |s: &str, n: usize| -> String {
        let mut out: String = s.chars().take(n).collect();
        if s.chars().count() > n {
            out.push('…');
        }
        out
    };
    let mut out = Vec::new();
    let asking = matches!(
        plan.phase(),
        Phase::Running | Phase::AwaitingAnswer | Phase::Planning
    );
    for (qid, q) in plan.questions.iter().filter(|_| asking) {
        if q.decision.is_some()
            || !matches!(q.state, QuestionState::Open | QuestionState::Provisional)
        {
            continue;
        }
        let by = q
            .deadline
            .map(|d| {
                format!(
                    " — answer by {} (then {})",
                    when(d),
                    short(&q.recommended, 60)
                )
            })
            .unwrap_or_default();
        let what = if q.kind == crate::state::status::QuestionKind::Permission {
            "🔐 permission asked"
        } else {
            "❓ question"
        };
        out.push(Reason {
            key: format!("question:{qid}"),
            text: format!("{what} in {head}: {}{by}", short(&q.text, 160)),
            deadline: q.deadline,
        });
    }
    let message = plan.status.message.as_deref().unwrap_or("");
    match plan.phase() {
        Phase::AwaitingPlanApproval => {
            let v = plan.plan_status.as_ref().map_or(0, |p| p.version);
            out.push(Reason {
                key: format!("plan:{v}"),
                text: format!("🗺 plan v{v} of {head} waits for your approval"),
                deadline: None,
            });
        }
        Phase::InReview if plan.status.reason.as_deref() == Some("AwaitingApproval") => {
            out.push(Reason {
                key: format!("review:{}", plan.status.review_round),
                text: format!("👀 {head} is ready for review: approve & promote"),
                deadline: None,
            });
        }
        Phase::Failed => {
            let reason = plan.status.reason.as_deref().unwrap_or("Failed");
            // A budget stop is undone by a raise, not a retry.
            let then = if reason.starts_with("Budget") {
                "raise its budget (gaffer budget) to carry on"
            } else {
                "say `retry` in its thread"
            };
            out.push(Reason {
                key: format!("failed:{}", plan.status.observed_retry),
                text: format!(
                    "❌ {head} failed ({reason}): {} — {then}",
                    short(message, 200)
                ),
                deadline: None,
            })
        }
        _ => {}
    }
    if let Some(l) = &plan.status.effects.budget_warned {
        out.push(Reason {
            key: format!("budget80:{l}"),
            text: format!("💸 {head} has spent 80 % of its budget {l}"),
            deadline: None,
        });
    }
    if matches!(plan.phase(), Phase::AwaitingAnswer | Phase::Planning)
        && plan.status.reason.as_deref() == Some(super::usage::REACHED)
    {
        out.push(Reason {
            key: format!(
                "budget:{}",
                super::usage::task_limit(view).map_or(String::new(), |l| l.to_string())
            ),
            text: format!("💸 {head} stopped at its budget: {}", short(message, 240)),
            deadline: plan.status.effects.budget_deadline,
        });
    }
    if let Some(since) = plan.status.effects.stalled_since {
        let last = plan
            .progress
            .milestones
            .iter()
            .rev()
            .find(|m| m.kind != crate::state::status::MilestoneKind::Stall)
            .map(|m| format!(", last: {}", short(&m.text, 120)))
            .unwrap_or_default();
        let mins = (plan.now.as_second() - since.as_second()) / 60;
        out.push(Reason {
            key: format!("stall:{}", since.as_second()),
            text: format!("⏳ {head}: no progress for {mins} min{last}"),
            deadline: None,
        });
    }
    out
}

/// When a notice raised `now` is due: now in business hours (or with holding off);
/// otherwise the next business morning, or now when the deadline comes before it.
pub fn due(view: &View, now: Timestamp, deadline: Option<Timestamp>) -> Timestamp {
    if !view.settings.notify.hold_outside_hours {
        return now;
    }
    let Ok(open) = crate::hours::deadline(
        now,
        jiff::SignedDuration::ZERO,
        &view.settings.business_hours,
    ) else {
        return now;
    };
    match deadline {
        Some(d) if d < open => now,
        _ => open.max(now),
    }
}

/// Raises the task's new notices, releases those due, and returns when the next one is due.
pub fn update(view: &View, plan: &mut Plan) -> Option<Timestamp> {
    let reasons = reasons(view, plan);
    // A held notice whose reason went away before it was due (answered in the night) is
    // dropped: nobody is woken for what is already done.
    plan.status
        .notices
        .retain(|n| n.released || reasons.iter().any(|r| r.key == n.key));
    for r in reasons {
        if plan.status.notices.iter().any(|n| n.key == r.key) {
            continue;
        }
        let due = due(view, plan.now, r.deadline);
        plan.status.notices.push(Notice {
            key: r.key,
            text: r.text,
            at: plan.now,
            due,
            released: false,
        });
    }
    let now = plan.now;
    for n in plan
        .status
        .notices
        .iter_mut()
        .filter(|n| !n.released && n.due <= now)
    {
        n.released = true;
    }
    let excess = plan.status.notices.len().saturating_sub(KEEP);
    if excess > 0 {
        let mut dropped = 0;
        plan.status.notices.retain(|n| {
            let drop = dropped < excess && n.released;
            dropped += usize::from(drop);
            !drop
        });
    }
    plan.status
        .notices
        .iter()
        .filter(|n| !n.released)
        .map(|n| n.due)
        .min()
}
