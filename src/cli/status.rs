//! `gaffer status --state URL [--output json]`: what every task is doing, from the remote's head.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::{CliError, CmdResult};
use crate::state::snapshot::Snapshot;
use crate::state::status::QuestionState;
use crate::store::{Tracker, Transport};

/// Arguments of `gaffer status` and `gaffer questions`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The state repository (local path or URL).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = super::validate::Output::Text)]
    pub output: super::validate::Output,
}

#[derive(Debug, Serialize)]
struct TaskRow {
    task: String,
    title: String,
    priority: String,
    phase: String,
    reason: Option<String>,
    since: Option<String>,
    open_questions: Vec<QuestionRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<PlanRow>,
    /// Where to watch and edit it (name, URL or command), for tasks still going on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    links: Vec<crate::state::status::Link>,
    /// What its model requests used.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<crate::state::status::Usage>,
}

/// A task's plan, as `gaffer status` shows it.
#[derive(Debug, Serialize)]
struct PlanRow {
    version: u32,
    state: String,
    step: String,
    documents: Vec<String>,
    waiting: bool,
}

#[derive(Debug, Serialize)]
struct QuestionRow {
    qid: String,
    state: String,
    kind: String,
    text: String,
    recommended: String,
    options: Vec<String>,
    deadline: Option<String>,
    #[serde(skip)]
    deadline_at: Option<jiff::Timestamp>,
    problems: Vec<String>,
}

/// Opens `state` for a one-off read: in place when local, else a clone in a temp dir.
pub(crate) fn open_snapshot(
    state: &str,
    branch: &str,
) -> Result<(Snapshot, Option<tempfile::TempDir>), CliError> {
    crate::git::Git::check_version()?;
    let tmp = tempfile::tempdir().map_err(|e| CliError::internal(e.to_string()))?;
    let transport = Transport::open(state, branch, tmp.path(), false)
        .map_err(|e| CliError::user(format!("cannot read {state}: {e}")))?;
    let head = transport
        .head()
        .map_err(|e| CliError::user(e.to_string()))?
        .ok_or_else(|| CliError::user(format!("{state} has no branch {branch}")))?;
    let mut tracker = Tracker::new(None, None);
    tracker
        .resync(&transport.repo(), Some(head))
        .map_err(|e| CliError::user(e.to_string()))?;
    Ok((tracker.snapshot().clone(), Some(tmp)))
}

fn rows(snapshot: &Snapshot) -> Vec<TaskRow> {
    let tz = snapshot
        .settings
        .as_ref()
        .and_then(|s| s.business_hours.time_zone().ok())
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let fmt = |t: jiff::Timestamp| {
        t.to_zoned(tz.clone())
            .strftime("%a %d %b %H:%M %Z")
            .to_string()
    };
    snapshot
        .tasks()
        .map(|(t, e)| {
            let status = e.status.as_ref();
            TaskRow {
                task: t.to_string(),
                title: e
                    .spec
                    .as_ref()
                    .map(|s| s.title.clone())
                    .unwrap_or_else(|| "(invalid task.yaml)".into()),
                priority: e
                    .spec
                    .as_ref()
                    .map(|s| format!("{:?}", s.priority).to_lowercase())
                    .unwrap_or_default(),
                phase: status.map_or("Pending".into(), |s| s.phase.to_string()),
                reason: status.and_then(|s| s.reason.clone()),
                since: status.and_then(|s| s.phase_since).map(fmt),
                open_questions: e
                    .questions
                    .iter()
                    .filter(|(_, q)| {
                        matches!(q.state, QuestionState::Open | QuestionState::Provisional)
                    })
                    .map(|(qid, q)| QuestionRow {
                        qid: qid.to_string(),
                        state: format!("{:?}", q.state).to_lowercase(),
                        kind: format!("{:?}", q.kind).to_lowercase(),
                        text: q.text.clone(),
                        recommended: q.recommended.clone(),
                        options: q.options.iter().map(|o| o.label.clone()).collect(),
                        deadline: q.deadline.map(fmt),
                        deadline_at: q.deadline,
                        problems: q.problems.clone(),
                    })
                    .collect(),
                usage: status.and_then(|s| s.usage.clone()),
                links: status
                    .filter(|s| {
                        !matches!(
                            s.phase,
                            crate::state::status::Phase::Promoted
                                | crate::state::status::Phase::Cancelled
                        )
                    })
                    .map(|s| s.links.clone())
                    .unwrap_or_default(),
                plan: e.plan.as_ref().map(|p| PlanRow {
                    version: p.version,
                    state: format!("{:?}", p.state),
                    step: p.step.clone(),
                    documents: p.documents.iter().map(|d| d.path.clone()).collect(),
                    waiting: status.map(|s| s.phase)
                        == Some(crate::state::status::Phase::AwaitingPlanApproval),
                }),
            }
        })
        .collect()
}

/// The plans waiting for a person's approval, and how to decide them.
fn render_plans(rows: &[TaskRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for r in rows {
        let Some(p) = r.plan.as_ref().filter(|p| p.waiting) else {
            continue;
        };
        if out.is_empty() {
            out.push_str("\nPLANS WAITING FOR APPROVAL\n");
        }
        let _ = writeln!(
            out,
            "{} plan v{} ({}): {}\n    read:    gaffer plan show {}\n    approve: gaffer approve --plan {}\n    or:      gaffer approve --plan {} --changes \"…\"",
            r.task,
            p.version,
            p.step,
            p.documents.join(", "),
            r.task,
            r.task,
            r.task
        );
    }
    out
}

/// Runs `gaffer status`.
pub fn cmd_status(args: StatusArgs) -> CmdResult {
    let (snapshot, _tmp) = open_snapshot(&args.state, &args.branch)?;
    let rows = rows(&snapshot);
    let problems = snapshot.all_problems();
    if matches!(args.output, super::validate::Output::Json) {
        let doc = serde_json::json!({ "tasks": rows, "problems": problems });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| CliError::internal(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}{}", render(&rows), render_plans(&rows));
    for w in snapshot.settings.iter().flat_map(|s| s.warnings()) {
        println!("\n⚠ gaffer.yaml: {w}");
    }
    if !problems.is_empty() {
        println!(
            "\n{} problem{} in the state repository (see `gaffer validate` on a checkout):",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        for p in problems.iter().take(10) {
            println!("  {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `gaffer questions`: the questions waiting for a person, soonest deadline first.
pub fn cmd_questions(args: StatusArgs) -> CmdResult {
    let (snapshot, _tmp) = open_snapshot(&args.state, &args.branch)?;
    let rows = rows(&snapshot);
    let mut open: Vec<(&TaskRow, &QuestionRow)> = rows
        .iter()
        .flat_map(|r| r.open_questions.iter().map(move |q| (r, q)))
        .collect();
    open.sort_by_key(|(r, q)| (q.deadline_at, r.task.clone(), q.qid.clone()));
    if matches!(args.output, super::validate::Output::Json) {
        let doc: Vec<_> = open
            .iter()
            .map(|(r, q)| serde_json::json!({"task": r.task, "question": q}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).map_err(|e| CliError::internal(e.to_string()))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    print!(
        "{}{}",
        render_questions(&open, jiff::Timestamp::now()),
        render_plans(&rows)
    );
    Ok(ExitCode::SUCCESS)
}

fn render_questions(open: &[(&TaskRow, &QuestionRow)], now: jiff::Timestamp) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if open.is_empty() {
        out.push_str("no questions waiting\n");
        return out;
    }
    for (r, q) in open {
        let left = q.deadline_at.map(|d| {
            let mins = (d.as_second() - now.as_second()) / 60;
            if mins <= 0 {
                "due now".to_string()
            } else if mins < 120 {
                format!("in {mins} min")
            } else {
                format!("in {}h{:02}", mins / 60, mins % 60)
            }
        });
        let going_on = if q.state == "provisional" {
            " — the agent went on with it"
        } else {
            " — the agent waits"
        };
        let _ = writeln!(out, "{} {} ({}{going_on})", r.task, q.qid, q.kind);
        let _ = writeln!(out, "  {}", q.text);
        for o in &q.options {
            let mark = if *o == q.recommended {
                "  ← recommended"
            } else {
                ""
            };
            let _ = writeln!(out, "  • {o}{mark}");
        }
        let _ = writeln!(
            out,
            "  deadline {} ({}); then: {}",
            q.deadline.as_deref().unwrap_or("none"),
            left.as_deref().unwrap_or("-"),
            q.recommended
        );
        for p in &q.problems {
            let _ = writeln!(out, "  ! {p}");
        }
        let _ = writeln!(
            out,
            "  answer: gaffer answer {} {} {:?}",
            r.task, q.qid, q.recommended
        );
    }
    out
}

fn render(rows: &[TaskRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("no tasks yet\n");
        return out;
    }
    let w_task = rows.iter().map(|r| r.task.len()).max().unwrap_or(4).max(4);
    let w_phase = rows.iter().map(|r| r.phase.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "{:<w_task$}  {:<w_phase$}  {:<8}  {:<22}  TITLE",
        "TASK", "PHASE", "PRIORITY", "SINCE"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<w_task$}  {:<w_phase$}  {:<8}  {:<22}  {}",
            r.task,
            r.phase,
            r.priority,
            r.since.as_deref().unwrap_or("-"),
            r.title
        );
    }
    if rows.iter().any(|r| r.usage.is_some()) {
        let _ = writeln!(out, "\nUSAGE (gaffer usage for totals by project and day)");
        for r in rows {
            if let Some(u) = &r.usage {
                let _ = writeln!(
                    out,
                    "{:<w_task$}  {} in {} requests",
                    r.task,
                    u.summary(),
                    u.requests
                );
            }
        }
    }
    if rows.iter().any(|r| !r.links.is_empty()) {
        let _ = writeln!(out, "\nLINKS");
        let w = rows
            .iter()
            .flat_map(|r| r.links.iter().map(|l| l.name.len()))
            .max()
            .unwrap_or(4);
        for r in rows.iter().filter(|r| !r.links.is_empty()) {
            let _ = writeln!(out, "{}", r.task);
            for l in &r.links {
                let _ = writeln!(out, "    {:<w$}  {}", l.name, l.url);
            }
        }
    }
    let open: Vec<_> = rows
        .iter()
        .flat_map(|r| r.open_questions.iter().map(move |q| (r, q)))
        .collect();
    if !open.is_empty() {
        let _ = writeln!(out, "\nOPEN QUESTIONS");
        for (r, q) in open {
            let _ = writeln!(
                out,
                "{} {} [{}] deadline {} · recommended: {}\n    {}",
                r.task,
                q.qid,
                q.state,
                q.deadline.as_deref().unwrap_or("none"),
                q.recommended,
                q.text
            );
        }
    }
    out
}

/// The default data directory: `$XDG_STATE_HOME/gaffer` or `~/.local/state/gaffer`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("gaffer");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/gaffer")
}
