//! Status files: what the reconciler observed and did.
//!
//! `status.yaml`, `progress.yaml`, `questions/<qid>.yaml` and `lab/status.yaml` are written
//! only by the reconciler (kstatus style: `observedCommit`, `phase`, `conditions`), and
//! `slack.yaml` only by the Slack bot. No two writers share a file, so a rejected push is
//! always resolved by re-applying the writer's own files on the new head.

use std::collections::BTreeMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{Qid, RepoName, TaskName};
pub use crate::state::effects::TaskEffects;

/// The phases of a task, in lifecycle order.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Phase {
    /// Seen, not yet considered.
    #[default]
    Pending,
    /// Waiting for a free builder slot in its project.
    Queued,
    /// The workspace and builder are being prepared.
    Preparing,
    /// The planner (BMAD in the builder's workspace) drafts or revises the plan.
    Planning,
    /// The plan's current version waits for a person's approval (holds no slot).
    AwaitingPlanApproval,
    /// A `full` plan was approved: its stories are built as child tasks (holds no slot);
    /// `Promoted` when they are.
    BuildingStories,
    /// The builder is working.
    Running,
    /// The builder asked a question that waits for a person.
    AwaitingAnswer,
    /// The work is being deployed to the lab.
    Deploying,
    /// Tests run against the lab deployment.
    Testing,
    /// Change requests are open for review.
    InReview,
    /// Merged. Done.
    Promoted,
    /// Stopped with an error; raise `retry` in `task.yaml` to try again.
    Failed,
    /// Paused by `suspend: true`.
    Suspended,
    /// Cancelled by `cancel: true` or by deleting the task.
    Cancelled,
}

impl Phase {
    /// The phase's name as written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Queued => "Queued",
            Phase::Preparing => "Preparing",
            Phase::Planning => "Planning",
            Phase::AwaitingPlanApproval => "AwaitingPlanApproval",
            Phase::BuildingStories => "BuildingStories",
            Phase::Running => "Running",
            Phase::AwaitingAnswer => "AwaitingAnswer",
            Phase::Deploying => "Deploying",
            Phase::Testing => "Testing",
            Phase::InReview => "InReview",
            Phase::Promoted => "Promoted",
            Phase::Failed => "Failed",
            Phase::Suspended => "Suspended",
            Phase::Cancelled => "Cancelled",
        }
    }

    /// Whether the task holds one of its project's active slots in this phase.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Phase::Preparing
                | Phase::Planning
                | Phase::Running
                | Phase::AwaitingAnswer
                | Phase::Deploying
                | Phase::Testing
                | Phase::InReview
        )
    }

    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 15] = [
        Phase::Pending,
        Phase::Queued,
        Phase::Preparing,
        Phase::Planning,
        Phase::AwaitingPlanApproval,
        Phase::BuildingStories,
        Phase::Running,
        Phase::AwaitingAnswer,
        Phase::Deploying,
        Phase::Testing,
        Phase::InReview,
        Phase::Promoted,
        Phase::Failed,
        Phase::Suspended,
        Phase::Cancelled,
    ];

    /// The phase named `s` as written in YAML, if there is one.
    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether nothing more happens without a spec change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Promoted | Phase::Cancelled)
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kstatus-style condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Condition {
    /// e.g. `Ready`, `Reconciling`, `Stalled`, `SpecValid`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// One CamelCase word.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When `status` last changed.
    #[schemars(with = "String")]
    pub last_transition_time: Timestamp,
}

/// A condition's truth value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// Holds.
    True,
    /// Does not hold.
    False,
    /// Not known yet.
    Unknown,
}

/// `status.yaml` of a task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state-repo commit this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_commit: Option<String>,
    /// Where the task is in its lifecycle.
    pub phase: Phase,
    /// Why the task is in this phase, one CamelCase word (for `Failed`, the failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Detail for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// kstatus-style conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `retry` value of `task.yaml` last acted on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_retry: u32,
    /// Attempts made in the current phase (tests, connector errors).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The builder driving the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<AgentStatus>>,
    /// Workspace repos and their branches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<RepoName, RepoStatus>,
    /// Links for people (lab URL, PRs, attach command).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<Link>,
    /// What the task's model requests used, in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The same by day (`YYYY-MM-DD` in the business time zone).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage_by_day: BTreeMap<String, Usage>,
    /// Why a person is needed, once per reason (a question, a plan or a change waiting, a
    /// failure, a stall): the Slack bot mentions people with each once it is released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<Notice>,
    /// The external effects already performed, so a restart never repeats one.
    #[serde(default, skip_serializing_if = "TaskEffects::is_empty")]
    pub effects: TaskEffects,
    /// How many times the task entered review; an approval names the round it approves.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub review_round: u32,
    /// When the task entered its current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase_since: Option<Timestamp>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl TaskStatus {
    /// What an approval of the task as it stands must name: the review round, and the head
    /// commit of each repo that has a change (or work beyond its base, whose change review
    /// opens).
    pub fn review_target(&self) -> (u32, BTreeMap<RepoName, String>) {
        let heads = self
            .repos
            .iter()
            .filter(|(_, r)| r.change.is_some() || r.head_commit != r.base_commit)
            .filter_map(|(name, r)| r.head_commit.clone().map(|h| (name.clone(), h)))
            .collect();
        (self.review_round, heads)
    }
}

/// What gaffer knows about the builder session of a task (never the password).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentStatus {
    /// The runtime the session was made with.
    pub runtime: crate::state::spec::RuntimeKind,
    /// The agent session id (OpenCode session id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Where the builder runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostKind>,
    /// How a person attaches to the session: a command or a link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// Written by releases before builder hosts (the server's port); read, never written.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub port: Option<u16>,
    /// Written by releases before builder hosts (the tmux session); read, never written.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub tmux: Option<String>,
    /// Ids of prompts already sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts_sent: Vec<String>,
}

/// Where a builder runs, as recorded in status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// A tmux session on gaffer's machine (or in gaffer's pod).
    #[default]
    Tmux,
    /// Inside gaffer's own process (the embedded scripted agent).
    InProcess,
    /// A pod of its own in the project's lab namespace.
    Pod,
}

/// One workspace repo of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoStatus {
    /// The task branch, `gaffer/<task>`.
    pub branch: String,
    /// The commit the branch started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    /// The latest checkpoint commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_commit: Option<String>,
    /// The change request (PR) for this repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeStatus>,
}

/// A pull request or local change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangeStatus {
    /// PR number.
    pub number: u64,
    /// PR URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `open`, `merged` or `closed`.
    pub state: String,
    /// The merge commit, once merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_commit: Option<String>,
    /// The head commit last pushed to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed: Option<String>,
}

/// A link shown to people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// What the link is, e.g. `lab`, `pr:domain-apis`, `attach`.
    pub name: String,
    /// The URL or command.
    pub url: String,
}

/// `progress.yaml`: the task's milestones, append-only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Milestones in the order they happened.
    #[serde(default)]
    pub milestones: Vec<Milestone>,
}

/// One milestone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Milestone {
    /// Sequence number, 1-based and gapless; the Slack bot's cursor counts these.
    pub seq: u32,
    /// When it happened.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// What kind of milestone.
    pub kind: MilestoneKind,
    /// One line for people.
    pub text: String,
    /// The checkpoint commit made for it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Kinds of milestone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MilestoneKind {
    /// The phase changed.
    Phase,
    /// A todo item was completed.
    Todo,
    /// The agent's work was checkpointed.
    Checkpoint,
    /// A question was asked or decided.
    Question,
    /// A deploy happened.
    Deploy,
    /// Tests ran.
    Test,
    /// A change request was opened or changed.
    Review,
    /// Periodic summary.
    Summary,
    /// A plan's version, its approval, or changes asked for.
    Plan,
    /// Something went wrong.
    Error,
    /// A person's message reached the builder.
    Message,
    /// The builder showed no progress for a while, or moves again.
    Stall,
}

/// What a builder's model requests used: tokens by kind and their cost, as OpenCode records
/// them on each assistant message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Usage {
    /// Model requests counted.
    #[serde(default)]
    pub requests: u64,
    /// Input tokens (not read from the cache).
    #[serde(default)]
    pub input: u64,
    /// Output tokens.
    #[serde(default)]
    pub output: u64,
    /// Reasoning tokens.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub reasoning: u64,
    /// Input tokens read from the provider's cache.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub cache_read: u64,
    /// Input tokens written to the provider's cache.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub cache_write: u64,
    /// The cost of the priced requests (the provider's currency, USD for OpenCode's prices).
    #[serde(default)]
    pub cost: f64,
    /// Requests whose model has no price: their cost is unknown, never taken as zero.
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub unpriced: u64,
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Adds `other`.
    pub fn add(&mut self, other: &Usage) {
        self.requests += other.requests;
        self.input += other.input;
        self.output += other.output;
        self.reasoning += other.reasoning;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
        self.cost += other.cost;
        self.unpriced += other.unpriced;
    }

    /// Every token counted.
    pub fn tokens(&self) -> u64 {
        self.input + self.output + self.reasoning + self.cache_read + self.cache_write
    }

    /// The cost as people read it: `$0.0420`, `$0.0420 + unknown` when some requests had no
    /// price, `unknown` when none had one.
    pub fn cost_text(&self) -> String {
        match (self.unpriced, self.requests) {
            (0, _) => format!("${:.4}", self.cost),
            (u, r) if u >= r => "unknown".into(),
            _ => format!("${:.4} + unknown", self.cost),
        }
    }

    /// `12.3k tokens · $0.0420` for a status line.
    pub fn summary(&self) -> String {
        let t = self.tokens();
        let tokens = if t >= 1_000_000 {
            format!("{:.1}M", t as f64 / 1e6)
        } else if t >= 1_000 {
            format!("{:.1}k", t as f64 / 1e3)
        } else {
            t.to_string()
        };
        format!("{tokens} tokens · {}", self.cost_text())
    }
}

/// A push to people: why the task needs them, in a form that reads well as a phone
/// notification. Raised once per reason; outside business hours it is held until the next
/// business morning unless its deadline comes sooner (`notify.hold_outside_hours`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notice {
    /// The reason, unique per task: `question:<qid>`, `plan:<version>`, `review:<round>`,
    /// `failed:<retry>`, `stall:<since, unix seconds>`.
    pub key: String,
    /// One line: what, the project and task, why, and the deadline.
    pub text: String,
    /// When it was raised.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// When it may be pushed.
    #[schemars(with = "String")]
    pub due: Timestamp,
    /// Whether it is due now (the bot pushes released notices, each once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

/// `questions/<qid>.yaml`: a question the builder asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Question {
    /// `question` or `permission`.
    #[serde(default)]
    pub kind: QuestionKind,
    /// The question text.
    pub text: String,
    /// A short header (OpenCode's `header`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub header: String,
    /// The options offered.
    pub options: Vec<QuestionOption>,
    /// Whether several options may be chosen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multiple: bool,
    /// Whether free text is accepted as the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub custom: bool,
    /// The recommended option's label.
    pub recommended: String,
    /// When it was asked.
    #[schemars(with = "String")]
    pub asked_at: Timestamp,
    /// When the recommended option is applied if nobody answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub deadline: Option<Timestamp>,
    /// Where the question stands.
    pub state: QuestionState,
    /// The OpenCode request id (`que_...` / `per_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The worktree commits at the question point, per repo.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub point: BTreeMap<RepoName, String>,
    /// The provisional branch, `gaffer-provisional/<task>/<qid>`, where the work went on with
    /// the recommended option.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_branch: Option<String>,
    /// The branch the work was on when the question was asked: a confirmation fast-forwards it
    /// to the provisional branch; a different answer puts the worktree back on it at `point`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_branch: Option<String>,
    /// Answers that were refused, and why (unauthorized author, unknown option, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Question {
    /// Whether `label` is one of the options.
    pub fn has_option(&self, label: &str) -> bool {
        self.options.iter().any(|o| o.label == label)
    }
}

/// Kinds of question.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionKind {
    /// The agent's `question` tool.
    #[default]
    Question,
    /// An OpenCode permission request (once/always/reject).
    Permission,
}

/// One option of a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionOption {
    /// The exact label, sent back to OpenCode as the answer.
    pub label: String,
    /// What choosing it means.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// Where a question stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QuestionState {
    /// Waiting for a person; the builder waits too.
    Open,
    /// The builder went on with the recommended option; a person may still answer.
    Provisional,
    /// A person answered.
    Answered,
    /// The deadline passed and the recommended option was confirmed.
    Defaulted,
    /// A person's answer replaced an earlier provisional or default decision.
    Overridden,
}

/// A decision on a question, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Decision {
    /// The chosen labels (or the free text).
    pub choice: Vec<String>,
    /// `human` or `timeout-default`.
    pub decided_by: DecidedBy,
    /// Who: a commit author email or Slack user id (for `human`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// The note sent with the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Who made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// A person (Slack click, answer file, annotated document).
    Human,
    /// The deadline passed.
    TimeoutDefault,
}

/// `lab/status.yaml`: a project's lab namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabStatus {
    /// The state-repo commit this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_commit: Option<String>,
    /// `{category}-{project}-lab`.
    pub namespace: String,
    /// When the namespace was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub created_at: Option<Timestamp>,
    /// Whether the namespace was removed by `gaffer lab cleanup`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// `render-only` or `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The last deploy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deploy: Option<Deploy>,
    /// Objects applied by the last deploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryItem>,
    /// URLs of the deployment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Results of the last test run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<TestResults>,
    /// kstatus-style conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// One deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Deploy {
    /// The task whose work was deployed.
    pub task: TaskName,
    /// The commit of each workspace repo.
    pub commits: BTreeMap<RepoName, String>,
    /// When.
    #[schemars(with = "String")]
    pub at: Timestamp,
    /// Whether anything changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_op: bool,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryItem {
    /// API group (empty for core).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Namespace (empty for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Results of a test run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestResults {
    /// Which suite, e.g. `Integration tests`.
    pub suite: String,
    /// Passed cases.
    pub passed: u32,
    /// Failed cases.
    pub failed: u32,
    /// Skipped cases.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u32,
    /// The failing cases, by name, with their messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<TestFailure>,
    /// When the tests ran.
    #[schemars(with = "String")]
    pub at: Timestamp,
}

/// One failing test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestFailure {
    /// The case name.
    pub name: String,
    /// The failure message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `slack.yaml`: the Slack bot's own record of a task's thread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackThread {
    /// Channel id.
    pub channel_id: String,
    /// Timestamp of the thread's parent message.
    pub thread_ts: String,
    /// The phase the parent message shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown_phase: Option<Phase>,
    /// Milestones posted so far (the highest `seq` posted).
    #[serde(default)]
    pub posted_seq: u32,
    /// Question messages: qid → message ts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub questions: BTreeMap<Qid, String>,
    /// Questions posted in a thread of their own (their message starts that thread).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub own_threads: std::collections::BTreeSet<Qid>,
    /// Other posted messages by key (e.g. `review-…`), so they are posted once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub posted: BTreeMap<String, String>,
    /// What an updatable message shows now (question or review key → a tag), so it is
    /// updated only when that changes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shown: BTreeMap<String, String>,
}
