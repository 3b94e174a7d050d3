//! `gaffer new task CATEGORY/PROJECT/TASK --title ... --state URL`: commit a task.yaml.

use std::process::ExitCode;

use super::{CliError, CmdResult};
use crate::git::{self, Git};
use crate::names::TaskRef;
use crate::state::StatePath;
use crate::state::snapshot::{RawContent, Snapshot};
use crate::state::spec::{Priority, TaskSpec};

/// Arguments of `gaffer new task`.
#[derive(Debug, clap::Args)]
pub struct NewTaskArgs {
    /// The task as CATEGORY/PROJECT/TASK, e.g. ai-dev/proj-api-service/jwt-auth.
    pub task: String,
    /// One line saying what to do.
    #[arg(long)]
    pub title: String,
    /// The details the builder needs.
    #[arg(long, default_value = "")]
    pub description: String,
    /// low, medium, high or urgent.
    #[arg(long, default_value = "medium")]
    pub priority: Priority,
    /// The state repository (a path or URL that `git` can fetch from and push to).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

/// How many times a rejected push is retried (someone else pushed in between).
const PUSH_ATTEMPTS: u32 = 20;

/// Runs `gaffer new task`.
pub fn cmd_new_task(args: NewTaskArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    if args.title.trim().is_empty() {
        return Err(CliError::user("--title must not be empty"));
    }
    Git::check_version()?;
    let spec = TaskSpec {
        title: args.title.trim().to_string(),
        description: args.description.clone(),
        priority: args.priority,
        suspend: false,
        cancel: false,
        retry: 0,
        questions: None,
    };
    let body =
        crate::state::yaml::to_string(&spec).map_err(|e| CliError::internal(e.to_string()))?;
    let text =
        format!("# yaml-language-server: $schema=../../../../../schema/task.schema.json\n{body}");
    let task_path = StatePath::TaskSpec(task.clone()).to_path();
    let project_path = StatePath::Project(task.project.clone()).to_path();

    let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
    let g = Git::new(tmp.path());
    g.run(["init", "--quiet", "--bare"])?;
    let g = git::identity_env(g);
    let remote_ref = format!("refs/heads/{}", args.branch);
    for attempt in 1..=PUSH_ATTEMPTS {
        g.run([
            "fetch",
            "--quiet",
            "--no-tags",
            &args.state,
            &format!("+{remote_ref}:refs/gaffer/base"),
        ])
        .map_err(|e| {
            CliError::user(format!(
                "cannot fetch branch {} of {}: {e}",
                args.branch, args.state
            ))
            .hint("is --state a state repository made by `gaffer init`?")
        })?;
        let base = g.run(["rev-parse", "refs/gaffer/base"])?;
        if g.run(["cat-file", "-e", &format!("{base}:{project_path}")])
            .is_err()
        {
            return Err(CliError::user(format!(
                "project {} does not exist in {} (no {project_path})",
                task.project, args.state
            )));
        }
        if g.run(["cat-file", "-e", &format!("{base}:{task_path}")])
            .is_ok()
        {
            return Err(CliError::user(format!("task {task} already exists ({task_path})"))
                .hint("choose another task name; existing tasks are changed by editing their task.yaml"));
        }
        let snapshot = Snapshot::from_files([(
            task_path.clone(),
            RawContent::Blob(text.clone().into_bytes()),
        )]);
        if let Some(p) = snapshot.problems_of(&task_path).first() {
            return Err(CliError::user(format!("the task would be invalid: {p}")));
        }
        let message = format!("gaffer: new task {task}\n\n{}", spec.title);
        let commit = git::commit_files(
            &g,
            Some(&base),
            &[(task_path.clone(), Some(text.clone().into_bytes()))],
            &message,
        )?;
        match g.push(&args.state, &commit, &remote_ref)? {
            git::PushOutcome::Pushed => {
                println!("committed {task_path}");
                println!("  {} on {} of {}", &commit[..12], args.branch, args.state);
                return Ok(ExitCode::SUCCESS);
            }
            git::PushOutcome::Rejected(why) => {
                eprintln!(
                    "push rejected ({why}); fetching and retrying ({attempt}/{PUSH_ATTEMPTS})"
                );
                std::thread::sleep(std::time::Duration::from_millis(
                    20 * u64::from(attempt) + u64::from(std::process::id() % 17),
                ));
            }
        }
    }
    Err(CliError::user(format!(
        "push to {} was rejected {PUSH_ATTEMPTS} times; the state repository is very busy",
        args.state
    )))
}
