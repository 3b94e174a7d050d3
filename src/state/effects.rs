//! The exactly-once ledger of a task: which external effects the reconciler already did.
//!
//! `status.yaml` keeps it under `effects:` as a flat map of string keys to string values
//! (`failedIn: Running`, `relayed.q-001: RS256`, …), the format every release so far has
//! written. In memory it is [`TaskEffects`], a struct with real types, so no phase parses a
//! phase name or a counter by hand. An entry that does not parse (a typo made by hand, or a
//! key from a newer release) is kept as it was in [`TaskEffects::invalid`] and stops the task
//! with a condition: guessing what it meant could repeat or skip an effect. docs/reconciler.md
//! has the table of every field and the effect it guards.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{Id, Qid, RepoName};
use crate::state::status::Phase;

/// Separates the labels of a multiple choice inside one ledger value.
const SEP: char = '\u{1f}';

/// What a decision did to the provisional work of its question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The answer matched what the builder went on with: the parent branch was
    /// fast-forwarded to the provisional one.
    Confirmed(Vec<String>),
    /// A different answer: the provisional work was set aside and the builder told.
    SetAside(Vec<String>),
}

/// Where a lab image build for one commit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageBuildState {
    /// The workflow was dispatched for the commit.
    Dispatched,
    /// The image was built (and announced).
    Built,
}

/// The typed ledger kept in `status.yaml` under `effects:`. Every field is one key family
/// of the flat map; the doc comment names the key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<String, String>", into = "BTreeMap<String, String>")]
pub struct TaskEffects {
    /// `notified`: milestones before this index were offered to the notifiers.
    pub notified: usize,
    /// `suspendedFrom`: the phase a suspended task was in.
    pub suspended_from: Option<Phase>,
    /// `resumeTo`: where a resumed or retried task goes after Preparing.
    pub resume_to: Option<Phase>,
    /// `failedIn`: the phase a failed task failed in (a retry resumes there).
    pub failed_in: Option<Phase>,
    /// `testAttempts`: lab test runs that failed since the last pass or retry.
    pub test_attempts: u32,
    /// `retryAt`: when to prompt the builder again after a transient error.
    pub retry_at: Option<Timestamp>,
    /// `agentCursor`: the builder's event cursor; events before it were handled.
    pub agent_cursor: u64,
    /// `nudges`: prompts sent since the builder last stopped without saying it was done.
    pub nudges: u32,
    /// `agentDone`: the builder's summary, once it said the task is done.
    pub agent_done: Option<String>,
    /// `doc.<qid>`: the question document a question was put in.
    pub in_doc: BTreeMap<Qid, Id>,
    /// `moot.<qid>`: a question asked during work that the answer to another question
    /// (the value) set aside.
    pub moot: BTreeMap<Qid, Qid>,
    /// `relayed.<qid>`: the answer the builder heard (labels), once.
    pub relayed: BTreeMap<Qid, Vec<String>>,
    /// `applied.<qid>`: what the decision did to the provisional work (`confirm:` or
    /// `aside:` and the labels).
    pub applied: BTreeMap<Qid, Applied>,
    /// `lateAnswer.<qid>`: a person's answer after its default, already sent back to Running.
    pub late_answers: BTreeMap<Qid, String>,
    /// `prBody.<repo>`: a digest of the pull request body last written.
    pub pr_body: BTreeMap<RepoName, String>,
    /// `mergeAsked.<repo>`: the builder was asked to resolve a merge conflict.
    pub merge_asked: BTreeSet<RepoName>,
    /// `review.<id>`: a review that asked for changes was sent to the builder.
    pub reviews_sent: BTreeSet<u64>,
    /// `approvalIgnored.<id>`: an approval file by someone who may not approve was
    /// reported (the value: who committed it).
    pub approvals_ignored: BTreeMap<Id, String>,
    /// `imageBuild.<sha>`: the lab image build of a commit.
    pub image_builds: BTreeMap<String, ImageBuildState>,
    /// `message.<id>`: a person's message was handled: `delivered` to the builder, or why
    /// it was ignored.
    pub messages: BTreeMap<Id, String>,
    /// `budgetWarned`: people were told 80 % of this task budget is spent (the budget).
    pub budget_warned: Option<String>,
    /// `budgetRaiseIgnored`: a raise of the task budget by someone who may not decide was
    /// reported (the budget it named).
    pub budget_raise_ignored: Option<String>,
    /// `budgetDeadline`: the task budget is spent; a person raises it by then, or it stops.
    pub budget_deadline: Option<Timestamp>,
    /// `stalledSince`: the builder showed no progress since this time and people were told
    /// (cleared when it moves again).
    pub stalled_since: Option<Timestamp>,
    /// Entries that did not parse, kept as they were. While there are any the task stops
    /// with condition `EffectsValid=False`.
    pub invalid: BTreeMap<String, String>,
}

fn labels(v: &str) -> Vec<String> {
    v.split(SEP).map(str::to_string).collect()
}

fn joined(v: &[String]) -> String {
    v.join(&SEP.to_string())
}

impl Applied {
    fn encode(&self) -> String {
        match self {
            Applied::Confirmed(c) => format!("confirm:{}", joined(c)),
            Applied::SetAside(c) => format!("aside:{}", joined(c)),
        }
    }

    fn decode(v: &str) -> Option<Self> {
        if let Some(c) = v.strip_prefix("confirm:") {
            Some(Applied::Confirmed(labels(c)))
        } else {
            v.strip_prefix("aside:")
                .map(|c| Applied::SetAside(labels(c)))
        }
    }
}

impl ImageBuildState {
    fn as_str(self) -> &'static str {
        match self {
            ImageBuildState::Dispatched => "dispatched",
            ImageBuildState::Built => "built",
        }
    }
}

impl TaskEffects {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self == &TaskEffects::default()
    }

    /// One line per entry that did not parse, for the condition's message.
    pub fn invalid_message(&self) -> Option<String> {
        (!self.invalid.is_empty()).then(|| {
            let entries: Vec<String> = self
                .invalid
                .iter()
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect();
            format!(
                "status.yaml effects not understood (fix or remove them by hand): {}",
                entries.join(", ")
            )
        })
    }

    /// Reads one entry of the flat map; `false` when it does not parse.
    fn read(&mut self, key: &str, value: &str) -> bool {
        fn phase(v: &str) -> Option<Option<Phase>> {
            Phase::parse(v).map(Some)
        }
        fn set<T>(slot: &mut T, v: Option<T>) -> bool {
            match v {
                Some(v) => {
                    *slot = v;
                    true
                }
                None => false,
            }
        }
        match key {
            "notified" => return set(&mut self.notified, value.parse().ok()),
            "suspendedFrom" => return set(&mut self.suspended_from, phase(value)),
            "resumeTo" => return set(&mut self.resume_to, phase(value)),
            "failedIn" => return set(&mut self.failed_in, phase(value)),
            "testAttempts" => return set(&mut self.test_attempts, value.parse().ok()),
            "retryAt" => return set(&mut self.retry_at, value.parse().ok().map(Some)),
            "agentCursor" => return set(&mut self.agent_cursor, value.parse().ok()),
            "nudges" => return set(&mut self.nudges, value.parse().ok()),
            "stalledSince" => return set(&mut self.stalled_since, value.parse().ok().map(Some)),
            "budgetDeadline" => {
                return set(&mut self.budget_deadline, value.parse().ok().map(Some));
            }
            "budgetRaiseIgnored" => {
                self.budget_raise_ignored = Some(value.to_string());
                return true;
            }
            "budgetWarned" => {
                self.budget_warned = Some(value.to_string());
                return true;
            }
            "agentDone" => {
                self.agent_done = Some(value.to_string());
                return true;
            }
            _ => {}
        }
        let Some((family, name)) = key.split_once('.') else {
            return false;
        };
        let qid = || Qid::new(name).ok();
        match family {
            "doc" => qid()
                .zip(Id::new(value).ok())
                .map(|(q, b)| self.in_doc.insert(q, b))
                .is_some(),
            "moot" => qid()
                .zip(Qid::new(value).ok())
                .map(|(q, by)| self.moot.insert(q, by))
                .is_some(),
            "relayed" => qid()
                .map(|q| self.relayed.insert(q, labels(value)))
                .is_some(),
            "applied" => qid()
                .zip(Applied::decode(value))
                .map(|(q, a)| self.applied.insert(q, a))
                .is_some(),
            "lateAnswer" => qid()
                .map(|q| self.late_answers.insert(q, value.to_string()))
                .is_some(),
            "prBody" => RepoName::new(name)
                .ok()
                .map(|r| self.pr_body.insert(r, value.to_string()))
                .is_some(),
            "mergeAsked" => RepoName::new(name)
                .ok()
                .map(|r| self.merge_asked.insert(r))
                .is_some(),
            "review" => name
                .parse::<u64>()
                .ok()
                .map(|id| self.reviews_sent.insert(id))
                .is_some(),
            "approvalIgnored" => Id::new(name)
                .ok()
                .map(|id| self.approvals_ignored.insert(id, value.to_string()))
                .is_some(),
            "message" => Id::new(name)
                .ok()
                .map(|id| self.messages.insert(id, value.to_string()))
                .is_some(),
            "imageBuild" => {
                let state = match value {
                    "dispatched" => ImageBuildState::Dispatched,
                    "built" => ImageBuildState::Built,
                    _ => return false,
                };
                self.image_builds.insert(name.to_string(), state);
                true
            }
            _ => false,
        }
    }
}

impl From<BTreeMap<String, String>> for TaskEffects {
    fn from(map: BTreeMap<String, String>) -> Self {
        let mut e = TaskEffects::default();
        for (k, v) in map {
            if !e.read(&k, &v) {
                e.invalid.insert(k, v);
            }
        }
        e
    }
}

impl From<TaskEffects> for BTreeMap<String, String> {
    fn from(e: TaskEffects) -> Self {
        let mut m = e.invalid;
        let mut put = |k: String, v: String| {
            m.insert(k, v);
        };
        if e.notified > 0 {
            put("notified".into(), e.notified.to_string());
        }
        for (key, p) in [
            ("suspendedFrom", e.suspended_from),
            ("resumeTo", e.resume_to),
            ("failedIn", e.failed_in),
        ] {
            if let Some(p) = p {
                put(key.into(), p.as_str().into());
            }
        }
        if e.test_attempts > 0 {
            put("testAttempts".into(), e.test_attempts.to_string());
        }
        if let Some(at) = e.retry_at {
            put("retryAt".into(), at.to_string());
        }
        if e.agent_cursor > 0 {
            put("agentCursor".into(), e.agent_cursor.to_string());
        }
        if e.nudges > 0 {
            put("nudges".into(), e.nudges.to_string());
        }
        if let Some(s) = e.agent_done {
            put("agentDone".into(), s);
        }
        for (q, b) in e.in_doc {
            put(format!("doc.{q}"), b.to_string());
        }
        for (q, by) in e.moot {
            put(format!("moot.{q}"), by.to_string());
        }
        for (q, c) in e.relayed {
            put(format!("relayed.{q}"), joined(&c));
        }
        for (q, a) in e.applied {
            put(format!("applied.{q}"), a.encode());
        }
        for (q, s) in e.late_answers {
            put(format!("lateAnswer.{q}"), s);
        }
        for (r, d) in e.pr_body {
            put(format!("prBody.{r}"), d);
        }
        for r in e.merge_asked {
            put(format!("mergeAsked.{r}"), "sent".into());
        }
        for id in e.reviews_sent {
            put(format!("review.{id}"), "sent".into());
        }
        for (id, who) in e.approvals_ignored {
            put(format!("approvalIgnored.{id}"), who);
        }
        for (sha, s) in e.image_builds {
            put(format!("imageBuild.{sha}"), s.as_str().into());
        }
        for (id, s) in e.messages {
            put(format!("message.{id}"), s);
        }
        if let Some(at) = e.stalled_since {
            put("stalledSince".into(), at.to_string());
        }
        if let Some(at) = e.budget_deadline {
            put("budgetDeadline".into(), at.to_string());
        }
        if let Some(b) = e.budget_raise_ignored {
            put("budgetRaiseIgnored".into(), b);
        }
        if let Some(b) = e.budget_warned {
            put("budgetWarned".into(), b);
        }
        m
    }
}

impl JsonSchema for TaskEffects {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TaskEffects".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut s = <BTreeMap<String, String>>::json_schema(generator);
        s.insert(
            "description".into(),
            "The exactly-once ledger: effect keys (e.g. failedIn, relayed.<qid>, prBody.<repo>) \
             to values; written by the reconciler only. docs/reconciler.md lists every key."
                .into(),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::status::TaskStatus;

    /// A `status.yaml` as the release before the typed ledger wrote it: every key family.
    const TODAYS_STATUS: &str = r#"observedCommit: 0123456789abcdef0123456789abcdef01234567
phase: InReview
attempts: 1
effects:
  agentCursor: '42'
  agentDone: 'DONE: added JWT auth'
  applied.q-001: "confirm:RS256"
  applied.q-002: "aside:A\x1fB"
  approvalIgnored.forged: mallory@example.com
  doc.q-003: batch-001
  failedIn: Testing
  imageBuild.1111111111111111111111111111111111111111: built
  imageBuild.2222222222222222222222222222222222222222: dispatched
  lateAnswer.q-001: '["HS256"] Some("alice@example.com")'
  mergeAsked.domain-apis: sent
  moot.q-004: q-002
  notified: '7'
  nudges: '1'
  prBody.domain-apis: 0a1b2c3d
  relayed.q-001: RS256
  relayed.q-002: "A\x1fB"
  resumeTo: Deploying
  retryAt: 2026-11-25T10:30:00Z
  review.123456: sent
  suspendedFrom: Running
  testAttempts: '2'
"#;

    #[test]
    fn a_status_file_in_todays_format_loads_typed_and_writes_back_the_same() {
        let status: TaskStatus = crate::state::yaml::parse(TODAYS_STATUS.as_bytes()).unwrap();
        let e = &status.effects;
        assert!(e.invalid.is_empty(), "{:?}", e.invalid);
        assert_eq!(e.agent_cursor, 42);
        assert_eq!(e.agent_done.as_deref(), Some("DONE: added JWT auth"));
        let q = |s: &str| Qid::new(s).unwrap();
        assert_eq!(
            e.applied[&q("q-001")],
            Applied::Confirmed(vec!["RS256".into()])
        );
        assert_eq!(
            e.applied[&q("q-002")],
            Applied::SetAside(vec!["A".into(), "B".into()])
        );
        assert_eq!(e.relayed[&q("q-002")], vec!["A".to_string(), "B".into()]);
        assert_eq!(e.failed_in, Some(Phase::Testing));
        assert_eq!(e.resume_to, Some(Phase::Deploying));
        assert_eq!(e.suspended_from, Some(Phase::Running));
        assert_eq!(e.notified, 7);
        assert_eq!(e.nudges, 1);
        assert_eq!(e.test_attempts, 2);
        assert_eq!(e.moot[&q("q-004")], q("q-002"));
        assert_eq!(e.in_doc[&q("q-003")].as_str(), "batch-001");
        assert!(e.reviews_sent.contains(&123456));
        assert!(
            e.merge_asked
                .contains(&RepoName::new("domain-apis").unwrap())
        );
        assert_eq!(
            e.image_builds["2222222222222222222222222222222222222222"],
            ImageBuildState::Dispatched
        );
        assert_eq!(
            e.retry_at,
            Some("2026-11-25T10:30:00Z".parse::<Timestamp>().unwrap())
        );

        // Written back, the ledger is the same flat map, key for key.
        let original: serde_json::Value =
            crate::state::yaml::parse::<serde_json::Value>(TODAYS_STATUS.as_bytes()).unwrap();
        let again: serde_json::Value =
            crate::state::yaml::parse(crate::state::yaml::to_string(&status).unwrap().as_bytes())
                .unwrap();
        assert_eq!(original["effects"], again["effects"]);
    }

    #[test]
    fn an_entry_that_does_not_parse_is_kept_and_reported_never_guessed() {
        let map = BTreeMap::from([
            ("resumeTo".to_string(), "Reviewing".to_string()),
            ("nudges".to_string(), "many".to_string()),
            ("someNewKey".to_string(), "x".to_string()),
            ("failedIn".to_string(), "Running".to_string()),
        ]);
        let e = TaskEffects::from(map.clone());
        assert_eq!(e.resume_to, None);
        assert_eq!(e.failed_in, Some(Phase::Running));
        assert_eq!(e.invalid.len(), 3);
        let msg = e.invalid_message().unwrap();
        assert!(msg.contains("resumeTo: \"Reviewing\""), "{msg}");
        // Nothing is lost when the status is written again.
        assert_eq!(BTreeMap::from(e), map);
    }

    #[test]
    fn an_empty_ledger_writes_nothing() {
        assert!(BTreeMap::<String, String>::from(TaskEffects::default()).is_empty());
        assert!(TaskEffects::default().is_empty());
    }
}
