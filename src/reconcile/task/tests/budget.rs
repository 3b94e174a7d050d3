//! Usage and the task budget: counted once per request, told at 80 %, stopped at 100 %
//! until a person raises it or the deadline fails the task, resumable by a later raise.

use super::*;
use crate::state::status::Usage;

/// The builder's next look reports one request that cost `cost`.
fn spend(w: &mut World, cost: f64) {
    let cursor = w.agent.polls.lock().unwrap().len() as u64 + 10;
    let used = Usage {
        requests: 1,
        input: 1000,
        output: 100,
        cost,
        ..Usage::default()
    };
    w.agent.polls.lock().unwrap().push_back(Polled {
        events: vec![],
        cursor,
        waiting: false,
        interrupted: None,
        usage: vec![(w.now, used)],
    });
}

fn budget_world(limit: &str) -> World {
    let mut w = World::new(Phase::Running);
    w.file(
        "gaffer.yaml",
        &format!("{GAFFER}budget: {{task: \"{limit}\"}}\n"),
    );
    w
}

fn interrupted(w: &World) -> bool {
    w.agent
        .calls
        .lock()
        .unwrap()
        .iter()
        .any(|c| c == "interrupt")
}

fn sent_ids(w: &World) -> Vec<String> {
    w.agent.sent_ids()
}

#[tokio::test]
async fn usage_is_counted_into_the_task_and_its_day() {
    let mut w = World::new(Phase::Running);
    spend(&mut w, 0.25);
    let (_, mut plan) = w.step().await.unwrap();
    w.apply(&mut plan);
    spend(&mut w, 0.5);
    let (_, plan) = w.step().await.unwrap();
    let u = plan.status.usage.clone().unwrap();
    assert_eq!((u.requests, u.input, u.cost), (2, 2000, 0.75));
    // 10:00 UTC on 25 November is that day in London too.
    assert_eq!(plan.status.usage_by_day["2026-11-25"].requests, 2);
}

#[tokio::test]
async fn at_80_percent_people_are_told_once_and_at_100_the_turn_stops_for_a_person() {
    let mut w = budget_world("$1");
    spend(&mut w, 0.85);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(
        milestones(&plan),
        ["💸 85 % of the task budget spent: $0.8500 of $1.00"]
    );
    assert!(
        plan.status
            .notices
            .iter()
            .any(|n| n.key == "budget80:$1.00")
    );
    w.apply(&mut plan);
    spend(&mut w, 0.1);
    let (_, mut plan) = w.step().await.unwrap();
    assert!(milestones(&plan).is_empty(), "told once");
    w.apply(&mut plan);
    assert!(!interrupted(&w));

    // Spent: the turn is stopped and a person decides by the question deadline (2 business
    // hours: 12:00).
    spend(&mut w, 0.1);
    let (action, mut plan) = w.step().await.unwrap();
    assert!(interrupted(&w), "the turn is stopped");
    assert_eq!(plan.phase(), Phase::AwaitingAnswer);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetReached"));
    let deadline: jiff::Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
    assert_eq!(plan.status.effects.budget_deadline, Some(deadline));
    assert_eq!(action, requeue(2 * 3600));
    let n = plan
        .status
        .notices
        .iter()
        .find(|n| n.key == "budget:$1.00")
        .expect("a notice");
    assert!(
        n.text
            .contains("stopped at its budget: spent $1.0500 of the task budget $1.00"),
        "{}",
        n.text
    );
    w.apply(&mut plan);

    // Nobody raises it: nothing more is sent; at the deadline the task fails.
    let before = sent_ids(&w).len();
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::AwaitingAnswer);
    assert_eq!(
        sent_ids(&w).len(),
        before,
        "no prompt while the budget is spent"
    );
    w.apply(&mut plan);
    w.now = deadline;
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Failed);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetExceeded"));
    w.apply(&mut plan);

    // A later raise resumes it through the queue, back to Running.
    w.task_file("task.yaml", "title: Add JWT\nbudget: {task: \"$3\"}\n");
    w.by("task.yaml", "alice@example.com", "alice@example.com");
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetRaised"));
    assert_eq!(plan.status.effects.resume_to, Some(Phase::Running));
}

#[tokio::test]
async fn a_raise_before_the_deadline_carries_on_in_the_same_session() {
    let mut w = budget_world("500k tokens");
    w.agent.polls.lock().unwrap().clear();
    let cursor = 10;
    w.agent.polls.lock().unwrap().push_back(Polled {
        events: vec![],
        cursor,
        waiting: false,
        interrupted: None,
        usage: vec![(
            w.now,
            Usage {
                requests: 3,
                input: 600_000,
                unpriced: 3,
                ..Usage::default()
            },
        )],
    });
    // A token budget holds for a model without a price too.
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetReached"));
    w.apply(&mut plan);
    // A raise by someone who may not decide (the builder itself could push one) is not
    // taken, and said once.
    w.task_file("task.yaml", "title: Add JWT\nbudget: {task: 1M tokens}\n");
    w.by("task.yaml", "mallory@example.com", "mallory@example.com");
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetReached"));
    assert_eq!(
        milestones(&plan),
        [
            "✋ budget 1M tokens in task.yaml not taken: change committed by mallory@example.com ignored: not listed in gaffer.yaml authors.answers"
        ]
    );
    w.apply(&mut plan);
    let (_, mut plan) = w.step().await.unwrap();
    assert!(milestones(&plan).is_empty(), "said once");
    w.apply(&mut plan);
    // The Slack bot committing it for an allowed Slack user counts.
    w.task_file(
        "task.yaml",
        "title: Add JWT\nbudget: {task: 1M tokens, by: U1}\n",
    );
    w.by(
        "task.yaml",
        "slack-bot@gaffer.invalid",
        "slack-bot@gaffer.invalid",
    );
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Running);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetRaised"));
    let id = sent_ids(&w)
        .into_iter()
        .find(|i| i.starts_with("budget-raised-"))
        .expect("told to carry on");
    assert!(w.agent.sent_text(&id).contains("raised to 1M tokens"));
    assert_eq!(plan.status.effects.budget_deadline, None);
}

#[tokio::test]
async fn a_spent_day_budget_holds_another_projects_queued_task_until_midnight() {
    let mut w = World::new(Phase::Queued);
    w.file(
        "gaffer.yaml",
        &format!("{GAFFER}budget: {{per_day: \"$1\"}}\n"),
    );
    // Another project spent $1.20 today (London; 25 November).
    w.file(
        "projects/demo/web/tasks/other/status.yaml",
        "phase: Running\nusageByDay:\n  \"2026-11-25\": {requests: 4, input: 9000, output: 900, cost: 1.2}\n  \"2026-11-24\": {requests: 9, input: 9000, output: 900, cost: 7.0}\n",
    );
    let (action, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("DayBudgetReached"));
    let msg = plan.status.message.clone().unwrap();
    assert!(
        msg.contains("the budget for the day (every project) is spent ($1.2000 of $1.00)")
            && msg.contains("Thu 26 Nov 00:00 GMT"),
        "{msg}"
    );
    assert_eq!(action, requeue(14 * 3600));
    w.apply(&mut plan);
    // Midnight in the business time zone: a new day, a new budget.
    w.now = "2026-11-26T00:00:01Z".parse().unwrap();
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Preparing);
}

#[tokio::test]
async fn a_projects_day_budget_counts_only_its_own_tasks() {
    let mut w = World::new(Phase::Queued);
    w.file(
        "projects/demo/api/project.yaml",
        &format!("{PROJECT}budget: {{project_per_day: 100k tokens}}\n"),
    );
    w.file(
        "projects/demo/web/tasks/other/status.yaml",
        "phase: Running\nusageByDay: {\"2026-11-25\": {requests: 4, input: 500000}}\n",
    );
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Preparing, "another project's spend");
    let mut w = World::new(Phase::Queued);
    w.file(
        "projects/demo/api/project.yaml",
        &format!("{PROJECT}budget: {{project_per_day: 100k tokens}}\n"),
    );
    w.file(
        "projects/demo/api/tasks/before/status.yaml",
        "phase: Promoted\nusageByDay: {\"2026-11-25\": {requests: 4, input: 150000}}\n",
    );
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.status.reason.as_deref(), Some("DayBudgetReached"));
    assert!(
        plan.status
            .message
            .as_deref()
            .unwrap()
            .starts_with("demo/api's budget for the day is spent (150000 tokens of 100k tokens)"),
        "{:?}",
        plan.status.message
    );
}

#[tokio::test]
async fn a_money_budget_with_a_model_without_a_price_stops_until_a_token_budget_is_set() {
    let mut w = budget_world("$5");
    w.agent.polls.lock().unwrap().push_back(Polled {
        events: vec![],
        cursor: 10,
        waiting: false,
        interrupted: None,
        usage: vec![(
            w.now,
            Usage {
                requests: 1,
                input: 500,
                unpriced: 1,
                ..Usage::default()
            },
        )],
    });
    let (_, mut plan) = w.step().await.unwrap();
    assert!(interrupted(&w));
    assert_eq!(plan.phase(), Phase::Failed);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetUnenforceable"));
    assert!(
        plan.status
            .message
            .as_deref()
            .unwrap()
            .contains("the model has no price, so the task budget $5.00 cannot be kept"),
    );
    w.apply(&mut plan);
    w.task_file("task.yaml", "title: Add JWT\nbudget: {task: 2M tokens}\n");
    w.by("task.yaml", "alice@example.com", "alice@example.com");
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Queued);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetRaised"));
}

#[tokio::test]
async fn a_planner_stopped_at_its_budget_waits_in_planning_and_plans_on_after_a_raise() {
    let mut w = World::new(Phase::Planning);
    w.file(
        "gaffer.yaml",
        &format!("{GAFFER}budget: {{task: 1000 tokens}}\n"),
    );
    spend(&mut w, 0.01);
    let (_, mut plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Planning);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetReached"));
    assert!(interrupted(&w));
    w.apply(&mut plan);
    w.task_file("task.yaml", "title: Add JWT\nbudget: {task: 5000 tokens}\n");
    w.by("task.yaml", "alice@example.com", "alice@example.com");
    let (_, plan) = w.step().await.unwrap();
    assert_eq!(plan.phase(), Phase::Planning);
    assert_eq!(plan.status.reason.as_deref(), Some("BudgetRaised"));
}
