//! Paths in the state repository ↔ typed keys, and who owns each file.
//!
//! A path is mapped to a [`StatePath`] only after every name in it passes [`crate::names`]
//! validation; anything else under `projects/` is reported, never guessed at.

use std::fmt;

use crate::names::{Category, Id, NameError, Project, ProjectRef, Qid, TaskName, TaskRef};

/// Who may write a file. Each file has exactly one owner, so writers never conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Writer {
    /// People (by hand, `gaffer` CLI) and the Slack bot on their behalf: spec files.
    Person,
    /// The reconciler: status files.
    Reconciler,
    /// The Slack bot's own bookkeeping (`slack.yaml`).
    SlackBot,
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Writer::Person => "person",
            Writer::Reconciler => "reconciler",
            Writer::SlackBot => "slack-bot",
        })
    }
}

/// A file in the state repository that gaffer understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatePath {
    /// `gaffer.yaml`.
    Settings,
    /// `projects/<c>/<p>/project.yaml`.
    Project(ProjectRef),
    /// `projects/<c>/<p>/lab/status.yaml`.
    LabStatus(ProjectRef),
    /// `.../tasks/<t>/task.yaml`.
    TaskSpec(TaskRef),
    /// `.../tasks/<t>/status.yaml`.
    TaskStatus(TaskRef),
    /// `.../tasks/<t>/progress.yaml`.
    Progress(TaskRef),
    /// `.../tasks/<t>/slack.yaml`.
    Slack(TaskRef),
    /// `.../tasks/<t>/questions/<qid>.yaml`.
    Question(TaskRef, Qid),
    /// `.../tasks/<t>/questions/<batch>.md`: generated once, then owned by people.
    QuestionDoc(TaskRef, Id),
    /// `.../tasks/<t>/answers/<qid>.yaml`.
    Answer(TaskRef, Qid),
    /// `.../tasks/<t>/approvals/<id>.yaml`.
    Approval(TaskRef, Id),
    /// `.../tasks/<t>/messages/<id>.yaml`: a person's message to the builder.
    Message(TaskRef, Id),
    /// `.../tasks/<t>/plan.yaml`: the plan's state.
    PlanStatus(TaskRef),
    /// `.../tasks/<t>/plan/<path>`: a plan document (path checked by
    /// [`crate::state::planning::check_doc_path`]). Written by the reconciler after each
    /// planning turn; people may edit it, and their edit is the next change request.
    PlanDoc(TaskRef, String),
}

/// Why a path under `projects/` could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A path component is not a valid name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The path does not fit the layout.
    #[error("unexpected file in the state repository layout; {0}")]
    Layout(String),
}

/// The object a file belongs to: what a change to the file wakes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    /// Global settings (`gaffer.yaml`): affects everything.
    Settings,
    /// A project (its `project.yaml` or lab).
    Project(ProjectRef),
    /// A task and everything under it.
    Task(TaskRef),
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectKey::Settings => f.write_str("gaffer.yaml"),
            ObjectKey::Project(p) => write!(f, "{p}"),
            ObjectKey::Task(t) => write!(f, "{t}"),
        }
    }
}

impl StatePath {
    /// Maps a repository-relative path (with `/` separators) to a state file.
    ///
    /// `Ok(None)` means the file is outside gaffer's layout and ignored (README.md, files
    /// outside `projects/`). Files inside `projects/` that do not fit are errors.
    pub fn parse(path: &str) -> Result<Option<StatePath>, PathError> {
        if path == "gaffer.yaml" {
            return Ok(Some(StatePath::Settings));
        }
        let Some(rest) = path.strip_prefix("projects/") else {
            return Ok(None);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let layout = |msg: &str| Err(PathError::Layout(msg.to_string()));
        if parts.len() < 3 {
            return layout("expected projects/<category>/<project>/project.yaml");
        }
        let project = ProjectRef {
            category: Category::new(parts[0])?,
            project: Project::new(parts[1])?,
        };
        match &parts[2..] {
            ["project.yaml"] => Ok(Some(StatePath::Project(project))),
            ["lab", "status.yaml"] => Ok(Some(StatePath::LabStatus(project))),
            ["tasks", task, rest @ ..] if !rest.is_empty() => {
                let task = TaskRef {
                    project,
                    task: TaskName::new(*task)?,
                };
                Self::parse_task_file(task, rest)
            }
            _ => {
                layout("a project directory holds project.yaml, lab/status.yaml and tasks/<task>/")
            }
        }
    }

    fn parse_task_file(task: TaskRef, rest: &[&str]) -> Result<Option<StatePath>, PathError> {
        let stem = |file: &str, ext: &str| file.strip_suffix(ext).map(str::to_string);
        Ok(Some(match rest {
            ["task.yaml"] => StatePath::TaskSpec(task),
            ["status.yaml"] => StatePath::TaskStatus(task),
            ["progress.yaml"] => StatePath::Progress(task),
            ["slack.yaml"] => StatePath::Slack(task),
            ["questions", file] => {
                if let Some(q) = stem(file, ".yaml") {
                    StatePath::Question(task, Qid::new(q)?)
                } else if let Some(d) = stem(file, ".md") {
                    StatePath::QuestionDoc(task, Id::new(d)?)
                } else {
                    return Err(PathError::Layout(
                        "questions/ holds <qid>.yaml and <batch>.md files".into(),
                    ));
                }
            }
            ["answers", file] => match stem(file, ".yaml") {
                Some(q) => StatePath::Answer(task, Qid::new(q)?),
                None => return Err(PathError::Layout("answers/ holds <qid>.yaml files".into())),
            },
            ["messages", file] => match stem(file, ".yaml") {
                Some(m) => StatePath::Message(task, Id::new(m)?),
                None => return Err(PathError::Layout("messages/ holds <id>.yaml files".into())),
            },
            ["plan.yaml"] => StatePath::PlanStatus(task),
            ["plan", doc @ ..] if !doc.is_empty() => {
                let doc = doc.join("/");
                crate::state::planning::check_doc_path(&doc).map_err(PathError::Layout)?;
                StatePath::PlanDoc(task, doc)
            }
            ["approvals", file] => match stem(file, ".yaml") {
                Some(a) => StatePath::Approval(task, Id::new(a)?),
                None => {
                    return Err(PathError::Layout("approvals/ holds <id>.yaml files".into()));
                }
            },
            _ => {
                return Err(PathError::Layout(
                    "a task directory holds task.yaml, status.yaml, progress.yaml, slack.yaml, \
                     plan.yaml, plan/, questions/, answers/, approvals/ and messages/"
                        .into(),
                ));
            }
        }))
    }

    /// The repository-relative path of this file.
    pub fn to_path(&self) -> String {
        let proj = |p: &ProjectRef| format!("projects/{}/{}", p.category, p.project);
        let task = |t: &TaskRef| format!("{}/tasks/{}", proj(&t.project), t.task);
        match self {
            StatePath::Settings => "gaffer.yaml".into(),
            StatePath::Project(p) => format!("{}/project.yaml", proj(p)),
            StatePath::LabStatus(p) => format!("{}/lab/status.yaml", proj(p)),
            StatePath::TaskSpec(t) => format!("{}/task.yaml", task(t)),
            StatePath::TaskStatus(t) => format!("{}/status.yaml", task(t)),
            StatePath::Progress(t) => format!("{}/progress.yaml", task(t)),
            StatePath::Slack(t) => format!("{}/slack.yaml", task(t)),
            StatePath::Question(t, q) => format!("{}/questions/{q}.yaml", task(t)),
            StatePath::QuestionDoc(t, d) => format!("{}/questions/{d}.md", task(t)),
            StatePath::Answer(t, q) => format!("{}/answers/{q}.yaml", task(t)),
            StatePath::Approval(t, a) => format!("{}/approvals/{a}.yaml", task(t)),
            StatePath::Message(t, m) => format!("{}/messages/{m}.yaml", task(t)),
            StatePath::PlanStatus(t) => format!("{}/plan.yaml", task(t)),
            StatePath::PlanDoc(t, d) => format!("{}/plan/{d}", task(t)),
        }
    }

    /// Who owns the file. Question documents are generated once by the reconciler and owned
    /// by people from then on, so their owner is [`Writer::Person`].
    pub fn owner(&self) -> Writer {
        match self {
            StatePath::Settings
            | StatePath::Project(_)
            | StatePath::TaskSpec(_)
            | StatePath::Answer(..)
            | StatePath::Approval(..)
            | StatePath::Message(..)
            | StatePath::QuestionDoc(..)
            | StatePath::PlanDoc(..) => Writer::Person,
            StatePath::TaskStatus(_)
            | StatePath::PlanStatus(_)
            | StatePath::Progress(_)
            | StatePath::Question(..)
            | StatePath::LabStatus(_) => Writer::Reconciler,
            StatePath::Slack(_) => Writer::SlackBot,
        }
    }

    /// The task a file belongs to, if it is a task file.
    pub fn task(&self) -> Option<&TaskRef> {
        match self {
            StatePath::TaskSpec(t)
            | StatePath::TaskStatus(t)
            | StatePath::Progress(t)
            | StatePath::Slack(t)
            | StatePath::Question(t, _)
            | StatePath::QuestionDoc(t, _)
            | StatePath::Answer(t, _)
            | StatePath::Approval(t, _)
            | StatePath::Message(t, _)
            | StatePath::PlanStatus(t)
            | StatePath::PlanDoc(t, _) => Some(t),
            StatePath::Settings | StatePath::Project(_) | StatePath::LabStatus(_) => None,
        }
    }

    /// The object whose reconcile a change to this file wakes.
    pub fn object(&self) -> ObjectKey {
        match (self, self.task()) {
            (_, Some(t)) => ObjectKey::Task(t.clone()),
            (StatePath::Project(p) | StatePath::LabStatus(p), None) => {
                ObjectKey::Project(p.clone())
            }
            _ => ObjectKey::Settings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        let base = "projects/ai-dev/proj-api-service";
        let t = format!("{base}/tasks/jwt-auth");
        let paths = [
            "gaffer.yaml".to_string(),
            format!("{base}/project.yaml"),
            format!("{base}/lab/status.yaml"),
            format!("{t}/task.yaml"),
            format!("{t}/status.yaml"),
            format!("{t}/progress.yaml"),
            format!("{t}/slack.yaml"),
            format!("{t}/questions/q-001.yaml"),
            format!("{t}/questions/batch-1.md"),
            format!("{t}/answers/q-001.yaml"),
            format!("{t}/approvals/a-1.yaml"),
            format!("{t}/messages/slack-u1-1733000000-000100.yaml"),
        ];
        for p in &paths {
            let sp = StatePath::parse(p).unwrap().unwrap();
            assert_eq!(&sp.to_path(), p);
        }
    }

    #[test]
    fn owners() {
        let t = "projects/a/b/tasks/c";
        let own = |p: &str| StatePath::parse(p).unwrap().unwrap().owner();
        assert_eq!(own(&format!("{t}/task.yaml")), Writer::Person);
        assert_eq!(own(&format!("{t}/answers/q-1.yaml")), Writer::Person);
        assert_eq!(own(&format!("{t}/status.yaml")), Writer::Reconciler);
        assert_eq!(own(&format!("{t}/questions/q-1.yaml")), Writer::Reconciler);
        assert_eq!(own(&format!("{t}/slack.yaml")), Writer::SlackBot);
        assert_eq!(own("projects/a/b/lab/status.yaml"), Writer::Reconciler);
    }

    #[test]
    fn outside_layout_is_ignored_inside_is_an_error() {
        assert_eq!(StatePath::parse("README.md").unwrap(), None);
        assert_eq!(StatePath::parse("docs/x.yaml").unwrap(), None);
        for bad in [
            "projects/ai-dev/x/notes.txt",
            "projects/ai-dev/x/tasks/t/other.yaml",
            "projects/ai-dev/x/tasks/t/questions/q.txt",
            "projects/AI/x/project.yaml",
            "projects/ai-dev/../project.yaml",
            "projects/ai-dev/x y/project.yaml",
        ] {
            assert!(StatePath::parse(bad).is_err(), "{bad}");
        }
    }
}
