//! A task's plan in its Slack thread: one message per plan version, with links to its
//! documents in the state repository and the buttons "Approve plan" and "Request changes…"
//! (a form); the click commits `approvals/plan-<version>-….yaml` for the person, naming the
//! version it decides, exactly as `gaffer approve --plan` does.

use std::sync::Arc;

use serde_json::{Value, json};

use super::actions::{MessageRef, Reply, str_at};
use super::blocks::{button, context, escape, section, who};
use super::bot::Bot;
use crate::names::{Id, TaskRef};
use crate::state::StatePath;
use crate::state::planning::{PlanState, PlanStatus};
use crate::state::spec::ApprovalSpec;
use crate::store::Update;

/// The longest change request a form takes.
const MAX_CHANGES: usize = 3000;

/// The message key of plan version `version`.
pub fn key(version: u32) -> String {
    format!("plan-v{version}")
}

/// What the message of version `version` shows: `open`, `approved:<by>`, `changes:<by>` or
/// `superseded` (a later version exists).
pub fn tag(plan: &PlanStatus, version: u32) -> String {
    if version < plan.version {
        return "superseded".into();
    }
    match (&plan.approved, &plan.pending, plan.state) {
        (Some(a), _, _) if a.version == version => format!("approved:{}", a.by),
        (_, Some(req), _) => format!("changes:{}", req.by),
        (_, None, PlanState::Drafting) => "revising".into(),
        _ => "open".into(),
    }
}

/// The message of plan version `version` as `tag` says; `url` turns a state-repository path
/// into a link.
pub fn message(
    task: &TaskRef,
    plan: &PlanStatus,
    version: u32,
    url: &dyn Fn(&str) -> String,
) -> Value {
    let docs: Vec<String> = plan
        .documents
        .iter()
        .take(20)
        .map(|d| {
            let path = StatePath::PlanDoc(task.clone(), d.path.clone()).to_path();
            format!("• <{}|{}>", escape(&url(&path), 500), escape(&d.path, 200))
        })
        .collect();
    let summary = if plan.summary.is_empty() || version < plan.version {
        String::new()
    } else {
        format!("{}\n", escape(&plan.summary, 300))
    };
    let head = format!(
        "📋 *Plan v{version}* ({}, {})\n{summary}{}",
        escape(&plan.step, 50),
        plan.mode,
        docs.join("\n")
    );
    let tag = tag(plan, version);
    let mut blocks = vec![section(&head)];
    let shown = match tag.split_once(':') {
        Some(("approved", by)) => Some(format!("✅ Approved by {} — building it", who(by))),
        Some(("changes", by)) => Some(format!("✏️ Changes asked by {} — revising", who(by))),
        _ if tag == "superseded" => Some(format!("Superseded by v{}", plan.version)),
        _ if tag == "revising" => Some("✏️ Revising".to_string()),
        _ => None,
    };
    match shown {
        Some(text) => blocks.push(context(&text)),
        None => blocks.push(json!({
            "type": "actions", "block_id": format!("plan:{task}"), "elements": [
                button("Approve plan", format!("plan:{task}:{version}"), &task.to_string(), true),
                button("Request changes…", format!("planchg:{task}:{version}"), &task.to_string(), false),
            ]
        })),
    }
    json!({
        "text": format!("{task}: plan v{version} waits for approval"),
        "blocks": blocks,
    })
}

/// The "Request changes…" form.
fn changes_view(task: &TaskRef, version: u32, message: &MessageRef) -> Value {
    let meta = json!({"task": task.to_string(), "version": version,
                      "channel": message.channel, "ts": message.ts});
    json!({
        "type": "modal",
        "callback_id": "gaffer_plan_changes",
        "private_metadata": meta.to_string(),
        "title": {"type": "plain_text", "text": "Request changes"},
        "submit": {"type": "plain_text", "text": "Send to the planner"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(&format!("*{}* plan v{version}", escape(&task.to_string(), 200))),
            {"type": "input", "block_id": "text", "label": {"type": "plain_text", "text": "What should change?"},
             "element": {"type": "plain_text_input", "action_id": "text", "multiline": true,
                         "max_length": MAX_CHANGES}},
        ],
    })
}

impl Bot {
    /// "Approve plan" commits the approval; "Request changes…" opens the form.
    pub(super) async fn plan_click(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        version: u32,
        changes: bool,
        trigger: &str,
        message: &MessageRef,
    ) -> Result<(), String> {
        self.current_plan(task, version)?;
        if changes {
            return self
                .api
                .open_view(trigger, &changes_view(task, version, message))
                .await
                .map_err(|e| e.to_string());
        }
        self.decide_plan(user, task, version, None).await
    }

    /// The form's text, committed as a request for changes to the version it was opened for.
    pub(super) async fn plan_changes_submitted(
        self: &Arc<Self>,
        user: &str,
        view: &Value,
    ) -> Reply {
        let meta: Value =
            serde_json::from_str(str_at(view, &["private_metadata"])).unwrap_or_default();
        let error = |text: String| {
            Reply::Errors(std::collections::BTreeMap::from([(
                "text".to_string(),
                text,
            )]))
        };
        let (Ok(task), Some(version)) = (
            TaskRef::parse(str_at(&meta, &["task"])),
            meta["version"].as_u64().and_then(|v| u32::try_from(v).ok()),
        ) else {
            return error("this form lost track of its plan; click the button again".into());
        };
        let text = view["state"]["values"]["text"]["text"]["value"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match self.decide_plan(user, &task, version, Some(text)).await {
            Ok(()) => Reply::Ack,
            Err(e) => error(e),
        }
    }

    /// The task's plan, when `version` is the one waiting for a decision.
    fn current_plan(&self, task: &TaskRef, version: u32) -> Result<PlanStatus, String> {
        let plan = self
            .read(|s| s.task(task).and_then(|e| e.plan.as_deref().cloned()))
            .ok_or_else(|| format!("{task} has no plan"))?;
        if plan.version != version {
            return Err(format!(
                "this button is for plan v{version}; the plan is at v{} now",
                plan.version
            ));
        }
        Ok(plan)
    }

    /// Commits `approvals/plan-<version>-<ok|changes>-slack-<user>-<time>.yaml`.
    async fn decide_plan(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        version: u32,
        changes: Option<String>,
    ) -> Result<(), String> {
        let plan = self.current_plan(task, version)?;
        let spec = ApprovalSpec::for_plan(user, Some(&plan), changes)
            .map_err(|why| format!("{task}'s plan was not decided: {why}"))?;
        let now = jiff::Timestamp::now();
        let kind = if spec.changes.is_some() {
            "changes"
        } else {
            "ok"
        };
        let id = Id::new(format!(
            "plan-{version}-{kind}-slack-{}-{}",
            user.to_ascii_lowercase(),
            now.as_second()
        ))
        .map_err(|e| e.to_string())?;
        let body = crate::state::yaml::to_string(&spec).map_err(|e| e.to_string())?;
        let what = match kind {
            "ok" => format!("{task} plan v{version} approved by Slack user {user}"),
            _ => format!("{task} plan v{version}: changes asked by Slack user {user}"),
        };
        let update = Update::put(StatePath::Approval(task.clone(), id), body, what);
        self.commit_before_ack(user, update, "the plan decision")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::planning::{PlanDecision, PlanDocument, PlanMode, PlanRequest};

    fn plan(state: PlanState) -> PlanStatus {
        PlanStatus {
            mode: PlanMode::Quick,
            step: "spec".into(),
            version: 2,
            state,
            documents: vec![PlanDocument {
                path: "specs/spec-jwt/SPEC.md".into(),
                sha256: "x".into(),
            }],
            ..PlanStatus::default()
        }
    }

    #[test]
    fn each_version_shows_buttons_until_decided() {
        let t = TaskRef::parse("demo/api/jwt").unwrap();
        let url = |p: &str| format!("https://git.example.com/state/blob/main/{p}");
        let open = message(&t, &plan(PlanState::AwaitingApproval), 2, &url);
        let text = open.to_string();
        assert!(text.contains("plan:demo/api/jwt:2") && text.contains("planchg:demo/api/jwt:2"));
        assert!(text.contains(
            "https://git.example.com/state/blob/main/projects/demo/api/tasks/jwt/plan/specs/spec-jwt/SPEC.md"
        ));
        let mut approved = plan(PlanState::Approved);
        approved.approved = Some(PlanDecision {
            version: 2,
            by: "U1".into(),
            file: "plan-2".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
        });
        assert_eq!(tag(&approved, 2), "approved:U1");
        assert!(
            !message(&t, &approved, 2, &url)
                .to_string()
                .contains("planchg:")
        );
        assert_eq!(tag(&approved, 1), "superseded");
        let mut asked = plan(PlanState::Drafting);
        asked.pending = Some(PlanRequest {
            id: "plan-2-changes".into(),
            by: "U1".into(),
            text: "more".into(),
        });
        assert_eq!(tag(&asked, 2), "changes:U1");
        assert_eq!(tag(&plan(PlanState::AwaitingApproval), 2), "open");
    }
}
