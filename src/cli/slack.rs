//! `gaffer slack`: the Slack bot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::reconcile::{LogFormat, init_tracing};
use super::{CliError, CmdResult};
use crate::chat::slack::bot::Options;

/// Arguments of `gaffer slack` (the tokens are described on the command).
#[derive(Debug, clap::Args)]
pub struct SlackArgs {
    /// The state repository (a local bare repo path or a URL git can fetch and push).
    #[arg(long, env = "GAFFER_STATE")]
    pub state: String,
    /// The branch the state lives on.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// The bot's own data: its clone of a remote state repository
    /// (default: $XDG_STATE_HOME/gaffer/slack).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Receive slash commands and clicks over the Events API on this address (e.g.
    /// 0.0.0.0:3000; point the Slack app's request URLs at /slack/commands and
    /// /slack/interactive) instead of Socket Mode.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// A web view of the state repository's files, e.g.
    /// https://github.com/me/state/blob/main, for links to question and plan documents
    /// (default: GitHub's when --state is a GitHub remote).
    #[arg(long)]
    pub browse_url: Option<String>,
    /// How often a URL remote is polled, in seconds.
    #[arg(long, default_value_t = 5)]
    pub poll_secs: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The Slack Web API base URL (tests point it at a fake).
    #[arg(long, hide = true, env = "GAFFER_SLACK_API_URL")]
    pub api_url: Option<String>,
}

/// A secret from `NAME` or the file named by `NAME_FILE`.
fn secret(name: &str) -> Result<Option<String>, CliError> {
    if let Ok(v) = std::env::var(name)
        && !v.trim().is_empty()
    {
        return Ok(Some(v.trim().to_string()));
    }
    match std::env::var_os(format!("{name}_FILE")) {
        Some(path) => std::fs::read_to_string(&path)
            .map(|s| Some(s.trim().to_string()))
            .map_err(|e| {
                CliError::user(format!(
                    "cannot read {name}_FILE {}: {e}",
                    PathBuf::from(path).display()
                ))
            }),
        None => Ok(None),
    }
}

/// Runs `gaffer slack`.
pub fn cmd_slack(args: SlackArgs) -> CmdResult {
    init_tracing(args.log_format);
    let bot_token = secret("SLACK_BOT_TOKEN")?.ok_or_else(|| {
        CliError::user("no bot token: set SLACK_BOT_TOKEN or SLACK_BOT_TOKEN_FILE")
            .hint("the token of your Slack app's bot user, xoxb-…")
    })?;
    let app_token = secret("SLACK_APP_TOKEN")?;
    let signing_secret = secret("SLACK_SIGNING_SECRET")?;
    if args.listen.is_some() && signing_secret.is_none() {
        return Err(CliError::user(
            "--listen needs SLACK_SIGNING_SECRET or SLACK_SIGNING_SECRET_FILE",
        ));
    }
    if args.listen.is_none() && app_token.is_none() {
        return Err(CliError::user(
            "no app token for Socket Mode: set SLACK_APP_TOKEN (xapp-…, scope \
             connections:write) or SLACK_APP_TOKEN_FILE, or use --listen for the Events API",
        ));
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| super::status::default_data_dir().join("slack"));
    let mut opts = Options::new(args.state.clone(), data_dir, &bot_token);
    opts.branch = args.branch.clone();
    opts.app_token = if args.listen.is_some() {
        None
    } else {
        app_token
    };
    opts.signing_secret = signing_secret.map(String::into_bytes);
    opts.listen = args.listen;
    opts.api_url = args.api_url.clone();
    opts.poll = Duration::from_secs(args.poll_secs.max(1));
    opts.browse_url = args
        .browse_url
        .clone()
        .or_else(|| github_blob_url(&args.state, &args.branch));
    let rt = tokio::runtime::Runtime::new().map_err(|e| CliError::internal(e.to_string()))?;
    rt.block_on(async move {
        crate::chat::slack::run(opts, crate::server::shutdown_signal())
            .await
            .map_err(|e| CliError::user(format!("slack bot: {e}")))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// GitHub's web view of a GitHub remote's branch (`https://github.com/o/r/blob/<branch>`), for
/// `https://github.com/o/r(.git)`, `git@github.com:o/r(.git)` and `ssh://git@github.com/o/r`.
fn github_blob_url(remote: &str, branch: &str) -> Option<String> {
    let path = remote
        .strip_prefix("https://github.com/")
        .or_else(|| remote.strip_prefix("git@github.com:"))
        .or_else(|| remote.strip_prefix("ssh://git@github.com/"))?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    let (owner, repo) = path.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(repo)).then(|| format!("https://github.com/{owner}/{repo}/blob/{branch}"))
}

#[cfg(test)]
mod tests {
    use super::github_blob_url;

    #[test]
    fn a_github_remote_gets_githubs_web_view() {
        for remote in [
            "https://github.com/me/state.git",
            "https://github.com/me/state",
            "git@github.com:me/state.git",
            "ssh://git@github.com/me/state",
        ] {
            assert_eq!(
                github_blob_url(remote, "main").as_deref(),
                Some("https://github.com/me/state/blob/main"),
                "{remote}"
            );
        }
        for other in [
            "/srv/state.git",
            "https://git.example.com/me/state.git",
            "https://github.com/me",
            "https://github.com/me/st ate",
        ] {
            assert_eq!(github_blob_url(other, "main"), None, "{other}");
        }
    }
}
