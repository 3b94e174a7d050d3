//! JSON Schemas generated from the state-file types, one per file kind.
//!
//! `gaffer schema` writes them to `schema/`; a test fails when the checked-in files differ
//! from what the types generate, so the schemas editors use never drift from the parser.

use schemars::JsonSchema;

use crate::state::spec::{AnswerSpec, ApprovalSpec, ProjectSpec, Settings, TaskSpec};
use crate::state::status::{LabStatus, Progress, Question, SlackThread, TaskStatus};

fn one<T: JsonSchema>(title: &str) -> String {
    let mut schema = schemars::schema_for!(T);
    schema.insert("title".into(), serde_json::Value::String(title.into()));
    let mut s = serde_json::to_string_pretty(&schema).unwrap_or_default();
    s.push('\n');
    s
}

/// Every schema as `(file name, JSON text)`, in a stable order.
pub fn all() -> Vec<(&'static str, String)> {
    vec![
        ("gaffer.schema.json", one::<Settings>("gaffer.yaml")),
        ("project.schema.json", one::<ProjectSpec>("project.yaml")),
        ("task.schema.json", one::<TaskSpec>("task.yaml")),
        (
            "answer.schema.json",
            one::<AnswerSpec>("answers/<qid>.yaml"),
        ),
        (
            "approval.schema.json",
            one::<ApprovalSpec>("approvals/<id>.yaml"),
        ),
        (
            "message.schema.json",
            one::<crate::state::spec::MessageSpec>("messages/<id>.yaml"),
        ),
        ("status.schema.json", one::<TaskStatus>("status.yaml")),
        ("progress.schema.json", one::<Progress>("progress.yaml")),
        (
            "question.schema.json",
            one::<Question>("questions/<qid>.yaml"),
        ),
        (
            "lab-status.schema.json",
            one::<LabStatus>("lab/status.yaml"),
        ),
        ("slack.schema.json", one::<SlackThread>("slack.yaml")),
        (
            "plan.schema.json",
            one::<crate::state::planning::PlanStatus>("plan.yaml"),
        ),
    ]
}
