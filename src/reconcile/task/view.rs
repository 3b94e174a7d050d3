//! What the reconcile of one task reads, copied out of the snapshot: [`Loaded`] as found,
//! [`View`] once the gates in `mod.rs` found the task's spec and project valid.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::names::{Id, Qid, TaskRef};
use crate::state::StatePath;
use crate::state::snapshot::{Problem, Snapshot};
use crate::state::spec::{AnswerSpec, ApprovalSpec, Priority, ProjectSpec, Settings, TaskSpec};
use crate::state::status::{LabStatus, Phase, Progress, Question, TaskStatus};

/// Another task of the same project, as the queue sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sibling {
    /// The task.
    pub task: TaskRef,
    /// Its phase.
    pub phase: Phase,
    /// Its priority.
    pub priority: Priority,
    /// Since when it is in that phase.
    pub since: Option<Timestamp>,
    /// The task it is a story of.
    pub parent: Option<crate::names::TaskName>,
    /// Its story number (`N.M`).
    pub story: Option<String>,
}

/// The files of a task and its project, as found (nothing validated yet).
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The state commit read.
    pub head: Option<String>,
    /// `gaffer.yaml`.
    pub settings: Option<Settings>,
    /// `project.yaml`, when valid.
    pub project: Option<ProjectSpec>,
    /// Whether `project.yaml` exists at all.
    pub project_present: bool,
    /// Problems of `project.yaml`.
    pub project_problems: Vec<Problem>,
    /// Whether any file of the task exists.
    pub exists: bool,
    /// `task.yaml`, when valid.
    pub spec: Option<TaskSpec>,
    /// Whether `task.yaml` exists at all.
    pub spec_present: bool,
    /// Problems of `task.yaml`.
    pub spec_problems: Vec<Problem>,
    /// A reconciler-owned file of the task does not parse (hand-edited, or too large).
    pub owned_file_problems: Vec<Problem>,
    /// The task's files.
    pub files: TaskFiles,
}

/// The task's own files besides `task.yaml`, and what the phases need around them.
#[derive(Debug, Clone, Default)]
pub struct TaskFiles {
    /// `lab/status.yaml` of the project.
    pub lab: Option<LabStatus>,
    /// `status.yaml`.
    pub status: Option<TaskStatus>,
    /// `progress.yaml`.
    pub progress: Progress,
    /// `questions/<qid>.yaml`.
    pub questions: BTreeMap<Qid, Question>,
    /// `answers/<qid>.yaml`.
    pub answers: BTreeMap<Qid, AnswerSpec>,
    /// `approvals/<id>.yaml`.
    pub approvals: Vec<(Id, ApprovalSpec)>,
    /// `messages/<id>.yaml`.
    pub messages: BTreeMap<Id, crate::state::spec::MessageSpec>,
    /// `questions/<batch>.md` by batch.
    pub question_docs: BTreeMap<Id, String>,
    /// `plan.yaml`, when valid.
    pub plan: Option<crate::state::planning::PlanStatus>,
    /// Why `plan.yaml` or a plan document did not load (located).
    pub plan_problems: Vec<Problem>,
    /// `plan/**` by path under `plan/`.
    pub plan_docs: BTreeMap<String, String>,
    /// For a story task: its parent's `plan.yaml` and documents.
    pub parent_plan: Option<(crate::state::planning::PlanStatus, BTreeMap<String, String>)>,
    /// The project's other tasks.
    pub siblings: Vec<Sibling>,
    /// What every task of the project used, by day (`YYYY-MM-DD`, business time zone).
    pub project_by_day: BTreeMap<String, crate::state::status::Usage>,
    /// What every task of every project used, by day.
    pub all_by_day: BTreeMap<String, crate::state::status::Usage>,
}

/// A task whose spec and project are valid: what every phase reads.
#[derive(Debug, Clone)]
pub struct View {
    /// The task.
    pub t: TaskRef,
    /// The state commit read.
    pub head: Option<String>,
    /// `gaffer.yaml`.
    pub settings: Settings,
    /// `project.yaml`.
    pub project: ProjectSpec,
    /// `task.yaml`.
    pub spec: TaskSpec,
    /// Everything else.
    pub files: TaskFiles,
}

impl std::ops::Deref for View {
    type Target = TaskFiles;
    fn deref(&self) -> &TaskFiles {
        &self.files
    }
}

impl Loaded {
    /// Copies task `t` and its project out of `snap` at `head`.
    pub fn from_snapshot(head: Option<String>, snap: &Snapshot, t: &TaskRef) -> Self {
        let mut v = Loaded {
            head,
            settings: snap.settings.clone(),
            ..Loaded::default()
        };
        // Day budgets are sums over the whole state: read only when one is set.
        let day_budgets =
            snap.settings.as_ref().is_some_and(|st| {
                st.budget.per_day.is_some() || st.budget.project_per_day.is_some()
            }) || snap
                .projects
                .get(&t.project)
                .and_then(|pe| pe.spec.as_ref()?.budget.as_ref())
                .is_some_and(|b| b.project_per_day.is_some());
        for (p, pe) in snap.projects.iter().filter(|_| day_budgets) {
            for te in pe.tasks.values() {
                let Some(st) = te.status.as_deref() else {
                    continue;
                };
                for (day, u) in &st.usage_by_day {
                    v.files.all_by_day.entry(day.clone()).or_default().add(u);
                    if *p == t.project {
                        v.files
                            .project_by_day
                            .entry(day.clone())
                            .or_default()
                            .add(u);
                    }
                }
            }
        }
        let Some(pe) = snap.projects.get(&t.project) else {
            return v;
        };
        v.project = match (&pe.spec, &snap.settings) {
            (Some(p), Some(s)) => Some(p.clone().with_builder_defaults(s)),
            (p, _) => p.clone(),
        };
        v.project_problems = snap
            .problems_of(&StatePath::Project(t.project.clone()).to_path())
            .to_vec();
        v.project_present = pe.spec_present;
        v.files.lab = pe.lab.clone();
        for (name, te) in &pe.tasks {
            let task = TaskRef {
                project: t.project.clone(),
                task: name.clone(),
            };
            if &task == t {
                continue;
            }
            v.files.siblings.push(Sibling {
                task,
                phase: te.status.as_ref().map_or(Phase::Pending, |s| s.phase),
                priority: te.spec.as_ref().map(|s| s.priority).unwrap_or_default(),
                since: te.status.as_ref().and_then(|s| s.phase_since),
                parent: te.spec.as_ref().and_then(|s| s.parent.clone()),
                story: te.spec.as_ref().and_then(|s| s.story.clone()),
            });
        }
        let Some(te) = pe.tasks.get(&t.task) else {
            return v;
        };
        v.exists = true;
        v.spec = te.spec.as_deref().cloned();
        v.spec_present = te.spec_present;
        v.spec_problems = snap
            .problems_of(&StatePath::TaskSpec(t.clone()).to_path())
            .to_vec();
        for path in [
            StatePath::TaskStatus(t.clone()),
            StatePath::Progress(t.clone()),
        ] {
            v.owned_file_problems
                .extend(snap.problems_of(&path.to_path()).iter().cloned());
        }
        let f = &mut v.files;
        f.status = te.status.as_deref().cloned();
        f.progress = te.progress.clone().unwrap_or_default();
        f.questions = te
            .questions
            .iter()
            .map(|(k, q)| (k.clone(), (**q).clone()))
            .collect();
        f.answers = te
            .answers
            .iter()
            .map(|(k, a)| (k.clone(), (**a).clone()))
            .collect();
        f.approvals = te
            .approvals
            .iter()
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        f.messages = te
            .messages
            .iter()
            .map(|(id, m)| (id.clone(), (**m).clone()))
            .collect();
        f.question_docs = te.question_docs.clone();
        f.plan = te.plan.as_deref().cloned();
        f.plan_docs = te.plan_docs.clone();
        f.parent_plan = te
            .spec
            .as_ref()
            .and_then(|s| s.parent.as_ref())
            .and_then(|p| pe.tasks.get(p))
            .and_then(|pt| Some((pt.plan.as_deref()?.clone(), pt.plan_docs.clone())));
        // `plan.yaml` and everything under `plan/` (a document that is not text included).
        let plan_file = StatePath::PlanStatus(t.clone()).to_path();
        let plan_dir = format!("{}/", plan_file.trim_end_matches(".yaml"));
        f.plan_problems = snap
            .file_problems()
            .filter(|p| p.path == plan_file || p.path.starts_with(&plan_dir))
            .cloned()
            .collect();
        v
    }
}
