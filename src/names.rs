//! Names that become paths, branches, tmux targets, Slack channels and Kubernetes namespaces.
//!
//! Every category, project, task, question and repo name is checked here before it is used
//! for anything else. The rules are DNS-1123 labels with length limits picked so that the
//! longest derived names stay valid: `{category}-{project}-lab` must be a namespace (63
//! characters) and `gaffer-{category}-{project}` a tmux session name.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of name is being checked; each kind has its own length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// A project category, e.g. `ai-dev`.
    Category,
    /// A project inside a category, e.g. `proj-api-service`.
    Project,
    /// A task inside a project, e.g. `jwt-auth`.
    Task,
    /// A question id, e.g. `q-001`.
    Question,
    /// A workspace repository name, e.g. `domain-apis`.
    Repo,
    /// Any other id that becomes a file name (approvals, question documents).
    Id,
}

impl NameKind {
    /// The longest name allowed for this kind.
    ///
    /// `category` (20) + `-` + `project` (38) + `-lab` = 63, the DNS-1123 label limit for
    /// the lab namespace; `gaffer-` + 20 + 1 + 38 = 66 stays far below tmux's limits.
    pub const fn max_len(self) -> usize {
        match self {
            NameKind::Category => 20,
            NameKind::Project => 38,
            NameKind::Task => 50,
            NameKind::Question => 40,
            NameKind::Repo => 63,
            NameKind::Id => 63,
        }
    }

    /// The word used for this kind in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            NameKind::Category => "category",
            NameKind::Project => "project",
            NameKind::Task => "task",
            NameKind::Question => "question id",
            NameKind::Repo => "repo name",
            NameKind::Id => "id",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that broke a rule, and which rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {shown}: {rule}")]
pub struct NameError {
    /// The kind of name that was checked.
    pub kind: NameKind,
    /// The rejected name, quoted and escaped for display.
    pub shown: String,
    /// The rule it broke, in words.
    pub rule: String,
}

/// Checks `name` against the rules for `kind` and says which rule it broke.
pub fn check(kind: NameKind, name: &str) -> Result<(), NameError> {
    let fail = |rule: String| NameError {
        kind,
        shown: format!("{name:?}"),
        rule,
    };
    if name.is_empty() {
        return Err(fail("must not be empty".into()));
    }
    let len = name.chars().count();
    if len > kind.max_len() {
        return Err(fail(format!(
            "is {len} characters long; the limit is {}",
            kind.max_len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let what = match bad {
            '/' | '\\' => "a path separator".to_string(),
            '.' => "a dot".to_string(),
            c if c.is_whitespace() => "whitespace".to_string(),
            c if c.is_ascii_uppercase() => format!("the uppercase letter {c:?}"),
            c => format!("the character {c:?}"),
        };
        return Err(fail(format!(
            "contains {what}; only lowercase letters a-z, digits 0-9 and '-' are allowed (DNS-1123 label)"
        )));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(fail(
            "must start and end with a lowercase letter or digit (DNS-1123 label)".into(),
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `name` and wraps it.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                check($kind, &name)?;
                Ok(Self(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": format!("a {} (DNS-1123 label, at most {} characters)", $kind, $kind.max_len()),
                    "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
                    "minLength": 1,
                    "maxLength": $kind.max_len(),
                })
            }
        }
    };
}

name_type!(
    /// A validated category name.
    Category,
    NameKind::Category
);
name_type!(
    /// A validated project name.
    Project,
    NameKind::Project
);
name_type!(
    /// A validated task name; also the branch `gaffer/<task>`.
    TaskName,
    NameKind::Task
);
name_type!(
    /// A validated question id, e.g. `q-001`.
    Qid,
    NameKind::Question
);
name_type!(
    /// A validated workspace repository name; becomes `repos/<name>`.
    RepoName,
    NameKind::Repo
);
name_type!(
    /// A validated file id (approvals, question documents).
    Id,
    NameKind::Id
);

/// A validated `category/project` pair, with the names derived from it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectRef {
    /// The category.
    pub category: Category,
    /// The project.
    pub project: Project,
}

impl ProjectRef {
    /// Parses `category/project`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(c), Some(p), None) => Ok(Self {
                category: Category::new(c)?,
                project: Project::new(p)?,
            }),
            _ => Err(NameError {
                kind: NameKind::Project,
                shown: format!("{s:?}"),
                rule: "expected CATEGORY/PROJECT".into(),
            }),
        }
    }

    /// `{category}-{project}`: the builder's name, Slack channel and workspace folder.
    pub fn builder_name(&self) -> String {
        format!("{}-{}", self.category, self.project)
    }

    /// `{category}-{project}-lab`: the lab namespace.
    pub fn lab_namespace(&self) -> String {
        format!("{}-{}-lab", self.category, self.project)
    }

    /// `gaffer-{category}-{project}`: the tmux session.
    pub fn tmux_session(&self) -> String {
        format!("gaffer-{}-{}", self.category, self.project)
    }
}

impl fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.category, self.project)
    }
}

/// A validated `category/project/task` triple.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskRef {
    /// The project the task belongs to.
    pub project: ProjectRef,
    /// The task name.
    pub task: TaskName,
}

impl TaskRef {
    /// Parses `category/project/task`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [c, p, t] => Ok(Self {
                project: ProjectRef {
                    category: Category::new(*c)?,
                    project: Project::new(*p)?,
                },
                task: TaskName::new(*t)?,
            }),
            _ => Err(NameError {
                kind: NameKind::Task,
                shown: format!("{s:?}"),
                rule: "expected CATEGORY/PROJECT/TASK (three names separated by '/')".into(),
            }),
        }
    }

    /// `gaffer/<task>`: the branch the builder works on.
    pub fn branch(&self) -> String {
        format!("gaffer/{}", self.task)
    }

    /// `gaffer-provisional/<task>/<qid>`: where work continues after a provisional answer.
    ///
    /// DESIGN.md proposed `gaffer/<task>/q-<qid>`, but git cannot hold both
    /// `refs/heads/gaffer/<task>` and `refs/heads/gaffer/<task>/...` (a ref cannot also be a
    /// directory), so provisional branches live in their own namespace.
    pub fn provisional_branch(&self, qid: &Qid) -> String {
        format!("gaffer-provisional/{}/{qid}", self.task)
    }
}

impl fmt::Display for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.project, self.task)
    }
}

/// Derives a valid task name from a free-text title: lowercase, runs of other characters
/// become `-`, trimmed to the task length limit. Returns `None` when nothing usable is left.
pub fn slugify(title: &str) -> Option<TaskName> {
    let mut out = String::new();
    for c in title.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let mut out: String = out.chars().take(NameKind::Task.max_len()).collect();
    while out.ends_with('-') {
        out.pop();
    }
    TaskName::new(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_labels() {
        for ok in ["a", "ai-dev", "proj-api-service", "q-001", "x1", "1x"] {
            check(NameKind::Task, ok).unwrap();
        }
    }

    #[test]
    fn each_rule_has_its_own_message() {
        let cases = [
            ("", "must not be empty"),
            ("..", "contains a dot"),
            ("a/b", "contains a path separator"),
            ("has space", "contains whitespace"),
            ("a;rm", "contains the character ';'"),
            ("$(x)", "contains the character '$'"),
            ("Upper", "contains the uppercase letter 'U'"),
            ("-lead", "must start and end"),
            ("trail-", "must start and end"),
            ("é", "contains the character 'é'"),
        ];
        for (name, want) in cases {
            let err = check(NameKind::Task, name).unwrap_err().to_string();
            assert!(err.contains(want), "{name:?}: {err}");
        }
        let long = "a".repeat(64);
        let err = check(NameKind::Repo, &long).unwrap_err().to_string();
        assert!(
            err.contains("is 64 characters long; the limit is 63"),
            "{err}"
        );
    }

    #[test]
    fn longest_names_give_valid_namespace_and_session() {
        let p = ProjectRef {
            category: Category::new("c".repeat(20)).unwrap(),
            project: Project::new("p".repeat(38)).unwrap(),
        };
        assert_eq!(p.lab_namespace().len(), 63);
        check(NameKind::Repo, &p.lab_namespace()).unwrap();
        assert!(Category::new("c".repeat(21)).is_err());
        assert!(Project::new("p".repeat(39)).is_err());
        assert!(!p.tmux_session().contains(['.', ':']));
    }

    #[test]
    fn refs_parse_and_reject() {
        let t = TaskRef::parse("ai-dev/proj-api-service/jwt-auth").unwrap();
        assert_eq!(t.branch(), "gaffer/jwt-auth");
        assert_eq!(
            t.provisional_branch(&Qid::new("q-001").unwrap()),
            "gaffer-provisional/jwt-auth/q-001"
        );
        assert_eq!(t.project.tmux_session(), "gaffer-ai-dev-proj-api-service");
        assert!(TaskRef::parse("ai-dev/jwt-auth").is_err());
        assert!(TaskRef::parse("ai-dev/../jwt-auth").is_err());
        assert!(TaskRef::parse("ai-dev/p/t/x").is_err());
    }

    #[test]
    fn slugify_titles() {
        assert_eq!(
            slugify("Implement JWT authentication").unwrap().as_str(),
            "implement-jwt-authentication"
        );
        assert_eq!(
            slugify("  --Fix: $(rm -rf /)!! ").unwrap().as_str(),
            "fix-rm-rf"
        );
        assert!(slugify("!!!").is_none());
        assert!(slugify(&"word ".repeat(40)).unwrap().as_str().len() <= 50);
    }
}
