//! Builder hosts: where a project's builder processes run and how a person reaches them.
//!
//! The OpenCode runtime decides *what* runs (the server, the person's view of the session,
//! with which arguments and environment); a [`BuilderHost`] decides *where*: today a tmux
//! session on gaffer's machine ([`TmuxHost`]) or a pod of its own in the project's lab
//! namespace ([`crate::agent::pod::host::PodHost`]). Nothing in the task lifecycle changes
//! with the host: the status records only its [`HostKind`] and how to attach.

use std::ffi::OsString;
use std::path::Path;

use crate::agent::opencode::tmux::Tmux;
use crate::agent::{AgentError, BuilderSetup};
use crate::names::ProjectRef;
use crate::state::status::HostKind;

/// The window running the server.
pub const SERVER_WINDOW: &str = "server";
/// The window attached to the driven session.
pub const ATTACH_WINDOW: &str = "attach";

/// Where a project's builder runs.
#[async_trait::async_trait]
pub trait BuilderHost: Send + Sync + std::fmt::Debug {
    /// Which kind of host this is, as recorded in status.
    fn kind(&self) -> HostKind;

    /// Readies what the builder is started from (for a pod: its objects in the cluster,
    /// with the server's `password`); nothing for a host that starts a command line.
    async fn set_up(&self, _setup: &BuilderSetup, _password: &str) -> Result<(), AgentError> {
        Ok(())
    }

    /// The port the server listens on when the host fixes it (a pod's); `None` when
    /// gaffer picks a free one on this machine.
    fn fixed_port(&self) -> Option<u16> {
        None
    }

    /// Whether the host itself keeps the builder away from gaffer's data and secrets (a
    /// pod), so it needs no sandbox of gaffer's.
    fn isolates(&self) -> bool {
        false
    }

    /// Which process of the server runs now, and since when (ms since the epoch), when the
    /// host can restart it by itself (a pod's controller): a change tells gaffer that a turn
    /// in progress was cut off. `None` where only gaffer starts servers.
    async fn instance(&self, _project: &ProjectRef) -> Result<Option<(String, i64)>, AgentError> {
        Ok(None)
    }

    /// Where the server answers now (`http://host:port`), or `None` when nothing runs
    /// there; `port` is the one recorded (0: none yet).
    async fn base_url(
        &self,
        _project: &ProjectRef,
        port: u16,
    ) -> Result<Option<String>, AgentError> {
        Ok((port != 0).then(|| format!("http://127.0.0.1:{port}")))
    }

    /// Starts the project's server process (`argv`, in `dir`), replacing one that runs.
    async fn ensure_server(
        &self,
        project: &ProjectRef,
        dir: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError>;

    /// Whether the server process is still there (`false` once it exited).
    async fn is_alive(&self, project: &ProjectRef) -> Result<bool, AgentError>;

    /// The server's last output, for a person reading why it did not start.
    async fn logs(&self, project: &ProjectRef) -> Result<String, AgentError>;

    /// Runs the person's view of the session (`argv`, in `dir`); `restart` replaces one that
    /// shows something else.
    async fn ensure_attach(
        &self,
        project: &ProjectRef,
        dir: &Path,
        argv: &[OsString],
        restart: bool,
    ) -> Result<(), AgentError>;

    /// How a person attaches: a command or a link.
    fn attach(&self, project: &ProjectRef) -> Option<String>;

    /// Stops every process of the project's builder.
    async fn stop(&self, project: &ProjectRef) -> Result<(), AgentError>;
}

/// Builders in tmux on gaffer's machine: session `gaffer-{category}-{project}` with a
/// `server` window and an `attach` window.
#[derive(Debug, Clone, Default)]
pub struct TmuxHost {
    tmux: Tmux,
}

impl TmuxHost {
    /// A host on `tmux`'s server.
    pub fn new(tmux: Tmux) -> Self {
        Self { tmux }
    }

    /// The tmux server.
    pub fn tmux(&self) -> &Tmux {
        &self.tmux
    }
}

#[async_trait::async_trait]
impl BuilderHost for TmuxHost {
    fn kind(&self) -> HostKind {
        HostKind::Tmux
    }

    async fn ensure_server(
        &self,
        project: &ProjectRef,
        dir: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError> {
        let session = project.tmux_session();
        let name = project.builder_name();
        if !self.tmux.has_session(&session).await? {
            tracing::info!(builder = %name, "starting OpenCode");
            self.tmux
                .new_session(&session, SERVER_WINDOW, dir, argv)
                .await
        } else if self.tmux.pane(&session, SERVER_WINDOW).await?.is_none() {
            tracing::info!(builder = %name, "starting OpenCode in the existing tmux session");
            self.tmux
                .new_window(&session, SERVER_WINDOW, dir, argv)
                .await
        } else {
            tracing::warn!(builder = %name, "restarting OpenCode");
            self.tmux.respawn(&session, SERVER_WINDOW, dir, argv).await
        }
    }

    async fn is_alive(&self, project: &ProjectRef) -> Result<bool, AgentError> {
        Ok(self
            .tmux
            .pane(&project.tmux_session(), SERVER_WINDOW)
            .await?
            .is_some_and(|p| !p.dead))
    }

    async fn logs(&self, project: &ProjectRef) -> Result<String, AgentError> {
        self.tmux
            .capture(&project.tmux_session(), SERVER_WINDOW)
            .await
    }

    async fn ensure_attach(
        &self,
        project: &ProjectRef,
        dir: &Path,
        argv: &[OsString],
        restart: bool,
    ) -> Result<(), AgentError> {
        let session = project.tmux_session();
        match self.tmux.pane(&session, ATTACH_WINDOW).await? {
            None => {
                self.tmux
                    .new_window(&session, ATTACH_WINDOW, dir, argv)
                    .await
            }
            Some(p) if p.dead || restart => {
                self.tmux.respawn(&session, ATTACH_WINDOW, dir, argv).await
            }
            Some(_) => Ok(()),
        }
    }

    fn attach(&self, project: &ProjectRef) -> Option<String> {
        Some(self.tmux.attach_command(&project.tmux_session()))
    }

    async fn stop(&self, project: &ProjectRef) -> Result<(), AgentError> {
        self.tmux.kill_session(&project.tmux_session()).await
    }
}
