//! No orphan sessions: a session OpenCode made just before gaffer was killed — before any
//! record of it was written — is found again by its title (which carries the task's key) and
//! used, never made twice.

use std::collections::BTreeMap;

use gaffer::state::status::Phase;

use crate::test_opencode::{Lab, fix_steps, phase_of, status_of, step_counts, user_messages_with};

#[test]
fn a_session_made_just_before_a_crash_is_found_by_its_title_not_made_twice() {
    let lab = Lab::new(&["web-api"]);
    let key = "Token fix orphan";
    lab.add_task("web-api", "orphan", key, fix_steps("orphan"));
    // The reconciler dies the moment OpenCode has made the session.
    let mut crashing = lab.daemon_env(&[("GAFFER_CRASH_AT", "session:created")]);
    crashing.wait_exit(120);
    let sessions = || {
        let client = lab.opencode_client("web-api");
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(client.sessions())
            .unwrap()
            .into_iter()
            .filter(|(_, title, _)| title.starts_with("gaffer demo/web-api/orphan: "))
            .map(|(id, _, _)| id)
            .collect::<Vec<_>>()
    };
    let made = sessions();
    assert_eq!(made.len(), 1, "made before the crash: {made:?}");
    let snap = lab.snapshot();
    assert!(
        status_of(&snap, "demo/web-api/orphan")
            .and_then(|s| s.agent)
            .and_then(|a| a.session_id)
            .is_none(),
        "not recorded before the crash"
    );

    let _daemon = lab.daemon();
    let snap = lab.wait_until(240, "the task promoted", |s| {
        phase_of(s, "demo/web-api/orphan") == Some(Phase::Promoted)
    });
    let st = status_of(&snap, "demo/web-api/orphan").unwrap();
    assert_eq!(
        sessions(),
        made,
        "one session, the one made before the crash"
    );
    assert_eq!(
        st.agent.unwrap().session_id.as_deref(),
        Some(made[0].as_str())
    );
    assert_eq!(
        step_counts(&lab.llm, key),
        BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)])
    );
    assert_eq!(user_messages_with(&lab.llm, key, "# Task: "), 1);
    assert!(
        lab.daemon_log()
            .contains("found the task's session made before a crash"),
        "{}",
        lab.daemon_log()
    );
}
