//! The real OpenCode for tests: the pinned binary (installed from npm on first use), a temp
//! HOME with a config pointing at the scripted LLM, a tmux server on its own socket, and a
//! guard that stops every process they started.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::llm::Llm;

/// The OpenCode version gaffer is tested with.
pub const OPENCODE_VERSION: &str = "1.18.33";

/// The pinned `opencode` binary: `$GAFFER_TEST_OPENCODE`, or `target/opencode` (installed with
/// npm on first use, once across parallel test processes).
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("GAFFER_TEST_OPENCODE") {
        return PathBuf::from(p);
    }
    let dir = super::root().join("target/opencode");
    let bin = dir.join("node_modules/opencode-linux-x64/bin/opencode");
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".install.lock")).unwrap();
    lock.lock().unwrap();
    if !bin.is_file() {
        let out = Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                dir.to_str().unwrap(),
                &format!("opencode-ai@{OPENCODE_VERSION}"),
            ])
            .output()
            .unwrap_or_else(|e| {
                panic!("the OpenCode tests need npm to install opencode-ai@{OPENCODE_VERSION}: {e}")
            });
        assert!(
            out.status.success() && bin.is_file(),
            "npm install opencode-ai@{OPENCODE_VERSION} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

/// The bmad-method version planning is tested with.
pub const BMAD_VERSION: &str = "6.12.0";

/// The pinned `bmad-method` package folder: `$GAFFER_TEST_BMAD`, or `target/bmad` (installed
/// with npm on first use, once across parallel test processes).
pub fn bmad() -> PathBuf {
    if let Some(p) = std::env::var_os("GAFFER_TEST_BMAD") {
        return PathBuf::from(p);
    }
    let dir = super::root().join("target/bmad");
    let pkg = dir.join("node_modules/bmad-method");
    let cli = pkg.join("tools/installer/bmad-cli.js");
    if cli.is_file() {
        return pkg;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(".install.lock")).unwrap();
    lock.lock().unwrap();
    if !cli.is_file() {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("bmad-method@{BMAD_VERSION}"))
            .output()
            .unwrap_or_else(|e| panic!("the planning tests need npm for bmad-method: {e}"));
        assert!(
            out.status.success() && cli.is_file(),
            "npm install bmad-method@{BMAD_VERSION} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    pkg
}

/// OpenCode's world for one test; stops every builder process when dropped.
pub struct World {
    /// The temp dir holding HOME and the tmux socket.
    pub tmp: tempfile::TempDir,
    /// The tmux socket.
    pub socket: PathBuf,
    /// The binary.
    pub binary: PathBuf,
}

impl World {
    /// A fresh HOME whose OpenCode config uses `llm`.
    pub fn new(llm: &Llm) -> Self {
        let tmp = tempfile::Builder::new().prefix("oc-").tempdir().unwrap();
        let config = tmp.path().join("home/.config/opencode");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("opencode.json"),
            serde_json::to_vec_pretty(&llm.opencode_config()).unwrap(),
        )
        .unwrap();
        World {
            socket: tmp.path().join("tmux.sock"),
            binary: binary(),
            tmp,
        }
    }

    /// The environment OpenCode runs with (HOME and XDG dirs in the temp dir, nothing fetched).
    pub fn env(&self) -> Vec<(String, String)> {
        let home = self.tmp.path().join("home");
        let h = |s: &str| home.join(s).display().to_string();
        vec![
            ("HOME".into(), h("")),
            ("XDG_CONFIG_HOME".into(), h(".config")),
            ("XDG_DATA_HOME".into(), h(".local/share")),
            ("XDG_STATE_HOME".into(), h(".local/state")),
            ("XDG_CACHE_HOME".into(), h(".cache")),
            ("OPENCODE_DISABLE_MODELS_FETCH".into(), "1".into()),
            ("OPENCODE_DISABLE_DEFAULT_PLUGINS".into(), "1".into()),
            ("OPENCODE_DISABLE_LSP_DOWNLOAD".into(), "1".into()),
            ("OPENCODE_DISABLE_CLAUDE_CODE".into(), "1".into()),
            ("OPENCODE_DISABLE_SHARE".into(), "1".into()),
        ]
    }

    /// `gaffer reconcile` arguments that run builders in this world.
    pub fn daemon_args(&self) -> Vec<String> {
        let mut v = vec![
            "--bmad".to_string(),
            bmad().display().to_string(),
            "--opencode".to_string(),
            self.binary.display().to_string(),
            "--tmux-socket".to_string(),
            self.socket.display().to_string(),
        ];
        for (k, val) in self.env() {
            v.push("--opencode-env".into());
            v.push(format!("{k}={val}"));
        }
        v
    }

    /// Runs tmux on this world's socket.
    pub fn tmux(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The window names of a tmux session.
    pub fn windows(&self, session: &str) -> Vec<String> {
        let (_, out) = self.tmux(&[
            "list-windows",
            "-t",
            &format!("={session}"),
            "-F",
            "#{window_name}",
        ]);
        out.lines().map(str::to_string).collect()
    }

    /// The PID running in a window.
    pub fn pane_pid(&self, session: &str, window: &str) -> Option<u32> {
        let (_, out) = self.tmux(&[
            "list-panes",
            "-t",
            &format!("={session}:={window}"),
            "-F",
            "#{pane_pid}",
        ]);
        out.trim().parse().ok()
    }

    /// Waits until a window shows `text`; returns the screen.
    pub fn wait_for_screen(&self, session: &str, window: &str, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (_, screen) = self.tmux(&[
                "capture-pane",
                "-p",
                "-J",
                "-t",
                &format!("={session}:={window}"),
            ]);
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "window {session}:{window} never showed {text:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// SIGKILLs a process.
pub fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Whether a process exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

impl Drop for World {
    fn drop(&mut self) {
        let (_, pids) = self.tmux(&["list-panes", "-a", "-F", "#{pane_pid}"]);
        let _ = self.tmux(&["kill-server"]);
        for pid in pids.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            kill9(pid);
        }
    }
}
