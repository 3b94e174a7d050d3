//! A builder's files in gaffer's data dir: its record (port, sessions), its password and
//! lab environment (mode 0600, read by `gaffer exec-env`), question parts, and the ports.

use super::*;

pub(super) fn record_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

pub(super) fn last_event_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.last-event"))
}

/// The last significant event a builder's stream carried: its type and when (ms), as the
/// reconciler that follows it recorded.
pub fn last_event(state_dir: &Path, record: &Record) -> Option<(String, i64)> {
    let name = record.project.replace('/', "-");
    serde_json::from_slice(&std::fs::read(last_event_path(state_dir, &name)).ok()?).ok()
}

pub(super) fn env_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.env"))
}

/// The builder's lab environment (`KUBECONFIG`, `LAB_NAMESPACE`, `LAB_URL`), from the lab
/// deployer; kept apart from the password file so each has one writer.
pub(super) fn lab_env_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lab.env"))
}

pub(super) fn read_record(dir: &Path, name: &str) -> Result<Option<Record>, AgentError> {
    match std::fs::read(record_path(dir, name)) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| runtime(format!("{}: {e}", record_path(dir, name).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(runtime(e)),
    }
}

pub(super) fn write_record(dir: &Path, name: &str, record: &Record) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec_pretty(record).map_err(runtime)?;
    write_atomic(&record_path(dir, name), &bytes, 0o644)
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| runtime(format!("{}: {e}", dir.display())))?;
    crate::fsutil::write_atomic(path, bytes, Some(mode))
        .map_err(|e| runtime(format!("{}: {e}", path.display())))
}

/// Writes `<builder>.lab.env` (mode 0600) when its content changes. A running server keeps
/// the environment it started with; the values are stable per project (the kubeconfig's
/// path stays, its token is refreshed in place).
pub(super) fn write_lab_env(
    dir: &Path,
    name: &str,
    env: &[(String, String)],
) -> Result<(), AgentError> {
    let mut text = String::new();
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.contains('\n') || v.contains('\n') {
            return Err(AgentError::Config(format!(
                "bad environment variable {k:?}"
            )));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    let path = lab_env_path(dir, name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        write_atomic(&path, text.as_bytes(), 0o600)?;
    }
    Ok(())
}

/// Writes `<builder>.env` (mode 0600) with a password kept from before, or a new one; returns
/// the password.
pub(super) fn ensure_env_file(cfg: &Config, name: &str) -> Result<String, AgentError> {
    let path = env_path(&cfg.state_dir, name);
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let password = match old
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))
    {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => random_password()?,
    };
    let mut env = format!("OPENCODE_SERVER_PASSWORD={password}\nOPENCODE_DISABLE_AUTOUPDATE=1\n");
    for (k, v) in &cfg.env {
        if k.contains('=') || k.contains('\n') || v.contains('\n') {
            return Err(AgentError::Config(format!(
                "bad environment variable {k:?}"
            )));
        }
        env.push_str(&format!("{k}={v}\n"));
    }
    if env != old {
        write_atomic(&path, env.as_bytes(), 0o600)?;
    }
    Ok(password)
}

pub(super) fn random_password() -> Result<String, AgentError> {
    let mut buf = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .map_err(|e| runtime(format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex::encode(buf))
}

pub(super) fn parts_path(dir: &Path, request: &str) -> PathBuf {
    dir.join("answers").join(format!("{request}.json"))
}

pub(super) fn read_parts(
    dir: &Path,
    request: &str,
) -> Result<BTreeMap<usize, Vec<String>>, AgentError> {
    match std::fs::read(parts_path(dir, request)) {
        Ok(b) => serde_json::from_slice(&b).map_err(runtime),
        Err(_) => Ok(BTreeMap::new()),
    }
}

pub(super) fn write_parts(
    dir: &Path,
    request: &str,
    parts: &BTreeMap<usize, Vec<String>>,
) -> Result<(), AgentError> {
    let bytes = serde_json::to_vec(parts).map_err(runtime)?;
    write_atomic(&parts_path(dir, request), &bytes, 0o644)
}

pub(super) fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub(super) fn free_port() -> Result<u16, AgentError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(runtime)?;
    Ok(l.local_addr().map_err(runtime)?.port())
}

pub(super) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let s = lines[lines.len().saturating_sub(n)..].join(" / ");
    if s.chars().count() > 300 {
        let t: String = s.chars().take(299).collect();
        format!("{t}…")
    } else {
        s
    }
}

/// Reads `KEY=VALUE` lines from the `env_files` (a missing file counts as empty) and
/// replaces this process with `argv` run in a clean environment — the allowlisted variables
/// of this one ([`crate::agent::sandbox::ALLOWED`]) plus the files' — so secrets reach
/// OpenCode without a command line and gaffer's own never do (`gaffer exec-env`).
pub fn exec_env(env_files: &[PathBuf], argv: &[OsString]) -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let mut text = String::new();
    for f in env_files {
        match std::fs::read_to_string(f) {
            Ok(t) => {
                text.push_str(&t);
                text.push('\n');
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return std::io::Error::new(e.kind(), format!("{}: {e}", f.display())),
        }
    }
    let Some((program, args)) = argv.split_first() else {
        return std::io::Error::other("nothing to run");
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    // Nothing of gaffer's own environment (its tokens, the person's agent sockets) passes
    // but the allowlist; the env files add what the builder is meant to have.
    cmd.env_clear();
    cmd.envs(crate::agent::sandbox::clean(std::env::vars_os()));
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=')
            && !k.is_empty()
        {
            cmd.env(k, v);
        }
    }
    cmd.exec()
}

impl OpenCode {
    /// The records of every builder in `state_dir` (for `gaffer builders`).
    pub fn records(state_dir: &Path) -> Result<Vec<Record>, AgentError> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(state_dir) else {
            return Ok(out);
        };
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
                && let Some(r) = read_record(state_dir, stem)?
            {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(out)
    }

    /// A client for a recorded builder (for `gaffer builders`).
    pub fn client_for(state_dir: &Path, record: &Record) -> Option<Client> {
        // A pod's server is reached over the cluster network, not a port here.
        if record.host != crate::state::status::HostKind::Tmux {
            return None;
        }
        let name = record.project.replace('/', "-");
        Some(Client::new(record.port, &password_of(state_dir, &name)?))
    }
}

/// The password of builder `name` (kept in `<state_dir>/<name>.env`).
pub fn password_of(state_dir: &Path, name: &str) -> Option<String> {
    let env = std::fs::read_to_string(env_path(state_dir, name)).ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}
