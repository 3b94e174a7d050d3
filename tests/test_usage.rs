//! Usage with the real OpenCode: gaffer's totals are exactly what OpenCode recorded on each
//! assistant message (read back from its API here), across a kill -9 of gaffer mid-task.

use gaffer::state::status::{Phase, Usage};
use serde_json::json;

use crate::common::llm::Step;
use crate::test_opencode::{Lab, fix_steps, phase_of, status_of};

#[test]
fn totals_equal_opencodes_own_figures_after_a_kill_9_of_gaffer_mid_task() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix counted";
    let mut steps = fix_steps("omega");
    // gaffer is killed while the model's answer to this step is held.
    steps.insert(
        2,
        Step::tool(
            "write",
            json!({"filePath": "repos/web-api/app/notes-omega.txt", "content": "counted\n"}),
        )
        .held(),
    );
    lab.add_task("web-api", "omega", key, steps);
    let daemon = lab.daemon();
    lab.wait_llm(120, "the held step", |log| log.iter().any(|l| l.held));
    // Some usage is recorded before the kill.
    let before = lab.wait_until(60, "usage recorded", |s| {
        status_of(s, "demo/web-api/omega").is_some_and(|st| st.usage.is_some())
    });
    let counted = status_of(&before, "demo/web-api/omega")
        .unwrap()
        .usage
        .unwrap();
    assert!(counted.requests >= 1, "{counted:?}");
    drop(daemon);
    let _daemon = lab.daemon();
    lab.llm.release();
    let snap = lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, "demo/web-api/omega") == Some(Phase::Promoted)
    });
    let st = status_of(&snap, "demo/web-api/omega").unwrap();
    let ours = st.usage.clone().expect("usage recorded");

    // OpenCode's own figures, message by message, from its API.
    let session = st.agent.as_ref().unwrap().session_id.clone().unwrap();
    let client = lab.opencode_client("web-api");
    let messages = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(client.messages(&session))
        .unwrap();
    let mut theirs = Usage::default();
    for m in messages
        .iter()
        .filter(|m| m.info.role == "assistant" && m.info.time.completed.is_some())
    {
        theirs.add(&m.info.usage());
    }
    assert!(theirs.requests >= 5, "{theirs:?}");
    assert_eq!(
        ours.requests, theirs.requests,
        "no request counted twice or missed"
    );
    assert_eq!(
        (ours.input, ours.output, ours.cache_read),
        (theirs.input, theirs.output, theirs.cache_read)
    );
    assert!(
        (ours.cost - theirs.cost).abs() < 1e-12,
        "{ours:?} vs {theirs:?}"
    );
    assert!(
        ours.cost > 0.0 && ours.unpriced == 0,
        "the model has a price: {ours:?}"
    );
    // The days add up to the total.
    let mut by_day = Usage::default();
    st.usage_by_day.values().for_each(|u| by_day.add(u));
    assert_eq!(by_day.requests, ours.requests);
}

#[test]
fn a_spent_budget_stops_the_turn_until_a_slack_click_raises_it_and_the_session_carries_on() {
    use crate::test_phone::{lab_bot, wait_for};
    let lab = Lab::new(&["web-api"]);
    let settings = crate::common::git(&lab.state, &["show", "main:gaffer.yaml"])
        .replace("slack_users: []", "slack_users: [U0ALLOWED]");
    // Each scripted request is 20 tokens: 80 % after the third, spent after the fourth.
    let settings = format!("{settings}\nbudget: {{task: 70 tokens}}\n");
    crate::common::commit_to_bare(&lab.state, "main", &[("gaffer.yaml", &settings)], "budget");
    let key = "Token fix on a budget";
    let mut steps = fix_steps("sigma");
    let note = |n: u32| {
        Step::tool(
            "write",
            json!({"filePath": format!("repos/web-api/app/notes-sigma-{n}.txt"), "content": "noted\n"}),
        )
    };
    steps.insert(2, note(1));
    steps.insert(3, note(2));
    // The fifth request is held: it is in flight when gaffer sees the budget spent.
    steps[4] = steps[4].clone().held();
    lab.add_task("web-api", "sigma", key, steps);
    let fake = crate::common::slack::FakeSlack::start();
    let _bot = lab_bot(&lab, &fake);
    let _daemon = lab.daemon();
    let snap = lab.wait_until(120, "stopped at the budget", |s| {
        status_of(s, "demo/web-api/sigma")
            .is_some_and(|st| st.reason.as_deref() == Some("BudgetReached"))
    });
    let st = status_of(&snap, "demo/web-api/sigma").unwrap();
    assert_eq!(st.phase, Phase::AwaitingAnswer);
    let spent = st.usage.clone().unwrap();
    assert!(spent.tokens() >= 70, "{spent:?}");
    let ms: Vec<String> = crate::test_opencode::milestones(&snap, "demo/web-api/sigma")
        .into_iter()
        .map(|(_, t, _)| t)
        .collect();
    assert_eq!(
        ms.iter()
            .filter(|m| m.contains("of the task budget spent"))
            .count(),
        1,
        "{ms:?}"
    );
    let requests_at_stop = lab.llm.log_of(key).len();

    // The notice with its buttons; a click raises the budget for the person.
    let notice = wait_for(60, "the budget notice", || {
        fake.messages()
            .into_iter()
            .find(|m| m.text.contains("stopped at its budget"))
    });
    assert!(
        notice.text.starts_with("<@U0ALLOWED> 💸"),
        "{}",
        notice.text
    );
    let raise = format!(
        "raise:demo/web-api/sigma:{}",
        gaffer::state::spec::Amount::Tokens(140)
    );
    assert!(
        notice.blocks.to_string().contains(&raise),
        "{}",
        notice.blocks
    );
    fake.click("U0ALLOWED", &notice.channel, &notice.ts, &raise);
    let yaml = crate::common::git(
        &lab.state,
        &["show", "main:projects/demo/web-api/tasks/sigma/task.yaml"],
    );
    assert!(
        yaml.contains("budget: {task: \"140 tokens\", by: U0ALLOWED}"),
        "{yaml}"
    );

    let snap = lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, "demo/web-api/sigma") == Some(Phase::Promoted)
    });
    // Nothing reached the model between the stop and the raise, and the same session went on.
    let log = lab.llm.log_of(key);
    assert!(log.len() > requests_at_stop);
    assert!(
        log[requests_at_stop..].iter().all(|l| l
            .user_texts
            .iter()
            .any(|u| u.contains("budget for this task was raised"))),
        "{:#?}",
        &log[requests_at_stop..]
    );
    let st = status_of(&snap, "demo/web-api/sigma").unwrap();
    let prompts = &st.agent.as_ref().unwrap().prompts_sent;
    assert_eq!(
        prompts
            .iter()
            .filter(|p| p.starts_with("budget-raised-"))
            .count(),
        1,
        "{prompts:?}"
    );
    assert_eq!(
        crate::test_opencode::user_messages_with(&lab.llm, key, "# Task: "),
        1,
        "the same session"
    );
}
