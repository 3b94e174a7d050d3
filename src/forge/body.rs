//! The pull request body, rendered from the state repository (minijinja; values are passed
//! as data, never pasted into the template).

use serde::Serialize;

use crate::names::TaskRef;
use crate::state::spec::TaskSpec;
use crate::state::status::{DecidedBy, LabStatus, MilestoneKind, Progress, Question, TaskStatus};

const TEMPLATE: &str = include_str!("templates/pr_body.md");

#[derive(Serialize)]
struct QuestionRow {
    qid: String,
    text: String,
    choice: String,
    decided_by: &'static str,
    by: Option<String>,
    note: Option<String>,
}

/// Everything a pull request body shows.
pub struct BodyInput<'a> {
    /// The task.
    pub task: &'a TaskRef,
    /// Its spec.
    pub spec: &'a TaskSpec,
    /// Its status (links: lab, attach, other PRs).
    pub status: &'a TaskStatus,
    /// Its milestones.
    pub progress: Option<&'a Progress>,
    /// Its questions.
    pub questions: Vec<(String, &'a Question)>,
    /// The project's lab record.
    pub lab: Option<&'a LabStatus>,
    /// The repo this PR is for (its own link is not "related").
    pub repo: &'a str,
}

/// Renders the body.
pub fn render(input: &BodyInput<'_>) -> Result<String, String> {
    let milestones: Vec<String> = input
        .progress
        .map(|p| {
            p.milestones
                .iter()
                // Review milestones are about the PRs themselves; leaving them out keeps the
                // body from changing because it was updated.
                .filter(|m| !matches!(m.kind, MilestoneKind::Review | MilestoneKind::Phase))
                .map(|m| m.text.replace('\n', " "))
                .collect()
        })
        .unwrap_or_default();
    let questions: Vec<QuestionRow> = input
        .questions
        .iter()
        .filter_map(|(qid, q)| {
            let d = q.decision.as_ref()?;
            Some(QuestionRow {
                qid: qid.clone(),
                text: q.text.replace('\n', " "),
                choice: d.choice.join(", "),
                decided_by: match d.decided_by {
                    DecidedBy::Human => "human",
                    DecidedBy::TimeoutDefault => "timeout-default",
                },
                by: d.by.clone(),
                note: d.note.clone(),
            })
        })
        .collect();
    let link = |name: &str| {
        input
            .status
            .links
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.url.clone())
    };
    let own = format!("pr:{}", input.repo);
    let related: Vec<String> = input
        .status
        .links
        .iter()
        .filter(|l| l.name.starts_with("pr:") && l.name != own)
        .map(|l| format!("{}: {}", &l.name[3..], l.url))
        .collect();
    let tests = input
        .lab
        .and_then(|l| l.tests.as_ref())
        .map(crate::lab::junit::summary_line);
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("body", TEMPLATE)
        .map_err(|e| e.to_string())?;
    #[derive(Serialize)]
    struct Ctx<'a> {
        title: &'a str,
        task: String,
        priority: String,
        description: &'a str,
        milestones: Vec<String>,
        questions: Vec<QuestionRow>,
        lab_url: Option<String>,
        tests: Option<String>,
        related: Vec<String>,
        attach: Option<String>,
        usage: Option<String>,
    }
    let ctx = Ctx {
        usage: input.status.usage.as_ref().map(|u| {
            format!(
                "{} model requests, {} ({} in, {} out, {} from the cache)",
                u.requests,
                u.summary(),
                u.input,
                u.output,
                u.cache_read
            )
        }),
        title: &input.spec.title,
        task: input.task.to_string(),
        priority: format!("{:?}", input.spec.priority).to_lowercase(),
        description: input.spec.description.trim(),
        milestones,
        questions,
        lab_url: link("lab").or_else(|| input.lab.and_then(|l| l.urls.first().cloned())),
        tests,
        related,
        attach: link("attach"),
    };
    env.get_template("body")
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
        .map_err(|e| e.to_string())
}
