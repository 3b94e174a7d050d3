//! `gaffer gc`: removes what finished tasks left on this machine (their worktrees, local
//! branches whose work is safe elsewhere) and garbage-collects the mirrors; the reconciler
//! does the same every hour after `retention.worktrees`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::lab::{StateArgs, parse_age};
use super::status::open_snapshot;
use super::{CliError, CmdResult};
use crate::workspace::Workspaces;
use crate::workspace::gc;

/// Arguments of `gaffer gc`.
#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Where the state is.
    #[command(flatten)]
    pub state: StateArgs,
    /// gaffer's own data (default: $XDG_STATE_HOME/gaffer), as the reconciler was given.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where project workspaces are (default: <data-dir>/builders).
    #[arg(long)]
    pub builders: Option<PathBuf>,
    /// Clean up after tasks Promoted or Cancelled this long ago (14d, 36h, 0s) instead of
    /// gaffer.yaml's retention.worktrees (default 7d).
    #[arg(long, value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Say what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gaffer gc`.
pub fn cmd_gc(args: GcArgs) -> CmdResult {
    let (snapshot, _tmp) = open_snapshot(&args.state.state, &args.state.branch)?;
    let Some(settings) = &snapshot.settings else {
        return Err(CliError::user(format!(
            "{} has no valid gaffer.yaml: nothing to go by (see gaffer validate)",
            args.state.state
        )));
    };
    let keep = match args.older_than {
        Some(d) => jiff::SignedDuration::try_from(d)
            .map_err(|e| CliError::user(format!("--older-than: {e}")))?,
        None => settings.retention.worktrees(),
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(super::status::default_data_dir);
    let builders = args
        .builders
        .clone()
        .unwrap_or_else(|| data_dir.join("builders"));
    if !builders.is_dir() {
        return Err(CliError::user(format!(
            "{}: no such directory (pass the reconciler's --builders or --data-dir)",
            builders.display()
        )));
    }
    let projects = gc::projects_of(&snapshot);
    let report = gc::collect(
        &Workspaces::new(&builders),
        Some(&data_dir.join("opencode")),
        &projects,
        jiff::Timestamp::now(),
        keep,
        args.dry_run,
    )
    .map_err(|e| CliError::user(e.to_string()))?;
    if args.json {
        let out =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::internal(e.to_string()))?;
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    let (removed, deleted) = if args.dry_run {
        ("would remove", "would delete")
    } else {
        ("removed", "deleted")
    };
    for w in &report.worktrees {
        println!("{removed} worktree {w}");
    }
    for b in &report.branches {
        println!("{deleted} branch {b}");
    }
    for k in &report.kept {
        println!("kept branch {k}");
    }
    for s in &report.skipped {
        println!("skipped {s}");
    }
    for m in &report.mirrors {
        println!("garbage-collected {m}");
    }
    if report.is_empty() {
        println!(
            "nothing to clean up: no task Promoted or Cancelled {keep:#} ago or more left anything"
        );
    } else {
        println!(
            "{} worktree(s) and {} branch(es) {}; {} branch(es) kept",
            report.worktrees.len(),
            report.branches.len(),
            if args.dry_run { "to remove" } else { "removed" },
            report.kept.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
