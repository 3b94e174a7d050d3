//! P8, builders as pods, with `gaffer reconcile` as a process against the fake Kubernetes
//! API and its test kubelet (the integration tests' fake, included as it is):
//!
//! - gaffer's own RSS and CPU per idle builder with `n` pod builders: each project's pod runs
//!   gaffer's real workspace sidecar and a stand-in for OpenCode (a small Python server that
//!   answers health and keeps the event stream open, as an idle OpenCode does), so the
//!   figure is gaffer's cost (records, the event stream it follows, the pods it watches), not
//!   OpenCode's; the baseline is the same reconciler with no project;
//! - task commit → the builder's first model request with the real OpenCode in its pod, when
//!   the builder is suspended (scaled to zero: the pod has to start) and when it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Res;
use super::common::kube::FakeKube;
use super::common::llm::{Llm, Step};
use super::common::opencode::World;

/// A process stopped when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stand-in for an idle OpenCode server (`opencode serve --hostname H --port P`).
const STAND_IN: &str = r#"#!/usr/bin/env python3
import http.server, json, sys, time
args = sys.argv[1:]
host, port = args[args.index("--hostname") + 1], int(args[args.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path.startswith("/event"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b'data: {"type":"server.connected","properties":{}}\n\n')
            self.wfile.flush()
            while True:
                time.sleep(3600)
        body = json.dumps({"healthy": True, "version": "1.18.33"} if self.path.startswith("/global/health") else {}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer((host, port), H).serve_forever()
"#;

fn git(dir: &Path, args: &[&str]) -> Res<String> {
    super::git(dir, args)
}

/// Commits `files` to the bare repository `repo` through a clone in `work`.
fn commit(repo: &Path, work: &Path, files: &[(String, String)]) -> Res<()> {
    if !work.exists() {
        super::clone_repo(repo, work)?;
    }
    git(work, &["pull", "-q", "--rebase", "origin", "main"])?;
    for (path, body) in files {
        let f = work.join(path);
        std::fs::create_dir_all(f.parent().ok_or("parent")?)?;
        std::fs::write(f, body)?;
    }
    git(work, &["add", "-A"])?;
    git(work, &["commit", "-q", "-m", "bench"])?;
    git(work, &["push", "-q", "origin", "HEAD:main"])?;
    Ok(())
}

/// A state repository whose builders run on `host` (`pod` or `tmux`), `projects` of them
/// (`bench/p00`, …), each with `agent` under `agent:`.
fn state(dir: &Path, projects: usize, host: &str, agent: &str, settings: &str) -> Res<PathBuf> {
    let origin = dir.join("origins/web-api.git");
    gaffer::cli::demo::bare_repo_with(&origin, &gaffer::cli::demo::sample_app(), "web-api")
        .map_err(|e| e.message)?;
    let mut files = gaffer::cli::demo::state_files(&origin, "1h");
    files.retain(|(p, _)| p == "gaffer.yaml");
    if let Some(s) = files[0].1.as_mut() {
        s.extend_from_slice(
            format!("builders: {{image: ghcr.io/example/gaffer:bench}}\n{settings}").as_bytes(),
        );
    }
    for i in 0..projects {
        let project = format!(
            "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
             agent:\n  runtime: opencode\n  host: {host}\n  model: scripted/m\n{agent}\
             lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true, mode: render-only}}\n\
             forge: {{kind: local, merge_method: merge}}\n",
            serde_json::Value::String(origin.display().to_string())
        );
        files.push((
            format!("projects/bench/p{i:02}/project.yaml"),
            Some(project.into_bytes()),
        ));
    }
    let state = dir.join("state.git");
    gaffer::cli::demo::bare_repo_with(&state, &files, "state").map_err(|e| e.message)?;
    Ok(state)
}

fn path_with(dirs: &[&Path]) -> Res<std::ffi::OsString> {
    let mut all: Vec<PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    all.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    Ok(std::env::join_paths(all)?)
}

/// `gaffer reconcile --lab cluster` on `state`, with `opencode` and its environment.
fn reconciler(
    dir: &Path,
    state: &Path,
    kubeconfig: &Path,
    opencode: &Path,
    env: &[(String, String)],
) -> Res<Proc> {
    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let mut cmd = Command::new(super::decisions::gaffer_binary()?);
    cmd.args(["reconcile", "--lab", "cluster", "--state"])
        .arg(state)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--builders")
        .arg(dir.join("builders"))
        .arg("--opencode")
        .arg(opencode)
        .arg("--tmux-socket")
        .arg(dir.join("tmux.sock"))
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    for (k, v) in env {
        cmd.arg("--opencode-env").arg(format!("{k}={v}"));
    }
    Ok(Proc(
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    ))
}

/// (RSS in KiB, CPU time in clock ticks) of a process.
fn usage(pid: u32) -> Res<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime); `after` starts at field 3.
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok((rss, ticks))
}

/// gaffer's RSS (KiB) and CPU (% of a core) idle over `window`, once `ready` holds.
fn idle_usage(pid: u32, window: Duration) -> Res<(u64, f64)> {
    let (_, t0) = usage(pid)?;
    let start = Instant::now();
    std::thread::sleep(window);
    let (rss, t1) = usage(pid)?;
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (t1 - t0) as f64 / hz / start.elapsed().as_secs_f64() * 100.0;
    Ok((rss, cpu))
}

/// The figures for `n` idle pod builders: gaffer's RSS (KiB) and CPU (% of a core) with
/// none and with `n`, and how long the `n` took to be up.
pub struct Idle {
    /// Builders.
    pub n: usize,
    /// (RSS KiB, CPU %) with no project.
    pub base: (u64, f64),
    /// (RSS KiB, CPU %) with `n` idle builders.
    pub loaded: (u64, f64),
    /// From the reconciler's start to every builder up.
    pub up: Duration,
}

fn builders_up(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("daemon.log"))
        .unwrap_or_default()
        .matches("builder started ahead of its tasks")
        .count()
}

/// gaffer with `n` idle builders on `host` (`pod` or `tmux`; the tmux ones unsandboxed, as
/// the stand-in is no real OpenCode), against the same with none.
pub fn idle(n: usize, host: &str, window: Duration) -> Res<Idle> {
    let mut out = Vec::new();
    let mut up = Duration::ZERO;
    for count in [0, n] {
        let tmp = tempfile::tempdir()?;
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let stand_in = bin.join("opencode");
        std::fs::write(&stand_in, STAND_IN)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755))?;
        let gaffer = super::decisions::gaffer_binary()?;
        let fake =
            FakeKube::with_kubelet(path_with(&[&bin, gaffer.parent().ok_or("gaffer dir")?])?);
        let kubeconfig = tmp.path().join("admin.kubeconfig");
        fake.write_kubeconfig(&kubeconfig);
        let agent = if host == "tmux" {
            "  sandbox: none\n"
        } else {
            ""
        };
        let state = state(tmp.path(), count, host, agent, "")?;
        let started = Instant::now();
        let d = reconciler(tmp.path(), &state, &kubeconfig, &stand_in, &[])?;
        let deadline = started + Duration::from_secs(600);
        while builders_up(tmp.path()) < count {
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {count} builders up after 600 s",
                    builders_up(tmp.path())
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        if count > 0 {
            up = started.elapsed();
        }
        // Settled: the start-up work is done before the window opens.
        std::thread::sleep(Duration::from_secs(5));
        out.push(idle_usage(d.0.id(), window)?);
        drop(d);
        drop(fake);
    }
    Ok(Idle {
        n,
        base: out[0],
        loaded: out[1],
        up,
    })
}

/// Task commit → the builder's first model request with the real OpenCode in its pod,
/// the builder suspended (`true`) or running.
pub fn first_request(suspended: bool) -> Res<Duration> {
    let tmp = tempfile::tempdir()?;
    let llm = Llm::start();
    let world = World::new(&llm);
    let gaffer = super::decisions::gaffer_binary()?;
    let fake = FakeKube::with_kubelet(path_with(&[
        world.binary.parent().ok_or("opencode dir")?,
        gaffer.parent().ok_or("gaffer dir")?,
    ])?);
    let kubeconfig = tmp.path().join("admin.kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let idle = if suspended { "1s" } else { "1h" };
    let state = state(
        tmp.path(),
        1,
        "pod",
        &format!("  pod: {{idle_suspend: {idle}}}\n"),
        "",
    )?;
    // A first task fails at once (nothing active any more): the builder is up, and is
    // suspended a second later when it should be.
    llm.script(
        "Bench first",
        vec![Step::text("working").failing_once(400), Step::text("DONE")],
    );
    let work = tmp.path().join("person");
    let task = |name: &str, title: &str| {
        (
            format!("projects/bench/p00/tasks/{name}/task.yaml"),
            format!("title: {title}\ndescription: Nothing.\n"),
        )
    };
    let _d = reconciler(tmp.path(), &state, &kubeconfig, &world.binary, &world.env())?;
    commit(&state, &work, &[task("first", "Bench first")])?;
    let pod = |fake: &FakeKube| {
        fake.get("v1", "pods", "bench-p00-lab", "gaffer-builder-0")
            .is_some()
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !f() {
            if Instant::now() > deadline {
                return Err(format!("P8: timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    };
    wait("the first task's request", &|| {
        !llm.log_of("Bench first").is_empty()
    })?;
    if suspended {
        wait("the builder suspended", &|| !pod(&fake))?;
    } else {
        wait("the builder up", &|| pod(&fake))?;
        std::thread::sleep(Duration::from_secs(3));
    }
    llm.script("Bench second", vec![Step::text("DONE: nothing to do")]);
    let committed = Instant::now();
    commit(&state, &work, &[task("second", "Bench second")])?;
    wait("the second task's first model request", &|| {
        !llm.log_of("Bench second").is_empty()
    })?;
    Ok(committed.elapsed())
}

/// The table rows of an idle measurement: RSS and CPU per builder.
pub fn idle_rows(id: &'static str, host: &str, idle: &Idle) -> Vec<super::Row> {
    let n = idle.n.max(1) as f64;
    let per_kib = idle.loaded.0.saturating_sub(idle.base.0) as f64 / n;
    vec![
        super::Row {
            id,
            what: format!(
                "gaffer's RSS per idle {host} builder, {} builders (all up in {:.1} s)",
                idle.n,
                idle.up.as_secs_f64()
            ),
            value: format!("{per_kib:.0} KiB"),
            floor: format!("no builder: {:.1} MiB", idle.base.0 as f64 / 1024.0),
            ratio: format!("{:.1} MiB in all", idle.loaded.0 as f64 / 1024.0),
            target: "≤ 1 MB",
        },
        super::Row {
            id,
            what: format!("gaffer's CPU per idle {host} builder, {} builders", idle.n),
            value: format!(
                "{:.3} % of a core",
                (idle.loaded.1 - idle.base.1).max(0.0) / n
            ),
            floor: format!("no builder: {:.2} %", idle.base.1),
            ratio: format!("{:.2} % in all", idle.loaded.1),
            target: "≤ 0.1 %",
        },
    ]
}
