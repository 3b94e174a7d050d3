//! `gaffer reconcile`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{CliError, CmdResult};
use crate::reconcile::daemon::{self, Options};

/// Arguments of `gaffer reconcile`.
#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    /// The state repository (a local bare repo path or a URL git can fetch and push).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// gaffer's own data: the state clone, agent sessions, forge records, rendered manifests
    /// (default: $XDG_STATE_HOME/gaffer).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where project workspaces go (default: <data-dir>/builders).
    #[arg(long)]
    pub builders: Option<PathBuf>,
    /// Serve /healthz, /metrics and /webhooks/github on this address, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A file holding the GitHub webhook secret (never put secrets in the state repo).
    #[arg(long, env = "GAFFER_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// How often a URL remote is polled, in seconds.
    #[arg(long, default_value_t = 10)]
    pub poll_secs: u64,
    /// How often everything is reloaded, in seconds.
    #[arg(long, default_value_t = 600)]
    pub resync_secs: u64,
    /// Also POST every notification as signed JSON to this URL (n8n and friends): https://
    /// checked against the system's roots (SSL_CERT_FILE names a private CA's bundle), or
    /// http:// for a receiver on this network.
    #[arg(long, requires = "notify_webhook_secret_file")]
    pub notify_webhook: Option<String>,
    /// A file holding the secret that signs outbound webhooks (X-Gaffer-Signature-256).
    #[arg(long)]
    pub notify_webhook_secret_file: Option<PathBuf>,
    /// Print each notification on stdout.
    #[arg(long)]
    pub echo: bool,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The `opencode` binary for `runtime: opencode` projects (default: `opencode` on PATH;
    /// gaffer is tested with opencode-ai 1.18.33).
    #[arg(long, env = "GAFFER_OPENCODE")]
    pub opencode: Option<PathBuf>,
    /// Run builders on this tmux socket instead of your default tmux server.
    #[arg(long, env = "GAFFER_TMUX_SOCKET")]
    pub tmux_socket: Option<PathBuf>,
    /// Extra environment for OpenCode processes, KEY=VALUE (repeatable).
    #[arg(long = "opencode-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub opencode_env: Vec<(String, String)>,
    /// The installed bmad-method package (its folder, holding tools/installer/bmad-cli.js)
    /// that planning runs from: `npm install --prefix ~/.gaffer/bmad bmad-method@6.12.0`
    /// makes ~/.gaffer/bmad/node_modules/bmad-method. Needed only for tasks with a
    /// plan.mode other than none; never fetched at run time.
    #[arg(long, env = "GAFFER_BMAD")]
    pub bmad: Option<PathBuf>,
    /// How long an OpenCode server may take to start, in seconds.
    #[arg(long, default_value_t = 60)]
    pub opencode_start_secs: u64,
    /// A git credential store file (`https://user:token@github.com` per line) that builder
    /// pods (`agent.host: pod`) clone and fetch the projects' repos with; it goes to each
    /// pod's Secret, readable only by its workspace sidecar.
    #[arg(long, env = "GAFFER_BUILDER_GIT_CREDENTIALS", value_name = "FILE")]
    pub builder_git_credentials: Option<PathBuf>,
    /// Where lab deploys go: `auto` uses the cluster of the environment (in a pod, or
    /// KUBECONFIG / ~/.kube/config) when it answers and renders only otherwise.
    #[arg(long, value_enum, default_value_t = daemon::LabMode::Auto)]
    pub lab: daemon::LabMode,
    /// How long lab objects may take to become ready (rollout), in seconds.
    #[arg(long, default_value_t = 300)]
    pub lab_rollout_secs: u64,
    /// The GitHub API for `forge: github` projects (GitHub Enterprise:
    /// https://HOST/api/v3). The token comes from GITHUB_TOKEN or the file GITHUB_TOKEN_FILE
    /// names (a personal token or a GitHub App installation token), never the state repo.
    #[arg(long, env = "GITHUB_API_URL")]
    pub github_api_url: Option<String>,
    /// How often pull requests in review are polled for reviews when no webhook wakes them,
    /// in seconds (conditional requests: free of rate limit while nothing changed).
    #[arg(long, default_value_t = 60)]
    pub forge_poll_secs: u64,
    /// Act only while holding this Lease (NAMESPACE/NAME, coordination.k8s.io/v1) on the
    /// cluster of the environment, so that of two reconcilers exactly one acts; the other
    /// waits and takes over when the lease is released or expires. Default in a pod
    /// (KUBERNETES_SERVICE_HOST and POD_NAMESPACE set): POD_NAMESPACE/gaffer-reconciler.
    #[arg(long, env = "GAFFER_LEADER_LEASE")]
    pub leader_lease: Option<String>,
    /// The leader lease's duration, in seconds: how long a dead leader keeps it.
    #[arg(long, default_value_t = 15)]
    pub lease_secs: u64,
    /// Read the time from this file (an RFC 3339 instant) instead of the system clock
    /// (tests moving through business hours).
    #[arg(long, hide = true)]
    pub clock_file: Option<PathBuf>,
    /// How often, in seconds, what tasks finished retention.worktrees ago left on this
    /// machine is removed (as `gaffer gc` does).
    #[arg(long, default_value_t = 3600)]
    pub gc_secs: u64,
}

/// The GitHub token from GITHUB_TOKEN or GITHUB_TOKEN_FILE.
fn github_token() -> Result<Option<String>, CliError> {
    if let Ok(t) = std::env::var("GITHUB_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_string()));
    }
    match std::env::var_os("GITHUB_TOKEN_FILE") {
        Some(f) => std::fs::read_to_string(&f)
            .map(|t| Some(t.trim().to_string()))
            .map_err(|e| {
                CliError::user(format!(
                    "cannot read GITHUB_TOKEN_FILE {}: {e}",
                    PathBuf::from(f).display()
                ))
            }),
        None => Ok(None),
    }
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{k:?} is not an environment variable name"));
    }
    if v.contains('\n') {
        return Err("values cannot contain newlines".into());
    }
    Ok((k.to_string(), v.to_string()))
}

/// `name` found on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// The OpenCode options from the command line, or `None` when no binary is found.
pub fn opencode_options(
    binary: Option<PathBuf>,
    tmux_socket: Option<PathBuf>,
    env: Vec<(String, String)>,
    start: Duration,
) -> Result<Option<daemon::OpenCodeOptions>, CliError> {
    let binary = match binary {
        Some(b) if b.is_file() => b,
        Some(b) => {
            return Err(CliError::user(format!(
                "--opencode {}: no such file",
                b.display()
            )));
        }
        None => match which("opencode") {
            Some(b) => b,
            None => {
                tracing::warn!(
                    "no opencode on PATH: projects with runtime: opencode will report an error \
                     (npm install -g opencode-ai@1.18.33, or pass --opencode)"
                );
                return Ok(None);
            }
        },
    };
    if which("tmux").is_none() {
        return Err(CliError::user(
            "tmux is not installed; OpenCode builders run in tmux",
        ));
    }
    let launcher = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find gaffer's own executable: {e}")))?;
    Ok(Some(daemon::OpenCodeOptions {
        binary,
        launcher,
        tmux_socket,
        env,
        start_timeout: start,
        builder_git_credentials: None,
    }))
}

/// Log formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up tracing from `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `gaffer reconcile`.
pub fn cmd_reconcile(args: ReconcileArgs) -> CmdResult {
    init_tracing(args.log_format);
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(super::status::default_data_dir);
    let mut opts = Options::new(args.state.clone(), &data_dir);
    opts.branch = args.branch.clone();
    if let Some(b) = &args.builders {
        opts.builders = b.clone();
    }
    opts.listen = args.listen;
    opts.poll = Duration::from_secs(args.poll_secs.max(1));
    opts.resync = Duration::from_secs(args.resync_secs.max(10));
    opts.echo = args.echo;
    opts.lab = args.lab;
    opts.github_token = github_token()?;
    opts.github_api = args.github_api_url.clone();
    opts.forge_poll = Duration::from_secs(args.forge_poll_secs.max(1));
    opts.clock_file = args.clock_file.clone();
    opts.gc_every = Duration::from_secs(args.gc_secs.max(1));
    opts.bmad = args.bmad.clone();
    opts.lab_rollout = Duration::from_secs(args.lab_rollout_secs.max(1));
    if let Some(f) = &args.webhook_secret_file {
        let secret = std::fs::read(f)
            .map_err(|e| CliError::user(format!("cannot read {}: {e}", f.display())))?;
        opts.webhook_secret = Some(secret.trim_ascii().to_vec());
    }
    if let (Some(url), Some(f)) = (&args.notify_webhook, &args.notify_webhook_secret_file) {
        let secret = std::fs::read(f)
            .map_err(|e| CliError::user(format!("cannot read {}: {e}", f.display())))?;
        opts.notify_webhook = Some((url.clone(), secret.trim_ascii().to_vec()));
    }
    opts.opencode = opencode_options(
        args.opencode.clone(),
        args.tmux_socket.clone(),
        args.opencode_env.clone(),
        Duration::from_secs(args.opencode_start_secs.max(1)),
    )?;
    if let Some(o) = opts.opencode.as_mut() {
        o.builder_git_credentials = args.builder_git_credentials.clone();
    }
    let lease = match args.leader_lease.clone().or_else(|| {
        std::env::var_os("KUBERNETES_SERVICE_HOST")?;
        let ns = std::env::var("POD_NAMESPACE").ok()?;
        Some(format!("{ns}/gaffer-reconciler"))
    }) {
        Some(spec) => Some(crate::reconcile::lease::parse_lease(&spec).map_err(CliError::user)?),
        None => None,
    };
    let lease_secs = Duration::from_secs(args.lease_secs.max(1));
    let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
    rt.block_on(async move {
        let lease = match lease {
            Some((ns, name)) => {
                let client = kube::Client::try_default().await.map_err(|e| {
                    CliError::user(format!("--leader-lease {ns}/{name}: no cluster ({e})"))
                })?;
                let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
                    let host = std::fs::read_to_string("/etc/hostname")
                        .map(|h| h.trim().to_string())
                        .unwrap_or_else(|_| "gaffer".into());
                    format!("{host}-{}", std::process::id())
                });
                let l = crate::reconcile::lease::LeaderLease::new(
                    client, &ns, &name, &identity, lease_secs,
                );
                // Nothing is started before this process leads: a waiting reconciler
                // touches neither the state repository nor the builders. It answers
                // /livez (alive) and /healthz with 503 (not ready) meanwhile.
                let waiting = match opts.listen {
                    Some(addr) => {
                        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                            CliError::user(format!("cannot listen on {addr}: {e}"))
                        })?;
                        Some(tokio::spawn(async move {
                            let _ = axum::serve(listener, crate::server::waiting_app()).await;
                        }))
                    }
                    None => None,
                };
                tokio::select! {
                    () = l.acquire() => {}
                    () = crate::server::shutdown_signal() => {
                        tracing::info!("stopped while waiting for the leader lease");
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if let Some(w) = waiting {
                    w.abort();
                    let _ = w.await;
                }
                Some(Arc::new(l))
            }
            None => None,
        };
        let clock: Arc<dyn crate::hours::Clock> = match &opts.clock_file {
            Some(f) => Arc::new(crate::hours::FileClock::new(f)),
            None => Arc::new(crate::hours::SystemClock),
        };
        let (ctx, handles, rx) = daemon::start(&opts, clock, None)
            .await
            .map_err(|e| CliError::user(format!("cannot start: {e}")))?;
        tracing::info!(state = %opts.state, data_dir = %opts.data_dir.display(), "reconciler started");
        // Losing the lease stops the reconciler as a signal would (in-flight steps finish).
        let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<String>();
        let keeper = lease.clone().map(|l| {
            tokio::spawn(async move {
                let why = l.keep().await;
                let _ = lost_tx.send(why);
            })
        });
        let lost = Arc::new(std::sync::Mutex::new(None::<String>));
        let lost_in = lost.clone();
        let shutdown = async move {
            tokio::select! {
                () = crate::server::shutdown_signal() => {}
                Ok(why) = lost_rx => {
                    tracing::error!(%why, "lost the leader lease: stopping");
                    *lost_in.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                }
            }
        };
        daemon::run(opts, ctx, handles, rx, shutdown)
            .await
            .map_err(|e| CliError::internal(e.to_string()))?;
        if let Some(k) = keeper {
            k.abort();
        }
        let lost = lost
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(why) = lost {
            return Err(CliError::user(format!(
                "stopped acting: {why}; start again to wait for the lease"
            )));
        }
        if let Some(l) = &lease {
            l.release().await;
        }
        tracing::info!("reconciler stopped");
        Ok(ExitCode::SUCCESS)
    })
}
