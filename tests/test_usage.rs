//! Usage with the real OpenCode: gaffer's totals are exactly what OpenCode recorded on each
//! assistant message (read back from its API here), across a kill -9 of gaffer mid-task.

use gaffer::agent::opencode::OpenCode;
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
    let dir = lab.data.join("opencode");
    let record = OpenCode::records(&dir)
        .unwrap()
        .into_iter()
        .find(|r| r.project == "demo/web-api")
        .expect("the builder's record");
    let client = OpenCode::client_for(&dir, &record).expect("a client");
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
