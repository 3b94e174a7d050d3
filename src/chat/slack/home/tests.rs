use super::*;
use crate::names::{ProjectRef, Qid, TaskName};
use crate::state::snapshot::{ProjectEntry, TaskEntry};
use crate::state::status::{Question, TaskStatus};

fn now() -> Timestamp {
    "2026-11-30T10:00:00Z".parse().unwrap()
}

fn project() -> ProjectEntry {
    ProjectEntry {
        spec: Some(
            crate::state::yaml::parse(
                b"repos: [{name: api, url: 'https://example.com/api.git'}]\n",
            )
            .unwrap(),
        ),
        spec_present: true,
        ..ProjectEntry::default()
    }
}

fn task(title: &str, status: &str) -> TaskEntry {
    TaskEntry {
        spec: Some(Box::new(
            crate::state::yaml::parse(format!("title: {title}\n").as_bytes()).unwrap(),
        )),
        spec_present: true,
        status: Some(Box::new(
            crate::state::yaml::parse::<TaskStatus>(status.as_bytes()).unwrap(),
        )),
        ..TaskEntry::default()
    }
}

fn question(n: u32) -> Question {
    crate::state::yaml::parse(
        format!(
            "text: Which signing algorithm for the tokens, number {n}?\noptions: [{{label: RS256 (Recommended)}}, {{label: HS256}}]\nrecommended: RS256 (Recommended)\naskedAt: 2026-11-30T09:00:00Z\nstate: open\ndeadline: 2026-11-30T1{}:00:00Z\ncustom: true\n",
            n % 10
        )
        .as_bytes(),
    )
    .unwrap()
}

/// `n` projects of `per` tasks in varied phases, with questions, a review and failures.
fn busy(projects: u32, per: u32) -> Snapshot {
    let mut snap = Snapshot::default();
    let phases = [
        "Running",
        "AwaitingAnswer",
        "InReview",
        "Promoted",
        "Failed",
        "Queued",
    ];
    for p in 0..projects {
        let mut pe = project();
        for i in 0..per {
            let phase = phases[((p * per + i) % phases.len() as u32) as usize];
            let mut status = format!(
                "phase: {phase}\nphaseSince: 2026-11-30T0{}:{:02}:00Z\n",
                i % 10,
                p
            );
            match phase {
                "InReview" => status.push_str(
                    "reason: AwaitingApproval\nlinks: [{name: 'pr:api', url: 'https://github.com/me/api/pull/7'}]\n",
                ),
                "Failed" => status.push_str("reason: AgentFailed\nmessage: the model is overloaded\n"),
                "AwaitingAnswer" if p == 1 => status.push_str(
                    "reason: BudgetReached\nmessage: spent $5.20 of the task budget $5.00\nnotices: [{key: 'budget:$5.00', text: x, at: 2026-11-30T09:00:00Z, due: 2026-11-30T09:00:00Z, released: true}]\n",
                ),
                _ => {}
            }
            let mut e = task(&format!("Task number {i} of project {p}"), &status);
            if phase == "AwaitingAnswer" {
                e.questions
                    .insert(Qid::new("q-001").unwrap(), Box::new(question(p * per + i)));
            }
            pe.tasks
                .insert(TaskName::new(format!("task-{i}")).unwrap(), e);
        }
        snap.projects
            .insert(ProjectRef::parse(&format!("ai-dev/proj-{p}")).unwrap(), pe);
    }
    snap
}

#[test]
fn an_empty_home_says_so() {
    let v = view(&Snapshot::default(), true, now(), &jiff::tz::TimeZone::UTC);
    insta::assert_json_snapshot!("home_empty", v);
}

#[test]
fn a_busy_home_shows_what_waits_projects_and_recent_work() {
    let v = view(&busy(2, 6), true, now(), &jiff::tz::TimeZone::UTC);
    insta::assert_json_snapshot!("home_busy", v);
    let text = v.to_string();
    assert!(
        text.contains("answer:ai-dev/proj-0/task-1:q-001:0"),
        "answer buttons"
    );
    assert!(
        text.contains("approve:ai-dev/proj-0/task-2"),
        "the approve button"
    );
    assert!(
        text.contains("raise:ai-dev/proj-1/task-1:$7.50")
            && text.contains("raise:ai-dev/proj-1/task-1:stop"),
        "the raise and stop buttons of a spent budget: {text}"
    );
    assert!(text.contains("🚀 `ai-dev/proj-0/task-3` promoted"));
    assert!(text.contains("the model is overloaded"));
}

#[test]
fn fifty_tasks_stay_within_block_kit_limits() {
    let mut snap = busy(10, 5);
    // Something waits on every task: more than the tab shows with buttons.
    for pe in snap.projects.values_mut() {
        for te in pe.tasks.values_mut() {
            te.questions
                .insert(Qid::new("q-009").unwrap(), Box::new(question(9)));
        }
    }
    let v = view(&snap, true, now(), &jiff::tz::TimeZone::UTC);
    let blocks = v["blocks"].as_array().unwrap();
    assert!(blocks.len() <= MAX_BLOCKS, "{} blocks", blocks.len());
    let mut ids = std::collections::HashSet::new();
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(
                t.chars().count() <= 3000,
                "a section of {} characters",
                t.len()
            );
        }
        if let Some(e) = b["elements"].as_array() {
            assert!(e.len() <= 25);
            for el in e {
                if let Some(t) = el["text"]["text"].as_str() {
                    assert!(t.chars().count() <= 75, "button text {t:?}");
                }
                if let Some(a) = el["action_id"].as_str() {
                    assert!(a.len() <= 255);
                }
            }
        }
        if let Some(id) = b["block_id"].as_str() {
            assert!(id.len() <= 255);
            assert!(ids.insert(id.to_string()), "block_id {id} twice");
        }
    }
    let text = v.to_string();
    // Every project is listed; what does not fit is counted, never dropped silently.
    for p in 0..10 {
        assert!(text.contains(&format!("ai-dev/proj-{p}")), "proj-{p}");
    }
    assert!(
        text.contains("more: `gaffer questions` lists them all"),
        "{text}"
    );
    // The view parses as Slack's Home tab view.
    let _: slack_morphism::prelude::SlackView = serde_json::from_value(v).unwrap();
}

#[test]
fn someone_not_allowed_sees_why() {
    let v = view(&busy(1, 2), false, now(), &jiff::tz::TimeZone::UTC);
    assert!(v.to_string().contains("You can look but not act"));
}
