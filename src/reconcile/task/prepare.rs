//! Preparing: the workspace on the task's branch, the builder's lab access, the builder's
//! session, and the first prompt (or, for a resumed task, back to the phase it left).

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::context;

use super::prompts::{self, Prompt};
use super::{Plan, View, blocking};
use crate::agent::SessionRequest;
use crate::names::RepoName;
use crate::reconcile::project::builder_setup;
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::status::{AgentStatus, ConditionStatus, Phase};
use crate::workspace::WorkspaceError;

/// Prepares the workspace and the session, then goes to `Running` (or where a resumed task
/// left off).
pub async fn preparing(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let (t, project, spec) = (&view.t, &view.project, &view.spec);
    // Where a resumed task goes is checked before anything is done: an unknown target is
    // never guessed (it once became InReview, skipping deploy and test).
    let resume_to = plan.status.effects.resume_to;
    if let Some(p) = resume_to
        && !matches!(
            p,
            Phase::Running | Phase::Deploying | Phase::Testing | Phase::InReview
        )
    {
        let msg = format!(
            "status.yaml effects resumeTo: {p} is not a phase a task resumes to (Running, \
             Deploying, Testing or InReview); fix or remove it by hand"
        );
        return Ok(plan.blocked("EffectsValid", "InvalidEffects", &msg));
    }
    // A builder pod holds the workspace on its volume: the pod comes first.
    let early = if project.on_pod() {
        if super::planning::wants_plan(view) {
            let msg = "planning (BMAD) runs in a builder on gaffer's machine for now: set \
                       plan.mode: none on this task, or agent.host: tmux for its project";
            return Ok(plan.blocked("AgentReady", "PlanningInPod", msg));
        }
        let setup = match builder_setup(ctx, &t.project, project, &view.settings).await? {
            Ok(setup) => setup,
            Err(n) => return Ok(plan.blocked(n.condition, n.reason, &n.message)),
        };
        ctx.agents
            .get(project.agent.runtime)?
            .start_host(&setup)
            .await?;
        Some(setup)
    } else {
        None
    };
    let ws = ctx.workspaces.clone();
    let (tt, pp) = (t.clone(), project.clone());
    let repos = match blocking(move || ws.prepare(&tt, &pp)).await {
        // The project's own workspace command failed or made something unusable: the task
        // waits with why, and nothing else happens.
        Err(ReconcileError::Workspace(WorkspaceError::Init(why))) => {
            let msg = format!(
                "{why}\n(gaffer runs the command again when project.yaml or this task changes)"
            );
            return Ok(plan.blocked("WorkspaceReady", "InitFailed", &msg));
        }
        r => r?,
    };
    plan.clear_condition("WorkspaceReady");
    tracing::debug!(target: "gaffer::hop", hop = "workspace-ready", task = %t);
    for (name, rs) in repos {
        let entry = plan.status.repos.entry(name).or_insert(rs.clone());
        entry.branch = rs.branch;
        if entry.base_commit.is_none() {
            entry.base_commit = rs.base_commit;
        }
        entry.head_commit = rs.head_commit;
    }
    let setup = match early {
        // Where the pod sees its workspace is known once its sidecar answered.
        Some(mut setup) => {
            setup.project_dir = ctx.workspaces.builder_dir(&t.project, project);
            setup
        }
        None => match builder_setup(ctx, &t.project, project, &view.settings).await? {
            Ok(setup) => setup,
            Err(n) => return Ok(plan.blocked(n.condition, n.reason, &n.message)),
        },
    };
    plan.clear_condition("AgentReady");
    let worktrees: BTreeMap<RepoName, std::path::PathBuf> = project
        .repos
        .iter()
        .map(|r| {
            let name = r.name.value.clone();
            let dir = setup.project_dir.join("repos").join(name.as_str());
            (name, dir)
        })
        .collect();
    if super::planning::wants_plan(view) {
        return super::planning::start(ctx, view, plan, setup, &worktrees).await;
    }
    let approved_plan = super::planning::for_build(view, &setup.project_dir);
    let sandbox = setup.sandbox;
    let req = SessionRequest {
        task: t.clone(),
        title: spec.title.clone(),
        permissions: project.agent.permissions.clone(),
        worktrees: worktrees.clone(),
        model: project.agent.model.clone(),
        agent: project.agent.agent.clone(),
        script: project.agent.script.clone(),
        builder: setup,
        stage: crate::agent::Stage::Build,
    };
    let agent_rt = ctx.agents.get(project.agent.runtime)?;
    let session = agent_rt
        .ensure_session(&req, plan.session().as_deref())
        .await?;
    tracing::debug!(target: "gaffer::hop", hop = "session-ready", task = %t);
    let repos: Vec<_> = worktrees
        .iter()
        .map(|(name, dir)| context! { name => name.as_str(), dir => dir.display().to_string() })
        .collect();
    let lab = project.lab.as_ref().map(|lab| {
        context! {
            overlay => &lab.overlay.value,
            namespace => t.project.lab_namespace(),
            test => &lab.test,
        }
    });
    let prompt = prompts::render(
        Prompt::Task,
        context! {
            title => &spec.title, project => t.project.to_string(), branch => t.branch(),
            description => &spec.description, repos, lab, plan => approved_plan,
            done_marker => crate::agent::opencode::history::DONE_MARKER,
        },
    )?;
    agent_rt.send(t, &session.id, "task", &prompt).await?;
    tracing::debug!(target: "gaffer::hop", hop = "prompted", task = %t);
    record_session(plan, agent_rt.as_ref(), &session, sandbox);
    terminal_link(view, plan, &session);
    template_links(ctx, view, plan);
    plan.record_prompt("task");
    plan.status.effects.resume_to = None;
    match resume_to {
        Some(p @ (Phase::Deploying | Phase::Testing | Phase::InReview)) => {
            plan.transition(p, "Resumed", "workspace back on the task's branch");
        }
        Some(_) => {
            let id = format!("resume-{}", plan.prompts_count());
            agent_rt
                .send(
                    t,
                    &session.id,
                    &id,
                    &prompts::render(Prompt::Resumed, context! {})?,
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

/// Records the session in the task's status (with its attach link and sandbox condition).
pub fn record_session(
    plan: &mut Plan,
    agent_rt: &dyn crate::agent::AgentRuntime,
    session: &crate::agent::Session,
    sandbox: bool,
) {
    let mut agent = plan.status.agent.clone().unwrap_or_else(|| {
        Box::new(AgentStatus {
            runtime: agent_rt.kind(),
            session_id: None,
            host: None,
            attach: None,
            port: None,
            tmux: None,
            prompts_sent: Vec::new(),
        })
    });
    agent.session_id = Some(session.id.clone());
    agent.host = Some(session.host);
    agent.attach = session.attach.clone();
    // Records of earlier releases give way to the host's own.
    agent.port = None;
    agent.tmux = None;
    plan.status.agent = Some(agent);
    if let Some(attach) = &session.attach {
        plan.link("attach", attach.clone());
    }
    sandbox_condition(plan, sandbox, session.sandboxed, session.host);
}

/// A builder pod's web terminal, when `builders.terminal_link` says where (checked when the
/// settings were read).
pub fn terminal_link(view: &View, plan: &mut Plan, session: &crate::agent::Session) {
    if session.host != crate::state::status::HostKind::Pod {
        return;
    }
    if let Some(t) = &view.settings.builders.terminal_link
        && let Ok(url) = crate::state::spec::render_terminal_link(t, &view.t.project)
    {
        plan.link("terminal", url);
    }
}

/// The links of `gaffer.yaml` `links:`, rendered for the task (checked when the settings
/// were read; one that fails here is left out and logged).
pub fn template_links(ctx: &Context, view: &View, plan: &mut Plan) {
    if view.settings.links.is_empty() {
        return;
    }
    let workspace = ctx
        .workspaces
        .builder_dir(&view.t.project, &view.project)
        .display()
        .to_string();
    for (name, template) in &view.settings.links {
        match crate::state::spec::render_link(template, &view.t, &workspace) {
            Ok(url) => plan.link(name, url),
            Err(why) => tracing::warn!(task = %view.t, link = %name, %why, "link not rendered"),
        }
    }
}

/// Says on the task's status whether its builder is sandboxed; an unsandboxed builder is a
/// warning on every task it works on (and in the log).
fn sandbox_condition(
    plan: &mut Plan,
    wanted: bool,
    sandboxed: Option<bool>,
    host: crate::state::status::HostKind,
) {
    let (value, reason, message) = match (sandboxed, wanted) {
        (None, _) => return,
        // A pod of its own: nothing of gaffer's is in it.
        (Some(true), _) if host == crate::state::status::HostKind::Pod => {
            (ConditionStatus::True, "Pod", String::new())
        }
        (Some(true), _) => (ConditionStatus::True, "Bwrap", String::new()),
        (Some(false), true) => (
            ConditionStatus::False,
            "NoSandbox",
            "bubblewrap does not work on gaffer's machine: the builder runs unsandboxed and \
             can read whatever gaffer's user can"
                .to_string(),
        ),
        (Some(false), false) => (
            ConditionStatus::False,
            "SandboxOff",
            "agent.sandbox: none: the builder runs unsandboxed and can read whatever gaffer's \
             user can"
                .to_string(),
        ),
    };
    if value == ConditionStatus::False {
        tracing::warn!(task = %plan.t, "{message}");
    }
    let now = plan.now;
    super::plan::set_condition(&mut plan.status, "Sandboxed", value, reason, &message, now);
}
