//! What a builder's processes may see: a clean environment built from an allowlist, and a
//! bubblewrap sandbox around the server that runs the builder's tools.
//!
//! gaffer starts builders through `gaffer exec-env`, which clears the environment it
//! inherited (gaffer's tokens, the person's agent sockets) and keeps only [`ALLOWED`] plus
//! the builder's own env files (its OpenCode password, the provider credentials the project
//! names in `agent.env_from`, its lab access). With `agent.sandbox: bwrap` (the default where
//! bubblewrap works) the server runs in new PID, IPC and UTS namespaces with the system's
//! toolchain read-only, its own workspace, mirrors and HOME read-write, and nothing else: not
//! gaffer's data dir, not the person's HOME, not other builders' workspaces, not other
//! processes. The network stays shared: the builder reaches its model and its lab.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Variables a builder keeps from the environment gaffer was started with; everything else
/// is dropped. `LC_*` are kept too.
pub const ALLOWED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
];

/// Whether `name` passes the allowlist.
pub fn allowed(name: &str) -> bool {
    ALLOWED.contains(&name) || name.starts_with("LC_")
}

/// The variables of `vars` that pass the allowlist.
pub fn clean(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(allowed))
        .collect()
}

/// System paths bound read-only into every sandbox when they exist: the toolchain, and the
/// few files of `/etc` that name resolution, TLS and user lookup need.
const SYSTEM_RO: &[&str] = &[
    "/usr",
    "/opt",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/protocols",
    "/etc/services",
    "/etc/mime.types",
];

/// Top-level directories that merged-/usr systems make symlinks into `/usr`.
const USR_LINKS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// One builder's sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The builder's HOME (read-write), set as `HOME` inside.
    pub home: PathBuf,
    /// Read-write: its workspace and the git dirs its worktrees point into.
    pub rw: Vec<PathBuf>,
    /// Read-only besides the system: the builder binary, its lab kubeconfig.
    pub ro: Vec<PathBuf>,
    /// Where the server starts.
    pub workdir: PathBuf,
}

impl Sandbox {
    /// The sandbox of a project's builder: its workspace and the git dirs its worktrees use
    /// read-write, `home` as its HOME, the builder `binary` itself (not its directory, which
    /// could be a HOME or `/`) and its lab kubeconfig read-only.
    pub fn for_builder(req: &crate::agent::BuilderSetup, binary: &Path, home: PathBuf) -> Self {
        let binary = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        let mut ro = vec![binary];
        ro.extend(
            req.env
                .iter()
                .filter(|(k, _)| k == "KUBECONFIG")
                .map(|(_, v)| PathBuf::from(v)),
        );
        let mut rw = vec![req.project_dir.clone()];
        rw.extend(req.builder_dirs.iter().cloned());
        Self {
            home,
            rw,
            ro,
            workdir: req.project_dir.clone(),
        }
    }

    /// `bwrap` and its arguments, then `argv`: run `argv` inside this sandbox.
    pub fn wrap(&self, bwrap: &Path, argv: &[OsString]) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![bwrap.into()];
        let mut push =
            |parts: &[&std::ffi::OsStr]| a.extend(parts.iter().map(|p| p.to_os_string()));
        push(&[
            "--die-with-parent".as_ref(),
            "--unshare-pid".as_ref(),
            "--unshare-ipc".as_ref(),
            "--unshare-uts".as_ref(),
            "--unshare-cgroup-try".as_ref(),
        ]);
        for link in USR_LINKS {
            let p = Path::new(link);
            match std::fs::read_link(p) {
                Ok(target) => push(&["--symlink".as_ref(), target.as_os_str(), p.as_os_str()]),
                Err(_) if p.is_dir() => push(&["--ro-bind".as_ref(), p.as_os_str(), p.as_os_str()]),
                Err(_) => {}
            }
        }
        for p in SYSTEM_RO {
            push(&["--ro-bind-try".as_ref(), p.as_ref(), p.as_ref()]);
        }
        push(&[
            "--proc".as_ref(),
            "/proc".as_ref(),
            "--dev".as_ref(),
            "/dev".as_ref(),
            "--tmpfs".as_ref(),
            "/tmp".as_ref(),
        ]);
        for p in &self.ro {
            push(&["--ro-bind-try".as_ref(), p.as_os_str(), p.as_os_str()]);
        }
        for p in self.rw.iter().chain(std::iter::once(&self.home)) {
            push(&["--bind".as_ref(), p.as_os_str(), p.as_os_str()]);
        }
        push(&[
            // A TMPDIR kept from gaffer's environment may name a directory not in here.
            "--setenv".as_ref(),
            "TMPDIR".as_ref(),
            "/tmp".as_ref(),
            "--setenv".as_ref(),
            "HOME".as_ref(),
            self.home.as_os_str(),
            "--chdir".as_ref(),
            self.workdir.as_os_str(),
            "--".as_ref(),
        ]);
        a.extend(argv.iter().cloned());
        a
    }
}

/// Checks that bubblewrap runs here (a user namespace and a PID namespace can be made):
/// the path of `bwrap`, or why not.
pub fn bwrap_available() -> Result<PathBuf, String> {
    let bwrap = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .ok_or_else(|| "bubblewrap (bwrap) is not installed".to_string())?;
    let out = std::process::Command::new(&bwrap)
        .args([
            "--die-with-parent",
            "--unshare-pid",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", bwrap.display()))?;
    if out.status.success() {
        Ok(bwrap)
    } else {
        Err(format!(
            "{} cannot make a sandbox here: {}",
            bwrap.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_variables_pass() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("LC_ALL", "C.UTF-8"),
            ("GITHUB_TOKEN", "ghp_secret"),
            ("SLACK_BOT_TOKEN", "xoxb-secret"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("HOME", "/home/me"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = clean(vars)
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(kept, ["PATH", "LC_ALL", "HOME"]);
    }

    #[test]
    fn the_sandbox_binds_what_it_names_and_ends_with_the_program() {
        let s = Sandbox {
            home: "/data/homes/demo-api".into(),
            rw: vec!["/b/demo-api".into()],
            ro: vec!["/opt/opencode".into()],
            workdir: "/b/demo-api".into(),
        };
        let argv = s.wrap(
            Path::new("/usr/bin/bwrap"),
            &["opencode".into(), "serve".into()],
        );
        let text: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = text.join(" ");
        assert!(
            joined.starts_with("/usr/bin/bwrap --die-with-parent --unshare-pid"),
            "{joined}"
        );
        assert!(
            joined.contains("--bind /b/demo-api /b/demo-api"),
            "{joined}"
        );
        assert!(
            joined.contains("--bind /data/homes/demo-api /data/homes/demo-api"),
            "{joined}"
        );
        assert!(
            joined.contains("--ro-bind-try /opt/opencode /opt/opencode"),
            "{joined}"
        );
        assert!(
            joined.contains(
                "--setenv TMPDIR /tmp --setenv HOME /data/homes/demo-api --chdir /b/demo-api -- opencode serve"
            ),
            "{joined}"
        );
        assert!(!joined.contains("--share-net") && !joined.contains("--unshare-net"));
    }
}
