//! `gaffer plan show`: a task's plan as the state repository has it.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{CliError, CmdResult};
use crate::names::TaskRef;

/// `gaffer plan ...`.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Print a task's plan: its version and state, then every document (from the state
    /// remote's head).
    Show(PlanShowArgs),
}

/// `gaffer plan show`.
#[derive(Debug, Args)]
pub struct PlanShowArgs {
    /// The task, CATEGORY/PROJECT/TASK.
    pub task: String,
    /// The state repository (local path or URL).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
}

/// Runs `gaffer plan ...`.
pub fn cmd_plan(cmd: PlanCommand) -> CmdResult {
    let PlanCommand::Show(args) = cmd;
    let task = TaskRef::parse(&args.task)?;
    let (snapshot, _tmp) = super::status::open_snapshot(&args.state, &args.branch)?;
    let entry = snapshot
        .task(&task)
        .ok_or_else(|| CliError::user(format!("task {task} does not exist in {}", args.state)))?;
    let Some(plan) = entry.plan.as_deref() else {
        return Err(CliError::user(format!("task {task} has no plan yet")).hint(
            "a task is planned when plan.mode (gaffer.yaml, project.yaml or task.yaml) is not none",
        ));
    };
    print!("{}", render(&task, plan, &entry.plan_docs));
    Ok(ExitCode::SUCCESS)
}

fn render(
    task: &TaskRef,
    plan: &crate::state::planning::PlanStatus,
    docs: &std::collections::BTreeMap<String, String>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let state = match (&plan.approved, plan.state) {
        (Some(a), _) => format!("approved by {} ({})", a.by, a.file),
        (None, s) => format!("{s:?}"),
    };
    let _ = writeln!(
        out,
        "{task} plan v{} — {} ({}), {state}",
        plan.version, plan.step, plan.mode
    );
    if !plan.matches(docs) {
        let _ = writeln!(
            out,
            "(the documents were edited since v{}: the edit goes to the planner next)",
            plan.version
        );
    }
    for (path, text) in docs {
        let _ = writeln!(out, "\n=== {path} ===\n{}", text.trim_end());
    }
    if docs.is_empty() {
        out.push_str("(no documents yet)\n");
    }
    out
}
