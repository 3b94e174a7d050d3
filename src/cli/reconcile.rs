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
    /// Also POST every notification as signed JSON to this http:// URL (n8n and friends).
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
    let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
    rt.block_on(async move {
        let (ctx, _handles, rx) = daemon::start(&opts, Arc::new(crate::hours::SystemClock), None)
            .await
            .map_err(|e| CliError::user(format!("cannot start: {e}")))?;
        tracing::info!(state = %opts.state, data_dir = %opts.data_dir.display(), "reconciler started");
        daemon::run(opts, ctx, rx, crate::server::shutdown_signal())
            .await
            .map_err(|e| CliError::internal(e.to_string()))?;
        tracing::info!("reconciler stopped");
        Ok(ExitCode::SUCCESS)
    })
}
