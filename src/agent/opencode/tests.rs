use super::*;

#[test]
fn message_ids_sort_in_time_and_name_their_prompt() {
    let a = message_id("task");
    let b = message_id("feedback-tests-1");
    assert!(a < b, "{a} then {b}");
    assert_eq!(a.len(), 30);
    assert!(a.starts_with("msg_"));
    assert!(a.ends_with(&prompt_suffix("task")));
    assert_ne!(prompt_suffix("task"), prompt_suffix("task2"));
}

#[test]
fn significant_events_leave_out_deltas() {
    assert!(!significant(
        &json!({"type": "message.part.delta", "properties": {}})
    ));
    assert!(significant(
        &json!({"type": "todo.updated", "properties": {"sessionID": "s"}})
    ));
    assert!(significant(
        &json!({"type": "message.part.updated", "properties": {"part": {
        "type": "tool", "state": {"status": "completed"}}}})
    ));
    assert!(!significant(
        &json!({"type": "message.part.updated", "properties": {"part": {
        "type": "text"}}})
    ));
}

#[test]
fn env_file_is_private_and_keeps_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        binary: "opencode".into(),
        launcher: "gaffer".into(),
        state_dir: dir.path().into(),
        host: Arc::new(crate::agent::host::TmuxHost::default()),
        pod: None,
        bwrap: None,
        env: vec![("HOME".into(), "/tmp/x".into())],
        start_timeout: Duration::from_secs(1),
    };
    let p1 = ensure_env_file(&cfg, "ai-x").unwrap();
    let p2 = ensure_env_file(&cfg, "ai-x").unwrap();
    assert_eq!(p1, p2);
    assert_eq!(p1.len(), 48);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(env_path(dir.path(), "ai-x"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(env_path(dir.path(), "ai-x")).unwrap();
    assert!(text.contains("HOME=/tmp/x\n"));
    assert!(text.contains("OPENCODE_DISABLE_AUTOUPDATE=1\n"));
}
