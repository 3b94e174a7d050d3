//! Phase table tests in the style of controller-rs: a fake [`Context`] (an in-memory state
//! snapshot, a scripted agent, a workspace, lab, test runner and forge that only record, a
//! manual clock) and, per phase, tables of "given these files and these connector answers,
//! this transition, these effects, this action". No git, no processes: the whole set runs in
//! well under a second.

mod budget;
mod gates;
mod phone;
mod planning;
mod questions;
mod review;
mod running;
mod warm;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::{Loaded, Plan, decide};
use crate::agent::{
    AgentError, AgentEvent, AgentRuntime, AskKind, AskedQuestion, BuilderSetup, Polled, Reply,
    Session, SessionRequest,
};
use crate::forge::{Change, ChangeRequest, Forge, ForgeError, ImageBuild, Reviews};
use crate::lab::{DeployOutcome, DeployRequest, LabDeployer, LabError, TestRunner};
use crate::names::{ProjectRef, RepoName, TaskRef};
use crate::reconcile::{Action, Context, ReconcileError, Tunables};
use crate::state::snapshot::{RawContent, Snapshot};
use crate::state::spec::{ProjectSpec, RuntimeKind};
use crate::state::status::{
    HostKind, Phase, QuestionOption, RepoStatus, TaskStatus, TestFailure, TestResults,
};
use crate::store::{Signature, Store, StoreError, Update};
use crate::workspace::{Workspace, WorkspaceError};

pub const TASK: &str = "demo/api/jwt";
pub const STATUS: &str = "projects/demo/api/tasks/jwt/status.yaml";
pub const NOW: &str = "2026-11-25T10:00:00Z";

fn task() -> TaskRef {
    TaskRef::parse(TASK).unwrap()
}

/// The state repository in memory, with who made the last change of each path.
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: Mutex<BTreeMap<String, String>>,
    authors: Mutex<BTreeMap<String, Signature>>,
    writes: Mutex<Vec<Vec<Update>>>,
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn read(&self, f: &mut dyn FnMut(Option<String>, &Snapshot)) -> Result<(), StoreError> {
        let files = self.files.lock().unwrap().clone();
        let snap = Snapshot::from_files(
            files
                .into_iter()
                .map(|(p, c)| (p, RawContent::Blob(c.into_bytes()))),
        );
        f(Some("0".repeat(40)), &snap);
        Ok(())
    }
    async fn write(
        &self,
        updates: Vec<Update>,
    ) -> Result<BTreeSet<crate::state::ObjectKey>, StoreError> {
        self.writes.lock().unwrap().push(updates);
        Ok(BTreeSet::new())
    }
    async fn last_change(
        &self,
        _head: &str,
        path: &str,
        _allowed_signers: &[String],
    ) -> Result<Option<Signature>, StoreError> {
        Ok(self.authors.lock().unwrap().get(path).cloned())
    }
}

/// A scripted agent: polls return what the table queued; everything sent is recorded.
#[derive(Debug, Default)]
pub struct FakeAgent {
    pub polls: Mutex<VecDeque<Polled>>,
    pub sent: Mutex<Vec<(String, String)>>,
    pub answers: Mutex<Vec<(String, Vec<String>)>>,
    pub calls: Mutex<Vec<String>>,
    pub wakes: bool,
    /// Prompt id prefixes the session already has (sent before a crash).
    pub delivered: Mutex<Vec<String>>,
    /// Polls wait for this (a busy builder) when set.
    pub poll_gate: Option<Arc<tokio::sync::Notify>>,
    /// Polls started.
    pub polls_started: std::sync::atomic::AtomicUsize,
    /// The builders asked for, in order: `("warm" | "session", setup)`.
    pub builders: Mutex<Vec<(&'static str, BuilderSetup)>>,
    /// The sessions asked for: their stage and permission rules.
    pub sessions: Mutex<Vec<(crate::agent::Stage, Vec<crate::state::spec::PermissionRule>)>>,
}

impl FakeAgent {
    pub fn sent_ids(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(i, _)| i.clone())
            .collect()
    }
    pub fn sent_text(&self, id_prefix: &str) -> String {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .find(|(i, _)| i.starts_with(id_prefix))
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl AgentRuntime for FakeAgent {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Scripted
    }
    fn wakes(&self) -> bool {
        self.wakes
    }
    fn warms(&self) -> bool {
        true
    }
    async fn warm(&self, setup: &BuilderSetup) -> Result<bool, AgentError> {
        self.builders.lock().unwrap().push(("warm", setup.clone()));
        Ok(true)
    }
    async fn ensure_session(
        &self,
        req: &SessionRequest,
        existing: Option<&str>,
    ) -> Result<Session, AgentError> {
        self.builders
            .lock()
            .unwrap()
            .push(("session", req.builder.clone()));
        self.sessions
            .lock()
            .unwrap()
            .push((req.stage, req.permissions.clone()));
        Ok(Session {
            id: existing.unwrap_or("ses-1").into(),
            host: HostKind::Tmux,
            attach: Some("tmux attach -t gaffer-demo-api".into()),
            sandboxed: Some(true),
        })
    }
    async fn delivered(&self, _t: &TaskRef, _s: &str, id: &str) -> Result<bool, AgentError> {
        Ok(self
            .delivered
            .lock()
            .unwrap()
            .iter()
            .any(|p| id.starts_with(p.as_str())))
    }
    async fn send(&self, _t: &TaskRef, _s: &str, id: &str, text: &str) -> Result<(), AgentError> {
        self.sent.lock().unwrap().push((id.into(), text.into()));
        Ok(())
    }
    async fn poll(&self, _t: &TaskRef, _s: &str, cursor: u64) -> Result<Polled, AgentError> {
        self.polls_started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(gate) = &self.poll_gate {
            gate.notified().await;
        }
        Ok(self.polls.lock().unwrap().pop_front().unwrap_or(Polled {
            events: vec![],
            cursor,
            waiting: false,
            interrupted: None,
            usage: Vec::new(),
        }))
    }
    async fn answer(&self, _t: &TaskRef, _s: &str, r: &Reply<'_>) -> Result<(), AgentError> {
        self.answers
            .lock()
            .unwrap()
            .push((r.request_id.into(), r.choice.to_vec()));
        Ok(())
    }
    async fn interrupt(&self, _t: &TaskRef, _s: &str) -> Result<(), AgentError> {
        self.calls.lock().unwrap().push("interrupt".into());
        Ok(())
    }
    async fn stop(&self, _t: &TaskRef, _s: &str) -> Result<(), AgentError> {
        self.calls.lock().unwrap().push("stop".into());
        Ok(())
    }
}

/// A workspace that only records: checkpoints report `dirty` repos as new commits.
#[derive(Debug, Default)]
pub struct FakeWorkspace {
    pub calls: Mutex<Vec<String>>,
    pub dirty: Mutex<bool>,
}

impl FakeWorkspace {
    fn call(&self, c: impl Into<String>) {
        self.calls.lock().unwrap().push(c.into());
    }
    pub fn called(&self, prefix: &str) -> bool {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with(prefix))
    }
}

fn per_repo(p: &ProjectSpec, commit: &str) -> BTreeMap<RepoName, String> {
    p.repos
        .iter()
        .map(|r| (r.name.value.clone(), commit.to_string()))
        .collect()
}

impl Workspace for FakeWorkspace {
    fn local_dir(&self, p: &ProjectRef, _spec: &ProjectSpec) -> PathBuf {
        PathBuf::from("/builders").join(p.builder_name())
    }
    fn mirror_dir(&self, _url: &str) -> PathBuf {
        PathBuf::from("/builders/.mirrors/x.git")
    }
    fn builder_dirs(&self, _p: &ProjectRef, _spec: &ProjectSpec) -> Vec<PathBuf> {
        vec![PathBuf::from("/builders/.mirrors/x.git")]
    }
    fn warm(&self, _p: &ProjectRef, _spec: &ProjectSpec) -> Result<bool, WorkspaceError> {
        self.call("warm");
        Ok(true)
    }
    fn prepare(
        &self,
        t: &TaskRef,
        p: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, RepoStatus>, WorkspaceError> {
        self.call("prepare");
        Ok(p.repos
            .iter()
            .map(|r| {
                (
                    r.name.value.clone(),
                    RepoStatus {
                        branch: t.branch(),
                        base_commit: Some("b".repeat(40)),
                        head_commit: Some("b".repeat(40)),
                        change: None,
                    },
                )
            })
            .collect())
    }
    fn checkpoint(
        &self,
        _t: &TaskRef,
        p: &ProjectSpec,
        m: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.call(format!("checkpoint {m}"));
        Ok(if *self.dirty.lock().unwrap() {
            per_repo(p, &"c".repeat(40))
        } else {
            BTreeMap::new()
        })
    }
    fn changed_files(
        &self,
        _t: &TaskRef,
        _p: &ProjectSpec,
        _b: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError> {
        Ok(vec!["api/app.py".into()])
    }
    fn branch_off(
        &self,
        t: &TaskRef,
        p: &ProjectSpec,
        b: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError> {
        self.call(format!("branch_off {b}"));
        Ok((t.branch(), per_repo(p, &"p".repeat(40))))
    }
    fn confirm(
        &self,
        _t: &TaskRef,
        p: &ProjectSpec,
        parent: &str,
        b: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.call(format!("confirm {parent} {b}"));
        Ok(per_repo(p, &"f".repeat(40)))
    }
    fn set_aside(
        &self,
        _t: &TaskRef,
        p: &ProjectSpec,
        parent: &str,
        b: &str,
        _pt: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        self.call(format!("set_aside {parent} {b}"));
        Ok(per_repo(p, &"a".repeat(40)))
    }
    fn heads(
        &self,
        _t: &TaskRef,
        p: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        Ok(per_repo(p, &"h".repeat(40)))
    }
}

/// A cluster lab that applies nothing: deploys succeed (or fail with `fail`, or find no
/// cluster while `unreachable`), tests return `results`; `rendered` reports render-only
/// deploys.
#[derive(Debug, Default)]
pub struct FakeLab {
    pub fail: Mutex<Option<String>>,
    pub unreachable: Mutex<bool>,
    pub rendered: bool,
    pub deploys: Mutex<Vec<DeployRequest>>,
    pub results: Mutex<VecDeque<TestResults>>,
    /// A refused overlay (the work's fault): `LabError::Invalid` with this message.
    pub refuse: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl LabDeployer for FakeLab {
    async fn deploy(&self, req: &DeployRequest) -> Result<DeployOutcome, LabError> {
        self.deploys.lock().unwrap().push(req.clone());
        if let Some(why) = self.fail.lock().unwrap().clone() {
            return Err(LabError::Cluster(why));
        }
        if let Some(message) = self.refuse.lock().unwrap().clone() {
            return Err(LabError::Invalid {
                overlay: "api/deploy".into(),
                message,
            });
        }
        if *self.unreachable.lock().unwrap() {
            return Err(LabError::Unreachable("connection refused".into()));
        }
        Ok(DeployOutcome {
            namespace: req.project.lab_namespace(),
            mode: if self.rendered {
                "render-only"
            } else {
                "cluster"
            }
            .into(),
            inventory: vec![],
            urls: vec![req.url.clone()],
            no_op: false,
            digest: "d".into(),
        })
    }
    fn mode(&self) -> &'static str {
        "render-only"
    }
}

#[async_trait::async_trait]
impl TestRunner for FakeLab {
    async fn run(
        &self,
        _c: &[String],
        _w: &std::path::Path,
        _n: &str,
        _u: &str,
    ) -> Result<TestResults, LabError> {
        Ok(self
            .results
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(TestResults {
                suite: "lab".into(),
                passed: 3,
                failed: 0,
                skipped: 0,
                failures: vec![],
                at: NOW.parse().unwrap(),
            }))
    }
}

/// Test results with `failed` failures out of three.
pub fn results(failed: u32) -> TestResults {
    TestResults {
        suite: "lab".into(),
        passed: 3 - failed,
        failed,
        skipped: 0,
        failures: (0..failed)
            .map(|i| TestFailure {
                name: format!("test_{i}"),
                message: "assert 401 == 200".into(),
            })
            .collect(),
        at: NOW.parse().unwrap(),
    }
}

/// A forge whose answers the table sets.
#[derive(Debug, Default)]
pub struct FakeForge {
    pub opened: Mutex<Vec<ChangeRequest>>,
    pub reviews: Mutex<Reviews>,
    pub merge: Mutex<Option<ForgeError>>,
    pub merged: Mutex<Vec<u64>>,
}

#[async_trait::async_trait]
impl Forge for FakeForge {
    async fn open_change(&self, req: &ChangeRequest) -> Result<Change, ForgeError> {
        self.opened.lock().unwrap().push(req.clone());
        Ok(Change {
            number: 7,
            repo_url: req.repo_url.clone(),
            head_branch: req.head_branch.clone(),
            base: req.base.clone(),
            title: req.title.clone(),
            state: "open".into(),
            head_sha: "h".repeat(40),
            merge_commit: None,
            url: "https://forge/api/pull/7".into(),
            repo: None,
        })
    }
    async fn merge(
        &self,
        c: &Change,
        _h: &str,
        _m: crate::state::spec::MergeMethod,
    ) -> Result<Change, ForgeError> {
        if let Some(e) = self.merge.lock().unwrap().take() {
            return Err(e);
        }
        self.merged.lock().unwrap().push(c.number);
        Ok(Change {
            state: "merged".into(),
            merge_commit: Some("m".repeat(40)),
            ..c.clone()
        })
    }
    async fn reviews(&self, _c: &Change) -> Result<Reviews, ForgeError> {
        Ok(self.reviews.lock().unwrap().clone())
    }
    async fn build_image(
        &self,
        _r: &str,
        _w: &str,
        _b: &str,
        _h: &str,
        _d: bool,
    ) -> Result<ImageBuild, ForgeError> {
        Ok(ImageBuild::Built)
    }
}

/// One table row's world: the state files and the fakes' answers.
pub struct World {
    pub files: BTreeMap<String, String>,
    pub authors: BTreeMap<String, Signature>,
    pub agent: Arc<FakeAgent>,
    pub ws: Arc<FakeWorkspace>,
    pub lab: Arc<FakeLab>,
    pub forge: Arc<FakeForge>,
    pub planner: Arc<FakePlanner>,
    pub now: Timestamp,
    /// Why builders cannot be sandboxed (`Tunables::no_sandbox`).
    pub no_sandbox: Option<String>,
}

/// The planner's files: what a planning turn "wrote", and what was restored before it.
#[derive(Debug, Default)]
pub struct FakePlanner {
    pub output: Mutex<BTreeMap<String, String>>,
    pub restored: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    pub missing: bool,
}

impl crate::workspace::bmad::Planner for FakePlanner {
    fn install(&self, _dir: &std::path::Path) -> Result<(), crate::workspace::bmad::PlannerError> {
        if self.missing {
            return Err(crate::workspace::bmad::PlannerError::NotInstalled);
        }
        Ok(())
    }
    fn restore(
        &self,
        _dir: &std::path::Path,
        task: &crate::names::TaskName,
        docs: &BTreeMap<String, String>,
    ) -> Result<(), crate::workspace::bmad::PlannerError> {
        self.restored
            .lock()
            .unwrap()
            .push((task.to_string(), docs.clone()));
        Ok(())
    }
    fn collect(
        &self,
        _dir: &std::path::Path,
    ) -> Result<crate::workspace::bmad::Collected, crate::workspace::bmad::PlannerError> {
        Ok(crate::workspace::bmad::Collected {
            docs: self.output.lock().unwrap().clone(),
            skipped: Vec::new(),
        })
    }
}

pub const GAFFER: &str = "domain: lab.example.com
business_hours: {timezone: Europe/London, days: [mon, tue, wed, thu, fri], start: '09:00', end: '17:00'}
questions: {timeout: 2h, on_timeout: recommended, continue: immediately}
progress: {summary_every: 90m}
limits: {active_tasks_per_project: 1}
authors: {answers: [alice@example.com], slack_users: [U1], reviewers: [bob]}
";

pub const PROJECT: &str = "repos:
  - {name: api, url: 'https://example.com/api.git', base: main}
agent: {runtime: scripted}
lab: {overlay: api/deploy, test: pytest}
";

impl World {
    /// A task in `phase` with a session, in a project with a lab and tests.
    pub fn new(phase: Phase) -> Self {
        let mut w = World {
            files: BTreeMap::new(),
            authors: BTreeMap::new(),
            agent: Arc::default(),
            ws: Arc::default(),
            lab: Arc::default(),
            forge: Arc::default(),
            planner: Arc::default(),
            now: NOW.parse().unwrap(),
            no_sandbox: None,
        };
        w.file("gaffer.yaml", GAFFER);
        w.file("projects/demo/api/project.yaml", PROJECT);
        w.file("projects/demo/api/tasks/jwt/task.yaml", "title: Add JWT\n");
        let mut s = TaskStatus {
            phase,
            phase_since: Some(w.now),
            ..TaskStatus::default()
        };
        if !matches!(phase, Phase::Pending | Phase::Queued | Phase::Preparing) {
            s.agent = Some(Box::new(crate::state::status::AgentStatus {
                runtime: RuntimeKind::Scripted,
                session_id: Some("ses-1".into()),
                host: Some(HostKind::Tmux),
                attach: None,
                port: None,
                tmux: None,
                prompts_sent: vec!["task".into()],
            }));
            s.repos.insert(
                RepoName::new("api").unwrap(),
                RepoStatus {
                    branch: "gaffer/jwt".into(),
                    base_commit: Some("b".repeat(40)),
                    head_commit: Some("c".repeat(40)),
                    change: None,
                },
            );
        }
        w.set_status(&s);
        w
    }

    pub fn file(&mut self, path: &str, content: &str) -> &mut Self {
        self.files.insert(path.into(), content.into());
        self
    }

    pub fn task_file(&mut self, rel: &str, content: &str) -> &mut Self {
        self.file(&format!("projects/demo/api/tasks/jwt/{rel}"), content)
    }

    /// A file committed by `author` (committer the same unless `committer` differs).
    pub fn by(&mut self, rel: &str, author: &str, committer: &str) -> &mut Self {
        self.authors.insert(
            format!("projects/demo/api/tasks/jwt/{rel}"),
            Signature {
                author: author.into(),
                committer: committer.into(),
                // Signed by their own listed key, unless a row says otherwise.
                signer: Some(author.into()).filter(|_| author == committer),
            },
        );
        self
    }

    /// The last commit of `rel` carries `signer`'s good signature (`None`: unsigned).
    pub fn signed_by(&mut self, rel: &str, signer: Option<&str>) -> &mut Self {
        let path = format!("projects/demo/api/tasks/jwt/{rel}");
        if let Some(sig) = self.authors.get_mut(&path) {
            sig.signer = signer.map(str::to_string);
        }
        self
    }

    pub fn set_status(&mut self, s: &TaskStatus) -> &mut Self {
        let y = crate::state::yaml::to_string(s).unwrap();
        self.file(STATUS, &y)
    }

    pub fn status(&self) -> TaskStatus {
        crate::state::yaml::parse(self.files[STATUS].as_bytes()).unwrap()
    }

    /// Changes the status file through `f`.
    pub fn edit_status(&mut self, f: impl FnOnce(&mut TaskStatus)) -> &mut Self {
        let mut s = self.status();
        f(&mut s);
        self.set_status(&s)
    }

    pub fn poll(&mut self, events: Vec<AgentEvent>) -> &mut Self {
        let cursor = self.agent.polls.lock().unwrap().len() as u64 + 10;
        self.agent.polls.lock().unwrap().push_back(Polled {
            events,
            cursor,
            waiting: false,
            interrupted: None,
            usage: Vec::new(),
        });
        self
    }

    pub fn ctx(&self) -> Context {
        let store = MemoryStore::default();
        *store.files.lock().unwrap() = self.files.clone();
        *store.authors.lock().unwrap() = self.authors.clone();
        Context {
            store: Arc::new(store),
            agents: crate::agent::Agents::default().register(self.agent.clone()),
            notifier: Arc::new(crate::chat::LogNotifier::new(None, false)),
            forge: self.forge.clone(),
            github: None,
            lab: self.lab.clone(),
            tests: self.lab.clone(),
            workspaces: self.ws.clone(),
            pods: None,
            planner: self.planner.clone(),
            clock: Arc::new(crate::hours::ManualClock::new(self.now)),
            settings: Tunables {
                no_sandbox: self.no_sandbox.clone(),
                poll_interval: Duration::from_secs(5),
                max_test_retries: 2,
                retry_pause: Duration::from_secs(10),
                data_dir: PathBuf::from("/data"),
                forge_poll: Duration::from_secs(60),
            },
            scheduler: crate::reconcile::runtime::scheduler().0,
            metrics: Arc::default(),
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// One reconcile's decision: the gates and the phase's step, nothing written.
    pub async fn step(&self) -> Result<(Action, Plan), ReconcileError> {
        self.step_in(&self.ctx()).await
    }

    /// [`World::step`] with a given context.
    pub async fn step_in(&self, ctx: &Context) -> Result<(Action, Plan), ReconcileError> {
        self.step_of(ctx, &task()).await
    }

    /// One reconcile's decision for task `t` of the world.
    pub async fn step_of(
        &self,
        ctx: &Context,
        t: &TaskRef,
    ) -> Result<(Action, Plan), ReconcileError> {
        let mut loaded = Loaded::default();
        ctx.store
            .read(&mut |head, snap| loaded = Loaded::from_snapshot(head, snap, t))?;
        // A table row with a typo in its own files would test nothing.
        assert!(
            loaded.settings.is_some(),
            "gaffer.yaml of the table row is invalid"
        );
        let mut plan = Plan::new(t, loaded.head.clone(), &loaded.files, self.now);
        let action = decide(ctx, loaded, &mut plan).await?;
        Ok((action, plan))
    }

    /// Applies a step's plan to the files, as the writer would.
    pub fn apply(&mut self, plan: &mut Plan) {
        for u in plan.updates().unwrap() {
            if let Some(c) = u.content {
                let text = String::from_utf8(c).unwrap();
                self.file(&u.path.to_path(), &text);
            }
        }
    }
}

/// The texts of a plan's new milestones.
pub fn milestones(plan: &Plan) -> Vec<String> {
    plan.new_milestones()
        .iter()
        .map(|m| m.text.clone())
        .collect()
}

/// The condition `type_` of the plan's status as (status, reason).
pub fn condition(plan: &Plan, type_: &str) -> Option<(String, String)> {
    plan.status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (format!("{:?}", c.status), c.reason.clone()))
}

/// A question the agent asks.
pub fn asked(id: &str, labels: &[&str]) -> AgentEvent {
    AgentEvent::Question(AskedQuestion {
        kind: AskKind::Question,
        request_id: id.into(),
        text: "Which algorithm?".into(),
        header: "Algorithm".into(),
        options: labels
            .iter()
            .map(|l| QuestionOption {
                label: l.to_string(),
                description: String::new(),
            })
            .collect(),
        multiple: false,
        custom: false,
    })
}

pub fn requeue(d: u64) -> Action {
    Action::requeue(Duration::from_secs(d))
}

/// A table row: from `phase`, given this world, this transition, reason and action, and
/// whatever `check` asserts about the fakes and the plan.
pub struct Case {
    pub name: &'static str,
    pub phase: Phase,
    pub given: fn(&mut World),
    pub then_phase: Phase,
    pub reason: Option<&'static str>,
    pub action: Action,
    pub check: fn(&World, &Plan),
}

/// A `given` that changes nothing.
pub fn none(_: &mut World) {}

/// Runs each row in a world of its own.
pub async fn run_table(table: Vec<Case>) {
    for case in table {
        let mut w = World::new(case.phase);
        (case.given)(&mut w);
        let (action, plan) = w
            .step()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(plan.phase(), case.then_phase, "{}", case.name);
        if let Some(r) = case.reason {
            assert_eq!(plan.status.reason.as_deref(), Some(r), "{}", case.name);
        }
        assert_eq!(action, case.action, "{}", case.name);
        (case.check)(&w, &plan);
    }
}
