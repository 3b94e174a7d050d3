//! `gaffer builders` (what runs where) and the hidden `gaffer exec-env`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{CliError, CmdResult};
use crate::agent::opencode::{self, OpenCode, tmux::Tmux};

/// Arguments of `gaffer builders`.
#[derive(Debug, clap::Args)]
pub struct BuildersArgs {
    /// gaffer's data directory, as given to `gaffer reconcile` (default: $XDG_STATE_HOME/gaffer).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The tmux socket, as given to `gaffer reconcile`.
    #[arg(long, env = "GAFFER_TMUX_SOCKET")]
    pub tmux_socket: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row of `gaffer builders`.
#[derive(Debug, serde::Serialize)]
struct Row {
    project: String,
    tmux: String,
    attach: String,
    port: u16,
    state: String,
    sessions: Vec<(String, String, String)>,
    last_event: Option<String>,
}

/// Runs `gaffer builders`.
pub fn cmd_builders(args: BuildersArgs) -> CmdResult {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(super::status::default_data_dir);
    let state_dir = data_dir.join("opencode");
    let records = OpenCode::records(&state_dir).map_err(|e| CliError::internal(e.to_string()))?;
    let tmux = Tmux::new(args.tmux_socket.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::internal(e.to_string()))?;
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        for r in &records {
            let up = tmux.has_session(&r.tmux).await.unwrap_or(false);
            let client = OpenCode::client_for(&state_dir, r);
            let health = match (&client, up) {
                (Some(c), true) => c
                    .health_within(std::time::Duration::from_secs(3))
                    .await
                    .ok(),
                _ => None,
            };
            let statuses = match (&client, &health) {
                (Some(c), Some(_)) => c.statuses().await.unwrap_or_default(),
                _ => Default::default(),
            };
            let waiting: Vec<String> = match (&client, &health) {
                (Some(c), Some(_)) => c
                    .questions()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|q| q.session_id)
                    .chain(
                        c.permissions()
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|p| p.session_id),
                    )
                    .collect(),
                _ => Vec::new(),
            };
            let state = match (&health, r.stopped, up) {
                (Some(h), _, _) => format!("up (opencode {})", h.version),
                (None, true, _) => "stopped".to_string(),
                (None, false, true) => "not answering".to_string(),
                (None, false, false) => "down".to_string(),
            };
            let sessions = r
                .sessions
                .iter()
                .map(|(task, s)| {
                    let st = if health.is_none() {
                        "-".to_string()
                    } else if waiting.contains(&s.id) {
                        "waiting for an answer".to_string()
                    } else {
                        statuses
                            .get(&s.id)
                            .map_or("idle".to_string(), |st| st.kind.clone())
                    };
                    (task.clone(), s.id.clone(), st)
                })
                .collect();
            let last_event = opencode::last_event(&state_dir, r).map(|(kind, ms)| {
                let when = jiff::Timestamp::from_millisecond(ms)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_default();
                format!("{kind} at {when}")
            });
            rows.push(Row {
                project: r.project.clone(),
                tmux: r.tmux.clone(),
                attach: tmux.attach_command(&r.tmux),
                port: r.port,
                state,
                sessions,
                last_event,
            });
        }
        rows
    });
    if args.json {
        let text =
            serde_json::to_string_pretty(&rows).map_err(|e| CliError::internal(e.to_string()))?;
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no builders recorded in {} (they start when a runtime: opencode task runs)",
            state_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        println!("{}  port {}  {}", r.project, r.port, r.state);
        println!("  attach: {}", r.attach);
        for (task, id, st) in &r.sessions {
            println!("  task {task}: session {id} ({st})");
        }
        if let Some(e) = &r.last_event {
            println!("  last event: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `gaffer exec-env`.
#[derive(Debug, clap::Args)]
pub struct ExecEnvArgs {
    /// Files of KEY=VALUE lines to add to the environment (repeatable; a missing file is
    /// empty).
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

/// Runs `gaffer exec-env`: only returns if the program could not be started.
pub fn cmd_exec_env(args: ExecEnvArgs) -> CmdResult {
    let e = opencode::exec_env(&args.env_file, &args.argv);
    Err(CliError::user(format!(
        "cannot run {}: {e}",
        args.argv
            .first()
            .map(|p| PathBuf::from(p).display().to_string())
            .unwrap_or_default()
    )))
}

/// `gaffer workspace …`.
#[derive(Debug, clap::Subcommand)]
pub enum WorkspaceCommand {
    /// Serve a builder pod's workspace to gaffer (the pod's `workspace` container): mirror
    /// clones, worktrees, checkpoints, provisional branches and bundles of task branches,
    /// on a volume gaffer does not mount. Callers need the token in GAFFER_WORKSPACE_TOKEN
    /// (the builder's password, from the pod's Secret).
    Serve(WorkspaceServeArgs),
}

/// Arguments of `gaffer workspace serve`.
#[derive(Debug, clap::Args)]
pub struct WorkspaceServeArgs {
    /// The workspace root (the pod's volume): `<root>/<category>-<project>` is the
    /// project's workspace, `<root>/.mirrors` its mirrors.
    #[arg(long)]
    pub root: PathBuf,
    /// The address to listen on, e.g. `10.0.0.5:4097`.
    #[arg(long)]
    pub listen: std::net::SocketAddr,
}

/// Runs `gaffer workspace`.
pub fn cmd_workspace(cmd: WorkspaceCommand) -> CmdResult {
    let WorkspaceCommand::Serve(args) = cmd;
    let token = std::env::var("GAFFER_WORKSPACE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::user(
                "GAFFER_WORKSPACE_TOKEN is not set: the sidecar serves no one without it",
            )
        })?;
    std::fs::create_dir_all(&args.root)
        .map_err(|e| CliError::user(format!("--root {}: {e}", args.root.display())))?;
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::internal(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| CliError::user(format!("--listen {}: {e}", args.listen)))?;
        tracing::info!(root = %args.root.display(), listen = %args.listen, "serving the workspace");
        crate::workspace::remote::serve(args.root.clone(), token, listener)
            .await
            .map_err(|e| CliError::internal(format!("the workspace server stopped: {e}")))
    })?;
    Ok(ExitCode::SUCCESS)
}
