//! The planning stage: `Planning` (a BMAD turn in the builder's workspace, in a session of
//! its own that may edit only `_bmad-output/`) and `AwaitingPlanApproval` (the plan's
//! version waits for a person). docs/planning.md tells the whole story.
//!
//! Every planning turn starts from Preparing ([`start`]), so it holds one of the project's
//! slots like any builder work; waiting for approval holds none. A turn's end
//! ([`turn_done`]) copies the documents into the state repository as a new version; an
//! approval of exactly that version ([`awaiting`]) sends the task through the queue again,
//! to be built in a new session with the plan in its prompt.

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::context;

use super::prompts::{self, Prompt};
use super::{Plan, View, blocking, questions};
use crate::agent::{AgentRuntime, BuilderSetup, Session, SessionRequest, Stage};
use crate::names::{Id, RepoName};
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::StatePath;
use crate::state::planning::{
    PlanDecision, PlanDocument, PlanMode, PlanPolicy, PlanRequest, PlanState, PlanStatus, sha256,
};
use crate::state::spec::{PermissionAction, PermissionRule, RuntimeKind};
use crate::state::status::{MilestoneKind, Phase, QuestionState};
use crate::workspace::bmad::{OUTPUT_DIR, PlannerError};

/// How far a change request or the plan in a build prompt may grow, in characters.
const MAX_PROMPT_DOCS: usize = 64 * 1024;

/// The plan policy in force for the task: its overrides over the project's over
/// `gaffer.yaml`'s.
pub fn policy(view: &View) -> PlanPolicy {
    view.settings
        .plan
        .resolve(&[view.project.plan.as_ref(), view.spec.plan.as_ref()])
}

/// Whether the task is planned before it is built, and its plan is not approved yet.
pub fn wants_plan(view: &View) -> bool {
    policy(view).mode != PlanMode::None
        && view
            .plan
            .as_ref()
            .is_none_or(|p| p.state != PlanState::Approved)
}

/// What a plan waiting for approval says on the task.
fn waiting_message(version: u32) -> String {
    format!("plan v{version} waits for approval (gaffer approve --plan, or Slack)")
}

/// A condition that stops the plan, also said as the task's reason and message.
fn blocked(plan: &mut Plan, type_: &str, reason: &str, message: &str) -> Action {
    plan.waiting(reason, message);
    plan.blocked(type_, reason, message)
}

/// The located problems of `plan.yaml` and the plan documents, as one blocked condition.
fn invalid_plan(view: &View, plan: &mut Plan) -> Option<Action> {
    if view.plan_problems.is_empty() {
        plan.clear_condition("PlanValid");
        return None;
    }
    let msg = super::plan::join_problems(&view.plan_problems);
    Some(blocked(plan, "PlanValid", "InvalidPlan", &msg))
}

/// A planning turn: the planner's files in the workspace, the planning session, the turn's
/// prompt (the first draft, or the changes asked for); then `Planning`. A plan that waits
/// for approval goes back to waiting.
pub async fn start(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    setup: BuilderSetup,
    repos: &BTreeMap<RepoName, std::path::PathBuf>,
) -> Result<Action, ReconcileError> {
    if let Some(action) = invalid_plan(view, plan) {
        return Ok(action);
    }
    let policy = policy(view);
    let mut status = view.plan.clone().unwrap_or_else(|| PlanStatus {
        mode: policy.mode,
        step: super::stories::steps(policy.mode)[0].name.into(),
        ..PlanStatus::default()
    });
    if status.state == PlanState::AwaitingApproval && status.pending.is_none() {
        plan.transition(
            Phase::AwaitingPlanApproval,
            "AwaitingPlanApproval",
            waiting_message(status.version),
        );
        return Ok(Action::requeue(Duration::ZERO));
    }
    // One planning turn per project at a time: `_bmad-output/` holds one task's plan.
    if let Some(other) = view.siblings.iter().find(|s| s.phase == Phase::Planning) {
        plan.waiting(
            "PlannerBusy",
            format!(
                "{} is being planned in this workspace; planning next",
                other.task
            ),
        );
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let (planner, dir) = (
        ctx.planner.clone(),
        ctx.workspaces.local_dir(&view.t.project, &view.project),
    );
    let (task, docs) = (view.t.task.clone(), view.plan_docs.clone());
    // The scripted runtime has no model to read skills: it gets the folder, not BMAD.
    let install = view.project.agent.runtime != RuntimeKind::Scripted;
    let ready = blocking(
        move || -> Result<Result<(), PlannerError>, ReconcileError> {
            let installed = if install {
                planner.install(&dir)
            } else {
                Ok(())
            };
            Ok(installed.and_then(|()| planner.restore(&dir, &task, &docs)))
        },
    )
    .await?;
    if let Err(e) = ready {
        let reason = match e {
            PlannerError::NotInstalled => "PlannerMissing",
            _ => "PlannerFailed",
        };
        return Ok(blocked(plan, "PlanReady", reason, &e.to_string()));
    }
    plan.clear_condition("PlanReady");
    let out = setup.project_dir.join(OUTPUT_DIR);
    let agent_rt = ctx.agents.get(view.project.agent.runtime)?;
    let session = session(view, plan, agent_rt.as_ref(), setup, repos).await?;
    // The turn's prompt: the changes asked for, or the first draft (again, after a retry or
    // a resume, under a new id so the planner is told to go on).
    let (id, text) = match &status.pending {
        Some(req) => (
            format!("plan-changes-{}", req.id),
            prompts::render(
                Prompt::PlanChanges,
                context! {
                    who => &req.by, version => status.version, changes => &req.text,
                    out => out.display().to_string(),
                    done_marker => crate::agent::opencode::history::DONE_MARKER,
                },
            )?,
        ),
        None => {
            let step = super::stories::step(status.mode, &status.step);
            let first = "plan".to_string();
            let id = if plan.prompt_sent(&first) {
                format!("plan-again-{}", plan.prompts_count())
            } else {
                first
            };
            let repos: Vec<_> = repos
                .iter()
                .map(|(n, d)| context! { name => n.as_str(), dir => d.display().to_string() })
                .collect();
            let text = prompts::render(
                Prompt::Plan,
                context! {
                    title => &view.spec.title, project => view.t.project.to_string(),
                    description => &view.spec.description, repos,
                    skill => step.skill, what => step.what,
                    slug => view.t.task.as_str(), out => out.display().to_string(),
                    done_marker => crate::agent::opencode::history::DONE_MARKER,
                },
            )?;
            (id, text)
        }
    };
    agent_rt.send(&view.t, &session.id, &id, &text).await?;
    crate::crash::point("plan:prompted");
    plan.record_prompt(&id);
    status.pending = None;
    status.state = PlanState::Drafting;
    plan.plan_status = Some(status);
    plan.transition(
        Phase::Planning,
        "PlanStarted",
        format!("planning ({}), session {}", policy.mode, session.id),
    );
    Ok(Action::requeue(Duration::ZERO))
}

/// The task's planning session: found again (in status or the builder's record) or made,
/// allowed to edit only the plan's folder; recorded in the task's status.
async fn session(
    view: &View,
    plan: &mut Plan,
    agent_rt: &dyn AgentRuntime,
    setup: BuilderSetup,
    repos: &BTreeMap<RepoName, std::path::PathBuf>,
) -> Result<Session, ReconcileError> {
    let out = setup.project_dir.join(OUTPUT_DIR);
    let mut permissions = view.project.agent.permissions.clone();
    // OpenCode takes the last rule that matches: deny every edit, then allow the folder.
    permissions.push(PermissionRule {
        permission: "edit".into(),
        pattern: "*".into(),
        action: PermissionAction::Deny,
    });
    // OpenCode names the file relative to its worktree: the workspace itself, or `/` for a
    // folder outside git (checked with the real binary, docs/planning.md).
    let abs = out.display().to_string();
    for pattern in [
        format!("{OUTPUT_DIR}/*"),
        format!("{abs}/*"),
        format!("{}/*", abs.trim_start_matches('/')),
    ] {
        permissions.push(PermissionRule {
            permission: "edit".into(),
            pattern,
            action: PermissionAction::Allow,
        });
    }
    let req = SessionRequest {
        task: view.t.clone(),
        title: view.spec.title.clone(),
        permissions,
        worktrees: repos.clone(),
        model: view.project.agent.model.clone(),
        agent: view.project.agent.agent.clone(),
        script: view.project.agent.script.clone(),
        builder: setup,
        stage: Stage::Plan,
    };
    let sandbox = req.builder.sandbox;
    let session = agent_rt
        .ensure_session(&req, plan.session().as_deref())
        .await?;
    super::prepare::record_session(plan, agent_rt, &session, sandbox);
    Ok(session)
}

/// The planner says the turn is done: its documents become the plan's next version in the
/// state repository, and the plan waits for approval. A person's edit of the documents that
/// came in meanwhile is never overwritten: it becomes the next change request instead.
pub async fn turn_done(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    summary: &str,
) -> Result<Action, ReconcileError> {
    if let Some(action) = invalid_plan(view, plan) {
        return Ok(action);
    }
    let mut status = plan.plan_status.clone().unwrap_or_default();
    if !status.matches(&view.plan_docs) {
        return edited(ctx, view, plan, status).await;
    }
    let (planner, dir) = (
        ctx.planner.clone(),
        ctx.workspaces.local_dir(&view.t.project, &view.project),
    );
    let collected = blocking(move || Ok::<_, ReconcileError>(planner.collect(&dir))).await?;
    let collected = match collected {
        Ok(c) => c,
        Err(e) => return Ok(blocked(plan, "PlanReady", "PlannerFailed", &e.to_string())),
    };
    for why in &collected.skipped {
        plan.milestone(
            MilestoneKind::Error,
            format!("⚠️ plan file left out: {why}"),
            None,
        );
    }
    if collected.docs.is_empty() {
        plan.status.effects.failed_in = Some(Phase::Planning);
        plan.transition(
            Phase::Failed,
            "PlanEmpty",
            format!(
                "the planner ended its turn without writing a document under {OUTPUT_DIR}/; \
                 raise retry in task.yaml to plan again"
            ),
        );
        return Ok(Action::await_change());
    }
    for path in view.plan_docs.keys() {
        if !collected.docs.contains_key(path) {
            plan.plan_docs.insert(path.clone(), None);
        }
    }
    for (path, text) in &collected.docs {
        if view.plan_docs.get(path) != Some(text) {
            plan.plan_docs.insert(path.clone(), Some(text.clone()));
        }
    }
    status.version += 1;
    status.state = PlanState::AwaitingApproval;
    status.documents = collected
        .docs
        .iter()
        .map(|(path, text)| PlanDocument {
            path: path.clone(),
            sha256: sha256(text),
        })
        .collect();
    status.approved = None;
    status.summary = summary.chars().take(300).collect();
    // What the planner still asks, as the plan stands (answered ones leave with the next turn).
    status.open_questions = plan
        .questions
        .values()
        .filter(|q| matches!(q.state, QuestionState::Open | QuestionState::Provisional))
        .map(|q| q.text.chars().take(300).collect())
        .collect();
    let names: Vec<&str> = collected.docs.keys().map(String::as_str).collect();
    if let Some(next) = super::stories::next(status.mode, &status.step) {
        // A `full` plan's next step, in the same session, once this one's documents are in.
        status.state = PlanState::Drafting;
        plan.milestone(
            MilestoneKind::Plan,
            format!(
                "📋 plan v{} ({}): {} — {}; next: {}",
                status.version,
                status.step,
                summary,
                names.join(", "),
                next.name
            ),
            None,
        );
        let out = ctx
            .workspaces
            .builder_dir(&view.t.project, &view.project)
            .join(OUTPUT_DIR);
        let id = format!("plan-step-{}", next.name);
        let text = prompts::render(
            Prompt::PlanStep,
            context! {
                step => next.name, skill => next.skill, what => next.what,
                out => out.display().to_string(),
                done_marker => crate::agent::opencode::history::DONE_MARKER,
            },
        )?;
        let Some(session) = plan.session() else {
            return Err(ReconcileError::NoSession(id));
        };
        plan.agent(ctx)?.send(&view.t, &session, &id, &text).await?;
        plan.record_prompt(&id);
        status.step = next.name.to_string();
        plan.plan_status = Some(status);
        plan.status.effects.agent_done = None;
        plan.waiting("PlanStep", format!("planning: {}", next.name));
        return Ok(Action::requeue(Duration::ZERO));
    }
    plan.milestone(
        MilestoneKind::Plan,
        format!(
            "📋 plan v{} ({}): {} — {}; waiting for approval",
            status.version,
            status.step,
            summary,
            names.join(", ")
        ),
        None,
    );
    let version = status.version;
    plan.plan_status = Some(status);
    plan.status.effects.agent_done = None;
    plan.transition(
        Phase::AwaitingPlanApproval,
        "AwaitingPlanApproval",
        waiting_message(version),
    );
    crate::crash::point("plan:collected");
    Ok(Action::requeue(Duration::ZERO))
}

/// A person edited the plan's documents: the edit is the next change request.
async fn edited(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    mut status: PlanStatus,
) -> Result<Action, ReconcileError> {
    let recorded: BTreeMap<&str, &str> = status
        .documents
        .iter()
        .map(|d| (d.path.as_str(), d.sha256.as_str()))
        .collect();
    let changed: Vec<&String> = view
        .plan_docs
        .iter()
        .filter(|(path, content)| recorded.get(path.as_str()) != Some(&sha256(content).as_str()))
        .map(|(path, _)| path)
        .collect();
    let mut text = String::from(
        "The documents now read as below (each file a person changed, added or removed):\n",
    );
    for path in &changed {
        let content = &view.plan_docs[*path];
        text.push_str(&format!(
            "\n--- {path} (changed by a person) ---\n{content}\n"
        ));
    }
    for path in recorded.keys() {
        if !view.plan_docs.contains_key(*path) {
            text.push_str(&format!("\n--- {path} (removed by a person) ---\n"));
        }
    }
    if text.len() > MAX_PROMPT_DOCS {
        let cut: String = text.chars().take(MAX_PROMPT_DOCS).collect();
        text = format!("{cut}\n… (cut; read the documents under {OUTPUT_DIR}/)");
    }
    let who = edited_by(ctx, view, &changed).await?;
    // Said to the planner once per edited state: the documents' digest names the request.
    let digest: String = sha256(
        &view
            .plan_docs
            .iter()
            .map(|(p, c)| format!("{p}\0{}", sha256(c)))
            .collect::<String>(),
    )
    .chars()
    .take(12)
    .collect();
    let id = format!("edit-{digest}");
    // The edited documents are the plan now: the next version starts from them.
    status.documents = view
        .plan_docs
        .iter()
        .map(|(path, text)| PlanDocument {
            path: path.clone(),
            sha256: sha256(text),
        })
        .collect();
    status.pending = Some(PlanRequest {
        id: id.clone(),
        by: who.clone(),
        text,
    });
    status.state = PlanState::Drafting;
    status.approved = None;
    plan.milestone(
        MilestoneKind::Plan,
        format!(
            "✏️ plan v{} edited by {who}: sent to the planner",
            status.version
        ),
        None,
    );
    plan.plan_status = Some(status);
    plan.status.effects.agent_done = None;
    super::resume_through_queue(plan, None, "PlanEdited", "a person edited the plan");
    Ok(Action::requeue(Duration::ZERO))
}

/// Who last changed one of `changed` (paths under `plan/`), as people read it.
async fn edited_by(
    ctx: &Context,
    view: &View,
    changed: &[&String],
) -> Result<String, ReconcileError> {
    for path in changed {
        let file = StatePath::PlanDoc(view.t.clone(), (*path).clone()).to_path();
        if let Some(sig) = questions::last_change(ctx, view, &file).await? {
            return Ok(sig.author);
        }
    }
    Ok("a person".into())
}

/// `AwaitingPlanApproval`: a person's edit of the documents, a request for changes, or an
/// approval of exactly the current version by an allowed person; anything else is said once
/// and ignored.
pub async fn awaiting(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    if let Some(action) = invalid_plan(view, plan) {
        return Ok(action);
    }
    let Some(mut status) = plan.plan_status.clone() else {
        let msg = "plan.yaml is missing: delete the task's plan/ folder and raise retry to plan \
                   again, or set plan.mode: none";
        return Ok(blocked(plan, "PlanValid", "NoPlan", msg));
    };
    if !status.matches(&view.plan_docs) {
        return edited(ctx, view, plan, status).await;
    }
    for (id, a) in &view.approvals {
        let Some(version) = a.plan else { continue };
        let key = id.to_string();
        if status.changes_sent.contains(&key) || status.ignored.contains(&key) {
            continue;
        }
        let who = match decider(ctx, view, id, &a.by).await? {
            Ok(who) => who,
            Err(why) => {
                status.ignored.push(key);
                plan.milestone(MilestoneKind::Error, format!("⚠️ {why}"), None);
                continue;
            }
        };
        if version != status.version {
            status.ignored.push(key);
            plan.milestone(
                MilestoneKind::Error,
                format!(
                    "⚠️ plan approval {id} by {who} ignored: it names plan v{version}; the plan \
                     is at v{}",
                    status.version
                ),
                None,
            );
            continue;
        }
        if let Some(changes) = &a.changes {
            status.changes_sent.push(key.clone());
            status.pending = Some(PlanRequest {
                id: key,
                by: who.clone(),
                text: changes.clone(),
            });
            status.state = PlanState::Drafting;
            plan.milestone(
                MilestoneKind::Plan,
                format!("✏️ changes to plan v{version} asked by {who}: {changes}"),
                None,
            );
            plan.plan_status = Some(status);
            super::resume_through_queue(plan, None, "PlanChangesRequested", "");
            return Ok(Action::requeue(Duration::ZERO));
        }
        let children = if status.mode == PlanMode::Full {
            match super::stories::children(view, version) {
                Ok(c) => c,
                // A malformed epics file: said where, nothing created, the approval waits.
                Err(msg) => {
                    plan.plan_status = Some(status);
                    return Ok(blocked(plan, "PlanValid", "InvalidEpics", &msg));
                }
            }
        } else {
            Vec::new()
        };
        status.state = PlanState::Approved;
        status.approved = Some(PlanDecision {
            version,
            by: who.clone(),
            file: key,
            at: plan.now,
        });
        plan.milestone(
            MilestoneKind::Plan,
            format!("✅ plan v{version} approved by {who}"),
            None,
        );
        plan.plan_status = Some(status);
        if !children.is_empty() {
            // Each story is a task of its own, built in story order; this task waits for
            // them. Created once: the names are fixed, the files are never overwritten.
            let names: Vec<String> = children.iter().map(|(t, _)| t.task.to_string()).collect();
            plan.milestone(
                MilestoneKind::Plan,
                format!(
                    "🧩 {} stories became tasks: {}",
                    names.len(),
                    names.join(", ")
                ),
                None,
            );
            plan.child_tasks = children;
            plan.transition(
                Phase::BuildingStories,
                "PlanApproved",
                format!("building {} stories as their own tasks", names.len()),
            );
            crate::crash::point("plan:children");
            return Ok(Action::requeue(Duration::ZERO));
        }
        // The build gets a session of its own, with the project's own permissions.
        if let Some(agent) = plan.status.agent.as_mut() {
            agent.session_id = None;
            agent.prompts_sent.clear();
        }
        plan.status.effects.agent_cursor = 0;
        plan.status.effects.nudges = 0;
        super::resume_through_queue(plan, None, "PlanApproved", "building the approved plan");
        return Ok(Action::requeue(Duration::ZERO));
    }
    let waiting = waiting_message(status.version);
    plan.plan_status = Some(status);
    plan.waiting("AwaitingPlanApproval", waiting);
    Ok(Action::await_change())
}

/// Who a plan decision counts as coming from (`Ok`), or why it is ignored: the same rules
/// as answers and approvals (docs/security.md).
async fn decider(
    ctx: &Context,
    view: &View,
    id: &Id,
    by: &str,
) -> Result<Result<String, String>, ReconcileError> {
    let path = StatePath::Approval(view.t.clone(), id.clone()).to_path();
    let sig = questions::last_change(ctx, view, &path).await?;
    if !view.settings.authors.may_decide(by) {
        return Ok(Err(format!(
            "plan approval {id} ignored: {by} may not decide (not in gaffer.yaml authors)"
        )));
    }
    Ok(
        match questions::authorize(&view.settings, sig.as_ref(), Some(by)) {
            Ok(who) if who == by => Ok(who),
            Ok(who) => Err(format!(
                "plan approval {id} ignored: committed for {who}, but it names {by}"
            )),
            Err(why) => Err(format!(
                "plan approval {id} ignored: {}",
                why.strip_prefix("answer ").unwrap_or(&why)
            )),
        },
    )
}

/// The approved plan for the build prompt: its version, folder and documents (cut to a
/// size a prompt can hold; the folder has them all). A story task gets its parent's
/// architecture documents (all of the parent's plan when none is named so).
pub fn for_build(view: &View, builder_dir: &std::path::Path) -> Option<minijinja::Value> {
    let (status, docs, of) = match (&view.plan, &view.parent_plan) {
        (Some(own), _) if own.approved.is_some() => (own, view.plan_docs.clone(), None),
        (_, Some((parent, docs))) if parent.approved.is_some() => {
            let arch: BTreeMap<String, String> = docs
                .iter()
                .filter(|(p, _)| p.to_ascii_lowercase().contains("architecture"))
                .map(|(p, t)| (p.clone(), t.clone()))
                .collect();
            let docs = if arch.is_empty() { docs.clone() } else { arch };
            (
                parent,
                docs,
                view.spec.parent.as_ref().map(|p| p.to_string()),
            )
        }
        _ => return None,
    };
    let approved = status.approved.as_ref()?;
    let mut left = MAX_PROMPT_DOCS;
    let docs: Vec<_> = docs
        .iter()
        .filter_map(|(path, text)| {
            let take = text.len().min(left);
            left -= take;
            (take > 0).then(|| {
                let text: String = text.chars().take(take).collect();
                context! { path => path, text => text }
            })
        })
        .collect();
    Some(context! {
        version => approved.version,
        dir => builder_dir.join(OUTPUT_DIR).display().to_string(),
        of,
        docs,
    })
}
