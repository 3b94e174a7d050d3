//! Spec files: what people and the Slack bot write to ask for work.
//!
//! `gaffer.yaml`, `project.yaml`, `task.yaml`, `answers/<qid>.yaml` and
//! `approvals/<id>.yaml`. The reconciler only reads these. Unknown fields are errors so a
//! typo never silently does nothing.

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::hours::{BusinessHours, HumanDuration};
use crate::names::RepoName;
use crate::state::yaml::Located;

mod budget;
mod builders;
mod lab;
mod links;
mod phone;
mod questions;
mod retention;
pub use budget::{Amount, BudgetSpec};
pub use builders::{
    BuilderDefaults, BuilderHostKind, EnvFrom, PodSpec, Quantity, ResourceName, SandboxKind,
    render_terminal_link,
};
pub use lab::{ImageSpec, LabMode, LabSpec, LabTool, render_lab_url};
pub use links::{link_name_problem, render_link};
pub use phone::{MESSAGE_MAX_CHARS, MessageSpec, NotifyPolicy, QuestionThread, refuses_messages};
pub use questions::{ContinuePolicy, OnTimeout, QuestionOverrides, QuestionPolicy};
pub use retention::Retention;

/// `gaffer.yaml`: settings for every project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Lab domain; the lab host of a project is `{project}.builder.<domain>`.
    pub domain: String,
    /// Working hours in which question deadlines are counted.
    #[serde(default)]
    pub business_hours: BusinessHours,
    /// How questions from builders are handled.
    #[serde(default)]
    pub questions: QuestionPolicy,
    /// Progress reporting.
    #[serde(default)]
    pub progress: ProgressPolicy,
    /// Concurrency limits.
    #[serde(default)]
    pub limits: Limits,
    /// Who may answer, approve and start work.
    #[serde(default)]
    pub authors: Authors,
    /// How tasks are planned before they are built (docs/planning.md).
    #[serde(default)]
    pub plan: crate::state::planning::PlanPolicy,
    /// How a project's lab is reached (`LAB_URL` for its tests and its builder, the link
    /// in its thread): a template of `{{ host }}` (`{project}.builder.<domain>`),
    /// `{{ project }}`, `{{ category }}` and `{{ namespace }}`. Default
    /// `https://{{ host }}`; e.g. `http://{{ host }}` for an ingress without TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_url: Option<String>,
    /// Where builders run by default and what a builder pod is made of.
    #[serde(default, skip_serializing_if = "is_default_builders")]
    pub builders: BuilderDefaults,
    /// Links to watch and edit a task's work (a code server, a web terminal, the state
    /// repository's view of the task's folder): name → URL template (minijinja) of validated
    /// names (`category`, `project`, `task`, `builder`, `namespace`, `branch`, `task_path`,
    /// `workspace`). Shown in the task's thread, its status and `gaffer status`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub links: std::collections::BTreeMap<String, String>,
    /// Who is mentioned when a task needs a person, and when.
    #[serde(default)]
    pub notify: NotifyPolicy,
    /// What builders may spend (overridable per project and task).
    #[serde(default, skip_serializing_if = "is_default_budget")]
    pub budget: BudgetSpec,
    /// How long finished tasks' worktrees and branches are kept.
    #[serde(default, skip_serializing_if = "is_default_retention")]
    pub retention: Retention,
}

fn is_default_retention(r: &Retention) -> bool {
    *r == Retention::default()
}

fn is_default_builders(b: &BuilderDefaults) -> bool {
    *b == BuilderDefaults::default()
}

impl Settings {
    /// What people should know about these settings although they are valid: decisions
    /// trusted on their commit author alone.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.authors.accept_unsigned {
            out.push(
                "authors.accept_unsigned: true: a decision committed under a listed author's \
                 email counts unsigned, so anyone who can push (an unsandboxed builder too) \
                 can decide as them; list signing keys in authors.signing_keys instead \
                 (docs/security.md)"
                    .to_string(),
            );
        }
        out
    }
}

/// Progress reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressPolicy {
    /// A summary milestone is written when nothing else happened for this long.
    #[serde(default = "default_summary_every")]
    pub summary_every: HumanDuration,
    /// A running builder with no event for this long is reported stalled, once, until it
    /// moves again (default `15m`).
    #[serde(default = "default_stall_after")]
    pub stall_after: HumanDuration,
}

fn default_stall_after() -> HumanDuration {
    HumanDuration(jiff::SignedDuration::from_mins(15))
}

fn is_default_budget(b: &BudgetSpec) -> bool {
    *b == BudgetSpec::default()
}

fn default_summary_every() -> HumanDuration {
    HumanDuration(jiff::SignedDuration::from_mins(90))
}

impl Default for ProgressPolicy {
    fn default() -> Self {
        Self {
            summary_every: default_summary_every(),
            stall_after: default_stall_after(),
        }
    }
}

/// Concurrency limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Tasks of one project that run at once; further tasks wait in `Queued`.
    #[serde(default = "one")]
    pub active_tasks_per_project: u32,
}

fn one() -> u32 {
    1
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            active_tasks_per_project: 1,
        }
    }
}

/// Who may act through the state repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Authors {
    /// Commit author emails whose answers and approvals are accepted.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Slack user ids that may start tasks, answer and approve through the bot.
    #[serde(default)]
    pub slack_users: Vec<String>,
    /// How the Slack bot names a user as the author of what it commits for them:
    /// Slack user id → `Name <email>` (unlisted users: `Slack user <id>`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub slack_names: std::collections::BTreeMap<String, String>,
    /// GitHub logins whose approving reviews promote a task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// Bots that commit decisions (answers, approvals) on behalf of people, naming the
    /// person in `by:`. When none are listed, the Slack bot
    /// (`slack-bot@gaffer.invalid`) may commit for the users in `slack_users`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegates: Vec<Delegate>,
    /// Keys whose signatures prove who committed a decision: SSH keys in git's
    /// `allowed_signers` format, one line each (`alice@example.com ssh-ed25519 AAAA…
    /// [comment]`), or ASCII-armoured OpenPGP public keys (`gpg --armor --export`), whose
    /// user ids name the person. A decision a person commits counts when its commit is
    /// signed by a key listed for its author.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<crate::state::yaml::Located<String>>,
    /// Count decisions committed by a listed author without a signature. Anyone who can
    /// push can write any author's email, so this trusts everyone with push access (an
    /// unsandboxed builder too); `gaffer validate` and `gaffer status` say so.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_unsigned: bool,
}

/// The first line of an ASCII-armoured OpenPGP public key.
pub const PGP_KEY_BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";

/// Why a `signing_keys` entry is neither an `allowed_signers` line (principals, optional
/// options, a key type and a base64 key) nor an armoured OpenPGP public key, or `None`.
pub fn signer_line_problem(line: &str) -> Option<String> {
    if line.trim_start().starts_with(PGP_KEY_BEGIN) {
        return (!line
            .trim_end()
            .ends_with("-----END PGP PUBLIC KEY BLOCK-----"))
        .then(|| "an OpenPGP key block without its END line".to_string());
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    if line.contains('\n') || fields.len() < 3 {
        return Some(
            "not an allowed_signers line: expected `<email> <key type> <base64 key> [comment]`"
                .into(),
        );
    }
    // Options (e.g. namespaces="git") may stand between the principals and the key type.
    let Some(i) = fields
        .iter()
        .position(|f| f.starts_with("ssh-") || f.starts_with("ecdsa-") || f.starts_with("sk-"))
    else {
        return Some(format!(
            "no key type (ssh-ed25519, ssh-rsa, ecdsa-…) in {:?}",
            line.chars().take(80).collect::<String>()
        ));
    };
    if i == 0 {
        return Some("the line names nobody: it must start with the person's email".into());
    }
    let key = fields.get(i + 1).copied().unwrap_or("");
    let base64 = !key.is_empty()
        && key.len() % 4 == 0
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=');
    (!base64).then(|| format!("the {} key is not base64", fields[i]))
}

/// A bot allowed to commit decisions for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Delegate {
    /// The bot's committer email.
    pub committer: String,
    /// The people it may decide for, as it names them in `by:` (e.g. Slack user ids).
    #[serde(rename = "for")]
    pub for_: Vec<String>,
}

impl Authors {
    /// The delegates in force: those listed, else the Slack bot for `slack_users`.
    pub fn delegates(&self) -> Vec<Delegate> {
        if !self.delegates.is_empty() {
            return self.delegates.clone();
        }
        vec![Delegate {
            committer: crate::store::Identity::slack_bot().email,
            for_: self.slack_users.clone(),
        }]
    }

    /// Whether `who` may decide: a listed author, or someone a delegate may decide for.
    pub fn may_decide(&self, who: &str) -> bool {
        self.answers.iter().any(|a| a == who)
            || self
                .delegates()
                .iter()
                .any(|d| d.for_.iter().any(|p| p == who))
    }
}

/// `project.yaml`: one project's repos, workspace, agent and lab.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// The repositories checked out in the project's workspace.
    pub repos: Vec<RepoSpec>,
    /// How the workspace is prepared.
    #[serde(default)]
    pub workspace: WorkspaceSpec,
    /// The builder that works on the project's tasks.
    #[serde(default)]
    pub agent: AgentSpec,
    /// Where the builder deploys and tests its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab: Option<LabSpec>,
    /// Slack settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSpec>,
    /// Question policy overrides for this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<QuestionOverrides>,
    /// Budget overrides for this project's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// How changes are reviewed and merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge: Option<ForgeSpec>,
    /// Plan policy overrides for this project's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::state::planning::PlanOverrides>,
}

/// One repository of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RepoSpec {
    /// Local name: the worktree lives at `repos/<name>`.
    pub name: Located<RepoName>,
    /// Clone URL (ssh, https or a local path).
    pub url: String,
    /// The branch tasks start from and PRs target.
    #[serde(default = "default_base")]
    pub base: String,
    /// `owner/name` on GitHub, when `url` does not say (a mirror, a local path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<String>,
}

fn default_base() -> String {
    "main".into()
}

/// How a project's workspace is prepared.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// `builtin` (mirror clones and worktrees) or `command` (run `run`).
    #[serde(default)]
    pub init: WorkspaceInit,
    /// The command for `init: command`, run in the builders root instead of gaffer's own
    /// worktrees: an argument list rendered from validated names (`{{builder}}` =
    /// `{category}-{project}`, `{{category}}`, `{{project}}`, `{{repos}}` comma-separated,
    /// `{{task}}`, `{{branch}}`); never run through a shell. gaffer then adopts each
    /// `<builders>/{{builder}}/repos/<repo>` it made (docs/state-repository.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

/// Workspace preparation mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkspaceInit {
    /// gaffer makes the worktrees itself.
    #[default]
    Builtin,
    /// The project's own command makes them.
    Command,
}

/// The builder that works on a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Which runtime drives the work.
    #[serde(default)]
    pub runtime: RuntimeKind,
    /// Model as `provider/model`, e.g. `anthropic/claude-sonnet-4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// OpenCode agent name, e.g. `build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// For `runtime: scripted`: the script file, relative to the project directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// Default reply to permission requests when nobody answers.
    #[serde(default)]
    pub permission_default: PermissionReply,
    /// Permission rules for the project's OpenCode sessions, in order (OpenCode's ruleset:
    /// the last matching rule wins); the user's own OpenCode config applies otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<PermissionRule>,
    /// How the builder's server is confined: `bwrap` (the default; bubblewrap, where it
    /// works) or `none` (the builder can read whatever gaffer's OS user can).
    #[serde(default)]
    pub sandbox: SandboxKind,
    /// Credentials the builder gets (its model provider's key, …): its environment is
    /// otherwise cleared of everything gaffer was started with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFrom>,
    /// Start the project's builder as soon as the project is committed or a task is queued
    /// for it (not when its first task reaches it), so a task's first request does not wait
    /// for the builder's server to start. On by default.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub warm: bool,
    /// A builder on this machine (`host: tmux`) with no active task for this long is stopped
    /// (its sessions stay in OpenCode's data) and started again, on the same sessions, when
    /// a task needs it (default `2h`; a pod builder follows `pod.idle_suspend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<HumanDuration>,
    /// Where the builder runs: `tmux` on gaffer's machine or `pod` in the project's lab
    /// namespace (default: `builders.host` in gaffer.yaml, else `tmux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<BuilderHostKind>,
    /// With `host: pod`: the pod's volume, resources and idle suspension.
    #[serde(default, skip_serializing_if = "is_default_pod")]
    pub pod: PodSpec,
}

impl AgentSpec {
    /// How long a builder with no active task runs before it is stopped or suspended.
    pub fn idle_after(&self, on_pod: bool) -> jiff::SignedDuration {
        if on_pod {
            return self.pod.idle_suspend();
        }
        self.idle_stop
            .map_or(jiff::SignedDuration::from_hours(2), HumanDuration::get)
    }
}

fn is_default_pod(p: &PodSpec) -> bool {
    *p == PodSpec::default()
}

impl Default for AgentSpec {
    fn default() -> Self {
        Self {
            runtime: RuntimeKind::default(),
            model: None,
            agent: None,
            script: None,
            permission_default: PermissionReply::default(),
            permissions: Vec::new(),
            sandbox: SandboxKind::default(),
            env_from: Vec::new(),
            warm: true,
            idle_stop: None,
            host: None,
            pod: PodSpec::default(),
        }
    }
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// One OpenCode permission rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    /// The permission (`edit`, `bash`, `webfetch`, `external_directory`, … or `*`).
    pub permission: String,
    /// What it applies to (a command or path pattern); `*` for everything.
    #[serde(default = "any_pattern")]
    pub pattern: String,
    /// What OpenCode does.
    pub action: PermissionAction,
}

fn any_pattern() -> String {
    "*".into()
}

/// What OpenCode does when a permission rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionAction {
    /// Go ahead.
    Allow,
    /// Ask (gaffer turns the request into a question).
    Ask,
    /// Refuse.
    Deny,
}

/// The kinds of agent runtime (`agent.runtime`); the reconciler registers one
/// [`crate::agent::AgentRuntime`] per kind it can drive.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// OpenCode server in tmux, driven over HTTP.
    #[default]
    Opencode,
    /// The embedded scripted agent (demo and tests).
    Scripted,
}

/// A reply to an OpenCode permission request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionReply {
    /// Allow this once.
    #[default]
    Once,
    /// Allow from now on.
    Always,
    /// Refuse.
    Reject,
}

/// Slack settings of a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// Channel name; default `{category}-{project}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// Review and merge settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgeSpec {
    /// `github` or `local`.
    #[serde(default)]
    pub kind: ForgeKind,
    /// How approved PRs are merged.
    #[serde(default)]
    pub merge_method: MergeMethod,
}

/// Forges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ForgeKind {
    /// Local bare repositories with change requests recorded by gaffer.
    #[default]
    Local,
    /// GitHub pull requests.
    Github,
}

/// Merge methods.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMethod {
    /// A merge commit.
    #[default]
    Merge,
    /// One squashed commit.
    Squash,
    /// Rebased commits.
    Rebase,
}

/// `task.yaml`: one piece of work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// One line saying what to do.
    pub title: String,
    /// The details, as much as the builder needs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Queue order within the project.
    #[serde(default)]
    pub priority: Priority,
    /// Pause the task: the builder is stopped, nothing is lost.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Cancel the task: the builder is stopped, worktree and branches are kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
    /// Raise this number to retry a failed task.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry: u32,
    /// Question policy overrides for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<QuestionOverrides>,
    /// This task's budget (`gaffer budget` raises it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSpec>,
    /// Plan policy overrides for this task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<crate::state::planning::PlanOverrides>,
    /// The task whose approved `full` plan this task is a story of (written by gaffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub parent: Option<crate::names::TaskName>,
    /// The story's number in the parent's plan (`N.M`); stories of one parent are built in
    /// this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub story: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Task priority: higher runs first within a project.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Priority {
    /// Whenever there is room.
    Low,
    /// The default.
    #[default]
    Medium,
    /// Before medium and low.
    High,
    /// Before everything else.
    Urgent,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "urgent" => Ok(Self::Urgent),
            _ => Err(format!(
                "unknown priority {s:?}; expected low, medium, high or urgent"
            )),
        }
    }
}

/// `answers/<qid>.yaml`: a person's answer to a question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerSpec {
    /// The chosen option's label (one of the question's options). Several for `multiple`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Located<Choice>>,
    /// Free text, for questions that allow it (or a note when a choice is also given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Optional note passed to the builder with the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who answered: an email or a Slack user id (checked against the commit author).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When the answer was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub at: Option<Timestamp>,
}

/// One label, or several for questions that allow multiple choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Choice {
    /// One option.
    One(String),
    /// Several options.
    Many(Vec<String>),
}

impl Choice {
    /// The chosen labels.
    pub fn labels(&self) -> Vec<&str> {
        match self {
            Choice::One(s) => vec![s.as_str()],
            Choice::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// `approvals/<id>.yaml`: approve & promote a task in review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    /// Who approved: an email or a Slack user id.
    pub by: String,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub at: Option<Timestamp>,
    /// Optional comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The review round it approves (`status.yaml` `reviewRound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round: Option<u32>,
    /// The head commit of each change it approves, by repo. It counts only while these are
    /// exactly the task's heads in that round.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub heads: std::collections::BTreeMap<RepoName, String>,
    /// The plan version it decides (`plan.yaml` `version`): an approval of the plan, not of
    /// a review round. It counts only while that is the plan's current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<u32>,
    /// With `plan`: the changes asked for instead of an approval; sent to the planner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<String>,
}

impl ApprovalSpec {
    /// An approval by `by` of the task as `status` stands (its round and heads), or why the
    /// task cannot be approved now.
    pub fn for_review(
        by: &str,
        status: Option<&crate::state::status::TaskStatus>,
    ) -> Result<Self, String> {
        let phase = status.map_or(crate::state::status::Phase::Pending, |s| s.phase);
        let Some(status) = status.filter(|_| phase == crate::state::status::Phase::InReview) else {
            return Err(format!(
                "the task is {phase}, not in review: there is nothing to approve yet"
            ));
        };
        let (round, heads) = status.review_target();
        Ok(Self {
            by: by.to_string(),
            at: Some(Timestamp::now()),
            note: None,
            round: Some(round),
            heads,
            plan: None,
            changes: None,
        })
    }

    /// An approval by `by` of the task's plan as `plan` stands (or, with `changes`, a request
    /// for changes to it), or why there is nothing to decide now.
    pub fn for_plan(
        by: &str,
        plan: Option<&crate::state::planning::PlanStatus>,
        changes: Option<String>,
    ) -> Result<Self, String> {
        use crate::state::planning::PlanState;
        let Some(plan) = plan.filter(|p| p.state == PlanState::AwaitingApproval) else {
            let why = match plan.map(|p| p.state) {
                None => "the task has no plan",
                Some(PlanState::Approved) => "its plan is approved already",
                Some(_) => "its plan is being drafted; wait for the next version",
            };
            return Err(why.to_string());
        };
        if changes.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("say which changes you want".to_string());
        }
        Ok(Self {
            by: by.to_string(),
            at: Some(Timestamp::now()),
            note: None,
            round: None,
            heads: Default::default(),
            plan: Some(plan.version),
            changes,
        })
    }
}

/// `task.yaml` as committed for a person: the schema line for editors, then the spec.
pub fn task_file(spec: &TaskSpec) -> Result<String, String> {
    let body = crate::state::yaml::to_string(spec).map_err(|e| e.to_string())?;
    Ok(format!(
        "# yaml-language-server: $schema=../../../../../schema/task.schema.json\n{body}"
    ))
}
