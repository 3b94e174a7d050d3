//! What people do in Slack: `/opencode start` and `/opencode status`, button clicks and modal
//! submissions. Socket Mode and the Events API hand the same JSON payloads here (Slack's
//! wire shapes), so both transports share every rule:
//!
//! - only users listed in `gaffer.yaml` `authors.slack_users` may start, answer or approve;
//!   anyone else gets an ephemeral refusal and nothing is committed;
//! - a decision is committed (and on the remote) before Slack gets its ack when that fits
//!   in Slack's 3-second budget, so a crash right after a click loses nothing; slower pushes
//!   finish in the background.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::blocks::{self, Click, Key, escape, tagged};
use super::bot::{Bot, within_ack};
use crate::names::{Id, ProjectRef, Qid, TaskName, TaskRef};
use crate::state::StatePath;
use crate::state::accept::{Answer, Refusal};
use crate::state::spec::{AnswerSpec, ApprovalSpec, Choice, Priority, TaskSpec};
use crate::state::status::{DecidedBy, Decision, Question};
use crate::state::yaml::Located;
use crate::store::Update;

/// What to answer Slack with (the ack's payload).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A plain ack.
    Ack,
    /// A message only the user sees (slash commands).
    Ephemeral(String),
    /// Keep the modal open and show these errors, by block id.
    Errors(BTreeMap<String, String>),
}

impl Reply {
    /// The ack payload as Slack's JSON.
    pub fn to_json(&self) -> Option<Value> {
        match self {
            Reply::Ack => None,
            Reply::Ephemeral(text) => Some(json!({"response_type": "ephemeral", "text": text})),
            Reply::Errors(errors) => Some(json!({"response_action": "errors", "errors": errors})),
        }
    }
}

fn refusal(user: &str) -> String {
    format!(
        "Sorry <@{user}>, you are not allowed to start tasks, answer or approve here: ask the \
         owner to add your Slack user id ({user}) to gaffer.yaml authors.slack_users."
    )
}

const HELP: &str = "Usage: `/opencode start [category[/project]]` opens the form for a new \
                    task; `/opencode status [category/project]` lists tasks and open questions.";

pub(super) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_str().unwrap_or("")
}

impl Bot {
    /// A slash command (`command`, `text`, `user_id`, `channel_id`, `trigger_id`).
    pub async fn on_command(self: &Arc<Self>, cmd: &Value) -> Reply {
        let user = str_at(cmd, &["user_id"]);
        let text = str_at(cmd, &["text"]).trim();
        let (sub, rest) = text.split_once(' ').unwrap_or((text, ""));
        match sub {
            "start" => {
                if !self.may_act(user) {
                    return Reply::Ephemeral(refusal(user));
                }
                let view = self.read(|s| {
                    let projects: Vec<ProjectRef> = s
                        .projects
                        .iter()
                        .filter(|(_, p)| p.spec.is_some())
                        .map(|(r, _)| r.clone())
                        .collect();
                    start_view(&projects, rest.trim(), str_at(cmd, &["channel_id"]))
                });
                if view["blocks"][1]["element"]["options"]
                    .as_array()
                    .is_none_or(|o| o.is_empty())
                {
                    return Reply::Ephemeral(
                        "There are no projects in the state repository yet: add a \
                         projects/<category>/<project>/project.yaml first."
                            .into(),
                    );
                }
                match self
                    .api
                    .open_view(str_at(cmd, &["trigger_id"]), &view)
                    .await
                {
                    Ok(()) => Reply::Ack,
                    Err(e) => Reply::Ephemeral(format!("Could not open the form: {e}")),
                }
            }
            "status" => {
                Reply::Ephemeral(self.status_text(rest.trim(), str_at(cmd, &["channel_id"])))
            }
            _ => Reply::Ephemeral(HELP.into()),
        }
    }

    /// `/opencode status`: the tasks of one project (named, or the channel's) or of all, and
    /// their open questions.
    fn status_text(&self, arg: &str, channel: &str) -> String {
        let by_channel = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(_, id)| id.as_str() == channel)
            .map(|(p, _)| p.clone());
        let only = match arg {
            "" => by_channel,
            a => match ProjectRef::parse(a) {
                Ok(p) => Some(p),
                Err(e) => return format!("{e}"),
            },
        };
        self.read(|s| {
            let mut lines = Vec::new();
            for (t, e) in s.tasks() {
                if only.as_ref().is_some_and(|p| *p != t.project) {
                    continue;
                }
                let title = e.spec.as_ref().map(|s| s.title.as_str()).unwrap_or("");
                let phase = e
                    .status
                    .as_ref()
                    .map_or("Pending".to_string(), |s| s.phase.to_string());
                lines.push(format!("• `{t}` {} — *{phase}*", escape(title, 150)));
                for (qid, q) in &e.questions {
                    if q.decision.is_none() {
                        lines.push(format!("    ❓ {qid}: {}", escape(&q.text, 200)));
                    }
                }
            }
            const MAX_LINES: usize = 60;
            if lines.len() > MAX_LINES {
                let more = lines.len() - MAX_LINES;
                lines.truncate(MAX_LINES);
                lines.push(format!(
                    "… and {more} more lines: name a project, `/opencode status category/project`"
                ));
            }
            if lines.is_empty() {
                match &only {
                    Some(p) => format!("No tasks in {p}."),
                    None => "No tasks yet.".into(),
                }
            } else {
                let head = only.map_or("All tasks".to_string(), |p| format!("Tasks of {p}"));
                format!("{head}:\n{}", lines.join("\n"))
            }
        })
    }

    /// An interaction payload (`block_actions`, `view_submission`).
    pub async fn on_interaction(self: &Arc<Self>, p: &Value) -> Reply {
        tracing::debug!(target: "gaffer::hop", hop = "slack-received", kind = str_at(p, &["type"]));
        match str_at(p, &["type"]) {
            "block_actions" => {
                let actions = p["actions"].as_array().cloned().unwrap_or_default();
                for a in &actions {
                    self.on_action(p, a).await;
                }
                Reply::Ack
            }
            "view_submission" => self.on_submission(p).await,
            _ => Reply::Ack,
        }
    }

    async fn on_action(self: &Arc<Self>, p: &Value, action: &Value) {
        let user = str_at(p, &["user", "id"]).to_string();
        let id = str_at(action, &["action_id"]);
        if id == "category" {
            // The start form's category changed: offer that category's projects.
            let category = str_at(action, &["selected_option", "value"]);
            let view_id = str_at(p, &["container", "view_id"]);
            let channel = str_at(p, &["view", "private_metadata"]);
            let view = self.read(|s| {
                let projects: Vec<ProjectRef> = s
                    .projects
                    .iter()
                    .filter(|(_, p)| p.spec.is_some())
                    .map(|(r, _)| r.clone())
                    .collect();
                start_view(&projects, category, channel)
            });
            if let Err(e) = self.api.update_view(view_id, &view).await {
                tracing::warn!(error = %e, "cannot update the start form");
            }
            return;
        }
        let channel = match str_at(p, &["channel", "id"]) {
            "" => str_at(p, &["container", "channel_id"]),
            c => c,
        }
        .to_string();
        let message_ts = str_at(p, &["container", "message_ts"]).to_string();
        let Some(click) = Click::parse(id) else {
            return;
        };
        if !self.may_act(&user) {
            tracing::info!(%user, action = %id, "refused: not in authors.slack_users");
            if let Err(e) = self
                .api
                .post_ephemeral(&channel, &user, &refusal(&user))
                .await
            {
                tracing::warn!(error = %e, "cannot send the refusal");
            }
            return;
        }
        let message = MessageRef {
            channel: channel.clone(),
            ts: message_ts,
        };
        let outcome = match click {
            Err(e) => Err(e),
            Ok(Click::Answer { task, qid, option }) => {
                let label = self.read(|s| {
                    s.task(&task)
                        .and_then(|e| e.questions.get(&qid))
                        .and_then(|q| q.options.get(option))
                        .map(|o| o.label.clone())
                });
                match label {
                    Some(label) => {
                        self.answer(&user, &task, &qid, Some(label), None, &message)
                            .await
                    }
                    None => Err(format!("{task} has no question {qid} with option {option}")),
                }
            }
            Ok(Click::Other { task, qid, change }) => {
                let view = self.read(|s| {
                    s.task(&task)
                        .and_then(|e| e.questions.get(&qid))
                        .map(|q| answer_view(&task, &qid, q, change, &message))
                });
                match view {
                    Some(v) => self
                        .api
                        .open_view(str_at(p, &["trigger_id"]), &v)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err(format!("{task} has no question {qid}")),
                }
            }
            Ok(Click::Approve { task, key }) => self.approve(&user, &task, key, &message).await,
            Ok(Click::Raise { task, amount }) => {
                self.raise_budget(&user, &task, amount).await.map(|done| {
                    let bot = self.clone();
                    let (c, u) = (channel.clone(), user.clone());
                    tokio::spawn(async move {
                        let _ = bot.api.post_ephemeral(&c, &u, &done).await;
                    });
                })
            }
            Ok(Click::Plan {
                task,
                version,
                changes,
            }) => {
                let trigger = str_at(p, &["trigger_id"]);
                self.plan_click(&user, &task, version, changes, trigger, &message)
                    .await
            }
        };
        if let Err(e) = outcome {
            tracing::warn!(%user, action = %id, error = %e, "action failed");
            let _ = self
                .api
                .post_ephemeral(&channel, &user, &format!("That did not work: {e}"))
                .await;
        }
    }

    async fn on_submission(self: &Arc<Self>, p: &Value) -> Reply {
        let user = str_at(p, &["user", "id"]).to_string();
        let view = &p["view"];
        let values = &view["state"]["values"];
        let value = |block: &str| -> String {
            let v = &values[block][block];
            match v["selected_option"]["value"].as_str() {
                Some(s) => s.to_string(),
                None => v["value"].as_str().unwrap_or("").to_string(),
            }
        };
        let first_block = match str_at(view, &["callback_id"]) {
            "gaffer_start" => "title",
            _ => "text",
        };
        if !self.may_act(&user) {
            return Reply::Errors(BTreeMap::from([(first_block.to_string(), refusal(&user))]));
        }
        match str_at(view, &["callback_id"]) {
            "gaffer_plan_changes" => self.plan_changes_submitted(&user, view).await,
            "gaffer_start" => {
                let form = StartForm {
                    category: value("category"),
                    project: value("project"),
                    title: value("title"),
                    description: value("description"),
                    priority: value("priority"),
                };
                let channel = str_at(view, &["private_metadata"]).to_string();
                self.start_task(&user, form, &channel).await
            }
            "gaffer_answer" => {
                let meta: Value =
                    serde_json::from_str(str_at(view, &["private_metadata"])).unwrap_or_default();
                let (Ok(task), Ok(qid)) = (
                    TaskRef::parse(str_at(&meta, &["task"])),
                    Qid::new(str_at(&meta, &["qid"])),
                ) else {
                    return Reply::Errors(BTreeMap::from([(
                        "text".into(),
                        "this form lost track of its question; click the button again".into(),
                    )]));
                };
                let message = MessageRef {
                    channel: str_at(&meta, &["channel"]).to_string(),
                    ts: str_at(&meta, &["ts"]).to_string(),
                };
                // The form's options carry their index (labels may exceed Slack's limits).
                let choice = match value("choice").parse::<usize>() {
                    Ok(i) => {
                        let label = self.read(|s| {
                            s.task(&task)
                                .and_then(|e| e.questions.get(&qid))
                                .and_then(|q| q.options.get(i))
                                .map(|o| o.label.clone())
                        });
                        match label {
                            Some(l) => Some(l),
                            None => {
                                return Reply::Errors(BTreeMap::from([(
                                    "choice".into(),
                                    "that option no longer exists".into(),
                                )]));
                            }
                        }
                    }
                    Err(_) => None,
                };
                let text = Some(value("text").trim().to_string()).filter(|t| !t.is_empty());
                if choice.is_none() && text.is_none() {
                    return Reply::Errors(BTreeMap::from([(
                        "text".into(),
                        "choose an option or write an answer".into(),
                    )]));
                }
                match self
                    .answer(&user, &task, &qid, choice, text, &message)
                    .await
                {
                    Ok(()) => Reply::Ack,
                    Err(e) => Reply::Errors(BTreeMap::from([("text".into(), e)])),
                }
            }
            _ => Reply::Ack,
        }
    }

    /// Commits `update` for `user` within Slack's ack budget (a slower push goes on in the
    /// background); `what` names it in errors.
    pub(super) async fn commit_before_ack(
        self: &Arc<Self>,
        user: &str,
        update: Update,
        what: &str,
    ) -> Result<(), String> {
        let bot = self.clone();
        let u = user.to_string();
        let path = update.path.to_path();
        match within_ack(async move { bot.commit_for(&u, vec![update]).await }).await {
            Some(Err(e)) => Err(format!("could not commit {what}: {e}")),
            Some(Ok(_)) => Ok(()),
            None => {
                tracing::warn!(%path, "{what} is still being committed");
                Ok(())
            }
        }
    }

    /// Commits `answers/<qid>.yaml` for `user` and shows the decision on the message.
    async fn answer(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        qid: &Qid,
        choice: Option<String>,
        text: Option<String>,
        message: &MessageRef,
    ) -> Result<(), String> {
        let question = self
            .read(|s| s.task(task).and_then(|e| e.questions.get(qid)).cloned())
            .ok_or_else(|| format!("{task} has no question {qid}"))?;
        let answer = match &choice {
            Some(c) => Answer::Choice(std::slice::from_ref(c)),
            None => Answer::Text(text.as_deref().unwrap_or_default()),
        };
        match question.accepts(&answer) {
            Ok(()) => {}
            Err(Refusal::NotAnOption(c)) => return Err(format!("{c:?} is not an option of {qid}")),
            Err(Refusal::NoFreeText) => return Err(format!("{qid} only takes one of its options")),
            Err(why) => return Err(format!("{qid}: {why}")),
        }
        let now = jiff::Timestamp::now();
        let spec = AnswerSpec {
            choice: choice.clone().map(|c| Located::new(Choice::One(c))),
            text: text.clone(),
            note: None,
            by: Some(user.to_string()),
            at: Some(now),
        };
        let body = crate::state::yaml::to_string(&spec).map_err(|e| e.to_string())?;
        let shown = choice.clone().or(text.clone()).unwrap_or_default();
        let update = Update::put(
            StatePath::Answer(task.clone(), qid.clone()),
            body,
            format!("{task} {qid} answered {shown:?} by Slack user {user}"),
        );
        self.commit_before_ack(user, update, "the answer").await?;
        tracing::debug!(target: "gaffer::hop", hop = "answer-committed", %task, %qid);
        if !message.ts.is_empty() && !message.channel.is_empty() {
            let mut q = question;
            q.decision = Some(Decision {
                choice: vec![shown],
                decided_by: DecidedBy::Human,
                by: Some(user.to_string()),
                at: now,
                note: None,
            });
            let m = tagged(
                &blocks::decided(task, qid, &q),
                &Key::Question(qid.clone()),
                task,
            );
            if let Err(e) = self.api.update(&message.channel, &message.ts, &m).await {
                tracing::warn!(error = %e, "cannot show the decision");
            }
        }
        Ok(())
    }

    /// Commits `approvals/slack-<user>-<time>.yaml`, naming the review round and heads it
    /// approves, and shows who approved; a task that is not in review is refused with why.
    async fn approve(
        self: &Arc<Self>,
        user: &str,
        task: &TaskRef,
        key: Option<String>,
        message: &MessageRef,
    ) -> Result<(), String> {
        let (changes, status) = self
            .read(|s| {
                s.task(task).and_then(|e| e.spec.as_ref())?;
                let status = s.task(task).and_then(|e| e.status.as_deref()).cloned();
                let changes = status
                    .as_ref()
                    .map(|st| {
                        st.links
                            .iter()
                            .filter(|l| l.name.starts_with("pr:"))
                            .cloned()
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                Some((changes, status))
            })
            .ok_or_else(|| format!("task {task} no longer exists"))?;
        let spec = ApprovalSpec::for_review(user, status.as_ref())
            .map_err(|why| format!("{task} was not approved: {why}"))?;
        let now = jiff::Timestamp::now();
        let id = Id::new(format!(
            "slack-{}-{}",
            user.to_ascii_lowercase(),
            now.as_second()
        ))
        .map_err(|e| e.to_string())?;
        let body = crate::state::yaml::to_string(&spec).map_err(|e| e.to_string())?;
        let update = Update::put(
            StatePath::Approval(task.clone(), id),
            body,
            format!("{task} approved by Slack user {user}"),
        );
        self.commit_before_ack(user, update, "the approval").await?;
        if !message.ts.is_empty() {
            let mut m = blocks::approved(task, &changes, user);
            if let Some(k) = key {
                m = tagged(&m, &Key::Other(k), task);
            }
            if let Err(e) = self.api.update(&message.channel, &message.ts, &m).await {
                tracing::warn!(error = %e, "cannot show the approval");
            }
        }
        Ok(())
    }

    /// Validates the start form and commits the task; errors go back to the form.
    async fn start_task(self: &Arc<Self>, user: &str, form: StartForm, channel: &str) -> Reply {
        let checked = self.read(|s| form.check(s));
        let (project, spec, candidates) = match checked {
            Ok(c) => c,
            Err(errors) => return Reply::Errors(errors),
        };
        let body = match crate::state::spec::task_file(&spec) {
            Ok(b) => b,
            Err(e) => return Reply::Errors(BTreeMap::from([("title".into(), e)])),
        };
        let bot = self.clone();
        let u = user.to_string();
        let title = spec.title.clone();
        let work = async move {
            // Someone may take a name between the check and the commit: try the next one.
            for name in candidates {
                let task = TaskRef {
                    project: project.clone(),
                    task: name,
                };
                let path = StatePath::TaskSpec(task.clone());
                let mut update = Update::put(
                    path.clone(),
                    body.clone(),
                    format!("new task {task} ({title:?}) from Slack user {u}"),
                );
                update.create_only = true;
                let id = bot
                    .commit_for(&u, vec![update])
                    .await
                    .map_err(|e| e.to_string())?;
                if bot.file_at(id, &path.to_path()).as_deref() == Some(body.as_bytes()) {
                    return Ok(task);
                }
            }
            Err("every name derived from the title is taken; change the title".to_string())
        };
        match within_ack(work).await {
            Some(Ok(task)) => {
                tracing::info!(%task, %user, "task started from Slack");
                if !channel.is_empty() {
                    let text = format!(
                        "Started `{task}`: {}. Its thread opens in the project's channel.",
                        escape(&form.title, 200)
                    );
                    let _ = self.api.post_ephemeral(channel, user, &text).await;
                }
                Reply::Ack
            }
            Some(Err(e)) => Reply::Errors(BTreeMap::from([("title".into(), e)])),
            None => Reply::Ack,
        }
    }
}

/// Where a clicked message is.
#[derive(Debug, Clone)]
pub(super) struct MessageRef {
    pub(super) channel: String,
    pub(super) ts: String,
}

/// The start form's values.
#[derive(Debug, Clone)]
struct StartForm {
    category: String,
    project: String,
    title: String,
    description: String,
    priority: String,
}

impl StartForm {
    /// The project, the task spec and the names to try, or the errors by block.
    #[allow(clippy::type_complexity)]
    fn check(
        &self,
        snap: &crate::state::snapshot::Snapshot,
    ) -> Result<(ProjectRef, TaskSpec, Vec<TaskName>), BTreeMap<String, String>> {
        let mut errors = BTreeMap::new();
        let project = ProjectRef::parse(&self.project)
            .ok()
            .filter(|p| snap.projects.get(p).is_some_and(|e| e.spec.is_some()));
        match &project {
            None => {
                errors.insert("project".into(), "choose a project".into());
            }
            Some(p) if !self.category.is_empty() && p.category.as_str() != self.category => {
                errors.insert(
                    "project".into(),
                    format!("{p} is not in category {}", self.category),
                );
            }
            _ => {}
        }
        let title = self.title.trim();
        let slug = crate::names::slugify(title);
        if title.is_empty() {
            errors.insert("title".into(), "give the task a title".into());
        } else if title.chars().count() > 200 {
            errors.insert("title".into(), "at most 200 characters".into());
        } else if slug.is_none() {
            errors.insert(
                "title".into(),
                "the title needs some letters or digits (the task id is made from it)".into(),
            );
        }
        let priority = match self.priority.as_str() {
            "" | "medium" => Priority::Medium,
            "low" => Priority::Low,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            other => {
                errors.insert("priority".into(), format!("unknown priority {other:?}"));
                Priority::Medium
            }
        };
        let (Some(project), Some(slug), true) = (project, slug, errors.is_empty()) else {
            return Err(errors);
        };
        let taken = |n: &TaskName| {
            snap.task(&TaskRef {
                project: project.clone(),
                task: n.clone(),
            })
            .is_some()
        };
        let candidates: Vec<TaskName> = std::iter::once(slug.to_string())
            .chain((2..100).map(|i| {
                let suffix = format!("-{i}");
                let keep = crate::names::NameKind::Task.max_len() - suffix.len();
                let base: String = slug.as_str().chars().take(keep).collect();
                format!("{}{suffix}", base.trim_end_matches('-'))
            }))
            .filter_map(|n| TaskName::new(n).ok())
            .filter(|n| !taken(n))
            .take(5)
            .collect();
        let spec = TaskSpec {
            title: title.to_string(),
            description: self.description.trim().to_string(),
            priority,
            suspend: false,
            cancel: false,
            retry: 0,
            questions: None,
            budget: None,
            plan: None,
            parent: None,
            story: None,
        };
        Ok((project, spec, candidates))
    }
}

fn plain(text: &str) -> Value {
    json!({"type": "plain_text", "text": text})
}

fn option(text: &str, value: &str) -> Value {
    json!({"text": plain(&text.chars().take(75).collect::<String>()), "value": value})
}

/// The `/opencode start` form. `preset` (`category` or `category/project`) preselects;
/// the project list shows the chosen category's projects only.
pub fn start_view(projects: &[ProjectRef], preset: &str, channel: &str) -> Value {
    let (want_cat, want_proj) = preset.split_once('/').unwrap_or((preset, ""));
    let mut categories: Vec<&str> = projects.iter().map(|p| p.category.as_str()).collect();
    categories.dedup();
    let category = categories.iter().find(|c| **c == want_cat).copied();
    let shown: Vec<&ProjectRef> = projects
        .iter()
        .filter(|p| category.is_none_or(|c| p.category.as_str() == c))
        .take(100)
        .collect();
    let mut category_select = json!({
        "type": "static_select", "action_id": "category",
        "placeholder": plain("Category"),
        "options": categories.iter().take(100).map(|c| option(c, c)).collect::<Vec<_>>(),
    });
    if let Some(c) = category {
        category_select["initial_option"] = option(c, c);
    }
    let mut project_select = json!({
        "type": "static_select", "action_id": "project",
        "placeholder": plain("Project"),
        "options": shown.iter().map(|p| option(p.project.as_str(), &p.to_string())).collect::<Vec<_>>(),
    });
    if let Some(p) = shown.iter().find(|p| p.project.as_str() == want_proj) {
        project_select["initial_option"] = option(p.project.as_str(), &p.to_string());
    }
    let priorities = ["low", "medium", "high", "urgent"];
    json!({
        "type": "modal",
        "callback_id": "gaffer_start",
        "private_metadata": channel,
        "title": plain("Start a task"),
        "submit": plain("Start"),
        "close": plain("Cancel"),
        "blocks": [
            {"type": "input", "block_id": "category", "dispatch_action": true,
             "label": plain("Category"), "element": category_select},
            {"type": "input", "block_id": "project", "label": plain("Project"),
             "element": project_select},
            {"type": "input", "block_id": "title", "label": plain("Title"),
             "element": {"type": "plain_text_input", "action_id": "title", "max_length": 200,
                         "placeholder": plain("Implement JWT authentication")}},
            {"type": "input", "block_id": "description", "optional": true,
             "label": plain("Description"),
             "element": {"type": "plain_text_input", "action_id": "description",
                         "multiline": true}},
            {"type": "input", "block_id": "priority", "label": plain("Priority"),
             "element": {"type": "static_select", "action_id": "priority",
                         "initial_option": option("medium", "medium"),
                         "options": priorities.iter().map(|p| option(p, p)).collect::<Vec<_>>()}},
        ],
    })
}

/// The free-text answer form ("Other…"), or with the options too ("Change answer").
fn answer_view(
    task: &TaskRef,
    qid: &Qid,
    q: &Question,
    with_options: bool,
    message: &MessageRef,
) -> Value {
    let meta = json!({"task": task.to_string(), "qid": qid.as_str(),
                      "channel": message.channel, "ts": message.ts});
    let mut blocks = vec![json!({"type": "section",
        "text": {"type": "mrkdwn", "text": format!("*{qid}*\n{}", escape(&q.text, 2800))}})];
    if with_options {
        blocks.push(json!({
            "type": "input", "block_id": "choice", "optional": true,
            "label": plain("Choose"),
            "element": {"type": "radio_buttons", "action_id": "choice",
                "options": q.options.iter().take(10).enumerate()
                    .map(|(i, o)| option(&o.label, &i.to_string()))
                    .collect::<Vec<_>>()},
        }));
    }
    if q.custom || !with_options {
        blocks.push(json!({
            "type": "input", "block_id": "text", "optional": with_options,
            "label": plain("Your answer"),
            "element": {"type": "plain_text_input", "action_id": "text", "multiline": true,
                        "max_length": 3000},
        }));
    }
    json!({
        "type": "modal",
        "callback_id": "gaffer_answer",
        "private_metadata": meta.to_string(),
        "title": plain("Answer"),
        "submit": plain("Answer"),
        "close": plain("Cancel"),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests;
