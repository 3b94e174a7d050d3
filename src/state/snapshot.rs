//! A parsed view of a whole state repository, kept up to date one file at a time.
//!
//! The same code serves `gaffer validate` (files from a directory) and the reconciler
//! (files from git trees): [`Snapshot::upsert`] and [`Snapshot::remove`] touch one file,
//! so a wake-up costs O(changed files). Every problem is kept with its file and position;
//! a bad file never stops the valid objects around it from loading.
//!
//! One file is parsed on its own by [`parse_file`] (module `parse`, with the checks beyond
//! the YAML shape in module `check`); this module keeps the parsed files together.

mod check;
mod parse;

pub use parse::{Parsed, ParsedFile, parse_file};

use check::check_answer;
use parse::classify;

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::Serialize;

use crate::names::{Id, ProjectRef, Qid, TaskName, TaskRef};
use crate::state::path::StatePath;
use crate::state::spec::{AnswerSpec, ApprovalSpec, ProjectSpec, Settings, TaskSpec};
use crate::state::status::{LabStatus, Progress, Question, SlackThread, TaskStatus};
use crate::state::yaml::YamlError;

/// One file as stored: a blob, or a symlink with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawContent {
    /// A regular file's bytes.
    Blob(Vec<u8>),
    /// A symbolic link and the path it points to.
    Symlink(String),
    /// A regular file over [`yaml::MAX_FILE_BYTES`], with its size; its bytes are not read.
    Oversize(u64),
}

/// A problem found in the state repository, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// Repository-relative path.
    pub path: String,
    /// 1-based line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem for a whole file.
    pub fn file(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a position; line 0 means "unknown".
    pub fn at(path: impl Into<String>, line: u32, column: u32, message: impl Into<String>) -> Self {
        let known = line > 0;
        Self {
            path: path.into(),
            line: known.then_some(line),
            column: known.then_some(column),
            message: message.into(),
        }
    }

    fn from_yaml(path: &str, e: YamlError) -> Self {
        Self {
            path: path.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path, self.message),
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Everything known about one project.
#[derive(Debug, Clone, Default)]
pub struct ProjectEntry {
    /// `project.yaml`, when present and valid.
    pub spec: Option<ProjectSpec>,
    /// Whether `project.yaml` exists at all (valid or not).
    pub spec_present: bool,
    /// `lab/status.yaml`.
    pub lab: Option<LabStatus>,
    /// The project's tasks.
    pub tasks: BTreeMap<TaskName, TaskEntry>,
}

/// Everything known about one task.
#[derive(Debug, Clone, Default)]
pub struct TaskEntry {
    /// `task.yaml`, when present and valid.
    pub spec: Option<Box<TaskSpec>>,
    /// Whether `task.yaml` exists at all (valid or not).
    pub spec_present: bool,
    /// `status.yaml`.
    pub status: Option<Box<TaskStatus>>,
    /// `progress.yaml`.
    pub progress: Option<Progress>,
    /// `slack.yaml`.
    pub slack: Option<Box<SlackThread>>,
    /// `questions/<qid>.yaml`.
    pub questions: BTreeMap<Qid, Box<Question>>,
    /// `questions/<batch>.md`, raw text.
    pub question_docs: BTreeMap<Id, String>,
    /// `answers/<qid>.yaml`.
    pub answers: BTreeMap<Qid, Box<AnswerSpec>>,
    /// `approvals/<id>.yaml`.
    pub approvals: BTreeMap<Id, ApprovalSpec>,
    /// `messages/<id>.yaml`.
    pub messages: BTreeMap<Id, Box<crate::state::spec::MessageSpec>>,
    /// `plan.yaml`.
    pub plan: Option<Box<crate::state::planning::PlanStatus>>,
    /// `plan/**`, raw text by path under `plan/`.
    pub plan_docs: BTreeMap<String, String>,
}

impl TaskEntry {
    fn is_empty(&self) -> bool {
        !self.spec_present
            && self.status.is_none()
            && self.progress.is_none()
            && self.slack.is_none()
            && self.questions.is_empty()
            && self.question_docs.is_empty()
            && self.answers.is_empty()
            && self.approvals.is_empty()
            && self.messages.is_empty()
            && self.plan.is_none()
            && self.plan_docs.is_empty()
    }
}

/// The parsed state repository.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// `gaffer.yaml`, when present and valid.
    pub settings: Option<Settings>,
    /// Projects by `category/project`.
    pub projects: BTreeMap<ProjectRef, ProjectEntry>,
    /// Problems of single files, by path.
    file_problems: BTreeMap<String, Vec<Problem>>,
    /// Hashes of the paths of every file seen (a set of strings would cost megabytes at
    /// 10,000 tasks; a 64-bit collision among state files is not a practical concern).
    files: HashSet<u64>,
}

impl Snapshot {
    /// Builds a snapshot from a set of files.
    pub fn from_files<I>(files: I) -> Self
    where
        I: IntoIterator<Item = (String, RawContent)>,
    {
        let mut s = Snapshot::default();
        for (path, content) in files {
            s.upsert(&path, &content);
        }
        s
    }

    /// Number of files seen.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The task entry for `t`, if anything of it exists.
    pub fn task(&self, t: &TaskRef) -> Option<&TaskEntry> {
        self.projects.get(&t.project)?.tasks.get(&t.task)
    }

    /// Every task, in project then name order.
    pub fn tasks(&self) -> impl Iterator<Item = (TaskRef, &TaskEntry)> {
        self.projects.iter().flat_map(|(p, pe)| {
            pe.tasks.iter().map(move |(t, te)| {
                (
                    TaskRef {
                        project: p.clone(),
                        task: t.clone(),
                    },
                    te,
                )
            })
        })
    }

    /// Adds or replaces one file. Returns what the path maps to.
    pub fn upsert(&mut self, path: &str, content: &RawContent) -> Option<StatePath> {
        let parsed = parse_file(path, content);
        let sp = parsed.state_path.clone();
        self.apply(parsed);
        sp
    }

    /// Inserts a file parsed by [`parse_file`] (which may run on another thread),
    /// replacing any earlier version of it.
    pub fn apply(&mut self, parsed: ParsedFile) {
        let ParsedFile {
            path,
            state_path,
            value,
            problems,
        } = parsed;
        self.remove(&path);
        if !problems.is_empty() {
            self.file_problems.insert(path.clone(), problems);
        }
        self.files.insert(path_hash(&path));
        let Some(sp) = state_path else { return };
        match sp {
            StatePath::Settings => {
                if let Some(Parsed::Settings(v)) = value {
                    self.settings = Some(*v);
                }
            }
            StatePath::Project(p) => {
                let pe = self.projects.entry(p).or_default();
                pe.spec_present = true;
                if let Some(Parsed::Project(v)) = value {
                    pe.spec = Some(*v);
                }
            }
            StatePath::LabStatus(p) => {
                if let Some(Parsed::Lab(v)) = value {
                    self.projects.entry(p).or_default().lab = Some(*v);
                }
            }
            StatePath::TaskSpec(t) => {
                let te = self.task_entry(t);
                te.spec_present = true;
                if let Some(Parsed::TaskSpec(v)) = value {
                    te.spec = Some(v);
                }
            }
            StatePath::TaskStatus(t) => {
                if let Some(Parsed::TaskStatus(v)) = value {
                    self.task_entry(t).status = Some(v);
                }
            }
            StatePath::Progress(t) => {
                if let Some(Parsed::Progress(v)) = value {
                    self.task_entry(t).progress = Some(v);
                }
            }
            StatePath::Slack(t) => {
                if let Some(Parsed::Slack(v)) = value {
                    self.task_entry(t).slack = Some(v);
                }
            }
            StatePath::Question(t, q) => {
                if let Some(Parsed::Question(v)) = value {
                    self.task_entry(t).questions.insert(q, v);
                }
            }
            StatePath::QuestionDoc(t, d) => {
                if let Some(Parsed::QuestionDoc(v)) = value {
                    self.task_entry(t).question_docs.insert(d, v);
                }
            }
            StatePath::Answer(t, q) => {
                if let Some(Parsed::Answer(v)) = value {
                    self.task_entry(t).answers.insert(q, v);
                }
            }
            StatePath::Approval(t, a) => {
                if let Some(Parsed::Approval(v)) = value {
                    self.task_entry(t).approvals.insert(a, *v);
                }
            }
            StatePath::Message(t, m) => {
                if let Some(Parsed::Message(v)) = value {
                    self.task_entry(t).messages.insert(m, v);
                }
            }
            StatePath::PlanStatus(t) => {
                if let Some(Parsed::PlanStatus(v)) = value {
                    self.task_entry(t).plan = Some(v);
                }
            }
            StatePath::PlanDoc(t, d) => {
                if let Some(Parsed::QuestionDoc(v)) = value {
                    self.task_entry(t).plan_docs.insert(d, v);
                }
            }
        }
    }

    /// The entry of `t`, created when missing; takes `t` by value so no name is cloned.
    fn task_entry(&mut self, t: TaskRef) -> &mut TaskEntry {
        self.projects
            .entry(t.project)
            .or_default()
            .tasks
            .entry(t.task)
            .or_default()
    }

    /// Removes one file (deleted in a commit).
    pub fn remove(&mut self, path: &str) {
        self.file_problems.remove(path);
        if !self.files.remove(&path_hash(path)) {
            return;
        }
        let Ok(Some(sp)) = classify(path) else {
            return;
        };
        match &sp {
            StatePath::Settings => self.settings = None,
            StatePath::Project(p) => {
                if let Some(pe) = self.projects.get_mut(p) {
                    pe.spec = None;
                    pe.spec_present = false;
                }
            }
            StatePath::LabStatus(p) => {
                if let Some(pe) = self.projects.get_mut(p) {
                    pe.lab = None;
                }
            }
            other => {
                let Some(t) = task_of(other) else { return };
                if let Some(te) = self.task_mut_existing(t) {
                    match other {
                        StatePath::TaskSpec(_) => {
                            te.spec = None;
                            te.spec_present = false;
                        }
                        StatePath::TaskStatus(_) => te.status = None,
                        StatePath::Progress(_) => te.progress = None,
                        StatePath::Slack(_) => te.slack = None,
                        StatePath::Question(_, q) => drop(te.questions.remove(q)),
                        StatePath::QuestionDoc(_, d) => drop(te.question_docs.remove(d)),
                        StatePath::Answer(_, q) => drop(te.answers.remove(q)),
                        StatePath::Approval(_, a) => drop(te.approvals.remove(a)),
                        StatePath::Message(_, m) => drop(te.messages.remove(m)),
                        StatePath::PlanStatus(_) => te.plan = None,
                        StatePath::PlanDoc(_, d) => drop(te.plan_docs.remove(d)),
                        _ => {}
                    }
                }
            }
        }
        self.prune(&sp);
    }

    fn prune(&mut self, sp: &StatePath) {
        let project = match sp {
            StatePath::Settings => return,
            StatePath::Project(p) | StatePath::LabStatus(p) => p.clone(),
            other => match task_of(other) {
                Some(t) => {
                    let t = t.clone();
                    if let Some(pe) = self.projects.get_mut(&t.project)
                        && pe.tasks.get(&t.task).is_some_and(TaskEntry::is_empty)
                    {
                        pe.tasks.remove(&t.task);
                    }
                    t.project
                }
                None => return,
            },
        };
        if let Some(pe) = self.projects.get(&project)
            && !pe.spec_present
            && pe.lab.is_none()
            && pe.tasks.is_empty()
        {
            self.projects.remove(&project);
        }
    }

    fn task_mut_existing(&mut self, t: &TaskRef) -> Option<&mut TaskEntry> {
        self.projects.get_mut(&t.project)?.tasks.get_mut(&t.task)
    }

    /// Problems in single files, in path order.
    pub fn file_problems(&self) -> impl Iterator<Item = &Problem> {
        self.file_problems.values().flatten()
    }

    /// Problems of one file.
    pub fn problems_of(&self, path: &str) -> &[Problem] {
        self.file_problems.get(path).map_or(&[], Vec::as_slice)
    }

    /// Checks between files: tasks without a project, answers without a question, choices
    /// that are not options, and projects whose derived names collide.
    pub fn cross_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.settings.is_none()
            && !self.files.contains(&path_hash("gaffer.yaml"))
            && !self.files.is_empty()
        {
            out.push(Problem::file(
                "gaffer.yaml",
                "missing: every state repository needs gaffer.yaml",
            ));
        }
        let mut builders: BTreeMap<String, Vec<&ProjectRef>> = BTreeMap::new();
        let mut hosts: BTreeMap<String, Vec<&ProjectRef>> = BTreeMap::new();
        for (p, pe) in &self.projects {
            if pe.spec_present {
                builders.entry(p.builder_name()).or_default().push(p);
                hosts.entry(p.project.to_string()).or_default().push(p);
            }
            for (t, te) in &pe.tasks {
                let tref = TaskRef {
                    project: p.clone(),
                    task: t.clone(),
                };
                let first = self.first_path_of(&tref);
                if !pe.spec_present {
                    out.push(Problem::file(
                        first.clone(),
                        format!(
                            "task {tref} belongs to no project: projects/{}/{}/project.yaml does not exist",
                            p.category, p.project
                        ),
                    ));
                }
                if !te.spec_present {
                    out.push(Problem::file(
                        first,
                        format!("task {tref} has files but no task.yaml"),
                    ));
                }
                for (qid, answer) in &te.answers {
                    let apath = StatePath::Answer(tref.clone(), qid.clone()).to_path();
                    if self.problems_of(&apath).iter().any(|_| true) {
                        continue;
                    }
                    out.extend(check_answer(
                        &apath,
                        qid,
                        answer,
                        te.questions.get(qid).map(|q| &**q),
                    ));
                }
            }
        }
        for (name, projects) in builders {
            if projects.len() > 1 {
                let list: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
                for p in &projects {
                    out.push(Problem::file(
                        StatePath::Project((*p).clone()).to_path(),
                        format!(
                            "duplicate builder name {name:?}: projects {} would share the tmux session, channel and lab namespace",
                            list.join(" and ")
                        ),
                    ));
                }
            }
        }
        // The lab host is `{project}.builder.<domain>`: a project name in two categories
        // would give both the same URL. Refused rather than told apart by category only
        // when they collide, which would move a lab's URL when another project is added.
        for (name, projects) in hosts {
            if projects.len() > 1 {
                let list: Vec<String> = projects.iter().map(|p| p.to_string()).collect();
                let host = match &self.settings {
                    Some(s) => format!("{name}.builder.{}", s.domain),
                    None => format!("{name}.builder.<domain>"),
                };
                for p in &projects {
                    out.push(Problem::file(
                        StatePath::Project((*p).clone()).to_path(),
                        format!(
                            "projects {} would share the lab host {host}: project names must \
                             differ across categories (docs/lab.md)",
                            list.join(" and ")
                        ),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    fn first_path_of(&self, t: &TaskRef) -> String {
        let sp = match self.task(t) {
            Some(te) if te.spec_present => StatePath::TaskSpec(t.clone()),
            Some(te) => {
                let first = [
                    te.status.as_ref().map(|_| StatePath::TaskStatus(t.clone())),
                    te.progress.as_ref().map(|_| StatePath::Progress(t.clone())),
                    te.slack.as_ref().map(|_| StatePath::Slack(t.clone())),
                    te.questions
                        .keys()
                        .next()
                        .map(|q| StatePath::Question(t.clone(), q.clone())),
                    te.question_docs
                        .keys()
                        .next()
                        .map(|d| StatePath::QuestionDoc(t.clone(), d.clone())),
                    te.answers
                        .keys()
                        .next()
                        .map(|q| StatePath::Answer(t.clone(), q.clone())),
                    te.approvals
                        .keys()
                        .next()
                        .map(|a| StatePath::Approval(t.clone(), a.clone())),
                    te.messages
                        .keys()
                        .next()
                        .map(|m| StatePath::Message(t.clone(), m.clone())),
                    te.plan.as_ref().map(|_| StatePath::PlanStatus(t.clone())),
                    te.plan_docs
                        .keys()
                        .next()
                        .map(|d| StatePath::PlanDoc(t.clone(), d.clone())),
                ];
                first
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(StatePath::TaskSpec(t.clone()))
            }
            None => StatePath::TaskSpec(t.clone()),
        };
        sp.to_path()
    }

    /// All problems: single files first, then cross-file checks, in path order.
    pub fn all_problems(&self) -> Vec<Problem> {
        let mut all: Vec<Problem> = self.file_problems().cloned().collect();
        all.extend(self.cross_problems());
        all.sort();
        all.dedup();
        all
    }
}

fn path_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

fn task_of(sp: &StatePath) -> Option<&TaskRef> {
    sp.task()
}
