//! Parsing one state file into a [`Parsed`] value and its problems, independent of any
//! [`Snapshot`](super::Snapshot), so many files can be parsed in parallel.

use crate::state::path::{PathError, StatePath};
use crate::state::spec::{AnswerSpec, ApprovalSpec, ProjectSpec, Settings, TaskSpec};
use crate::state::status::{LabStatus, Progress, Question, SlackThread, TaskStatus};
use crate::state::yaml::{self, YamlError};

use super::check::{check_project, check_question, check_settings};
use super::{Problem, RawContent};

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
    /// `messages/<id>.yaml`.
    Message(Box<crate::state::spec::MessageSpec>),
    /// `plan.yaml`.
    PlanStatus(Box<crate::state::planning::PlanStatus>),
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
        StatePath::PlanStatus(_) => one(Parsed::PlanStatus(Box::new(
            yaml::parse(bytes).map_err(wrap)?,
        ))),
        StatePath::QuestionDoc(..) | StatePath::PlanDoc(..) => {
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
        StatePath::Message(..) => {
            let message: crate::state::spec::MessageSpec = yaml::parse(bytes).map_err(wrap)?;
            if let Some(why) = message.problem() {
                return Err(Problem::file(path, why));
            }
            one(Parsed::Message(Box::new(message)))
        }
    }
}

pub(super) fn classify(path: &str) -> Result<Option<StatePath>, Problem> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with('.') || name == "README.md" {
        return Ok(None);
    }
    StatePath::parse(path).map_err(|e| match e {
        PathError::Name(n) => Problem::file(path, format!("bad path: {n}")),
        PathError::Layout(msg) => Problem::file(path, msg),
    })
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
