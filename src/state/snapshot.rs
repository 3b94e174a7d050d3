//! A parsed view of a whole state repository, kept up to date one file at a time.
//!
//! The same code serves `gaffer validate` (files from a directory) and the reconciler
//! (files from git trees): [`Snapshot::upsert`] and [`Snapshot::remove`] touch one file,
//! so a wake-up costs O(changed files). Every problem is kept with its file and position;
//! a bad file never stops the valid objects around it from loading.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use serde::Serialize;

use crate::names::{Id, ProjectRef, Qid, TaskName, TaskRef};
use crate::state::path::{PathError, StatePath};
use crate::state::spec::{AnswerSpec, ApprovalSpec, ProjectSpec, Settings, TaskSpec};
use crate::state::status::{LabStatus, Progress, Question, SlackThread, TaskStatus};
use crate::state::yaml::{self, YamlError};

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
        for (p, pe) in &self.projects {
            if pe.spec_present {
                builders.entry(p.builder_name()).or_default().push(p);
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

/// A parsed state file, ready for [`Snapshot::apply`].
#[derive(Debug, Clone)]
pub enum Parsed {
    /// `gaffer.yaml`.
    Settings(Box<Settings>),
    /// `project.yaml`.
    Project(Box<ProjectSpec>),
    /// `lab/status.yaml`.
    Lab(Box<LabStatus>),
    /// `task.yaml`.
    TaskSpec(Box<TaskSpec>),
    /// `status.yaml`.
    TaskStatus(Box<TaskStatus>),
    /// `progress.yaml`.
    Progress(Progress),
    /// `slack.yaml`.
    Slack(Box<SlackThread>),
    /// `questions/<qid>.yaml`.
    Question(Box<Question>),
    /// `questions/<batch>.md`.
    QuestionDoc(String),
    /// `answers/<qid>.yaml`.
    Answer(Box<AnswerSpec>),
    /// `approvals/<id>.yaml`.
    Approval(Box<ApprovalSpec>),
}

/// One file after parsing: what it is, its value when valid, and its problems.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// Repository-relative path.
    pub path: String,
    /// What the path maps to, when it is a state file.
    pub state_path: Option<StatePath>,
    /// The parsed value (None when invalid, or not a state file).
    pub value: Option<Parsed>,
    /// Problems of this file alone.
    pub problems: Vec<Problem>,
}

/// Parses one file without touching any snapshot, so many files can be parsed in parallel.
pub fn parse_file(path: &str, content: &RawContent) -> ParsedFile {
    let mut out = ParsedFile {
        path: path.to_string(),
        state_path: None,
        value: None,
        problems: Vec::new(),
    };
    let sp = match classify(path) {
        Ok(Some(sp)) => sp,
        Ok(None) => return out,
        Err(p) => {
            out.problems.push(p);
            return out;
        }
    };
    out.state_path = Some(sp.clone());
    match content {
        RawContent::Blob(bytes) => match parse_value(&sp, path, bytes) {
            Ok((value, problems)) => {
                out.value = value;
                out.problems = problems;
            }
            Err(p) => out.problems.push(p),
        },
        RawContent::Symlink(target) => {
            out.problems
                .push(Problem::file(path, symlink_message(path, target)));
        }
        RawContent::Oversize(size) => out.problems.push(Problem::file(
            path,
            format!(
                "file is {size} bytes; state files are limited to {} bytes",
                yaml::MAX_FILE_BYTES
            ),
        )),
    }
    out
}

/// Parses a state file's bytes. A hard error drops the value; soft problems keep it.
fn parse_value(
    sp: &StatePath,
    path: &str,
    bytes: &[u8],
) -> Result<(Option<Parsed>, Vec<Problem>), Problem> {
    let wrap = |e: YamlError| Problem::from_yaml(path, e);
    let one = |v: Parsed| Ok((Some(v), Vec::new()));
    match sp {
        StatePath::Settings => {
            let s: Settings = yaml::parse(bytes).map_err(wrap)?;
            let problems = check_settings(path, &s);
            if problems.is_empty() {
                one(Parsed::Settings(Box::new(s)))
            } else {
                Ok((None, problems))
            }
        }
        StatePath::Project(_) => {
            let spec: ProjectSpec = yaml::parse(bytes).map_err(wrap)?;
            let problems = check_project(path, &spec);
            Ok((Some(Parsed::Project(Box::new(spec))), problems))
        }
        StatePath::LabStatus(_) => one(Parsed::Lab(Box::new(yaml::parse(bytes).map_err(wrap)?))),
        StatePath::TaskSpec(_) => {
            let spec: TaskSpec = yaml::parse(bytes).map_err(wrap)?;
            if spec.title.trim().is_empty() {
                return Err(Problem::file(path, "title must not be empty"));
            }
            one(Parsed::TaskSpec(Box::new(spec)))
        }
        StatePath::TaskStatus(_) => {
            let mut st: TaskStatus = yaml::parse(bytes).map_err(wrap)?;
            // Deserialized vectors keep spare capacity; at 10,000 tasks that is megabytes.
            st.conditions.shrink_to_fit();
            st.links.shrink_to_fit();
            for a in st.agent.iter_mut() {
                a.prompts_sent.shrink_to_fit();
            }
            one(Parsed::TaskStatus(Box::new(st)))
        }
        StatePath::Progress(_) => {
            let mut progress: Progress = yaml::parse(bytes).map_err(wrap)?;
            progress.milestones.shrink_to_fit();
            for (i, m) in progress.milestones.iter().enumerate() {
                if m.seq as usize != i + 1 {
                    return Err(Problem::file(
                        path,
                        format!(
                            "milestone {} has seq {}; seq numbers must be 1, 2, 3, ... without gaps or duplicates",
                            i + 1,
                            m.seq
                        ),
                    ));
                }
            }
            one(Parsed::Progress(progress))
        }
        StatePath::Slack(_) => one(Parsed::Slack(Box::new(yaml::parse(bytes).map_err(wrap)?))),
        StatePath::Question(..) => {
            let question: Question = yaml::parse(bytes).map_err(wrap)?;
            check_question(path, &question)?;
            one(Parsed::Question(Box::new(question)))
        }
        StatePath::QuestionDoc(..) => {
            let text = yaml::check_text(bytes).map_err(wrap)?;
            one(Parsed::QuestionDoc(text.to_string()))
        }
        StatePath::Answer(..) => {
            let answer: AnswerSpec = yaml::parse(bytes).map_err(wrap)?;
            if answer.choice.is_none() && answer.text.is_none() {
                return Err(Problem::file(
                    path,
                    "an answer needs a `choice` or a `text`",
                ));
            }
            one(Parsed::Answer(Box::new(answer)))
        }
        StatePath::Approval(..) => one(Parsed::Approval(Box::new(
            yaml::parse(bytes).map_err(wrap)?,
        ))),
    }
}

fn path_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

fn classify(path: &str) -> Result<Option<StatePath>, Problem> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with('.') || name == "README.md" {
        return Ok(None);
    }
    StatePath::parse(path).map_err(|e| match e {
        PathError::Name(n) => Problem::file(path, format!("bad path: {n}")),
        PathError::Layout(msg) => Problem::file(path, msg),
    })
}

fn task_of(sp: &StatePath) -> Option<&TaskRef> {
    sp.task()
}

fn symlink_message(path: &str, target: &str) -> String {
    let mut depth: i64 = path.matches('/').count() as i64;
    let escapes = target.starts_with('/')
        || target.split('/').any(|c| {
            match c {
                ".." => depth -= 1,
                "" | "." => {}
                _ => depth += 1,
            }
            depth < 0
        });
    if escapes {
        format!(
            "symlink to {target:?} points outside the repository; state files must be regular files"
        )
    } else {
        format!("symlink to {target:?}; state files must be regular files, not symlinks")
    }
}

fn check_settings(path: &str, s: &Settings) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Err(e) = s.business_hours.validate() {
        out.push(Problem::file(path, format!("business_hours: {e}")));
    }
    let domain_ok = !s.domain.is_empty()
        && s.domain.len() <= 200
        && s.domain
            .split('.')
            .all(|l| crate::names::check(crate::names::NameKind::Id, l).is_ok());
    if !domain_ok {
        out.push(Problem::file(
            path,
            format!(
                "domain {:?} is not a lowercase DNS name like lab.example.com",
                s.domain
            ),
        ));
    }
    if s.limits.active_tasks_per_project == 0 {
        out.push(Problem::file(
            path,
            "limits.active_tasks_per_project must be at least 1",
        ));
    }
    out
}

fn check_project(path: &str, spec: &ProjectSpec) -> Vec<Problem> {
    let mut out = Vec::new();
    if spec.repos.is_empty() {
        out.push(Problem::file(
            path,
            "repos: a project needs at least one repo",
        ));
    }
    let mut seen = BTreeSet::new();
    for r in &spec.repos {
        if !seen.insert(r.name.value.as_str()) {
            out.push(Problem::at(
                path,
                r.name.line,
                r.name.column,
                format!("duplicate repo name {:?}", r.name.value.as_str()),
            ));
        }
        if r.url.trim().is_empty() {
            out.push(Problem::file(
                path,
                format!("repo {}: url must not be empty", r.name.value),
            ));
        }
    }
    if let Some(lab) = &spec.lab {
        let overlay = lab.overlay.value.as_str();
        let first = overlay.split('/').next().unwrap_or("");
        let msg = if overlay.starts_with('/') {
            Some("must be a relative path inside the workspace".to_string())
        } else if overlay
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        {
            Some("must not contain '..', '.' or empty components".to_string())
        } else if !seen.contains(first) {
            Some(format!(
                "must start with one of the project's repos, not {first:?}"
            ))
        } else {
            None
        };
        if let Some(msg) = msg {
            out.push(Problem::at(
                path,
                lab.overlay.line,
                lab.overlay.column,
                format!("lab.overlay {overlay:?} {msg}"),
            ));
        }
    }
    if let Some(channel) = spec.slack.as_ref().and_then(|s| s.channel.as_deref()) {
        let ok = !channel.is_empty()
            && channel.len() <= 80
            && channel
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            out.push(Problem::file(
                path,
                format!("slack.channel {channel:?}: Slack channel names are lowercase letters, digits, '-' and '_', at most 80 characters"),
            ));
        }
    }
    if spec.workspace.init == crate::state::spec::WorkspaceInit::Command
        && spec.workspace.run.is_none()
    {
        out.push(Problem::file(
            path,
            "workspace.init is `command` but workspace.run is not set",
        ));
    }
    out
}

fn check_question(path: &str, q: &Question) -> Result<(), Problem> {
    if q.options.is_empty() && !q.custom {
        return Err(Problem::file(
            path,
            "a question needs options or `custom: true`",
        ));
    }
    let mut seen = BTreeSet::new();
    for o in &q.options {
        if !seen.insert(o.label.as_str()) {
            return Err(Problem::file(
                path,
                format!("duplicate option label {:?}", o.label),
            ));
        }
    }
    if !q.options.is_empty() && !q.has_option(&q.recommended) {
        return Err(Problem::file(
            path,
            format!(
                "recommended option {:?} is not one of the options",
                q.recommended
            ),
        ));
    }
    Ok(())
}

fn check_answer(path: &str, qid: &Qid, a: &AnswerSpec, q: Option<&Question>) -> Vec<Problem> {
    let Some(q) = q else {
        return vec![Problem::file(
            path,
            format!("answer to question {qid}, but questions/{qid}.yaml does not exist"),
        )];
    };
    let mut out = Vec::new();
    if let Some(choice) = &a.choice {
        let labels = choice.value.labels();
        if labels.len() > 1 && !q.multiple {
            out.push(Problem::at(
                path,
                choice.line,
                choice.column,
                format!(
                    "{} choices given, but question {qid} allows only one",
                    labels.len()
                ),
            ));
        }
        for l in labels {
            if !q.has_option(l) {
                let opts: Vec<&str> = q.options.iter().map(|o| o.label.as_str()).collect();
                out.push(Problem::at(
                    path,
                    choice.line,
                    choice.column,
                    format!(
                        "choice {l:?} is not an option of question {qid} (options: {})",
                        opts.join(", ")
                    ),
                ));
            }
        }
    } else if !q.custom {
        out.push(Problem::file(
            path,
            format!("question {qid} does not accept free text; give a `choice`"),
        ));
    }
    out
}
