//! P6: a person's decision → delivered to the builder → recorded in the state repository,
//! through the real bot and reconciler (both in this process, as `gaffer demo` runs them),
//! Slack faked at the protocol level (Socket Mode and the signed Events API), and a `git
//! push` of an answer file; with the scripted builder and with the real OpenCode.
//!
//! Each hop is timed by the `gaffer::hop` trace events the production code emits (see
//! docs/store.md): this process installs a tracing layer that records when each one fires.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with};
use gaffer::reconcile::daemon::{self, LabMode, OpenCodeOptions, Options};
use serde_json::{Value, json};

use super::common::llm::{Llm, Step};
use super::common::opencode::World;
use super::common::slack::{APP_TOKEN, BOT_TOKEN, FakeSlack};
use super::{Res, git};

const ALICE: &str = "U0ALICE";
const SECRET: &str = "bench-signing-secret";
const TITLE: &str = "Bench decisions";
const PROJECT: &str = "bench/decide";

// --- the hops, as the production code reports them

/// One `gaffer::hop` event: when, which, and its other fields.
#[derive(Debug, Clone)]
pub struct Hop {
    pub at: Instant,
    pub hop: String,
    pub fields: BTreeMap<String, String>,
}

static HOPS: Mutex<Vec<Hop>> = Mutex::new(Vec::new());

struct Fields(BTreeMap<String, String>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}"));
    }
}

/// Records `gaffer::hop` events (its filter lets nothing else through).
struct HopLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HopLayer {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let at = Instant::now();
        let mut f = Fields(BTreeMap::new());
        e.record(&mut f);
        let hop = f.0.remove("hop").unwrap_or_default();
        if let Ok(mut h) = HOPS.lock() {
            h.push(Hop {
                at,
                hop,
                fields: f.0,
            });
        }
    }
}

/// Installs the hop recorder as this process's tracing subscriber.
/// With `log`, also logs to stderr as `RUST_LOG` says.
pub fn record_hops(log: bool) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    let fmt = log.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(tracing_subscriber::EnvFilter::from_default_env())
    });
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(
                HopLayer.with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    m.target() == "gaffer::hop"
                })),
            )
            .with(fmt),
    );
}

/// The first `hop` at or after `since` whose fields match.
pub fn first_hop(since: Instant, hop: &str, fields: &[(&str, &str)]) -> Option<Instant> {
    let h = HOPS.lock().ok()?;
    h.iter()
        .filter(|e| e.at >= since && e.hop == hop)
        .find(|e| {
            fields
                .iter()
                .all(|(k, v)| e.fields.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|e| e.at)
}

// --- the scene

/// Who builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    /// The scripted builder (deterministic, in process).
    Scripted,
    /// The real OpenCode in tmux against the scripted LLM.
    OpenCode,
}

/// How the person decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A button click delivered over Socket Mode.
    Socket,
    /// A button click POSTed, signed, to the Events API endpoint.
    Events,
    /// `git push` of `answers/<qid>.yaml`.
    Push,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Socket => "Slack click, Socket Mode",
            Via::Events => "Slack click, Events API",
            Via::Push => "git push of an answer file",
        }
    }
}

/// One decision's hops, each measured from the decision.
#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub delivered: Duration,
    pub recorded: Duration,
    /// Hop name → time since the decision.
    pub hops: Vec<(&'static str, Duration)>,
}

struct Scene {
    tmp: tempfile::TempDir,
    state: PathBuf,
    slack: Arc<FakeSlack>,
    events: u16,
    person: PathBuf,
    task: String,
    /// Task commit → the builder's first model request, hop by hop (real OpenCode only).
    first_request: Vec<(&'static str, Duration)>,
    stop: tokio::sync::watch::Sender<bool>,
    running: Vec<tokio::task::JoinHandle<()>>,
    // Kept alive for the scene's length (the OpenCode world stops its tmux when dropped).
    _llm: Option<Llm>,
    _world: Option<World>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn question(k: usize) -> String {
    format!("Decision {k}: which way?")
}

/// The gaffer binary next to this benchmark (built if needed: OpenCode is started through
/// `gaffer exec-env`). Built together with this example, so both use one build of the
/// library (a binary built alone resolves features without the dev-dependencies, and
/// compiles the library a second time).
pub(crate) fn gaffer_binary() -> Res<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(super::common::root()).args([
        "build",
        "--quiet",
        "--bin",
        "gaffer",
        "--example",
        "bench",
    ]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    if !cmd.status()?.success() {
        return Err("cargo build --bin gaffer failed".into());
    }
    Ok(profile_dir.join("gaffer"))
}

/// Commits task `name` as the person and, with the real OpenCode (`llm`), waits for its
/// first model request: each hop's time from the commit, the request last.
async fn first_request(
    person: &Path,
    name: &str,
    title: &str,
    description: &str,
    llm: Option<&Llm>,
) -> Res<Vec<(&'static str, Duration)>> {
    let file = person.join(format!("projects/{PROJECT}/tasks/{name}/task.yaml"));
    git(person, &["pull", "-q", "--rebase", "origin", "main"])?;
    std::fs::create_dir_all(file.parent().ok_or("parent")?)?;
    std::fs::write(
        &file,
        format!("title: {title}\ndescription: {description}\npriority: medium\n"),
    )?;
    git(person, &["add", "-A"])?;
    git(person, &["commit", "-q", "-m", &format!("A task: {title}")])?;
    let committed = Instant::now();
    git(person, &["push", "-q", "origin", "HEAD:main"])?;
    let mut out = Vec::new();
    let Some(llm) = llm else {
        return Ok(out);
    };
    let deadline = committed + Duration::from_secs(120);
    while llm.log_of(title).is_empty() {
        if Instant::now() > deadline {
            return Err(format!("no model request within 120 s of committing {name}").into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let asked = Instant::now();
    let task = format!("{PROJECT}/{name}");
    for (what, hop) in [
        ("reconciler saw the commit", "dispatched"),
        (
            "workspace ready (worktrees on the task branch)",
            "workspace-ready",
        ),
        ("OpenCode server up, session made", "session-ready"),
        ("task prompt sent", "prompted"),
    ] {
        let fields: &[(&str, &str)] = if hop == "dispatched" {
            &[]
        } else {
            &[("task", &task)]
        };
        if let Some(at) = first_hop(committed, hop, fields) {
            out.push((what, at - committed));
        }
    }
    out.push(("the builder's first model request", asked - committed));
    Ok(out)
}

impl Scene {
    /// A reconciler and a bot on a fresh state repository, and a task asking `n` questions
    /// committed; with the real OpenCode, `warm` says whether its builder is started ahead
    /// of the task (and waited for before the task is committed).
    async fn start(builder: Builder, n: usize, warm: bool) -> Res<Scene> {
        let tmp = tempfile::Builder::new().prefix("bench-p6-").tempdir()?;
        let root = tmp.path();
        // The app repository, with the scripted builder's script: n questions, then done.
        let mut script = String::from("steps:\n");
        for k in 1..=n {
            script.push_str(&format!(
                "  - question: {{text: {:?}, header: D{k}, options: [{{label: A (Recommended)}}, {{label: B}}]}}\n",
                question(k)
            ));
        }
        script.push_str("  - done: Decided everything\n");
        let origin = root.join("origins/app.git");
        bare_repo_with(
            &origin,
            &[
                ("README.md".into(), Some(b"# app\n".to_vec())),
                (".gaffer/script.yaml".into(), Some(script.into_bytes())),
            ],
            "app",
        )
        .map_err(|e| format!("{e:?}"))?;
        let agent = match builder {
            Builder::Scripted => "{runtime: scripted, script: app/.gaffer/script.yaml}".into(),
            Builder::OpenCode => format!(
                "{{runtime: opencode, model: scripted/m, permissions: [{{permission: \"*\", action: allow}}], warm: {warm}}}"
            ),
        };
        let settings = format!(
            "domain: lab.example.com\n\
             business_hours: {{timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"23:59\"}}\n\
             questions: {{timeout: 8h, on_timeout: wait, continue: at-deadline}}\n\
             limits: {{active_tasks_per_project: 2}}\n\
             authors: {{answers: [{PERSON}, person@example.com], accept_unsigned: true, slack_users: [{ALICE}], slack_names: {{{ALICE}: \"Alice Example <alice@example.com>\"}}}}\n"
        );
        let project = format!(
            "repos:\n  - {{name: app, url: {}, base: main}}\nagent: {agent}\n",
            json!(origin.display().to_string())
        );
        let state = root.join("state.git");
        bare_repo_with(
            &state,
            &[
                ("gaffer.yaml".into(), Some(settings.into_bytes())),
                (
                    format!("projects/{PROJECT}/project.yaml"),
                    Some(project.into_bytes()),
                ),
            ],
            "state",
        )
        .map_err(|e| format!("{e:?}"))?;
        let person = root.join("person");
        super::clone_repo(&state, &person)?;

        let (llm, world, opencode) = match builder {
            Builder::Scripted => (None, None, None),
            Builder::OpenCode => {
                let llm = Llm::start();
                let steps: Vec<Step> = (1..=n)
                    .map(|k| {
                        Step::tool(
                            "question",
                            json!({"questions": [{"question": question(k), "header": format!("D{k}"),
                                "multiple": false, "options": [
                                    {"label": "A (Recommended)", "description": "one way"},
                                    {"label": "B", "description": "the other"}]}]}),
                        )
                    })
                    .chain([Step::text("DONE: decided everything")])
                    .collect();
                llm.script(TITLE, steps);
                let world = World::new(&llm);
                let oc = OpenCodeOptions {
                    binary: world.binary.clone(),
                    launcher: gaffer_binary()?,
                    tmux_socket: Some(world.socket.clone()),
                    env: world.env(),
                    start_timeout: Duration::from_secs(60),
                    builder_git_credentials: None,
                };
                (Some(llm), Some(world), Some(oc))
            }
        };

        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut opts = Options::new(state.to_str().ok_or("path")?, root.join("data"));
        opts.builders = root.join("builders");
        opts.lab = LabMode::RenderOnly;
        opts.opencode = opencode;
        let booted = Instant::now();
        let (ctx, handles, rx) =
            daemon::start(&opts, Arc::new(gaffer::hours::SystemClock), None).await?;
        let mut running = vec![tokio::spawn({
            let s = until(stopped.clone());
            async move {
                if let Err(e) = daemon::run(opts, ctx, handles, rx, s).await {
                    eprintln!("reconciler: {e}");
                }
            }
        })];

        let slack = Arc::new(FakeSlack::start());
        let events = free_port();
        let mut bot = gaffer::chat::slack::bot::Options::new(
            state.to_str().ok_or("path")?,
            root.join("bot"),
            BOT_TOKEN,
        );
        bot.app_token = Some(APP_TOKEN.into());
        bot.signing_secret = Some(SECRET.as_bytes().to_vec());
        bot.listen = Some(([127, 0, 0, 1], events).into());
        bot.api_url = Some(slack.api_url());
        running.push(tokio::spawn({
            let s = until(stopped.clone());
            async move {
                if let Err(e) = gaffer::chat::slack::run(bot, s).await {
                    eprintln!("bot: {e}");
                }
            }
        }));

        if builder == Builder::OpenCode && warm {
            let deadline = Instant::now() + Duration::from_secs(120);
            while first_hop(booted, "builder-warm", &[]).is_none() {
                if Instant::now() > deadline {
                    return Err("the builder was not warm within 120 s".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        // The task, committed by the person.
        let task = format!("{PROJECT}/decisions");
        let description = format!("Ask {n} questions, one at a time.");
        let first_request =
            first_request(&person, "decisions", TITLE, &description, llm.as_ref()).await?;
        Ok(Scene {
            tmp,
            state,
            slack,
            events,
            person,
            task,
            first_request,
            stop,
            running,
            _llm: llm,
            _world: world,
        })
    }

    /// The question `qid`'s state and its first option's label, at the state's head.
    fn question(&self, qid: &str) -> Option<(String, String)> {
        let t = gaffer::store::Transport::open(
            self.state.to_str()?,
            "main",
            &self.tmp.path().join("ro"),
            false,
        )
        .ok()?;
        let mut tracker = gaffer::store::Tracker::new(None, None);
        tracker.resync(&t.repo(), t.head().ok()?).ok()?;
        let task = gaffer::names::TaskRef::parse(&self.task).ok()?;
        let q = tracker
            .snapshot()
            .task(&task)?
            .questions
            .get(&gaffer::names::Qid::new(qid).ok()?)?
            .clone();
        let label = q.options.first().map(|o| o.label.clone())?;
        Some((format!("{:?}", q.state), label))
    }

    async fn wait<T>(
        &self,
        secs: u64,
        what: &str,
        mut f: impl FnMut(&Scene) -> Option<T>,
    ) -> Res<T> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = f(self) {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Slack's `block_actions` payload for a click on option 0 of `qid`'s message.
    fn click_payload(&self, channel: &str, ts: &str, qid: &str) -> Value {
        json!({"type": "block_actions", "team": {"id": "T0GAFFER", "domain": "gaffer"},
            "user": {"id": ALICE, "username": "alice", "team_id": "T0GAFFER"},
            "api_app_id": "A0GAFFER", "trigger_id": format!("trig-{qid}"),
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": false},
            "channel": {"id": channel, "name": "c"},
            "response_url": "https://hooks.slack.com/actions/1",
            "actions": [{"type": "button", "action_id": format!("answer:{}:{qid}:0", self.task),
                "block_id": "b", "value": "v", "action_ts": "1700000000.1"}]})
    }

    /// One decision of question `k` via `via`; returns its timing.
    async fn decide(&self, k: usize, via: Via) -> Res<Timing> {
        let qid = format!("q-{k:03}");
        let (_, label) = self
            .wait(120, &format!("{qid} asked"), |s| {
                s.question(&qid).filter(|(st, _)| st == "Open")
            })
            .await?;
        let (channel, ts) = self
            .wait(60, &format!("{qid} posted in Slack"), |s| {
                s.slack
                    .messages()
                    .into_iter()
                    .find(|m| m.key() == format!("gaffer:q:{qid}"))
                    .map(|m| (m.channel, m.ts))
            })
            .await?;
        // Whatever the bot and the reconciler were doing about the question settles first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0;
        match via {
            Via::Socket => {
                let payload = self.click_payload(&channel, &ts, &qid);
                let slack = self.slack.clone();
                t0 = Instant::now();
                std::thread::spawn(move || slack.send_envelope("interactive", payload));
            }
            Via::Events => {
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair(
                        "payload",
                        &self.click_payload(&channel, &ts, &qid).to_string(),
                    )
                    .finish();
                let port = self.events;
                t0 = Instant::now();
                std::thread::spawn(move || post_signed(port, "/slack/interactive", &body));
            }
            Via::Push => {
                let file = self.person.join(format!(
                    "projects/{PROJECT}/tasks/decisions/answers/{qid}.yaml"
                ));
                std::fs::create_dir_all(file.parent().ok_or("parent")?)?;
                std::fs::write(&file, format!("choice: {label:?}\n"))?;
                git(&self.person, &["add", "-A"])?;
                git(
                    &self.person,
                    &["commit", "-q", "-m", &format!("{qid}: {label}")],
                )?;
                git(&self.person, &["pull", "-q", "--rebase", "origin", "main"])?;
                t0 = Instant::now();
                while git(&self.person, &["push", "-q", "origin", "HEAD:main"]).is_err() {
                    git(&self.person, &["pull", "-q", "--rebase", "origin", "main"])?;
                }
            }
        }
        let delivered = self
            .wait(60, &format!("{qid} delivered to the builder"), |_| {
                first_hop(t0, "answer-delivered", &[("qid", &qid)])
            })
            .await?;
        let recorded = self
            .wait(60, &format!("{qid} recorded"), |_| {
                first_hop(delivered, "published", &[("writer", "reconciler")])
            })
            .await?;
        let mut hops = Vec::new();
        let mut push = |name: &'static str, at: Option<Instant>| {
            if let Some(at) = at {
                hops.push((name, at.saturating_duration_since(t0)));
            }
        };
        if via != Via::Push {
            push(
                "bot received the click",
                first_hop(t0, "slack-received", &[]),
            );
            push(
                "bot's answer commit on the remote",
                first_hop(t0, "published", &[("writer", "slack bot")]),
            );
        }
        let dispatched = first_hop(t0, "dispatched", &[]);
        push("reconciler saw the commit", dispatched);
        push(
            "the task's reconcile started",
            dispatched.and_then(|d| first_hop(d, "reconcile", &[])),
        );
        push("answer delivered to the builder", Some(delivered));
        push("decision recorded (status commit)", Some(recorded));
        // The decision really is recorded as the person's.
        self.wait(30, &format!("{qid} answered in the state"), |s| {
            s.question(&qid).filter(|(st, _)| st == "Answered")
        })
        .await?;
        Ok(Timing {
            delivered: delivered - t0,
            recorded: recorded - t0,
            hops,
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        for r in self.running {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
    }
}

/// POSTs `body` to the bot's Events API endpoint, signed as Slack signs it.
fn post_signed(port: u16, path: &str, body: &str) {
    use std::io::{Read, Write};
    let ts = jiff::Timestamp::now().as_second();
    let sig = gaffer::chat::slack::verify::Verifier::new(SECRET.as_bytes().to_vec())
        .sign(ts, body.as_bytes());
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         X-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
}

/// What P6 measured for one builder and one way of deciding.
pub struct Measured {
    pub builder: Builder,
    pub via: Via,
    pub timings: Vec<Timing>,
}

/// Runs `per_via` decisions through each of `vias` with `builder`.
pub async fn p6(builder: Builder, vias: &[Via], per_via: usize) -> Res<Vec<Measured>> {
    let n = per_via * vias.len();
    let scene = Scene::start(builder, n, true).await?;
    let mut out = Vec::new();
    let mut k = 0;
    for &via in vias {
        let mut timings = Vec::new();
        for _ in 0..per_via {
            k += 1;
            match scene.decide(k, via).await {
                Ok(t) => timings.push(t),
                Err(e) => {
                    let logs = git(
                        &scene.state,
                        &[
                            "show",
                            &format!("main:projects/{PROJECT}/tasks/decisions/status.yaml"),
                        ],
                    )
                    .unwrap_or_else(|e| e.to_string());
                    scene.stop().await;
                    return Err(format!("{e}\n{logs}").into());
                }
            }
        }
        out.push(Measured {
            builder,
            via,
            timings,
        });
    }
    scene.stop().await;
    Ok(out)
}

/// Hop by hop, from a task's commit to its first model request (the request last).
pub type FirstRequest = Vec<(&'static str, Duration)>;

/// How a task's first model request followed its commit, with the real OpenCode started
/// ahead of the task (`warm`) or by it; when warm, also a second task's on the same builder
/// (one that has served a prompt already: the floor a warm start can reach).
pub async fn p7(warm: bool) -> Res<(FirstRequest, Option<FirstRequest>)> {
    let scene = Scene::start(Builder::OpenCode, 1, warm).await?;
    let first = scene.first_request.clone();
    let mut later = None;
    if let (true, Some(llm)) = (warm, &scene._llm) {
        llm.script("Bench later", vec![Step::text("DONE: nothing to do")]);
        let r = first_request(&scene.person, "later", "Bench later", "Nothing.", Some(llm));
        later = Some(r.await?);
    }
    scene.stop().await;
    Ok((first, later))
}
