//! The app's Home tab: the phone dashboard. For the person who opens it: what waits for
//! them (open questions with their deadlines and answer buttons, plans and changes waiting
//! for approval), every project with its active tasks and their phases, and recent
//! promotions and failures. Published on `app_home_opened` and again when the state changes
//! (at most every [`REFRESH_EVERY`] per person), within Block Kit's limits (100 blocks per
//! view, 3,000 characters per section, 25 buttons per actions block) however many tasks
//! there are.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::blocks::{button, context, escape, section};
use super::bot::Bot;
use crate::state::planning::PlanState;
use crate::state::snapshot::Snapshot;
use crate::state::status::Phase;

/// The least time between two publications of one person's Home tab on state changes.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Slack's limit of blocks in a Home tab view.
pub const MAX_BLOCKS: usize = 100;

/// Items waiting for a person shown with their buttons; more are counted.
const MAX_WAITING: usize = 20;

/// Recent promotions and failures shown.
const MAX_RECENT: usize = 8;

/// A section's text, cut to Slack's limit on a line boundary.
fn lines_section(lines: &[String]) -> Value {
    let mut text = String::new();
    let mut shown = 0;
    for l in lines {
        if text.len() + l.len() + 40 > 2900 {
            break;
        }
        text.push_str(l);
        text.push('\n');
        shown += 1;
    }
    if shown < lines.len() {
        text.push_str(&format!("… and {} more", lines.len() - shown));
    }
    section(text.trim_end())
}

fn is_active(p: Phase) -> bool {
    !matches!(p, Phase::Promoted | Phase::Cancelled | Phase::Failed)
}

/// The Home tab for whoever opens it (the state is the same for every allowed person; a
/// person not allowed to act sees it read-only, told why).
pub fn view(snap: &Snapshot, may_act: bool, now: Timestamp, tz: &jiff::tz::TimeZone) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": "gaffer", "emoji": true}}),
        context(&format!(
            "Updated {} · `/opencode start` for a new task",
            now.to_zoned(tz.clone()).strftime("%a %d %b %H:%M %Z")
        )),
    ];
    if !may_act {
        blocks.push(context(
            "You can look but not act: ask the owner to add your Slack user id to gaffer.yaml \
             authors.slack_users.",
        ));
    }
    let deadline = |t: Timestamp| t.to_zoned(tz.clone()).strftime("%a %H:%M").to_string();

    // What waits for a person, soonest deadline first.
    let mut waiting: Vec<(Option<Timestamp>, Vec<Value>)> = Vec::new();
    for (t, e) in snap.tasks() {
        for (qid, q) in e.questions.iter().filter(|(_, q)| q.decision.is_none()) {
            let mut text = format!("❓ *{t}* · {qid}\n{}", escape(&q.text, 600));
            if let Some(d) = q.deadline {
                text.push_str(&format!(
                    "\n_Deadline {}: then {}_",
                    deadline(d),
                    escape(&q.recommended, 150)
                ));
            }
            let mut buttons: Vec<Value> = q
                .options
                .iter()
                .enumerate()
                .take(if q.custom { 4 } else { 5 })
                .map(|(i, o)| {
                    button(
                        &o.label,
                        format!("answer:{t}:{qid}:{i}"),
                        &o.label,
                        o.label == q.recommended,
                    )
                })
                .collect();
            if q.custom || q.options.len() > buttons.len() {
                buttons.push(button(
                    "Other…",
                    format!("change:{t}:{qid}"),
                    qid.as_str(),
                    false,
                ));
            }
            waiting.push((
                q.deadline,
                vec![
                    section(&text),
                    json!({"type": "actions", "block_id": format!("home-q:{t}:{qid}"), "elements": buttons}),
                ],
            ));
        }
        if let Some(p) = e.plan.as_deref()
            && p.state == PlanState::AwaitingApproval
        {
            waiting.push((
                None,
                vec![
                    section(&format!(
                        "🗺 *{t}* · plan version {} waits for approval",
                        p.version
                    )),
                    json!({"type": "actions", "block_id": format!("home-plan:{t}"), "elements": [
                        button("Approve plan", format!("plan:{t}:{}", p.version), &t.to_string(), true)]}),
                ],
            ));
        }
        if let Some(st) = e.status.as_deref()
            && matches!(st.phase, Phase::AwaitingAnswer | Phase::Planning)
            && st.reason.as_deref() == Some("BudgetReached")
        {
            // The raise buttons of its notice, from the budget in force when it stopped.
            let limit = st.notices.iter().rev().find_map(|n| {
                n.key
                    .strip_prefix("budget:")
                    .and_then(|l| crate::state::spec::Amount::parse(l).ok())
            });
            let mut buttons: Vec<Value> = limit
                .into_iter()
                .flat_map(|l| [l.times(1.5), l.times(2.0)])
                .map(|to| {
                    button(
                        &format!("Raise to {to}"),
                        format!("raise:{t}:{to}"),
                        &to.to_string(),
                        false,
                    )
                })
                .collect();
            buttons.push(button(
                "Stop the task",
                format!("raise:{t}:stop"),
                "stop",
                false,
            ));
            waiting.push((
                st.effects.budget_deadline,
                vec![
                    section(&format!(
                        "💸 *{t}* stopped at its budget: {}",
                        escape(st.message.as_deref().unwrap_or(""), 400)
                    )),
                    json!({"type": "actions", "block_id": format!("home-budget:{t}"), "elements": buttons}),
                ],
            ));
        }
        if let Some(st) = e.status.as_deref()
            && st.phase == Phase::InReview
            && st.reason.as_deref() == Some("AwaitingApproval")
        {
            let prs: Vec<String> = st
                .links
                .iter()
                .filter(|l| l.name.starts_with("pr:"))
                .map(|l| format!("<{}|{}>", escape(&l.url, 300), escape(&l.name, 60)))
                .collect();
            waiting.push((
                None,
                vec![
                    section(&format!("👀 *{t}* is ready for review {}", prs.join(" "))),
                    json!({"type": "actions", "block_id": format!("home-review:{t}"), "elements": [
                        button("Approve & Promote", format!("approve:{t}"), &t.to_string(), true)]}),
                ],
            ));
        }
    }
    waiting.sort_by_key(|(d, _)| d.map_or(i64::MAX, |d| d.as_second()));
    blocks.push(json!({"type": "divider"}));
    if waiting.is_empty() {
        blocks.push(section(
            "*Waiting for you*\nNothing: no open questions or approvals.",
        ));
    } else {
        blocks.push(section(&format!("*Waiting for you* ({})", waiting.len())));
    }
    let more = waiting.len().saturating_sub(MAX_WAITING);
    for (_, b) in waiting.into_iter().take(MAX_WAITING) {
        blocks.extend(b);
    }
    if more > 0 {
        blocks.push(context(&format!(
            "… and {more} more: `gaffer questions` lists them all"
        )));
    }

    // Every project: its active tasks and their phases.
    blocks.push(json!({"type": "divider"}));
    let mut projects = Vec::new();
    for (p, pe) in &snap.projects {
        if pe.spec.is_none() {
            continue;
        }
        let active: Vec<String> = pe
            .tasks
            .iter()
            .filter_map(|(name, te)| {
                let phase = te.status.as_ref().map_or(Phase::Pending, |s| s.phase);
                is_active(phase).then(|| {
                    let title = te.spec.as_ref().map(|s| s.title.as_str()).unwrap_or("");
                    format!("    `{name}` *{phase}* {}", escape(title, 80))
                })
            })
            .collect();
        projects.push(if active.is_empty() {
            format!("*{p}* — idle")
        } else {
            format!("*{p}*\n{}", active.join("\n"))
        });
    }
    blocks.push(section("*Projects*"));
    if projects.is_empty() {
        blocks.push(context("No projects yet."));
    } else {
        blocks.push(lines_section(&projects));
    }

    // Recent promotions and failures.
    let mut recent: Vec<(Timestamp, String)> = snap
        .tasks()
        .filter_map(|(t, e)| {
            let st = e.status.as_deref()?;
            let at = st.phase_since?;
            match st.phase {
                Phase::Promoted => Some((at, format!("🚀 `{t}` promoted {}", deadline(at)))),
                Phase::Failed => Some((
                    at,
                    format!(
                        "❌ `{t}` failed {}: {}",
                        deadline(at),
                        escape(st.message.as_deref().unwrap_or(""), 200)
                    ),
                )),
                _ => None,
            }
        })
        .collect();
    recent.sort_by_key(|r| std::cmp::Reverse(r.0));
    if !recent.is_empty() {
        blocks.push(json!({"type": "divider"}));
        blocks.push(section("*Recently*"));
        let lines: Vec<String> = recent
            .into_iter()
            .take(MAX_RECENT)
            .map(|(_, l)| l)
            .collect();
        blocks.push(lines_section(&lines));
    }
    blocks.truncate(MAX_BLOCKS);
    json!({"type": "home", "blocks": blocks})
}

impl Bot {
    /// `app_home_opened`: publishes the person's Home tab and keeps it following the state.
    pub(super) async fn home_opened(self: &Arc<Self>, user: &str) {
        if user.is_empty() {
            return;
        }
        self.home_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user.to_string());
        self.publish_home(user).await;
    }

    /// Publishes `user`'s Home tab from the current state.
    pub(super) async fn publish_home(self: &Arc<Self>, user: &str) {
        let may_act = self.may_act(user);
        let view = self.read(|s| {
            let tz = s
                .settings
                .as_ref()
                .and_then(|st| st.business_hours.time_zone().ok())
                .unwrap_or(jiff::tz::TimeZone::UTC);
            view(s, may_act, Timestamp::now(), &tz)
        });
        if let Err(e) = self.api.publish_home(user, &view).await {
            tracing::warn!(%user, error = %e, "cannot publish the Home tab");
        }
    }

    /// Publishes the Home tab of everyone who opened it (after a state change).
    pub(super) async fn refresh_homes(self: &Arc<Self>) {
        let users: Vec<String> = self
            .home_users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        for u in users {
            self.publish_home(&u).await;
        }
    }
}

#[cfg(test)]
mod tests;
