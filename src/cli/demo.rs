//! `gaffer demo`: the whole lifecycle on a throwaway state repository, in under a minute.
//!
//! It makes a state repo, a small sample application repo (a kustomize overlay and a test
//! script), and a project using the scripted builder; commits a task; runs the reconciler
//! in-process; and plays the person: it approves the task's plan (a BMAD-style spec the
//! scripted planner writes), answers the first question with a commit, lets the second be
//! decided by its default at the (short) deadline, and approves the change. Every step is
//! printed as it lands in git.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CliError, CmdResult};
use crate::git::{self, Git};
use crate::names::{Id, Qid, TaskRef};
use crate::reconcile::daemon::{self, Options};
use crate::state::StatePath;
use crate::state::spec::{AnswerSpec, ApprovalSpec, Choice};
use crate::state::status::{Phase, QuestionState};
use crate::state::yaml::Located;
use crate::store::{Identity, StatusWriter, Update, WriterConfig, WriterRole};

/// Arguments of `gaffer demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep everything in this (new or empty) directory instead of a temporary one.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 90)]
    pub timeout_secs: u64,
}

const TASK: &str = "demo/web-api/jwt-auth";
/// The person the demo plays.
pub const PERSON: &str = "you@example.com";

/// The sample application repository's files (an API, a kustomize overlay, a JUnit test
/// script and the scripted builder's script).
pub fn sample_app() -> Vec<(String, Option<Vec<u8>>)> {
    let f = |p: &str, c: &str| (p.to_string(), Some(c.as_bytes().to_vec()));
    vec![
        f("app/main.py", include_str!("templates/demo/app/main.py")),
        f(
            "app/kustomization.yaml",
            include_str!("templates/demo/app/kustomization.yaml"),
        ),
        f(
            "app/deployment.yaml",
            include_str!("templates/demo/app/deployment.yaml"),
        ),
        f(
            "app/service.yaml",
            include_str!("templates/demo/app/service.yaml"),
        ),
        f(
            "app/ingress.yaml",
            include_str!("templates/demo/app/ingress.yaml"),
        ),
        f(
            "deploy/kustomization.yaml",
            include_str!("templates/demo/deploy/kustomization.yaml"),
        ),
        f(
            "tests/run-tests.sh",
            include_str!("templates/demo/tests/run-tests.sh"),
        ),
        f(
            ".gaffer/agent-script.yaml",
            include_str!("templates/demo/agent-script.yaml"),
        ),
        // The tests' report is an output, not part of any change: were it tracked, every
        // checkpoint would commit it, and a finished task's branch would get a commit of it
        // when the next task takes the worktree (so cleanup would keep that branch).
        f(".gitignore", "report.xml\n__pycache__/\n"),
    ]
}

/// Creates a bare repository at `path` whose `main` holds `files`.
pub fn bare_repo_with(
    path: &Path,
    files: &[(String, Option<Vec<u8>>)],
    message: &str,
) -> Result<(), CliError> {
    std::fs::create_dir_all(path)
        .map_err(|e| CliError::user(format!("{}: {e}", path.display())))?;
    Git::new(path).run(["init", "--quiet", "--bare", "-b", "main"])?;
    let g = Git::new(path)
        .with_env("GIT_AUTHOR_NAME", "Demo Person")
        .with_env("GIT_AUTHOR_EMAIL", PERSON)
        .with_env("GIT_COMMITTER_NAME", "Demo Person")
        .with_env("GIT_COMMITTER_EMAIL", PERSON);
    let commit = git::commit_files(&g, None, files, message)?;
    g.run(["update-ref", "refs/heads/main", &commit, ""])?;
    Ok(())
}

/// The demo's state repository content: settings with round-the-clock business hours and
/// question `timeout`, and project `demo/web-api` building the app at `app_origin`.
pub fn state_files(app_origin: &Path, timeout: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let settings = format!(
        "domain: lab.example.com\n\
         business_hours: {{timezone: Europe/London, days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"23:59\"}}\n\
         questions: {{timeout: {timeout}, on_timeout: recommended, continue: at-deadline}}\n\
         authors: {{answers: [{PERSON}], slack_users: [], accept_unsigned: true}}\n"
    );
    let project = format!(
        "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
         agent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n\
         lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true}}\n\
         forge: {{kind: local, merge_method: merge}}\n",
        serde_json::Value::String(app_origin.display().to_string())
    );
    vec![
        ("gaffer.yaml".into(), Some(settings.into_bytes())),
        (
            "projects/demo/web-api/project.yaml".into(),
            Some(project.into_bytes()),
        ),
    ]
}

fn say(start: Instant, who: &str, what: &str) {
    println!("{:>5.1}s  {who:<10} {what}", start.elapsed().as_secs_f64());
}

/// Runs `gaffer demo`.
pub fn cmd_demo(args: DemoArgs) -> CmdResult {
    super::reconcile::init_tracing(super::reconcile::LogFormat::Text);
    git::Git::check_version()?;
    let (_tmp, root) = match &args.dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(CliError::user(format!(
                    "{} exists and is not empty",
                    d.display()
                )));
            }
            std::fs::create_dir_all(d).map_err(|e| CliError::user(e.to_string()))?;
            (
                None,
                d.canonicalize()
                    .map_err(|e| CliError::user(e.to_string()))?,
            )
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("gaffer-demo-")
                .tempdir()
                .map_err(|e| CliError::internal(e.to_string()))?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    let start = Instant::now();
    let state = root.join("state.git");
    let origin = root.join("origins/web-api.git");
    bare_repo_with(&origin, &sample_app(), "web-api: a tiny API")?;
    bare_repo_with(
        &state,
        &state_files(&origin, "4s"),
        "demo: gaffer.yaml and project demo/web-api",
    )?;
    say(
        start,
        "setup",
        &format!("state repository {}", state.display()),
    );
    say(
        start,
        "setup",
        &format!("sample app repository {}", origin.display()),
    );

    let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
    let result = rt.block_on(demo(start, root.clone(), state.clone(), args.timeout_secs));
    drop(rt);
    result?;

    println!("\nThe state repository tells the story (git log --reverse):\n");
    let log = Git::new(&state).run([
        "log",
        "--reverse",
        "--format=  %h %<(13,trunc)%an %s",
        "main",
    ])?;
    println!("{log}");
    println!("\nPromoted in {:.1}s.", start.elapsed().as_secs_f64());
    if args.dir.is_some() {
        println!("Explore it: git -C {} log --stat", state.display());
        println!("            gaffer status --state {}", state.display());
    } else {
        println!("(everything was in a temporary directory; run with --dir DIR to keep it)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn demo(start: Instant, root: PathBuf, state: PathBuf, timeout: u64) -> Result<(), CliError> {
    let state_s = state.display().to_string();
    let mut opts = Options::new(state_s.clone(), root.join("data"));
    // The demo never touches a cluster, whatever the environment points at.
    opts.lab = crate::reconcile::daemon::LabMode::RenderOnly;
    opts.builders = root.join("builders");
    opts.echo = false;
    let notifier: Arc<dyn crate::chat::Notifier> = Arc::new(EchoNotifier {
        start,
        inner: crate::chat::LogNotifier::new(Some(root.join("data/notifications.log")), false),
    });
    let (ctx, handles, rx) =
        daemon::start(&opts, Arc::new(crate::hours::SystemClock), Some(notifier))
            .await
            .map_err(|e| CliError::internal(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reconciler = tokio::spawn(daemon::run(opts, ctx, handles.clone(), rx, async move {
        let _ = stop_rx.await;
    }));

    let person = StatusWriter::spawn(
        handles.transport.clone(),
        WriterConfig::new(
            WriterRole::Person,
            Identity {
                name: "Demo Person".into(),
                email: PERSON.into(),
            },
        ),
    );
    let task = TaskRef::parse(TASK).map_err(|e| CliError::internal(e.to_string()))?;
    let spec = "title: Implement JWT authentication\n\
                description: |\n  Add JWT auth to the API: issue tokens on login and verify them.\n\
                priority: high\n\
                plan: {mode: quick}\n";
    person
        .write(vec![Update::put(
            StatePath::TaskSpec(task.clone()),
            spec,
            format!("new task {task}"),
        )])
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    say(start, "person", &format!("committed task {task}"));

    let deadline = Instant::now() + Duration::from_secs(timeout);
    let (mut answered, mut approved, mut plan_approved) = (false, false, false);
    let result = loop {
        if Instant::now() > deadline {
            break Err(CliError::internal(format!(
                "the demo did not finish within {timeout}s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (phase, q1, in_review, plan) = {
            let Ok(t) = handles.tracker.read() else {
                continue;
            };
            let Some(e) = t.snapshot().task(&task) else {
                continue;
            };
            let phase = e.status.as_ref().map(|s| s.phase);
            let q1 = e
                .questions
                .get(&Qid::new("q-001").map_err(|e| CliError::internal(e.to_string()))?)
                .map(|q| (q.state, q.options.first().map(|o| o.label.clone())));
            let plan = e
                .plan
                .as_deref()
                .filter(|_| phase == Some(Phase::AwaitingPlanApproval))
                .cloned();
            (phase, q1, phase == Some(Phase::InReview), plan)
        };
        match phase {
            Some(Phase::Promoted) => break Ok(()),
            Some(Phase::Failed) => {
                break Err(CliError::internal(
                    "the task failed; see the state repository",
                ));
            }
            _ => {}
        }
        if !plan_approved && let Some(plan) = plan {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let approval =
                ApprovalSpec::for_plan(PERSON, Some(&plan), None).map_err(CliError::internal)?;
            let name = format!("plan-{}-demo", plan.version);
            let id = Id::new(&name).map_err(|e| CliError::internal(e.to_string()))?;
            let path = StatePath::Approval(task.clone(), id);
            let docs: Vec<&str> = plan.documents.iter().map(|d| d.path.as_str()).collect();
            put(&person, path, &approval, format!("{task} plan approved")).await?;
            say(
                start,
                "person",
                &format!(
                    "read plan v{} ({}) and approved it (approvals/{name}.yaml)",
                    plan.version,
                    docs.join(", ")
                ),
            );
            plan_approved = true;
        }
        if !answered && let Some((QuestionState::Open, Some(label))) = q1 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let qid = Qid::new("q-001").map_err(|e| CliError::internal(e.to_string()))?;
            let answer = AnswerSpec {
                choice: Some(Located::new(Choice::One(label.clone()))),
                text: None,
                note: Some("Keep the public key in a ConfigMap".into()),
                by: Some(PERSON.into()),
                at: Some(jiff::Timestamp::now()),
            };
            let path = StatePath::Answer(task.clone(), qid);
            put(&person, path, &answer, format!("{task} q-001 answered")).await?;
            say(
                start,
                "person",
                &format!("answered q-001: {label} (q-002 is left to its 4s default)"),
            );
            answered = true;
        }
        if in_review && !approved {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let status = {
                let t = handles
                    .tracker
                    .read()
                    .map_err(|_| CliError::internal("tracker lock"))?;
                t.snapshot()
                    .task(&task)
                    .and_then(|e| e.status.as_deref())
                    .cloned()
            };
            let mut approval =
                ApprovalSpec::for_review(PERSON, status.as_ref()).map_err(CliError::internal)?;
            approval.note = Some("Approve & Promote".into());
            let id = Id::new("demo-approval").map_err(|e| CliError::internal(e.to_string()))?;
            let path = StatePath::Approval(task.clone(), id);
            put(&person, path, &approval, format!("{task} approved")).await?;
            say(
                start,
                "person",
                "approved the change (approvals/demo-approval.yaml)",
            );
            approved = true;
        }
    };
    let _ = stop_tx.send(());
    let _ = reconciler.await;
    result
}

/// Commits one spec file as the demo's person and waits until it is on the remote.
async fn put<T: serde::Serialize>(
    person: &StatusWriter,
    path: StatePath,
    value: &T,
    summary: String,
) -> Result<(), CliError> {
    let body =
        crate::state::yaml::to_string(value).map_err(|e| CliError::internal(e.to_string()))?;
    person
        .write(vec![Update::put(path, body, summary)])
        .await
        .map_err(|e| CliError::internal(e.to_string()))?;
    Ok(())
}

/// Prints each notification with the elapsed time, and records it like the log notifier.
#[derive(Debug)]
struct EchoNotifier {
    start: Instant,
    inner: crate::chat::LogNotifier,
}

#[async_trait::async_trait]
impl crate::chat::Notifier for EchoNotifier {
    async fn notify(
        &self,
        n: &crate::chat::Notification,
    ) -> Result<bool, crate::chat::NotifyError> {
        let delivered = self.inner.notify(n).await?;
        if delivered {
            say(self.start, "gaffer", &n.text);
        }
        Ok(delivered)
    }
}
