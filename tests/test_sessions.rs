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

    // Reading only what is new: what follows any message, paged backwards from the newest
    // (two messages first, then twice as many each time), is exactly the rest of the history.
    let client = lab.opencode_client("web-api");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = made[0].as_str();
    let full = rt.block_on(client.messages(session)).unwrap();
    let ids = |m: &[gaffer::agent::opencode::history::Message]| {
        m.iter().map(|m| m.info.id.clone()).collect::<Vec<_>>()
    };
    assert!(full.len() >= 4, "a whole task's turns: {}", full.len());
    let (newest, cursor) = rt.block_on(client.messages_page(session, 3, None)).unwrap();
    assert_eq!(
        ids(&newest),
        ids(&full[full.len() - 3..]),
        "the newest page, oldest first"
    );
    assert!(cursor.is_some(), "a cursor to the page before");
    for k in 0..full.len() {
        let after = rt
            .block_on(client.messages_after(session, &full[k].info.id, 2))
            .unwrap()
            .expect("the message is in the history");
        assert_eq!(ids(&after), ids(&full[k + 1..]), "after message {k}");
    }
    assert!(
        rt.block_on(client.messages_after(session, "msg_000000000000", 2))
            .unwrap()
            .is_none(),
        "a message no longer there: read it all"
    );
}

#[test]
fn an_idle_builder_is_stopped_and_started_again_on_the_same_sessions() {
    let lab = Lab::new(&["web-api"]);
    let path = "projects/demo/web-api/project.yaml";
    let project = crate::common::git(&lab.state, &["show", &format!("main:{path}")]) + "\n";
    let project = project.replace(
        "  model: scripted/m\n",
        "  model: scripted/m\n  idle_stop: 3s\n",
    );
    assert!(project.contains("idle_stop"));
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(path, project.as_str())],
        "sleep soon",
    );
    lab.add_task("web-api", "first", "Token fix first", fix_steps("first"));
    let _daemon = lab.daemon();
    let snap = lab.wait_until(240, "the first task promoted", |s| {
        phase_of(s, "demo/web-api/first") == Some(Phase::Promoted)
    });
    let first = status_of(&snap, "demo/web-api/first")
        .and_then(|s| s.agent)
        .and_then(|a| a.session_id)
        .unwrap();
    let running = || {
        lab.world
            .tmux(&["has-session", "-t", "gaffer-demo-web-api"])
            .0
    };
    // No active task for 3 s: the builder's server is stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle builder still runs: {}",
            lab.daemon_log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(lab.daemon_log().contains("idle builder stopped"));

    // A new task starts it again, on the same data: the first task's session is still there.
    lab.add_task("web-api", "second", "Token fix second", fix_steps("second"));
    lab.wait_until(240, "the second task promoted", |s| {
        phase_of(s, "demo/web-api/second") == Some(Phase::Promoted)
    });
    let client = lab.opencode_client("web-api");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let alive = rt.block_on(client.sessions());
    let ids: Vec<String> = alive.unwrap().into_iter().map(|(id, _, _)| id).collect();
    assert!(ids.contains(&first), "{first} in {ids:?}");
    assert_eq!(
        step_counts(&lab.llm, "Token fix first"),
        BTreeMap::from([(0, 1), (1, 1), (2, 1), (3, 1)]),
        "the first task's turns ran once"
    );
}
