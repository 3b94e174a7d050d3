//! Deploying and Testing: the task's work goes to the project's lab namespace (after an image
//! build when `lab.image` names a workflow), then the lab tests run against it; failures go
//! back to the builder a bounded number of times.

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::context;

use super::prompts::{self, Prompt};
use super::review::rate_limited;
use super::{Plan, View, blocking};
use crate::lab::{DeployRequest, LabDeployer as _, LabError};
use crate::names::RepoName;
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::effects::ImageBuildState;
use crate::state::spec::LabMode;
use crate::state::status::{Deploy, MilestoneKind, Phase};

/// Deploys the task's heads to the lab.
pub async fn deploying(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let (t, project) = (&view.t, &view.project);
    let Some(lab) = &project.lab else {
        plan.transition(
            Phase::InReview,
            "NoLab",
            "the project has no lab; going to review",
        );
        return Ok(Action::requeue(Duration::ZERO));
    };
    // The worktrees' files as they are now (copied over from a builder pod's volume).
    let (ws, tt, sp) = (ctx.workspaces.clone(), t.clone(), project.clone());
    let workspace = blocking(move || ws.sync_local(&tt, &sp))
        .await?
        .join("repos");
    let overlay = workspace.join(&lab.overlay.value);
    let commits: BTreeMap<RepoName, String> = plan
        .status
        .repos
        .iter()
        .filter_map(|(k, v)| v.head_commit.clone().map(|h| (k.clone(), h)))
        .collect();
    let images = match image_build(ctx, view, lab, plan).await? {
        Ok(images) => images,
        Err(action) => return Ok(action),
    };
    let host = view.settings.lab_host(&t.project.project);
    // Refresh the builder's lab access once per deploy, not on every pass while an image
    // builds (its token lasts two days; the kubeconfig is rewritten in place, so a running
    // builder picks the new one up).
    let url = view.settings.lab_url(&t.project);
    if let Err(e) = ctx.lab.builder_access(&t.project, &url).await {
        tracing::warn!(task = %t, error = %e, "could not refresh the builder's lab access");
    }
    let req = DeployRequest {
        project: t.project.clone(),
        task: t.task.clone(),
        overlay,
        workspace,
        host,
        url,
        commits: commits.clone(),
        images,
        tool: lab.tool,
        values: lab.values.iter().map(|v| v.value.clone()).collect(),
        previous: view
            .lab
            .as_ref()
            .filter(|l| !l.deleted)
            .map(|l| l.inventory.clone())
            .unwrap_or_default(),
    };
    // Render-only is a person's choice for the project; otherwise the reconciler's deployer
    // (the cluster, probed each time).
    let deployed = match lab.mode {
        LabMode::RenderOnly => {
            crate::lab::render::RenderOnly::new(ctx.settings.data_dir.join("lab"))
                .deploy(&req)
                .await
        }
        LabMode::Cluster => ctx.lab.deploy(&req).await,
    };
    let out = match deployed {
        Ok(out) => {
            plan.clear_condition("LabReachable");
            plan.status.attempts = 0;
            out
        }
        // No cluster answers: wait, tell people once, try again later; never test against
        // nothing.
        Err(LabError::Unreachable(why)) => return Ok(unreachable(plan, &why)),
        // What the builder's work did: it gets the report (and the crashing container's
        // last lines) to fix, like failing tests.
        Err(
            e @ (LabError::NotReady { .. } | LabError::Render { .. } | LabError::Invalid { .. }),
        ) => return lab_failed(ctx, plan, &e).await,
        Err(e) => {
            plan.status.effects.failed_in = Some(Phase::Deploying);
            plan.transition(Phase::Failed, "DeployFailed", e.to_string());
            return Ok(Action::await_change());
        }
    };
    let mut lab_status = view.lab.clone().unwrap_or_default();
    lab_status.observed_commit = view.head.clone();
    lab_status.namespace = out.namespace.clone();
    if lab_status.created_at.is_none() || lab_status.deleted {
        // New, or made again after `gaffer lab cleanup` removed it.
        lab_status.created_at = Some(plan.now);
        lab_status.deleted = false;
    }
    lab_status.mode = Some(out.mode.clone());
    lab_status.inventory = out.inventory.clone();
    lab_status.urls = out.urls.clone();
    lab_status.last_deploy = Some(Deploy {
        task: t.task.clone(),
        commits,
        at: plan.now,
        no_op: out.no_op,
    });
    plan.lab = Some(lab_status);
    if let Some(url) = out.urls.first() {
        plan.link("lab", url.clone());
    }
    let rendered_only = out.mode == crate::lab::render::MODE;
    plan.milestone(
        MilestoneKind::Deploy,
        if rendered_only {
            format!(
                "📄 rendered {} objects for {}, not deployed{}",
                out.inventory.len(),
                out.namespace,
                if out.no_op { " (unchanged)" } else { "" }
            )
        } else {
            format!(
                "🚀 deployed {} objects to {}{}",
                out.inventory.len(),
                out.namespace,
                if out.no_op { " (unchanged)" } else { "" }
            )
        },
        None,
    );
    if let Some(url) = out.urls.first() {
        plan.milestone(MilestoneKind::Deploy, format!("🔗 Lab: {url}"), None);
    }
    if lab.test.is_some() && rendered_only && !lab.test_without_deploy {
        plan.milestone(MilestoneKind::Test, NOT_TESTED, None);
        plan.transition(Phase::InReview, "NotDeployed", NOT_TESTED);
    } else if lab.test.is_some() {
        plan.transition(Phase::Testing, "Deployed", "");
    } else {
        plan.transition(Phase::InReview, "Deployed", "no lab.test configured");
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// A deploy that failed because of the work: the report goes to the thread and back to
/// the builder, counted with failing tests (at most `max_test_retries` times).
async fn lab_failed(
    ctx: &Context,
    plan: &mut Plan,
    e: &LabError,
) -> Result<Action, ReconcileError> {
    let (crashing, report, logs) = match e {
        LabError::NotReady {
            crashing,
            report,
            logs,
            ..
        } => (*crashing, report.clone(), logs.clone()),
        other => (false, other.to_string(), String::new()),
    };
    let attempts = plan.status.effects.test_attempts + 1;
    plan.status.effects.test_attempts = attempts;
    let mut note = format!("💥 the lab deploy failed: {e}");
    if !logs.is_empty() {
        note.push_str(&format!("\n```\n{logs}\n```"));
    }
    plan.milestone(MilestoneKind::Error, note, None);
    if attempts > ctx.settings.max_test_retries {
        plan.status.effects.failed_in = Some(Phase::Deploying);
        plan.transition(Phase::Failed, "DeployFailed", e.to_string());
        return Ok(Action::await_change());
    }
    let text = prompts::render(
        Prompt::LabFailed,
        context! { crashing => crashing, report => report, logs => logs },
    )?;
    let id = format!("lab-{}", plan.prompts_count());
    let shown: String = e.to_string().chars().take(1000).collect();
    plan.send_feedback(
        ctx,
        &id,
        &text,
        "LabNotReady",
        &format!("sent back to the agent: {shown}"),
    )
    .await
}

/// What the thread says when the lab tests do not run because nothing was deployed.
const NOT_TESTED: &str = "🧪 lab tests not run: rendered, not deployed (lab.test_without_deploy: \
                          true runs them anyway)";

/// Waits in `Deploying` while no cluster answers: condition `LabReachable=False`
/// (`LabUnreachable`), a notice the first time, and a growing pause (10 s doubling to 5 min).
fn unreachable(plan: &mut Plan, why: &str) -> Action {
    let first = !plan
        .status
        .conditions
        .iter()
        .any(|c| c.type_ == "LabReachable" && c.reason == "LabUnreachable");
    if first {
        plan.milestone(
            MilestoneKind::Error,
            format!(
                "⚠️ the lab is unreachable: {why}; waiting for it, nothing is tested meanwhile"
            ),
            None,
        );
    }
    let message = format!("no cluster answers ({why}); trying again");
    plan.waiting("LabUnreachable", message.clone());
    let _ = plan.blocked("LabReachable", "LabUnreachable", &message);
    let pause = Duration::from_secs(10 * 2u64.pow(plan.status.attempts.min(5)))
        .min(Duration::from_secs(300));
    plan.status.attempts += 1;
    Action::requeue(pause)
}

/// The image overrides of a deploy: when `lab.image` names a workflow, the task branch is
/// pushed, the workflow dispatched (once per commit) and waited for, and the image it pushed
/// (`<registry>:<sha>`) replaces `lab.image.name` in the render. `Err` is what to do while
/// the build runs or after it failed.
async fn image_build(
    ctx: &Context,
    view: &View,
    lab: &crate::state::spec::LabSpec,
    plan: &mut Plan,
) -> Result<Result<BTreeMap<String, String>, Action>, ReconcileError> {
    let project = &view.project;
    let Some(img) = &lab.image else {
        return Ok(Ok(BTreeMap::new()));
    };
    let forge = ctx.forge_for(project)?;
    let Some(repo) = project.repos.iter().find(|r| r.name.value == img.repo) else {
        plan.transition(
            Phase::Failed,
            "ImageBuildFailed",
            format!(
                "lab.image.repo {} is not one of the project's repos",
                img.repo
            ),
        );
        return Ok(Err(Action::await_change()));
    };
    let Some(gh) = repo
        .github
        .clone()
        .or_else(|| crate::forge::github::repo_of_url(&repo.url))
    else {
        plan.transition(
            Phase::Failed,
            "ImageBuildFailed",
            format!(
                "{} is not on GitHub: set `github: owner/name` on the repo",
                repo.url
            ),
        );
        return Ok(Err(Action::await_change()));
    };
    let Some(rs) = plan.status.repos.get(&img.repo).cloned() else {
        return Err(ReconcileError::NoWorkspace(format!(
            "no workspace repo {}",
            img.repo
        )));
    };
    let Some(head) = rs.head_commit.clone() else {
        return Err(ReconcileError::NoWorkspace(format!(
            "{} has no head yet",
            img.repo
        )));
    };
    let (ws, tt, sp) = (ctx.workspaces.clone(), view.t.clone(), view.project.clone());
    blocking(move || ws.export(&tt, &sp)).await?;
    let mirror = ctx
        .workspaces
        .repo_git_dir(&view.t.project, &view.project, repo);
    let branch = rs.branch.clone();
    blocking(move || crate::forge::push_branch(&mirror, &branch)).await?;
    let dispatched = plan.status.effects.image_builds.contains_key(&head);
    let waiting = |plan: &mut Plan, msg: String| {
        plan.waiting("ImageBuilding", msg);
        Action::requeue(ctx.settings.forge_poll.min(Duration::from_secs(15)))
    };
    match forge
        .build_image(&gh, &img.workflow, &rs.branch, &head, !dispatched)
        .await
    {
        Ok(crate::forge::ImageBuild::Dispatched) => {
            plan.status
                .effects
                .image_builds
                .insert(head.clone(), ImageBuildState::Dispatched);
            plan.milestone(
                MilestoneKind::Deploy,
                format!(
                    "🏗 image build dispatched: {} on {} ({})",
                    img.workflow,
                    rs.branch,
                    &head[..head.len().min(12)]
                ),
                None,
            );
            Ok(Err(waiting(
                plan,
                format!("building the image ({})", img.workflow),
            )))
        }
        Ok(crate::forge::ImageBuild::Running(url)) => Ok(Err(waiting(
            plan,
            format!("building the image {url}").trim().to_string(),
        ))),
        Ok(crate::forge::ImageBuild::Built) => {
            let registry = img
                .registry
                .clone()
                .unwrap_or_else(|| format!("ghcr.io/{}", gh.to_lowercase()));
            let image = format!("{registry}:{head}");
            if plan.status.effects.image_builds.get(&head) != Some(&ImageBuildState::Built) {
                plan.status
                    .effects
                    .image_builds
                    .insert(head.clone(), ImageBuildState::Built);
                plan.milestone(
                    MilestoneKind::Deploy,
                    format!("🏗 image built: {image}"),
                    None,
                );
            }
            Ok(Ok(BTreeMap::from([(img.name.clone(), image)])))
        }
        Err(crate::forge::ForgeError::RateLimited { until }) => Ok(Err(rate_limited(plan, until))),
        Err(e) => {
            plan.status.effects.failed_in = Some(Phase::Deploying);
            plan.transition(Phase::Failed, "ImageBuildFailed", e.to_string());
            Ok(Err(Action::await_change()))
        }
    }
}

/// Runs the lab tests; failures go back to the builder, at most `max_test_retries` times.
pub async fn testing(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let (t, project) = (&view.t, &view.project);
    let Some(test) = project.lab.as_ref().and_then(|l| l.test.clone()) else {
        plan.transition(Phase::InReview, "NoTests", "");
        return Ok(Action::requeue(Duration::ZERO));
    };
    // A resumed Testing after a render-only deploy: nothing to test either.
    let rendered_only = plan
        .lab
        .as_ref()
        .or(view.lab.as_ref())
        .and_then(|l| l.mode.as_deref())
        == Some(crate::lab::render::MODE);
    if rendered_only && !project.lab.as_ref().is_some_and(|l| l.test_without_deploy) {
        plan.milestone(MilestoneKind::Test, NOT_TESTED, None);
        plan.transition(Phase::InReview, "NotDeployed", NOT_TESTED);
        return Ok(Action::requeue(Duration::ZERO));
    }
    let argv: Vec<String> = test.split_whitespace().map(str::to_string).collect();
    let Some(first_repo) = project.repos.first() else {
        return Err(ReconcileError::NoWorkspace("project has no repos".into()));
    };
    let (ws, tt, sp) = (ctx.workspaces.clone(), t.clone(), project.clone());
    let workdir = blocking(move || ws.sync_local(&tt, &sp))
        .await?
        .join("repos")
        .join(first_repo.name.value.as_str());
    let url = plan
        .status
        .links
        .iter()
        .find(|l| l.name == "lab")
        .map(|l| l.url.clone())
        .unwrap_or_default();
    let results = ctx
        .tests
        .run(&argv, &workdir, &t.project.lab_namespace(), &url)
        .await?;
    let line = crate::lab::junit::summary_line(&results);
    let mut lab_status = plan
        .lab
        .clone()
        .or_else(|| view.lab.clone())
        .unwrap_or_default();
    lab_status.tests = Some(results.clone());
    plan.lab = Some(lab_status);
    plan.milestone(MilestoneKind::Test, line, None);
    if results.failed == 0 {
        plan.status.effects.test_attempts = 0;
        plan.transition(Phase::InReview, "TestsPassed", "");
        return Ok(Action::requeue(Duration::ZERO));
    }
    // Test attempts are counted apart from agent retries, and reset by `retry:`.
    let attempts = plan.status.effects.test_attempts + 1;
    plan.status.effects.test_attempts = attempts;
    if attempts > ctx.settings.max_test_retries {
        plan.status.effects.failed_in = Some(Phase::Testing);
        plan.transition(
            Phase::Failed,
            "TestsFailing",
            format!("lab tests still failing after {attempts} attempts"),
        );
        return Ok(Action::await_change());
    }
    let failures: Vec<_> = results
        .failures
        .iter()
        .map(|f| context! { name => &f.name, message => &f.message })
        .collect();
    let text = prompts::render(
        Prompt::TestsFailed,
        context! {
            failed => results.failed,
            total => results.passed + results.failed,
            failures,
        },
    )?;
    // Unique for the session (a retry must not reuse an id the runtime already saw) and
    // stable when this step is replayed after a crash.
    let id = format!("tests-{}", plan.prompts_count());
    plan.send_feedback(
        ctx,
        &id,
        &text,
        "TestsFailed",
        "test failures sent back to the agent",
    )
    .await
}
