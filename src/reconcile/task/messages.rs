//! People's messages to the builder (`messages/<id>.yaml`: a reply in the task's Slack
//! thread, or `gaffer say`): each is delivered to the builder's session exactly once, in the
//! order they were said, and only from someone allowed to decide for the task.
//!
//! Exactly once: the prompt's id is the message's (`message-<id>`), which the runtime
//! recognises when it was sent before a crash; the ledger (`message.<id>` in `effects`)
//! records it after the send. A builder mid-turn gets the message queued by OpenCode itself
//! (its session loop reads every new user message before it ends the turn).

use minijinja::context;

use super::prompts::{self, Prompt};
use super::questions::{authorize, last_change};
use super::{Plan, View};
use crate::agent::AgentRuntime;
use crate::names::Id;
use crate::reconcile::{Context, ReconcileError};
use crate::state::StatePath;
use crate::state::spec::MessageSpec;
use crate::state::status::MilestoneKind;

/// The ledger value of a delivered message.
pub const DELIVERED: &str = "delivered";

/// The messages not handled yet, oldest first (by `at`, then id).
pub fn pending<'a>(view: &'a View, plan: &Plan) -> Vec<(&'a Id, &'a MessageSpec)> {
    let mut out: Vec<(&Id, &MessageSpec)> = view
        .messages
        .iter()
        .filter(|(id, _)| !plan.status.effects.messages.contains_key(*id))
        .collect();
    out.sort_by(|a, b| (a.1.at, a.0).cmp(&(b.1.at, b.0)));
    out
}

/// Delivers every pending message from an allowed person to the builder's `session`;
/// a message from anyone else is recorded as ignored, with why, and reported once.
pub async fn deliver(
    ctx: &Context,
    view: &View,
    agent: &dyn AgentRuntime,
    session: &str,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let pending: Vec<(Id, MessageSpec)> = pending(view, plan)
        .into_iter()
        .map(|(id, m)| (id.clone(), m.clone()))
        .collect();
    for (id, message) in pending {
        let path = StatePath::Message(view.t.clone(), id.clone()).to_path();
        let sig = last_change(ctx, view, &path).await?;
        let who = match authorize(&view.settings, sig.as_ref(), message.by.as_deref()) {
            Ok(who) => who,
            Err(why) => {
                let why = why.replacen("answer", "message", 1);
                plan.milestone(
                    MilestoneKind::Error,
                    format!("✋ message {id} not delivered: {why}"),
                    None,
                );
                plan.status.effects.messages.insert(id, why);
                continue;
            }
        };
        let text = prompts::render(
            Prompt::Message,
            context! { who => &who, text => message.text.trim() },
        )?;
        agent
            .send(&view.t, session, &format!("message-{id}"), &text)
            .await?;
        crate::crash::point("message:sent");
        plan.record_prompt(&format!("message-{id}"));
        plan.status
            .effects
            .messages
            .insert(id.clone(), DELIVERED.into());
        plan.milestone(
            MilestoneKind::Message,
            format!("💬 {who}: {}", first_line(&message.text, 200)),
            None,
        );
    }
    Ok(())
}

/// The first non-empty line of `text`, at most `max` characters.
fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut out: String = line.chars().take(max).collect();
    if line.chars().count() > max || text.trim().lines().count() > 1 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_lines_are_shown_short() {
        assert_eq!(first_line("hello", 10), "hello");
        assert_eq!(first_line("\n  use RS256\nand more", 20), "use RS256…");
        assert_eq!(first_line("abcdefghij", 4), "abcd…");
    }
}
