//! Wiring the reconciler together: the state engine, the connectors, the controller loop and
//! the HTTP server. Used by `gaffer reconcile` and, in-process, by `gaffer demo`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{Context, ReconcileError, Tunables, runtime, task};
use crate::agent::Agents;
use crate::agent::host::TmuxHost;
use crate::agent::opencode::OpenCode;
use crate::agent::opencode::tmux::Tmux;
use crate::agent::scripted::ScriptedAgent;
use crate::chat::{LogNotifier, Notifier};
use crate::forge::LocalForge;
use crate::hours::Clock;
use crate::lab::junit::CommandTestRunner;
use crate::lab::render::RenderOnly;
use crate::server::{Metrics, ServerState};
use crate::state::path::ObjectKey;
use crate::store::watch::{self, Reason, Syncer};
use crate::store::{
    GitStore, Identity, StatusWriter, Tracker, Transport, WriterConfig, WriterRole,
};
use crate::workspace::Workspaces;

/// How to run the reconciler.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state remote (path or URL).
    pub state: String,
    /// Its branch.
    pub branch: String,
    /// gaffer's own data (clone, agent sessions, forge records, rendered manifests).
    pub data_dir: PathBuf,
    /// Where workspaces go.
    pub builders: PathBuf,
    /// Serve `/healthz`, `/metrics` and webhooks here.
    pub listen: Option<SocketAddr>,
    /// Secret for GitHub webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    /// Poll interval for URL remotes.
    pub poll: Duration,
    /// Full resync interval.
    pub resync: Duration,
    /// Reconciles at once.
    pub concurrency: usize,
    /// Echo notifications to stdout.
    pub echo: bool,
    /// Always use a data-dir clone, even for a local remote.
    pub force_clone: bool,
    /// Also post every notification to this URL, signed with this secret.
    pub notify_webhook: Option<(String, Vec<u8>)>,
    /// The pause before retrying after a transient agent error (doubled each attempt).
    pub retry_pause: Duration,
    /// How to run OpenCode builders; `None` leaves `runtime: opencode` projects blocked with
    /// an error saying so.
    pub opencode: Option<OpenCodeOptions>,
    /// Where lab deploys go.
    pub lab: LabMode,
    /// How long lab objects may take to become ready.
    pub lab_rollout: Duration,
    /// GitHub token (from the environment or a file; never the state repo).
    pub github_token: Option<String>,
    /// GitHub API base URL (GitHub Enterprise, fakes); default `https://api.github.com`.
    pub github_api: Option<String>,
    /// How often changes in review are polled when no webhook wakes them.
    pub forge_poll: Duration,
    /// The clock's file (tests): every change of it re-reads the state, so deadlines are
    /// checked against the new time at once.
    pub clock_file: Option<PathBuf>,
    /// The installed `bmad-method` package planning runs from (`None`: `GAFFER_BMAD`).
    pub bmad: Option<PathBuf>,
    /// How often what finished tasks left behind is cleaned up (`retention.worktrees`).
    pub gc_every: Duration,
}

/// Where lab deploys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LabMode {
    /// The cluster from the environment (in a pod, or KUBECONFIG / ~/.kube/config), probed
    /// at each deploy; while none answers, tasks wait in `Deploying` (`LabUnreachable`).
    #[default]
    Auto,
    /// The cluster from the environment; fail to start without one.
    Cluster,
    /// Render with `kubectl kustomize` and record, never apply (every project, as if each
    /// said `lab.mode: render-only`).
    RenderOnly,
}

/// How to run OpenCode builders.
#[derive(Debug, Clone)]
pub struct OpenCodeOptions {
    /// The `opencode` binary.
    pub binary: PathBuf,
    /// gaffer's executable (`gaffer exec-env` starts OpenCode with its password).
    pub launcher: PathBuf,
    /// The tmux socket; `None` is the user's default server (so `tmux attach` just works).
    pub tmux_socket: Option<PathBuf>,
    /// Extra environment for OpenCode processes.
    pub env: Vec<(String, String)>,
    /// How long a server may take to start.
    pub start_timeout: Duration,
    /// A git credential store file builder pods clone and fetch the projects' repos with.
    pub builder_git_credentials: Option<PathBuf>,
}

impl Options {
    /// Defaults for `state`, with data under `data_dir`.
    pub fn new(state: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            state: state.into(),
            branch: "main".into(),
            builders: data_dir.join("builders"),
            data_dir,
            listen: None,
            webhook_secret: None,
            poll: Duration::from_secs(10),
            resync: Duration::from_secs(600),
            concurrency: 4,
            echo: false,
            force_clone: false,
            notify_webhook: None,
            retry_pause: Duration::from_secs(30),
            opencode: None,
            lab: LabMode::Auto,
            lab_rollout: Duration::from_secs(300),
            github_token: None,
            github_api: None,
            forge_poll: Duration::from_secs(60),
            clock_file: None,
            bmad: None,
            gc_every: Duration::from_secs(3600),
        }
    }
}

/// A running reconciler's shared parts, for [`run`] and for callers that watch it (the demo).
#[derive(Debug, Clone)]
pub struct Handles {
    /// The state as the reconciler sees it.
    pub tracker: Arc<RwLock<Tracker>>,
    /// The state remote.
    pub transport: Transport,
}

/// Opens the state and builds the context; returns it with what [`run`] needs.
pub async fn start(
    opts: &Options,
    clock: Arc<dyn Clock>,
    notifier: Option<Arc<dyn Notifier>>,
) -> Result<
    (
        Arc<Context>,
        Handles,
        tokio::sync::mpsc::UnboundedReceiver<(ObjectKey, Duration)>,
    ),
    ReconcileError,
> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| ReconcileError::Startup(format!("{}: {e}", opts.data_dir.display())))?;
    crate::git::Git::check_version().map_err(|e| ReconcileError::Store(e.into()))?;
    let (state, branch, data, force) = (
        opts.state.clone(),
        opts.branch.clone(),
        opts.data_dir.clone(),
        opts.force_clone,
    );
    let transport =
        tokio::task::spawn_blocking(move || Transport::open(&state, &branch, &data, force))
            .await??;
    let tracker = Arc::new(RwLock::new(Tracker::new(
        Some(Identity::reconciler().email),
        Some(WriterRole::Reconciler.owned()),
    )));
    let writer = StatusWriter::spawn(
        transport.clone(),
        WriterConfig::new(WriterRole::Reconciler, Identity::reconciler()),
    );
    let (scheduler, sched_rx) = runtime::scheduler();
    let notifier = match notifier {
        Some(n) => n,
        None => {
            let log: Arc<dyn Notifier> = Arc::new(LogNotifier::new(
                Some(opts.data_dir.join("notifications.log")),
                opts.echo,
            ));
            match &opts.notify_webhook {
                Some((url, secret)) => {
                    let hook = crate::chat::webhook::WebhookNotifier::new(
                        url,
                        secret.clone(),
                        opts.data_dir.join("webhook-delivered.log"),
                    )?;
                    Arc::new(crate::chat::webhook::FanOut(vec![log, Arc::new(hook)]))
                }
                None => log,
            }
        }
    };
    let mut agents =
        Agents::default().register(Arc::new(ScriptedAgent::new(opts.data_dir.join("scripted"))));
    // Whether builders can be sandboxed here; a project that asks for the sandbox waits,
    // with a condition saying why, rather than running without it.
    let sandbox = match &opts.opencode {
        Some(_) => crate::agent::sandbox::bwrap_available().inspect_err(|why| {
            tracing::warn!(
                "builders cannot be sandboxed here: {why}. Projects with agent.sandbox: bwrap \
                 (the default) wait until they can; install bubblewrap (and allow user \
                 namespaces), or set agent.sandbox: none for a project to run it unsandboxed."
            );
        }),
        None => Err("no OpenCode configured".to_string()),
    };
    let lab = lab_deployer(opts).await?;
    // Builder pods run in the cluster the lab deploys to (a project asking for one while no
    // cluster answers waits, with a condition saying so).
    let pods = match &opts.opencode {
        Some(o) => Some(Arc::new(crate::agent::pod::host::PodHost::new(
            lab.clone(),
            pod_settings(o, &opts.data_dir)?,
        ))),
        None => None,
    };
    if let Some(o) = &opts.opencode {
        let wake = scheduler.clone();
        agents = agents.register(Arc::new(OpenCode::new(
            crate::agent::opencode::Config {
                binary: o.binary.clone(),
                launcher: o.launcher.clone(),
                state_dir: opts.data_dir.join("opencode"),
                host: Arc::new(TmuxHost::new(Tmux::new(o.tmux_socket.clone()))),
                env: o.env.clone(),
                start_timeout: o.start_timeout,
                bwrap: sandbox.clone().ok(),
                pod: pods.clone(),
            },
            &opts.builders,
            Some(Arc::new(move |t: &crate::names::TaskRef| {
                wake.now(ObjectKey::Task(t.clone()))
            })),
        )));
    }
    let ctx = Arc::new(Context {
        store: Arc::new(GitStore {
            transport: transport.clone(),
            tracker: tracker.clone(),
            writer,
        }),
        agents,
        notifier,
        forge: Arc::new(LocalForge::new(opts.data_dir.join("forge"))),
        github: match &opts.github_token {
            Some(token) => Some(Arc::new(
                crate::forge::github::GitHubForge::new(token, opts.github_api.as_deref())
                    .map_err(ReconcileError::Forge)?,
            )),
            None => None,
        },
        lab,
        tests: Arc::new(CommandTestRunner),
        workspaces: Arc::new(crate::workspace::Hosted {
            local: Workspaces::new(&opts.builders),
            remote: pods
                .clone()
                .map(|p| crate::workspace::remote::RemoteWorkspace::new(p, &opts.builders)),
        }),
        pods,
        planner: Arc::new(crate::workspace::bmad::Bmad::new(opts.bmad.clone())),
        clock,
        settings: Tunables {
            no_sandbox: sandbox.err(),
            poll_interval: Duration::from_millis(100),
            max_test_retries: 2,
            retry_pause: opts.retry_pause,
            data_dir: opts.data_dir.clone(),
            forge_poll: opts.forge_poll,
        },
        scheduler,
        metrics: Arc::new(super::metrics::ReconcileMetrics::default()),
        changes: tokio::sync::watch::channel(0).0,
    });
    Ok((ctx, Handles { tracker, transport }, sched_rx))
}

/// Wakes the tasks whose recorded change is `owner/name`'s pull request `number`.
fn pull_request_hook(ctx: Arc<Context>) -> crate::server::PullRequestHook {
    Arc::new(move |repo: &str, number: u64| {
        let suffix = format!("/{repo}/pull/{number}");
        let mut tasks: Vec<crate::names::TaskRef> = Vec::new();
        let _ = ctx.store.read(&mut |_, snap| {
            tasks = snap
                .tasks()
                .filter(|(_, e)| {
                    e.status.as_ref().is_some_and(|s| {
                        s.repos.values().any(|r| {
                            r.change
                                .as_ref()
                                .and_then(|c| c.url.as_deref())
                                .is_some_and(|u| u.ends_with(&suffix))
                        })
                    })
                })
                .map(|(t, _)| t)
                .collect();
        });
        for t in &tasks {
            ctx.scheduler.now(ObjectKey::Task(t.clone()));
        }
        tasks.len()
    })
}

/// What builder pods get from this reconciler: OpenCode's config (the one its tmux builders
/// read), OpenCode's switches, git credentials for the projects' repos, and gaffer's
/// namespace (their NetworkPolicy admits only gaffer).
fn pod_settings(
    o: &OpenCodeOptions,
    data_dir: &std::path::Path,
) -> Result<crate::agent::pod::host::PodHostSettings, ReconcileError> {
    let get = |k: &str| {
        o.env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| PathBuf::from(v))
            .or_else(|| std::env::var_os(k).map(PathBuf::from))
    };
    let config_home = get("XDG_CONFIG_HOME").or_else(|| get("HOME").map(|h| h.join(".config")));
    let opencode_config = config_home
        .map(|c| c.join("opencode/opencode.json"))
        .and_then(|f| std::fs::read_to_string(f).ok());
    let git_credentials = match &o.builder_git_credentials {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
            ReconcileError::Startup(format!("--builder-git-credentials {}: {e}", f.display()))
        })?),
        None => None,
    };
    Ok(crate::agent::pod::host::PodHostSettings {
        gaffer_namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "gaffer".into()),
        opencode_config,
        git_credentials,
        env: o
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("OPENCODE_"))
            .cloned()
            .collect(),
        start_timeout: o.start_timeout.max(Duration::from_secs(120)),
        state_dir: data_dir.join("opencode"),
    })
}

/// The lab deployer `opts` ask for.
async fn lab_deployer(opts: &Options) -> Result<Arc<dyn crate::lab::LabDeployer>, ReconcileError> {
    let dir = opts.data_dir.join("lab");
    let render_only = || -> Arc<dyn crate::lab::LabDeployer> { Arc::new(RenderOnly::new(&dir)) };
    match opts.lab {
        LabMode::RenderOnly => Ok(render_only()),
        // Probed at each deploy: a task waits while no cluster answers, never tests against
        // nothing.
        LabMode::Auto => Ok(Arc::new(crate::lab::auto::AutoDeployer::new(
            &dir,
            Duration::from_secs(5),
            opts.lab_rollout,
        ))),
        LabMode::Cluster => {
            match crate::lab::cluster::ClusterDeployer::connect(&dir, Duration::from_secs(5)).await
            {
                Ok(mut c) => {
                    c.rollout_timeout = opts.lab_rollout;
                    tracing::info!(cluster = ?c, "lab deploys go to the cluster");
                    Ok(Arc::new(c))
                }
                Err(why) => Err(ReconcileError::Startup(format!("--lab cluster: {why}"))),
            }
        }
    }
}

/// Every `every` (the first time a tenth of it after the start), removes what tasks that
/// finished `retention.worktrees` ago left on this machine, as `gaffer gc` does.
async fn clean_up_every(
    every: Duration,
    tracker: Arc<RwLock<Tracker>>,
    ctx: Arc<Context>,
    builders: PathBuf,
    opencode: PathBuf,
) {
    tokio::time::sleep(every / 10).await;
    loop {
        let (projects, keep) = {
            let t = tracker
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let snap = t.snapshot();
            (
                crate::workspace::gc::projects_of(snap),
                snap.settings.as_ref().map(|s| s.retention.worktrees()),
            )
        };
        if let Some(keep) = keep {
            let now = ctx.clock.now();
            let (b, o) = (builders.clone(), opencode.clone());
            let done = tokio::task::spawn_blocking(move || {
                crate::workspace::gc::collect(
                    &Workspaces::new(&b),
                    Some(&o),
                    &projects,
                    now,
                    keep,
                    false,
                )
            })
            .await;
            match done {
                Ok(Ok(r))
                    if r.worktrees.is_empty() && r.branches.is_empty() && r.skipped.is_empty() =>
                {
                    if !r.kept.is_empty() {
                        tracing::debug!(kept = ?r.kept, "cleanup: branches kept");
                    }
                }
                Ok(Ok(r)) => tracing::info!(
                    worktrees = ?r.worktrees,
                    branches = ?r.branches,
                    kept = ?r.kept,
                    skipped = ?r.skipped,
                    "cleaned up after finished tasks"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "cleanup after finished tasks failed"),
                Err(e) => tracing::warn!(error = %e, "cleanup after finished tasks panicked"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Runs the reconciler until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    opts: Options,
    ctx: Arc<Context>,
    handles: Handles,
    sched_rx: tokio::sync::mpsc::UnboundedReceiver<(ObjectKey, Duration)>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReconcileError> {
    let transport = handles.transport.clone();
    let (waker, wake_rx) = watch::channel();
    let _watcher = match transport.watch_dir() {
        Some(dir) => match watch::watch_refs(&dir, waker.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the state repository; polling instead");
                None
            }
        },
        None => None,
    };
    let mut background = Vec::new();
    if !transport.is_direct() || _watcher.is_none() {
        background.push(tokio::spawn(watch::poll(
            transport.clone(),
            opts.poll,
            waker.clone(),
        )));
    }
    background.push(tokio::spawn(watch::resync_every(
        opts.resync,
        waker.clone(),
    )));
    if let Some(f) = opts.clock_file.clone() {
        let w = waker.clone();
        background.push(tokio::spawn(async move {
            let mut last = std::fs::read_to_string(&f).ok();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let now = std::fs::read_to_string(&f).ok();
                if now != last {
                    last = now;
                    w.wake(Reason::Resync);
                }
            }
        }));
    }
    let (wake_tx, mut wakes) = tokio::sync::mpsc::unbounded_channel();
    background.push(tokio::spawn(
        Syncer::new(transport.clone(), handles.tracker.clone()).run(wake_rx, wake_tx),
    ));
    let c = ctx.clone();
    background.push(tokio::spawn(async move {
        while let Some(wake) = wakes.recv().await {
            tracing::debug!(target: "gaffer::hop", hop = "dispatched", keys = wake.keys.len(), full = wake.full);
            c.dispatch(&wake.keys);
        }
    }));
    waker.wake(Reason::Start);

    background.push(tokio::spawn(clean_up_every(
        opts.gc_every,
        handles.tracker.clone(),
        ctx.clone(),
        opts.builders.clone(),
        opts.data_dir.join("opencode"),
    )));

    let stats = ctx.metrics.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(addr) = opts.listen {
        let state = Arc::new(ServerState {
            webhook_secret: opts.webhook_secret.clone(),
            waker: Some(waker.clone()),
            metrics: Arc::new(Metrics::default()),
            runtime: Some(stats.clone()),
            on_pull_request: Some(pull_request_hook(ctx.clone())),
            usage: Some({
                let tracker = handles.tracker.clone();
                Arc::new(move || {
                    let t = tracker
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let mut by: std::collections::BTreeMap<String, crate::state::status::Usage> =
                        Default::default();
                    for (task, e) in t.snapshot().tasks() {
                        if let Some(u) = e.status.as_ref().and_then(|s| s.usage.as_ref()) {
                            by.entry(task.project.to_string()).or_default().add(u);
                        }
                    }
                    by
                })
            }),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| ReconcileError::Startup(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(%addr, "serving /healthz, /metrics and /webhooks/github");
        let mut stop = stop_rx.clone();
        background.push(tokio::spawn(async move {
            let _ = axum::serve(listener, crate::server::app(state))
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
    }
    let c = ctx.clone();
    runtime::run(
        sched_rx,
        opts.concurrency,
        stats,
        move |key| {
            let c = c.clone();
            async move {
                tracing::debug!(target: "gaffer::hop", hop = "reconcile", object = %key);
                let r = task::reconcile(key, c.clone()).await;
                if let Err(e) = &r {
                    c.metrics.error(e.reason());
                }
                r
            }
        },
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
    for b in background {
        b.abort();
    }
    Ok(())
}
