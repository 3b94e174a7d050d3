//! The checked-in JSON Schemas must be exactly what the types generate.

use crate::common::root;

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = root().join("schema");
    let mut stale = Vec::new();
    for (name, text) in gaffer::schema::all() {
        let current = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        if current != text {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "schema/ is out of date for {stale:?}: run `cargo run -- schema` and commit the result"
    );
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(files, gaffer::schema::all().len(), "stray files in schema/");
}

#[test]
fn example_files_point_at_their_schema() {
    let (files, _) = gaffer::validate::load_dir(&root().join("example-state-repo")).unwrap();
    for (path, content) in files {
        if !path.ends_with(".yaml") {
            continue;
        }
        let gaffer::state::snapshot::RawContent::Blob(bytes) = content else {
            panic!("{path} is not a regular file");
        };
        let text = String::from_utf8(bytes).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let rel = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{path}: first line must name its schema, got {first:?}"));
        let resolved = root().join("example-state-repo").join(&path);
        let schema = resolved.parent().unwrap().join(rel);
        assert!(schema.is_file(), "{path}: schema {rel} does not exist");
        let expected = match gaffer::state::StatePath::parse(&path).unwrap().unwrap() {
            gaffer::state::StatePath::Settings => "gaffer.schema.json",
            gaffer::state::StatePath::Project(_) => "project.schema.json",
            gaffer::state::StatePath::LabStatus(_) => "lab-status.schema.json",
            gaffer::state::StatePath::TaskSpec(_) => "task.schema.json",
            gaffer::state::StatePath::TaskStatus(_) => "status.schema.json",
            gaffer::state::StatePath::Progress(_) => "progress.schema.json",
            gaffer::state::StatePath::Slack(_) => "slack.schema.json",
            gaffer::state::StatePath::Question(..) => "question.schema.json",
            gaffer::state::StatePath::Answer(..) => "answer.schema.json",
            gaffer::state::StatePath::Approval(..) => "approval.schema.json",
            gaffer::state::StatePath::Message(..) => "message.schema.json",
            gaffer::state::StatePath::PlanStatus(_) => "plan.schema.json",
            gaffer::state::StatePath::QuestionDoc(..) | gaffer::state::StatePath::PlanDoc(..) => {
                unreachable!()
            }
        };
        assert!(
            rel.ends_with(expected),
            "{path}: names {rel}, expected {expected}"
        );
    }
}
