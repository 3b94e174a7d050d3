//! The command line: one file per subcommand, one [`Command`] enum that dispatches, and one
//! error type with a kind that decides the exit code and hints for the person.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod answer;
mod builders;
pub mod demo;
mod gc;
mod init;
mod lab;
mod new_task;
mod person;
mod plan;
mod reconcile;
mod schema;
mod slack;
pub mod status;
mod usage;
mod validate;

/// gaffer runs AI coding builders from a git state repository.
///
/// Git commits are the API: tasks, questions, answers and approvals are YAML files in a
/// state repository; the reconciler acts on commits and records what happened as commits.
#[derive(Debug, Parser)]
#[command(name = "gaffer", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// gaffer's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a state repository working tree: every file parses, names are valid,
    /// answers match their questions. Exit 0 when valid, 1 when not, 2 on usage errors.
    Validate(validate::ValidateArgs),
    /// Write the JSON Schemas of every state file kind (generated from the types).
    Schema(schema::SchemaArgs),
    /// Create a new state repository: a bare git repo with a first commit.
    Init(init::InitArgs),
    /// Run the reconciler: act on state-repository commits and record the results.
    Reconcile(Box<reconcile::ReconcileArgs>),
    /// Run the whole lifecycle once on a throwaway state repo with the embedded connectors.
    Demo(demo::DemoArgs),
    /// Answer a builder's question (commits answers/<qid>.yaml).
    Answer(answer::AnswerArgs),
    /// Approve & promote a task in review, or (--plan) approve its plan or ask for changes
    /// to it (commits approvals/<id>.yaml naming the review round or plan version).
    Approve(answer::ApproveArgs),
    /// Tell a task's builder something (commits messages/<id>.yaml; the reconciler delivers
    /// it to the running session once, as a reply in the task's Slack thread would).
    Say(answer::SayArgs),
    /// A task's plan (the planning stage, docs/planning.md).
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Show every task's phase and the open questions, from the state remote's head.
    Status(status::StatusArgs),
    /// List the questions waiting for a person, soonest deadline first (in the business time
    /// zone), with the options, the recommended one and how to answer.
    Questions(status::StatusArgs),
    /// Set a task's budget (commits `budget:` in its task.yaml): a task stopped at its budget
    /// carries on in the same session once this is above what it spent.
    Budget(answer::BudgetArgs),
    /// What the builders' model requests used — tokens and cost — by project, task or day,
    /// from the state repository alone, with totals and a per-day bar chart.
    Usage(usage::UsageArgs),
    /// List the OpenCode builders (one per project): tmux target, port, sessions, state and
    /// the last event seen.
    Builders(builders::BuildersArgs),
    /// Run the Slack bot: a thread per task, questions as buttons, `/opencode start`; it
    /// only reads and commits to the state repository.
    ///
    /// Tokens come from the environment or from files, never from the state repository:
    /// SLACK_BOT_TOKEN (xoxb-…) or SLACK_BOT_TOKEN_FILE; for Socket Mode (the default, no
    /// public URL) SLACK_APP_TOKEN (xapp-…, scope connections:write) or SLACK_APP_TOKEN_FILE;
    /// for the Events API (--listen) SLACK_SIGNING_SECRET or SLACK_SIGNING_SECRET_FILE. The
    /// Slack app manifest is in docs/slack.md.
    Slack(slack::SlackArgs),
    /// Create things in a state repository.
    #[command(subcommand)]
    New(NewCommand),
    /// The lab namespaces: list them, clean up old ones.
    #[command(subcommand)]
    Lab(lab::LabCommand),
    /// Remove what finished tasks left on this machine: after retention.worktrees (gaffer.yaml,
    /// default 7d) in Promoted or Cancelled, a task's local branches whose work is on a
    /// remote, merged or set aside (never others: those are listed as kept), and the
    /// worktrees of a project with no other task; then garbage-collect the mirrors. The
    /// reconciler does this every hour; --dry-run says what would go.
    Gc(gc::GcArgs),
    /// A builder pod's workspace sidecar (`gaffer workspace serve`).
    #[command(subcommand)]
    Workspace(builders::WorkspaceCommand),
    /// Run a program with the environment in a file (how builders get their password without
    /// it appearing on a command line).
    #[command(hide = true)]
    ExecEnv(builders::ExecEnvArgs),
}

/// `gaffer new ...`.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// Commit a new task.yaml to a state repository.
    Task(new_task::NewTaskArgs),
}

/// What kind of failure a command had; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The person asked for something invalid (exit 1).
    User,
    /// The command line itself was wrong (exit 2).
    Usage,
    /// Something broke that the person could not have caused (exit 1, says so).
    Internal,
}

/// An error shown to the person running the CLI.
#[derive(Debug)]
pub struct CliError {
    /// The kind, for the exit code.
    pub kind: ErrorKind,
    /// One line saying what went wrong.
    pub message: String,
    /// Suggestions for what to do next.
    pub hints: Vec<String>,
}

impl CliError {
    /// A user error.
    pub fn user(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::User,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Usage,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// An internal error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Internal,
            message: message.into(),
            hints: Vec::new(),
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }
}

impl From<crate::git::GitError> for CliError {
    fn from(e: crate::git::GitError) -> Self {
        CliError::internal(e.to_string())
    }
}

impl From<crate::names::NameError> for CliError {
    fn from(e: crate::names::NameError) -> Self {
        CliError::user(e.to_string())
    }
}

/// What a successful command asks the process to exit with.
pub type CmdResult = Result<ExitCode, CliError>;

/// Parses the command line, runs the command and returns the exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::cmd_validate(args),
        Command::Schema(args) => schema::cmd_schema(args),
        Command::Init(args) => init::cmd_init(args),
        Command::New(NewCommand::Task(args)) => new_task::cmd_new_task(args),
        Command::Status(args) => status::cmd_status(args),
        Command::Questions(args) => status::cmd_questions(args),
        Command::Reconcile(args) => reconcile::cmd_reconcile(*args),
        Command::Demo(args) => demo::cmd_demo(args),
        Command::Answer(args) => answer::cmd_answer(args),
        Command::Approve(args) => answer::cmd_approve(args),
        Command::Say(args) => answer::cmd_say(args),
        Command::Usage(args) => usage::cmd_usage(args),
        Command::Budget(args) => answer::cmd_budget(args),
        Command::Plan(cmd) => plan::cmd_plan(cmd),
        Command::Builders(args) => builders::cmd_builders(args),
        Command::Slack(args) => slack::cmd_slack(args),
        Command::Lab(cmd) => lab::cmd_lab(cmd),
        Command::Gc(args) => gc::cmd_gc(args),
        Command::ExecEnv(args) => builders::cmd_exec_env(args),
        Command::Workspace(cmd) => builders::cmd_workspace(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let prefix = match e.kind {
                ErrorKind::Internal => "internal error",
                _ => "error",
            };
            eprintln!("{prefix}: {}", e.message);
            for h in &e.hints {
                eprintln!("hint: {h}");
            }
            match e.kind {
                ErrorKind::Usage => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}
