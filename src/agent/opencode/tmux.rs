//! tmux, driven through its command line (no shell in between).
//!
//! Targets use tmux's exact-match syntax (`=session:=window`) so `gaffer-ai-dev-x` never
//! matches `gaffer-ai-dev-x2`. Commands always get more than one argument, which tmux runs
//! directly rather than through `sh -c`. Names reaching here are validated DNS-1123 labels.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::agent::AgentError;

/// A tmux server: the user's default one, or one on its own socket (tests).
#[derive(Debug, Clone, Default)]
pub struct Tmux {
    socket: Option<PathBuf>,
    /// In a pod: what a person runs first to reach this tmux (`kubectl exec …`).
    exec_prefix: Option<String>,
}

/// In a pod (`KUBERNETES_SERVICE_HOST` and `POD_NAMESPACE` set), how a person reaches gaffer's
/// tmux from their terminal: `kubectl exec -it -n <namespace> <target> -c <container> --`,
/// with the target `GAFFER_ATTACH_TARGET` (default `deploy/gaffer-reconciler`, which outlives
/// pod names) and the container `GAFFER_CONTAINER` (default `reconciler`).
fn exec_prefix_from_env() -> Option<String> {
    std::env::var_os("KUBERNETES_SERVICE_HOST")?;
    let ns = std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())?;
    let var = |k: &str, d: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.to_string())
    };
    Some(exec_prefix(
        &ns,
        &var("GAFFER_ATTACH_TARGET", "deploy/gaffer-reconciler"),
        &var("GAFFER_CONTAINER", "reconciler"),
    ))
}

fn exec_prefix(ns: &str, target: &str, container: &str) -> String {
    format!("kubectl exec -it -n {ns} {target} -c {container} --")
}

/// A pane's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pane {
    /// Its process exited (the window stays because of `remain-on-exit`).
    pub dead: bool,
    /// The process's PID.
    pub pid: u32,
}

impl Tmux {
    /// The server on `socket`, or the user's default server.
    pub fn new(socket: Option<PathBuf>) -> Self {
        Self {
            socket,
            exec_prefix: exec_prefix_from_env(),
        }
    }

    /// The `-S` socket, if not the default.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// The command a person types to see a builder.
    pub fn attach_command(&self, session: &str) -> String {
        let tmux = match &self.socket {
            Some(s) => format!("tmux -S {} attach -t {session}", s.display()),
            None => format!("tmux attach -t {session}"),
        };
        match &self.exec_prefix {
            Some(p) => format!("{p} {tmux}"),
            None => tmux,
        }
    }

    async fn run(&self, args: Vec<OsString>) -> Result<(bool, String, String), AgentError> {
        let mut cmd = tokio::process::Command::new("tmux");
        if let Some(s) = &self.socket {
            cmd.arg("-S").arg(s);
        }
        // Inside a tmux session, TMUX would point the client at that server.
        cmd.env_remove("TMUX")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = cmd
            .output()
            .await
            .map_err(|e| AgentError::Runtime(format!("cannot run tmux: {e}")))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    async fn ok(&self, what: &str, args: Vec<OsString>) -> Result<String, AgentError> {
        let (ok, out, err) = self.run(args).await?;
        if ok {
            Ok(out)
        } else {
            Err(AgentError::Runtime(format!("tmux {what}: {err}")))
        }
    }

    /// Whether the session exists.
    pub async fn has_session(&self, session: &str) -> Result<bool, AgentError> {
        let (ok, _, _) = self
            .run(os(["has-session", "-t", &format!("={session}")]))
            .await?;
        Ok(ok)
    }

    /// Creates a detached session whose first window runs `argv` in `cwd`.
    pub async fn new_session(
        &self,
        session: &str,
        window: &str,
        cwd: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError> {
        let mut args = os([
            "new-session",
            "-d",
            "-s",
            session,
            "-n",
            window,
            "-x",
            "200",
        ]);
        args.extend(os(["-y", "50"]));
        self.ok("new-session", running(args, cwd, argv)).await?;
        self.keep_dead_panes(session, window).await
    }

    /// Adds a window running `argv` in `cwd`.
    pub async fn new_window(
        &self,
        session: &str,
        window: &str,
        cwd: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError> {
        let args = os([
            "new-window",
            "-d",
            "-t",
            &format!("={session}:"),
            "-n",
            window,
        ]);
        self.ok("new-window", running(args, cwd, argv)).await?;
        self.keep_dead_panes(session, window).await
    }

    /// Replaces what a window runs (killing what ran there).
    pub async fn respawn(
        &self,
        session: &str,
        window: &str,
        cwd: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError> {
        let args = os(["respawn-window", "-k", "-t", &target(session, window)]);
        self.ok("respawn-window", running(args, cwd, argv))
            .await
            .map(drop)
    }

    /// A window whose process exits stays, showing how it ended, until it is respawned.
    async fn keep_dead_panes(&self, session: &str, window: &str) -> Result<(), AgentError> {
        self.ok(
            "set-option",
            os([
                "set-option",
                "-w",
                "-t",
                &target(session, window),
                "remain-on-exit",
                "on",
            ]),
        )
        .await
        .map(drop)
    }

    /// The window's pane, if the window exists.
    pub async fn pane(&self, session: &str, window: &str) -> Result<Option<Pane>, AgentError> {
        let (ok, out, _) = self
            .run(os([
                "list-panes",
                "-t",
                &target(session, window),
                "-F",
                "#{pane_dead} #{pane_pid}",
            ]))
            .await?;
        if !ok {
            return Ok(None);
        }
        Ok(out.lines().next().and_then(|l| {
            let (dead, pid) = l.split_once(' ')?;
            Some(Pane {
                dead: dead == "1",
                pid: pid.trim().parse().ok()?,
            })
        }))
    }

    /// The PIDs of every pane of a session.
    pub async fn pids(&self, session: &str) -> Result<Vec<u32>, AgentError> {
        let (ok, out, _) = self
            .run(os([
                "list-panes",
                "-s",
                "-t",
                &format!("={session}"),
                "-F",
                "#{pane_pid}",
            ]))
            .await?;
        Ok(if ok {
            out.lines().filter_map(|l| l.trim().parse().ok()).collect()
        } else {
            Vec::new()
        })
    }

    /// The visible text of a window (with `lines` of history).
    pub async fn capture(&self, session: &str, window: &str) -> Result<String, AgentError> {
        self.ok(
            "capture-pane",
            os([
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-200",
                "-t",
                &target(session, window),
            ]),
        )
        .await
    }

    /// Ends a session and what runs in it.
    pub async fn kill_session(&self, session: &str) -> Result<(), AgentError> {
        let (ok, _, err) = self
            .run(os(["kill-session", "-t", &format!("={session}")]))
            .await?;
        if ok || err.contains("can't find") || err.contains("no server") {
            Ok(())
        } else {
            Err(AgentError::Runtime(format!("tmux kill-session: {err}")))
        }
    }
}

/// `args` followed by `-c cwd -- argv`: what the window runs, as separate arguments.
fn running(mut args: Vec<OsString>, cwd: &Path, argv: &[OsString]) -> Vec<OsString> {
    args.push("-c".into());
    args.push(cwd.into());
    args.push("--".into());
    args.extend(argv.iter().cloned());
    args
}

fn target(session: &str, window: &str) -> String {
    format!("={session}:={window}")
}

fn os<const N: usize>(args: [&str; N]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_a_pod_the_attach_command_goes_through_kubectl_exec() {
        let mut t = Tmux::new(None);
        t.exec_prefix = None;
        assert_eq!(
            t.attach_command("gaffer-ai-dev-api"),
            "tmux attach -t gaffer-ai-dev-api"
        );
        t.exec_prefix = Some(exec_prefix(
            "gaffer",
            "deploy/gaffer-reconciler",
            "reconciler",
        ));
        assert_eq!(
            t.attach_command("gaffer-ai-dev-api"),
            "kubectl exec -it -n gaffer deploy/gaffer-reconciler -c reconciler -- tmux attach -t gaffer-ai-dev-api"
        );
    }
}
