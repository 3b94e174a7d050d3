//! `gaffer new task CATEGORY/PROJECT/TASK --title ... --state URL`: commit a task.yaml.

use std::process::ExitCode;

use super::person::PersonArgs;
use super::{CliError, CmdResult};
use crate::names::TaskRef;
use crate::state::StatePath;
use crate::state::spec::{Priority, TaskSpec};
use crate::store::Update;

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
    /// Plan it first (none, quick, full, party); default: the project's or gaffer.yaml's
    /// `plan.mode`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub plan: Option<crate::state::planning::PlanMode>,
    /// Who, where.
    #[command(flatten)]
    pub person: PersonArgs,
}

/// Runs `gaffer new task`.
pub fn cmd_new_task(args: NewTaskArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    if args.title.trim().is_empty() {
        return Err(CliError::user("--title must not be empty"));
    }
    let spec = TaskSpec {
        title: args.title.trim().to_string(),
        description: args.description.clone(),
        priority: args.priority,
        suspend: false,
        cancel: false,
        retry: 0,
        questions: None,
        budget: None,
        plan: args.plan.map(|mode| crate::state::planning::PlanOverrides {
            mode: Some(mode),
            document_over: None,
        }),
        parent: None,
        story: None,
    };
    let text = crate::state::spec::task_file(&spec).map_err(CliError::internal)?;
    let path = StatePath::TaskSpec(task.clone());
    let p = &args.person;
    let (snapshot, _tmp) = super::status::open_snapshot(&p.state, &p.branch)
        .map_err(|e| e.hint("is --state a state repository made by `gaffer init`?"))?;
    if snapshot
        .projects
        .get(&task.project)
        .is_none_or(|pe| !pe.spec_present)
    {
        return Err(CliError::user(format!(
            "project {} does not exist in {} (no {})",
            task.project,
            p.state,
            StatePath::Project(task.project.clone()).to_path()
        )));
    }
    if snapshot.task(&task).is_some_and(|e| e.spec_present) {
        return Err(already_exists(&task, &path));
    }
    // Someone may create the same task between the check and the commit: create_only
    // never overwrites it, and the commit reports it.
    let (identity, _) = p.who();
    let mut update = Update::put(path.clone(), text, format!("new task {task}"));
    update.create_only = true;
    let commit = p.commit(identity, vec![update]).map_err(|e| {
        if e.message.ends_with("already exists") {
            already_exists(&task, &path)
        } else {
            e
        }
    })?;
    println!("committed {}", path.to_path());
    println!("  {} on {} of {}", &commit[..12], p.branch, p.state);
    Ok(ExitCode::SUCCESS)
}

fn already_exists(task: &TaskRef, path: &StatePath) -> CliError {
    CliError::user(format!("task {task} already exists ({})", path.to_path()))
        .hint("choose another task name; existing tasks are changed by editing their task.yaml")
}
