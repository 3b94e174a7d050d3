//! A project's own reconcile: its builder started ahead of its first task (a warm start), so
//! a task's first model request does not wait for the builder's server to come up.
//!
//! The builder is made from [`builder_setup`], the same function a task's Preparing step
//! uses, so the session the task asks for later finds the server exactly as it wants it and
//! nothing is started twice.

use std::sync::Arc;

use super::{Action, Context, ReconcileError};
use crate::agent::{BuilderSetup, PodSetup};
use crate::names::ProjectRef;
use crate::state::spec::{ProjectSpec, SandboxKind, Settings};
use crate::state::status::Phase;

/// Why a builder cannot be set up yet: a condition for the task's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    /// The condition type.
    pub condition: &'static str,
    /// Its reason.
    pub reason: &'static str,
    /// What a person has to do.
    pub message: String,
}

/// What `p`'s builder is started with: its workspace, its lab access (set up in the lab
/// first), the credentials the project names and its sandbox. `Ok(Err(_))` when a person
/// has to provide something first.
pub async fn builder_setup(
    ctx: &Context,
    p: &ProjectRef,
    project: &ProjectSpec,
    settings: &Settings,
) -> Result<Result<BuilderSetup, NotReady>, ReconcileError> {
    let pod = match pod_setup(ctx, project, settings).await {
        Ok(pod) => pod,
        Err(n) => return Ok(Err(n)),
    };
    // Fail closed: a builder that should be sandboxed never runs without its sandbox (it
    // could read gaffer's secrets and forge decisions); the person chooses `sandbox: none`.
    // A pod is its builder's sandbox.
    if project.agent.runtime == crate::state::spec::RuntimeKind::Opencode
        && pod.is_none()
        && project.agent.sandbox == SandboxKind::Bwrap
        && let Some(why) = &ctx.settings.no_sandbox
    {
        return Ok(Err(NotReady {
            condition: "AgentReady",
            reason: "SandboxUnavailable",
            message: format!(
                "the builder's sandbox cannot run here ({why}); install bubblewrap and allow \
                 user namespaces, or set agent.sandbox: none in project.yaml to run it \
                 without one"
            ),
        }));
    }
    // The builder runs its own work in the lab: its access is set up before it starts.
    let mut env = match &project.lab {
        Some(_) => ctx
            .lab
            .builder_access(p, &settings.lab_url(p))
            .await
            .map_err(ReconcileError::BuilderAccess)?,
        None => Vec::new(),
    };
    // Its credentials are the ones the project names, never gaffer's own.
    for e in &project.agent.env_from {
        match e.resolve() {
            Ok(value) => env.push((e.name.clone(), value)),
            // A person has to provide it: retrying would not help.
            Err(message) => {
                return Ok(Err(NotReady {
                    condition: "AgentReady",
                    reason: "MissingCredential",
                    message,
                }));
            }
        }
    }
    Ok(Ok(BuilderSetup {
        project: p.clone(),
        project_dir: ctx.workspaces.builder_dir(p, project),
        env,
        sandbox: pod.is_none() && project.agent.sandbox == SandboxKind::Bwrap,
        builder_dirs: ctx.workspaces.builder_dirs(p, project),
        host: project.agent.host.unwrap_or_default(),
        pod,
    }))
}

/// With `agent.host: pod`: what the pod is made of, or why it cannot run (no cluster, no
/// image); `None` for a builder on gaffer's machine.
async fn pod_setup(
    ctx: &Context,
    project: &ProjectSpec,
    settings: &Settings,
) -> Result<Option<PodSetup>, NotReady> {
    if !project.on_pod() {
        return Ok(None);
    }
    let not_ready = |reason, message: String| NotReady {
        condition: "AgentReady",
        reason,
        message,
    };
    if project.agent.runtime != crate::state::spec::RuntimeKind::Opencode {
        return Err(not_ready(
            "PodNeedsOpenCode",
            "agent.host: pod runs an OpenCode builder; set agent.runtime: opencode or \
             agent.host: tmux"
                .into(),
        ));
    }
    let available = match &ctx.pods {
        Some(pods) => pods.available().await,
        None => false,
    };
    if !available {
        return Err(not_ready(
            "NoCluster",
            crate::agent::pod::host::NO_CLUSTER.into(),
        ));
    }
    let Some(image) = settings.builders.image.clone() else {
        return Err(not_ready(
            "NoBuilderImage",
            "agent.host: pod needs the builder pods' image: set builders.image in gaffer.yaml \
             (gaffer's own image, which carries OpenCode, git and gaffer)"
                .into(),
        ));
    };
    Ok(Some(PodSetup {
        image,
        spec: project.agent.pod.clone(),
    }))
}

/// Starts `p`'s builder when it should be warm; never fails the project (a task starts its
/// builder itself, and says why when it cannot).
pub async fn reconcile(p: ProjectRef, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let mut found = None;
    ctx.store.read(&mut |_, snap| {
        let Some(settings) = snap.settings.clone() else {
            return;
        };
        let Some(pe) = snap.projects.get(&p) else {
            return;
        };
        let Some(spec) = pe.spec.clone() else {
            return;
        };
        let spec = spec.with_builder_defaults(&settings);
        let phases: Vec<Option<Phase>> = pe
            .tasks
            .values()
            .map(|e| e.status.as_ref().map(|s| s.phase))
            .collect();
        let idle_since = pe
            .tasks
            .values()
            .filter_map(|e| e.status.as_ref()?.phase_since)
            .max();
        found = Some((settings, spec, phases, idle_since));
    })?;
    let Some((settings, spec, phases, idle_since)) = found else {
        return Ok(Action::await_change());
    };
    if !wants_warm(&spec, &phases) {
        return idle(&ctx, &p, &spec, &phases, idle_since).await;
    }
    match warm(&ctx, &p, &spec, &settings).await {
        Ok(true) => {
            tracing::debug!(target: "gaffer::hop", hop = "builder-warm", project = %p);
            tracing::info!(project = %p, "builder started ahead of its tasks");
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(
            project = %p,
            error = %e,
            "could not start the builder ahead of its tasks; its first task starts it"
        ),
    }
    Ok(Action::await_change())
}

/// Stops a builder with no active task for `agent.idle_stop` (tmux) or suspends one for
/// `agent.pod.idle_suspend` (pod), counted from when its last task left its phase: the
/// server goes, its data and sessions stay, and the next task (or a queued one, warming it)
/// starts it again on them. Checked again when that time comes.
async fn idle(
    ctx: &Context,
    p: &ProjectRef,
    spec: &ProjectSpec,
    phases: &[Option<Phase>],
    idle_since: Option<jiff::Timestamp>,
) -> Result<Action, ReconcileError> {
    let Some(since) = idle_since else {
        return Ok(Action::await_change());
    };
    if phases.iter().flatten().any(|ph| ph.is_active()) {
        return Ok(Action::await_change());
    }
    let after = spec.agent.idle_after(spec.on_pod());
    let idle_for = ctx.clock.now().duration_since(since);
    if idle_for < after {
        let left = (after - idle_for).unsigned_abs();
        return Ok(Action::requeue(left + std::time::Duration::from_millis(50)));
    }
    match ctx.agents.get(spec.agent.runtime)?.suspend(p).await {
        Ok(true) => tracing::info!(project = %p, idle = %idle_for, "idle builder stopped"),
        Ok(false) => {}
        Err(e) => tracing::warn!(project = %p, error = %e, "could not stop the idle builder"),
    }
    Ok(Action::await_change())
}

/// A project's builder is warmed when it has no task yet (it was just committed) or a task
/// waits to start, and none is active (active tasks look after their builder themselves; a
/// warm start must never restart a server a task is using).
pub fn wants_warm(spec: &ProjectSpec, phases: &[Option<Phase>]) -> bool {
    spec.agent.warm
        && !phases.iter().flatten().any(|p| p.is_active())
        && (phases.is_empty()
            || phases
                .iter()
                .any(|p| matches!(p, None | Some(Phase::Pending | Phase::Queued))))
}

async fn warm(
    ctx: &Context,
    p: &ProjectRef,
    spec: &ProjectSpec,
    settings: &Settings,
) -> Result<bool, ReconcileError> {
    let runtime = ctx.agents.get(spec.agent.runtime)?.clone();
    if !runtime.warms() {
        return Ok(false);
    }
    let ws_warm = || {
        let (ws, pp, sp) = (ctx.workspaces.clone(), p.clone(), spec.clone());
        tokio::task::spawn_blocking(move || ws.warm(&pp, &sp))
    };
    // A builder pod holds its workspace: the pod first, then its mirrors.
    if !spec.on_pod() && !ws_warm().await?? {
        return Ok(false);
    }
    let setup = match builder_setup(ctx, p, spec, settings).await? {
        Ok(setup) => setup,
        Err(_) => return Ok(false),
    };
    let warmed = runtime.warm(&setup).await?;
    if warmed && spec.on_pod() {
        ws_warm().await??;
    }
    Ok(warmed)
}
