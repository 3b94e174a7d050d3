//! The OpenCode builder for real: `gaffer reconcile` as a process, the pinned OpenCode binary
//! in tmux (its own socket), a scripted LLM on 127.0.0.1, real git. Full tasks on two
//! projects at once, the attach window, kill -9 of OpenCode mid-turn and of gaffer mid-turn.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app, state_files};
use gaffer::names::TaskRef;
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{MilestoneKind, Phase, TaskStatus};
use gaffer::store::{Tracker, Transport};
use serde_json::json;

use crate::common::llm::{Llm, Step, todos};
use crate::common::opencode::{World, alive, kill9};
use crate::common::{commit_to_bare, git};

pub(crate) struct Lab {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) builders: PathBuf,
    pub(crate) llm: Llm,
    pub(crate) world: World,
    /// `--lab` of the reconciler (`render-only` unless a test has a cluster).
    pub(crate) lab_mode: &'static str,
    /// More environment for the reconciler (a cluster's KUBECONFIG).
    pub(crate) env: Vec<(String, String)>,
}

/// A reconciler process, killed when dropped.
pub(crate) struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Waits up to `secs` for the process to end by itself (a crash point), with its status.
    pub(crate) fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the reconciler did not stop at its crash point within {secs}s"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Lab {
    /// A state repo with `projects` (names under `demo/`), each building its own copy of the
    /// sample app with `runtime: opencode`.
    pub(crate) fn new(projects: &[&str]) -> Self {
        Self::with_settings(projects, "")
    }

    /// Like [`Lab::new`], with `extra` lines appended to gaffer.yaml.
    pub(crate) fn with_settings(projects: &[&str], extra: &str) -> Self {
        Self::build(projects, "1h", "at-deadline", extra)
    }

    /// A lab whose questions time out after `timeout` (business hours: all day, every day) and
    /// continue `cont` (`immediately` or `at-deadline`).
    pub(crate) fn build(projects: &[&str], timeout: &str, cont: &str, extra: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let llm = Llm::start();
        let world = World::new(&llm);
        let first = tmp.path().join("origins/web-api.git");
        bare_repo_with(&first, &sample_app(), "web-api").unwrap();
        let mut files = state_files(&first, timeout);
        files.retain(|(p, _)| p == "gaffer.yaml");
        if let Some(settings) = files[0].1.as_mut() {
            let text = String::from_utf8(settings.clone())
                .unwrap()
                .replace("continue: at-deadline", &format!("continue: {cont}"));
            *settings = format!("{text}{extra}").into_bytes();
        }
        for name in projects {
            let origin = tmp.path().join(format!("origins/{name}.git"));
            if !origin.exists() {
                bare_repo_with(&origin, &sample_app(), name).unwrap();
            }
            let project = format!(
                "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
                 agent:\n  runtime: opencode\n  model: scripted/m\n  permissions:\n    - {{permission: \"*\", action: allow}}\n\
                 lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true}}\n\
                 forge: {{kind: local, merge_method: merge}}\n",
                json!(origin.display().to_string())
            );
            files.push((
                format!("projects/demo/{name}/project.yaml"),
                Some(project.into_bytes()),
            ));
        }
        let state = tmp.path().join("state.git");
        bare_repo_with(&state, &files, "state").unwrap();
        Lab {
            data: tmp.path().join("data"),
            builders: tmp.path().join("builders"),
            state,
            tmp,
            llm,
            world,
            lab_mode: "render-only",
            env: Vec::new(),
        }
    }

    /// Commits a task whose agent writes `app/fixed-<task>.txt` (which makes the lab tests
    /// pass) along `steps`.
    pub(crate) fn add_task(&self, project: &str, task: &str, title: &str, steps: Vec<Step>) {
        self.llm.script(title, steps);
        let path = format!("projects/demo/{project}/tasks/{task}/task.yaml");
        let body = format!(
            "title: {title}\ndescription: Tokens expire at once; make them last fifteen minutes.\n"
        );
        commit_to_bare(
            &self.state,
            "main",
            &[(path.as_str(), body.as_str())],
            "task",
        );
    }

    pub(crate) fn daemon(&self) -> Daemon {
        self.daemon_env(&[])
    }

    /// A reconciler with `env` added to its environment (secrets a builder must not see).
    pub(crate) fn daemon_env(&self, env: &[(&str, &str)]) -> Daemon {
        self.daemon_at(self.state.to_str().unwrap(), env)
    }

    /// A reconciler reading the state repository at `state` (a path or a URL of it).
    pub(crate) fn daemon_at(&self, state: &str, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args(["reconcile", "--lab", self.lab_mode, "--state", state])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--builders")
            .arg(&self.builders)
            .args(self.world.daemon_args())
            .env("RUST_LOG", "info")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(child)
    }

    /// A client of project `demo/<project>`'s OpenCode server, as gaffer reaches it.
    pub(crate) fn opencode_client(&self, project: &str) -> gaffer::agent::opencode::client::Client {
        use gaffer::agent::opencode::OpenCode;
        let dir = self.data.join("opencode");
        let record = OpenCode::records(&dir)
            .unwrap()
            .into_iter()
            .find(|r| r.project == format!("demo/{project}"))
            .expect("the builder's record");
        OpenCode::client_for(&dir, &record).expect("a client")
    }

    pub(crate) fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let t = Transport::open(
            self.state.to_str().unwrap(),
            "main",
            &self.tmp.path().join("ro"),
            false,
        )
        .unwrap();
        let mut tracker = Tracker::new(None, None);
        tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
        tracker.snapshot().clone()
    }

    /// Everything a failed wait should show: phases, reasons, questions, milestones, the
    /// LLM's requests and the daemon's log.
    pub(crate) fn report(&self, snap: &Snapshot) -> String {
        let mut report = String::new();
        for (t, e) in snap.tasks() {
            let st = e.status.as_ref();
            report.push_str(&format!(
                "{t}: {:?} {:?} {:?}\n",
                st.map(|s| s.phase),
                st.and_then(|s| s.reason.clone()),
                st.and_then(|s| s.message.clone())
            ));
            for (qid, q) in &e.questions {
                report.push_str(&format!(
                    "  {qid} {:?} {:?} {:?}\n",
                    q.state, q.decision, q.problems
                ));
            }
            if let Some(p) = &e.progress {
                for m in &p.milestones {
                    report.push_str(&format!("  {} {}\n", m.seq, m.text));
                }
            }
        }
        format!(
            "{report}\nLLM log: {:#?}\ndaemon log:\n{}",
            self.llm.log(),
            self.daemon_log()
        )
    }

    /// Waits until the LLM's request log satisfies `f`.
    pub(crate) fn wait_llm(
        &self,
        secs: u64,
        what: &str,
        f: impl Fn(&[crate::common::llm::Logged]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f(&self.llm.log()) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for the LLM to see {what}\n{}",
                    self.report(&self.snapshot())
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `f`, approving tasks that reach review on the way.
    pub(crate) fn wait_until(
        &self,
        secs: u64,
        what: &str,
        f: impl Fn(&Snapshot) -> bool,
    ) -> Snapshot {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut approved = std::collections::BTreeSet::new();
        loop {
            let snap = self.snapshot();
            if f(&snap) {
                return snap;
            }
            for (t, e) in snap.tasks() {
                if e.status
                    .as_ref()
                    .is_some_and(|s| s.phase == Phase::InReview)
                    && approved.insert(t.clone())
                {
                    let path = format!(
                        "projects/{}/{}/tasks/{}/approvals/ok.yaml",
                        t.project.category, t.project.project, t.task
                    );
                    let body = crate::common::approval_body(PERSON, e.status.as_deref());
                    crate::common::commit_as(
                        &self.state,
                        PERSON,
                        &[(path.as_str(), body.as_str())],
                        "ok",
                    );
                }
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.report(&snap));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub(crate) fn task(s: &str) -> TaskRef {
    TaskRef::parse(s).unwrap()
}

pub(crate) fn status_of(snap: &Snapshot, t: &str) -> Option<TaskStatus> {
    snap.task(&task(t))?.status.as_deref().cloned()
}

pub(crate) fn phase_of(snap: &Snapshot, t: &str) -> Option<Phase> {
    status_of(snap, t).map(|s| s.phase)
}

pub(crate) fn milestones(snap: &Snapshot, t: &str) -> Vec<(MilestoneKind, String, Option<String>)> {
    snap.task(&task(t))
        .and_then(|e| e.progress.clone())
        .map(|p| {
            p.milestones
                .into_iter()
                .map(|m| (m.kind, m.text, m.commit))
                .collect()
        })
        .unwrap_or_default()
}

/// The steps of a task that plans, writes the fix, completes its todos and says it is done.
pub(crate) fn fix_steps(task: &str) -> Vec<Step> {
    vec![
        Step {
            text: Some("I will plan first.".into()),
            tools: vec![(
                "todowrite".into(),
                todos(&[
                    ("Read the API code", "completed"),
                    ("Fix token expiry", "in_progress"),
                ]),
            )],
            ..Step::default()
        },
        Step::tool(
            "write",
            json!({"filePath": format!("repos/web-api/app/fixed-{task}.txt"), "content": "lifetime: 15m\n"}),
        ),
        Step::tool(
            "todowrite",
            todos(&[
                ("Read the API code", "completed"),
                ("Fix token expiry", "completed"),
            ]),
        ),
        Step::text("Token lifetime is now fifteen minutes.\nDONE: token expiry fixed"),
    ]
}

/// How often each step of a conversation reached the LLM.
pub(crate) fn step_counts(llm: &Llm, key: &str) -> BTreeMap<usize, usize> {
    let mut m = BTreeMap::new();
    for l in llm.log_of(key) {
        *m.entry(l.step).or_default() += 1;
    }
    m
}

/// User messages of the conversation's last request that contain `text`.
pub(crate) fn user_messages_with(llm: &Llm, key: &str, text: &str) -> usize {
    llm.log_of(key)
        .last()
        .map(|l| l.user_texts.iter().filter(|u| u.contains(text)).count())
        .unwrap_or(0)
}

#[test]
fn two_projects_run_full_tasks_in_their_own_builders() {
    let lab = Lab::new(&["web-api", "other"]);
    lab.add_task("web-api", "alpha", "Token fix alpha", fix_steps("alpha"));
    lab.add_task("other", "beta", "Token fix beta", fix_steps("beta"));
    let _d = lab.daemon();

    let snap = lab.wait_until(180, "both tasks promoted", |s| {
        phase_of(s, "demo/web-api/alpha") == Some(Phase::Promoted)
            && phase_of(s, "demo/other/beta") == Some(Phase::Promoted)
    });

    // One builder per project: its own tmux session with both windows, port and session.
    // Status records the host and how to attach; the port is the host's own business
    // (`gaffer builders` shows it, below).
    let a = status_of(&snap, "demo/web-api/alpha").unwrap();
    let b = status_of(&snap, "demo/other/beta").unwrap();
    let (aa, ba) = (a.agent.clone().unwrap(), b.agent.clone().unwrap());
    assert_eq!(aa.runtime, gaffer::state::spec::RuntimeKind::Opencode);
    assert_eq!(aa.host, Some(gaffer::state::status::HostKind::Tmux));
    assert!(
        aa.attach
            .as_deref()
            .unwrap()
            .ends_with("attach -t gaffer-demo-web-api"),
        "{aa:?}"
    );
    assert!(
        ba.attach
            .as_deref()
            .unwrap()
            .ends_with("attach -t gaffer-demo-other"),
        "{ba:?}"
    );
    assert_ne!(aa.session_id, ba.session_id);
    assert!(aa.session_id.as_deref().unwrap().starts_with("ses"));
    for s in ["gaffer-demo-web-api", "gaffer-demo-other"] {
        assert_eq!(lab.world.windows(s), ["server", "attach"], "windows of {s}");
    }
    assert!(
        a.links
            .iter()
            .any(|l| l.name == "attach" && l.url.contains("gaffer-demo-web-api")),
        "{:?}",
        a.links
    );

    // The attach window shows the very session gaffer drives, task text included.
    lab.world
        .wait_for_screen("gaffer-demo-web-api", "attach", "fifteen minutes", 60);

    // Milestones: todos as they completed, the edit with its checkpoint commit, the report.
    for (t, name) in [("demo/web-api/alpha", "alpha"), ("demo/other/beta", "beta")] {
        let ms = milestones(&snap, t);
        let texts: Vec<&str> = ms.iter().map(|(_, t, _)| t.as_str()).collect();
        let pos = |needle: &str| {
            texts
                .iter()
                .position(|t| t.contains(needle))
                .unwrap_or_else(|| panic!("no milestone {needle:?} in {texts:#?}"))
        };
        assert!(pos("✔ Read the API code") < pos("📝 edited"));
        assert!(pos("📝 edited") < pos("✔ Fix token expiry"));
        assert!(pos("✔ Fix token expiry") < pos("🏁 token expiry fixed"));
        assert!(pos("🏁 token expiry fixed") < pos("Running → Deploying"));
        assert_eq!(
            texts
                .iter()
                .filter(|t| t.contains("✔ Fix token expiry"))
                .count(),
            1
        );
        let (_, _, commit) = &ms[pos("📝 edited")];
        let commit = commit
            .as_deref()
            .expect("the edit milestone names its checkpoint");
        let wt = lab.builders.join(format!(
            "demo-{}/repos/web-api",
            t.split('/').nth(1).unwrap()
        ));
        assert_eq!(
            git(&wt, &["show", &format!("{commit}:app/fixed-{name}.txt")]),
            "lifetime: 15m"
        );
    }

    // Each step reached the model once; the task prompt was sent once.
    for key in ["Token fix alpha", "Token fix beta"] {
        assert_eq!(
            step_counts(&lab.llm, key),
            BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)]),
            "{key}"
        );
        assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
    }

    // The password stays out of the state repository.
    let env = std::fs::read_to_string(lab.data.join("opencode/demo-web-api.env")).unwrap();
    let password = env
        .lines()
        .find_map(|l| l.strip_prefix("OPENCODE_SERVER_PASSWORD="))
        .unwrap();
    let status_yaml = git(
        &lab.state,
        &["show", "main:projects/demo/web-api/tasks/alpha/status.yaml"],
    );
    assert!(status_yaml.contains("host: tmux"), "{status_yaml}");
    assert!(!status_yaml.contains(password));
    assert!(!git(&lab.state, &["log", "-p", "main"]).contains(password));

    // `gaffer builders` lists both. Its health check waits 3 s for a server: on a loaded
    // machine a busy server can miss that once, so it is asked again for a while.
    let builders = || {
        let out = Command::new(env!("CARGO_BIN_EXE_gaffer"))
            .args(["builders", "--json", "--data-dir"])
            .arg(&lab.data)
            .arg("--tmux-socket")
            .arg(&lab.world.socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rows = builders();
    while !rows.as_array().unwrap().iter().all(|r| {
        r["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("up (opencode"))
    }) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(500));
        rows = builders();
    }
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let web = rows
        .iter()
        .find(|r| r["project"] == "demo/web-api")
        .unwrap();
    let other = rows.iter().find(|r| r["project"] == "demo/other").unwrap();
    assert!(web["port"].is_u64() && other["port"].is_u64(), "{rows:#?}");
    assert_ne!(web["port"], other["port"]);
    assert_eq!(web["tmux"], "gaffer-demo-web-api");
    assert!(
        web["state"]
            .as_str()
            .unwrap()
            .starts_with("up (opencode 1.18.33)"),
        "{web:#?}"
    );
    assert_eq!(web["sessions"][0][1], json!(aa.session_id.unwrap()));
    assert!(web["last_event"].is_string(), "{web:#?}");
}

#[test]
fn opencode_killed_mid_turn_is_restarted_and_the_turn_resumed_once() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix restart";
    let mut steps = fix_steps("gamma");
    // Write a second file in a held step: OpenCode is killed while it waits for the model.
    steps.insert(
        2,
        Step::tool(
            "write",
            json!({"filePath": "repos/web-api/app/notes-gamma.txt", "content": "after restart\n"}),
        )
        .held(),
    );
    lab.add_task("web-api", "gamma", key, steps);
    let _d = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let before = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    kill9(before);

    let snap = lab.wait_until(180, "the task promoted", |s| {
        phase_of(s, "demo/web-api/gamma") == Some(Phase::Promoted)
    });
    let after = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    assert_ne!(before, after, "the server was started again");
    assert!(!alive(before));
    // The same session, continued with one prompt saying what happened.
    let st = status_of(&snap, "demo/web-api/gamma").unwrap();
    let agent = st.agent.unwrap();
    assert_eq!(
        agent
            .prompts_sent
            .iter()
            .filter(|p| p.starts_with("resume-"))
            .count(),
        1,
        "{:?}",
        agent.prompts_sent
    );
    assert_eq!(
        step_counts(&lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 2), (3, 1), (4, 1)]),
        "only the cut-off step was asked again"
    );
    assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
    assert_eq!(user_messages_with(&lab.llm, key, "was restarted"), 1);
    let ms = milestones(&snap, "demo/web-api/gamma");
    assert_eq!(
        ms.iter()
            .filter(|(_, t, _)| t.contains("restarted mid-turn"))
            .count(),
        1
    );
    assert_eq!(
        git(
            &lab.builders.join("demo-web-api/repos/web-api"),
            &["show", "gaffer/gamma:app/notes-gamma.txt"]
        ),
        "after restart"
    );
}

#[test]
fn gaffer_killed_mid_turn_adopts_the_running_builder_and_repeats_nothing() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix adopt";
    let mut steps = fix_steps("delta");
    steps[1].hold = true;
    lab.add_task("web-api", "delta", key, steps);
    let d = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let server = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    drop(d); // SIGKILL
    // OpenCode finishes the turn while gaffer is down.
    lab.llm.release();
    lab.wait_llm(60, "the last step", |log| log.iter().any(|l| l.step == 3));
    let _d = lab.daemon();
    let snap = lab.wait_until(180, "the task promoted", |s| {
        phase_of(s, "demo/web-api/delta") == Some(Phase::Promoted)
    });
    assert_eq!(
        lab.world.pane_pid("gaffer-demo-web-api", "server"),
        Some(server),
        "the running server was adopted, not restarted"
    );
    assert_eq!(
        step_counts(&lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)])
    );
    let log = lab.llm.log_of(key);
    assert_eq!(
        log.last().unwrap().user_texts.len(),
        1,
        "no prompt but the task"
    );
    let ms = milestones(&snap, "demo/web-api/delta");
    for needle in [
        "✔ Read the API code",
        "📝 edited",
        "✔ Fix token expiry",
        "🏁",
    ] {
        assert_eq!(
            ms.iter().filter(|(_, t, _)| t.contains(needle)).count(),
            1,
            "{needle} in {ms:#?}"
        );
    }
    let st = status_of(&snap, "demo/web-api/delta").unwrap();
    assert_eq!(st.agent.unwrap().prompts_sent, ["task"]);
}

#[test]
fn a_project_builder_starts_before_its_first_task_and_the_task_uses_it() {
    let lab = Lab::new(&["web-api"]);
    let _d = lab.daemon();
    // The project alone (no task yet) brings its builder up.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lab
        .daemon_log()
        .contains("builder started ahead of its tasks")
    {
        assert!(
            Instant::now() < deadline,
            "the builder was not started ahead of its task\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let server = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    assert!(lab.llm.log().is_empty(), "nothing asked of the model yet");

    let key = "Token fix warm";
    lab.add_task("web-api", "warm", key, fix_steps("warm"));
    let snap = lab.wait_until(180, "the task promoted", |s| {
        phase_of(s, "demo/web-api/warm") == Some(Phase::Promoted)
    });
    assert_eq!(
        lab.world.pane_pid("gaffer-demo-web-api", "server"),
        Some(server),
        "the task's session went to the warm server, which was not restarted"
    );
    assert_eq!(
        lab.daemon_log().matches("OpenCode server on port").count(),
        1,
        "one server start\n{}",
        lab.daemon_log()
    );
    let st = status_of(&snap, "demo/web-api/warm").unwrap();
    assert_eq!(st.agent.unwrap().prompts_sent, ["task"]);
}

#[test]
fn a_quiet_turn_gets_a_summary_and_cancel_aborts_it_and_stops_the_builder() {
    let lab = Lab::with_settings(&["web-api"], "progress: {summary_every: 2s}\n");
    let key = "Token fix cancel";
    let mut steps = fix_steps("eps");
    steps[1].hold = true;
    lab.add_task("web-api", "eps", key, steps);
    let _d = lab.daemon();
    // Summaries come every 2s of quiet; wait for one after the first todo.
    let snap = lab.wait_until(120, "a summary after the first todo", |s| {
        milestones(s, "demo/web-api/eps")
            .iter()
            .any(|(k, t, _)| *k == MilestoneKind::Summary && t.contains("todos 1 done"))
    });
    let ms = milestones(&snap, "demo/web-api/eps");
    let (_, summary, _) = ms
        .iter()
        .rfind(|(k, _, _)| *k == MilestoneKind::Summary)
        .unwrap();
    assert!(summary.contains("no files changed yet"), "{summary}");
    assert!(summary.contains("todos 1 done, 1 left"), "{summary}");
    assert!(summary.contains("latest: I will plan first."), "{summary}");
    assert!(
        lab.world
            .pane_pid("gaffer-demo-web-api", "server")
            .is_some()
    );

    commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/eps/task.yaml",
            "title: Token fix cancel\ncancel: true\n",
        )],
        "cancel",
    );
    lab.wait_until(60, "the task cancelled", |s| {
        phase_of(s, "demo/web-api/eps") == Some(Phase::Cancelled)
    });
    let (up, _) = lab
        .world
        .tmux(&["has-session", "-t", "=gaffer-demo-web-api"]);
    assert!(!up, "the builder's tmux session is gone");
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(lab.data.join("opencode/demo-web-api.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["stopped"], json!(true));
    // The cut-off step was never answered and nothing came after it.
    assert_eq!(step_counts(&lab.llm, key), BTreeMap::from([(0, 1), (1, 1)]));
}

#[test]
fn a_model_error_fails_the_task_with_the_reason_and_retry_resumes_the_session() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix error";
    let mut steps = fix_steps("zeta");
    steps[1] = steps[1].clone().failing_once(400);
    lab.add_task("web-api", "zeta", key, steps);
    let _d = lab.daemon();
    let snap = lab.wait_until(120, "the task failed", |s| {
        phase_of(s, "demo/web-api/zeta") == Some(Phase::Failed)
    });
    let st = status_of(&snap, "demo/web-api/zeta").unwrap();
    assert_eq!(st.reason.as_deref(), Some("AgentFailed"));
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("scripted failure"),
        "{:?}",
        st.message
    );
    let session = st.agent.as_ref().unwrap().session_id.clone();

    commit_to_bare(
        &lab.state,
        "main",
        &[(
            "projects/demo/web-api/tasks/zeta/task.yaml",
            "title: Token fix error\nretry: 1\n",
        )],
        "retry",
    );
    let snap = lab.wait_until(180, "the task promoted", |s| {
        phase_of(s, "demo/web-api/zeta") == Some(Phase::Promoted)
    });
    let st = status_of(&snap, "demo/web-api/zeta").unwrap();
    assert_eq!(
        st.agent.unwrap().session_id,
        session,
        "the same session, resumed"
    );
    assert_eq!(
        step_counts(&lab.llm, key),
        BTreeMap::from([(0, 1), (1, 2), (2, 1), (3, 1)])
    );
    assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
}

#[test]
fn a_builder_whose_tmux_session_vanished_is_started_again_with_both_windows() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix reboot";
    let mut steps = fix_steps("theta");
    steps[1].hold = true;
    lab.add_task("web-api", "theta", key, steps);
    let _d = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    let before = lab.world.pane_pid("gaffer-demo-web-api", "server").unwrap();
    // As after a reboot: the whole tmux session, server and attach window, is gone.
    let (ok, _) = lab
        .world
        .tmux(&["kill-session", "-t", "=gaffer-demo-web-api"]);
    assert!(ok);
    kill9(before);
    let snap = lab.wait_until(180, "the task promoted", |s| {
        phase_of(s, "demo/web-api/theta") == Some(Phase::Promoted)
    });
    assert_eq!(
        lab.world.windows("gaffer-demo-web-api"),
        ["server", "attach"]
    );
    assert_ne!(
        lab.world.pane_pid("gaffer-demo-web-api", "server"),
        Some(before)
    );
    let st = status_of(&snap, "demo/web-api/theta").unwrap();
    let prompts = st.agent.unwrap().prompts_sent;
    assert_eq!(
        prompts.iter().filter(|p| p.starts_with("resume-")).count(),
        1,
        "{prompts:?}"
    );
    assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
}
