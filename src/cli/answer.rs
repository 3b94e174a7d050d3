//! `gaffer answer` and `gaffer approve`: a person's decisions, committed as spec files.

use std::process::ExitCode;

use super::person::PersonArgs;
use super::{CliError, CmdResult};
use crate::names::{Id, Qid, TaskRef};
use crate::state::StatePath;
use crate::state::accept::Answer;
use crate::state::spec::{AnswerSpec, ApprovalSpec, Choice};
use crate::state::yaml::Located;
use crate::store::Update;

/// Arguments of `gaffer answer`.
#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    /// The task, CATEGORY/PROJECT/TASK.
    pub task: String,
    /// The question id, e.g. q-001.
    pub qid: String,
    /// The chosen option's exact label (see `gaffer status`).
    pub choice: String,
    /// A note passed to the builder with the answer.
    #[arg(long)]
    pub note: Option<String>,
    /// Who, where.
    #[command(flatten)]
    pub person: PersonArgs,
}

/// Arguments of `gaffer approve`.
#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The task, CATEGORY/PROJECT/TASK.
    pub task: String,
    /// A comment.
    #[arg(long)]
    pub note: Option<String>,
    /// Approve the task's plan (its current version, from plan.yaml) instead of its review.
    #[arg(long)]
    pub plan: bool,
    /// With --plan: ask the planner for these changes instead of approving.
    #[arg(long, requires = "plan", value_name = "TEXT")]
    pub changes: Option<String>,
    /// Who, where.
    #[command(flatten)]
    pub person: PersonArgs,
}

/// Runs `gaffer answer`.
pub fn cmd_answer(args: AnswerArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    let qid = Qid::new(&args.qid)?;
    let (snapshot, _tmp) = super::status::open_snapshot(&args.person.state, &args.person.branch)?;
    let entry = find_task(&snapshot, &task, &args.person.state)?;
    let question = entry
        .questions
        .get(&qid)
        .ok_or_else(|| CliError::user(format!("task {task} has no question {qid}")))?;
    // The argument is an option's label, or free text when the question takes that.
    let as_choice = question.accepts(&Answer::Choice(std::slice::from_ref(&args.choice)));
    if as_choice.is_err() && question.accepts(&Answer::Text(&args.choice)).is_err() {
        let options: Vec<&str> = question.options.iter().map(|o| o.label.as_str()).collect();
        return Err(CliError::user(format!(
            "{:?} is not an option of {qid}; the options are: {}",
            args.choice,
            options.join(" | ")
        ))
        .hint("give the exact label, quoted, e.g. gaffer answer ... \"RS256 (Recommended)\""));
    }
    let (identity, by) = args.person.who();
    if let Some(settings) = &snapshot.settings
        && !settings
            .authors
            .answers
            .iter()
            .any(|a| a == &identity.email)
    {
        // The reconciler would ignore it: say so now and commit nothing.
        return Err(CliError::user(format!(
            "{} is not listed in gaffer.yaml authors.answers, so the reconciler would ignore \
             this answer",
            identity.email
        ))
        .hint("answer as a listed author: --by EMAIL, or git config user.email EMAIL"));
    }
    let (choice, text) = if as_choice.is_ok() {
        (Some(Located::new(Choice::One(args.choice.clone()))), None)
    } else {
        (None, Some(args.choice.clone()))
    };
    let answer = AnswerSpec {
        choice,
        text,
        note: args.note.clone(),
        by: Some(by.clone()),
        at: Some(jiff::Timestamp::now()),
    };
    let body =
        crate::state::yaml::to_string(&answer).map_err(|e| CliError::internal(e.to_string()))?;
    let path = StatePath::Answer(task.clone(), qid.clone());
    let commit = args.person.commit(
        identity,
        vec![Update::put(
            path.clone(),
            body,
            format!("{task} {qid} answered by {by}"),
        )],
    )?;
    println!("committed {} ({})", path.to_path(), &commit[..12]);
    Ok(ExitCode::SUCCESS)
}

/// Runs `gaffer approve`.
pub fn cmd_approve(args: ApproveArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    let (snapshot, _tmp) = super::status::open_snapshot(&args.person.state, &args.person.branch)?;
    if snapshot.task(&task).and_then(|t| t.spec.as_ref()).is_none() {
        return Err(CliError::user(format!(
            "task {task} does not exist in {}",
            args.person.state
        )));
    }
    let (identity, by) = args.person.who();
    let now = jiff::Timestamp::now();
    let (id, mut approval) = if args.plan {
        // It names the plan version it decides, so a later version is never approved by it.
        let plan = snapshot.task(&task).and_then(|t| t.plan.as_deref());
        let approval = ApprovalSpec::for_plan(&by, plan, args.changes.clone())
            .map_err(|why| CliError::user(format!("{task}'s plan cannot be decided: {why}")))?;
        let kind = if args.changes.is_some() {
            "changes"
        } else {
            "ok"
        };
        let version = approval.plan.unwrap_or_default();
        let id = Id::new(format!("plan-{version}-{kind}-cli-{}", now.as_second()))?;
        (id, approval)
    } else {
        // The approval names what it approves: this review round at these heads.
        let status = snapshot.task(&task).and_then(|t| t.status.as_deref());
        let approval = ApprovalSpec::for_review(&by, status)
            .map_err(|why| CliError::user(format!("{task} cannot be approved: {why}")))?;
        (Id::new(format!("cli-{}", now.as_second()))?, approval)
    };
    approval.note = args.note.clone();
    let body =
        crate::state::yaml::to_string(&approval).map_err(|e| CliError::internal(e.to_string()))?;
    let path = StatePath::Approval(task.clone(), id);
    let commit = args.person.commit(
        identity,
        vec![Update::put(
            path.clone(),
            body,
            match (&approval.plan, &approval.changes) {
                (Some(v), Some(_)) => format!("{task} plan v{v}: changes asked by {by}"),
                (Some(v), None) => format!("{task} plan v{v} approved by {by}"),
                _ => format!("{task} approved by {by}"),
            },
        )],
    )?;
    println!("committed {} ({})", path.to_path(), &commit[..12]);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `gaffer say`.
#[derive(Debug, clap::Args)]
pub struct SayArgs {
    /// The task, CATEGORY/PROJECT/TASK.
    pub task: String,
    /// What to tell its builder (quote it). It reaches the running session once, after the
    /// builder's current step if it is mid-turn.
    pub text: String,
    /// Who, where.
    #[command(flatten)]
    pub person: PersonArgs,
}

/// Runs `gaffer say`: commits `messages/<id>.yaml`.
pub fn cmd_say(args: SayArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    let (snapshot, _tmp) = super::status::open_snapshot(&args.person.state, &args.person.branch)?;
    let entry = snapshot
        .task(&task)
        .filter(|t| t.spec.is_some())
        .ok_or_else(|| {
            CliError::user(format!(
                "task {task} does not exist in {}",
                args.person.state
            ))
        })?;
    let phase = entry.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if let Some(why) = crate::state::spec::refuses_messages(phase) {
        return Err(CliError::user(format!("{task} takes no messages: {why}")));
    }
    let (identity, by) = args.person.who();
    listed(&snapshot, &identity.email, "deliver this message")?;
    let now = jiff::Timestamp::now();
    let message = crate::state::spec::MessageSpec {
        text: args.text.clone(),
        by: Some(by.clone()),
        at: Some(now),
    };
    if let Some(why) = message.problem() {
        return Err(CliError::user(why));
    }
    let id = Id::new(format!(
        "cli-{}-{:06}",
        now.as_second(),
        now.subsec_microsecond()
    ))?;
    let body =
        crate::state::yaml::to_string(&message).map_err(|e| CliError::internal(e.to_string()))?;
    let path = StatePath::Message(task.clone(), id);
    let mut update = Update::put(path.clone(), body, format!("{task}: message from {by}"));
    update.create_only = true;
    let commit = args.person.commit(identity, vec![update])?;
    println!("committed {} ({})", path.to_path(), &commit[..12]);
    if !matches!(
        phase,
        crate::state::status::Phase::Running
            | crate::state::status::Phase::AwaitingAnswer
            | crate::state::status::Phase::Planning
    ) {
        println!("the builder is not running now ({phase}): it gets the message when it runs");
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `gaffer budget`.
#[derive(Debug, clap::Args)]
pub struct BudgetArgs {
    /// The task, CATEGORY/PROJECT/TASK.
    pub task: String,
    /// Its new budget: money (`$10`, `$2.50`) or tokens (`500k`, `2M tokens`). A task stopped
    /// at its budget carries on in the same session once this is above what it spent.
    #[arg(long, value_name = "AMOUNT")]
    pub set: String,
    /// Who, where.
    #[command(flatten)]
    pub person: PersonArgs,
}

/// Runs `gaffer budget`: commits the task's `budget:` in `task.yaml`, the rest of the file as
/// it was.
pub fn cmd_budget(args: BudgetArgs) -> CmdResult {
    let task = TaskRef::parse(&args.task)?;
    let amount = crate::state::spec::Amount::parse(&args.set).map_err(CliError::user)?;
    let (snapshot, _tmp) = super::status::open_snapshot(&args.person.state, &args.person.branch)?;
    let entry = find_task(&snapshot, &task, &args.person.state)?;
    let spec = entry
        .spec
        .as_deref()
        .ok_or_else(|| CliError::user(format!("{task}'s task.yaml is not valid; fix it first")))?;
    let (identity, by) = args.person.who();
    listed(&snapshot, &identity.email, "take this budget")?;
    let mut next = spec.clone();
    next.budget = Some(crate::state::spec::BudgetSpec {
        task: Some(amount),
        by: None,
        ..spec.budget.clone().unwrap_or_default()
    });
    let path = StatePath::TaskSpec(task.clone());
    let raw = read_raw(&args.person.state, &args.person.branch, &path.to_path())?;
    let value = format!("{{task: \"{amount}\"}}");
    let body = raw
        .map(|r| crate::state::yaml::set_top_level(&r, "budget", &value))
        .filter(|t| {
            crate::state::yaml::parse::<crate::state::spec::TaskSpec>(t.as_bytes()).ok()
                == Some(next.clone())
        })
        .map_or_else(|| crate::state::spec::task_file(&next), Ok)
        .map_err(CliError::internal)?;
    let spent = entry
        .status
        .as_ref()
        .and_then(|s| s.usage.clone())
        .unwrap_or_default();
    let commit = args.person.commit(
        identity,
        vec![Update::put(
            path.clone(),
            body,
            format!("{task}: budget {amount} (set by {by})"),
        )],
    )?;
    println!("committed {} ({})", path.to_path(), &commit[..12]);
    println!("spent so far: {}", amount.show_spent(&spent));
    Ok(ExitCode::SUCCESS)
}

/// The text of `path` at the head of `state`'s `branch`.
fn read_raw(state: &str, branch: &str, path: &str) -> Result<Option<String>, CliError> {
    let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
    let transport = crate::store::Transport::open(state, branch, tmp.path(), false)
        .map_err(|e| CliError::user(format!("cannot read {state}: {e}")))?;
    let Some(head) = transport
        .head()
        .map_err(|e| CliError::user(e.to_string()))?
    else {
        return Ok(None);
    };
    let bytes = crate::store::read::read_file(&transport.repo(), head, path)
        .map_err(|e| CliError::internal(e.to_string()))?;
    Ok(bytes.and_then(|b| String::from_utf8(b).ok()))
}

/// Refuses, before anything is committed, a person the reconciler would not listen to.
fn listed(
    snapshot: &crate::state::snapshot::Snapshot,
    email: &str,
    what: &str,
) -> Result<(), CliError> {
    match &snapshot.settings {
        Some(settings) if !settings.authors.answers.iter().any(|a| a == email) => {
            Err(CliError::user(format!(
                "{email} is not listed in gaffer.yaml authors.answers, so the reconciler would \
                 not {what}"
            ))
            .hint("act as a listed author: --by EMAIL, or git config user.email EMAIL"))
        }
        _ => Ok(()),
    }
}

/// The task's files, or an error naming the state repository.
fn find_task<'a>(
    snapshot: &'a crate::state::snapshot::Snapshot,
    task: &TaskRef,
    state: &str,
) -> Result<&'a crate::state::snapshot::TaskEntry, CliError> {
    snapshot
        .task(task)
        .ok_or_else(|| CliError::user(format!("task {task} does not exist in {state}")))
}
