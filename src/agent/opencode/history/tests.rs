use super::*;
use crate::state::status::Usage;
use serde_json::json;

fn msg(v: Value) -> Message {
    serde_json::from_value(v).unwrap()
}

fn user(id: &str, created: i64) -> Message {
    msg(
        json!({"info": {"id": id, "role": "user", "time": {"created": created}}, "parts": [
        {"type": "text", "text": "do it"}]}),
    )
}

fn tool(tool: &str, call: &str, status: &str, input: Value) -> Value {
    json!({"type": "tool", "tool": tool, "callID": call, "state": {"status": status, "input": input}})
}

fn assistant(
    id: &str,
    created: i64,
    completed: Option<i64>,
    finish: &str,
    parts: Vec<Value>,
) -> Message {
    let mut time = json!({"created": created});
    if let Some(c) = completed {
        time["completed"] = json!(c);
    }
    msg(
        json!({"info": {"id": id, "role": "assistant", "time": time, "finish": finish}, "parts": parts}),
    )
}

fn todos(items: &[(&str, &str)]) -> Value {
    json!({"todos": items.iter().map(|(c, s)| json!({"content": c, "status": s, "priority": "high"})).collect::<Vec<_>>()})
}

fn live_busy() -> Live {
    Live {
        busy: true,
        server_started_ms: 1,
        ..Live::default()
    }
}

#[test]
fn a_whole_turn_gives_todos_edits_and_done_once_each() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            Some(12),
            "tool-calls",
            vec![
                tool(
                    "todowrite",
                    "c1",
                    "completed",
                    todos(&[("plan", "completed"), ("code", "pending")]),
                ),
                tool(
                    "write",
                    "c2",
                    "completed",
                    json!({"filePath": "repos/app/x.py", "content": ""}),
                ),
            ],
        ),
        assistant(
            "msg_3",
            13,
            Some(14),
            "tool-calls",
            vec![tool(
                "todowrite",
                "c3",
                "completed",
                todos(&[("plan", "completed"), ("code", "completed")]),
            )],
        ),
        assistant(
            "msg_4",
            15,
            Some(16),
            "stop",
            vec![json!({"type": "text", "text": "All good.\nDONE: wrote x.py"})],
        ),
    ];
    let d = derive(&h, &Live::default());
    let events: Vec<_> = d.events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        events,
        vec![
            AgentEvent::Todo("plan".into()),
            AgentEvent::Edited(vec!["repos/app/x.py".into()]),
            AgentEvent::Todo("code".into()),
            AgentEvent::Finished("wrote x.py".into()),
        ]
    );
    // Positions strictly increase, so a cursor splits them cleanly.
    assert!(d.events.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(d.interrupted, None);
    assert!(!d.waiting);
}

#[test]
fn a_session_idle_after_tool_calls_has_ended_its_turn() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            Some(12),
            "tool-calls",
            vec![tool("bash", "c1", "error", json!({}))],
        ),
    ];
    let d = derive(&h, &Live::default());
    assert_eq!(
        d.events,
        vec![(
            position(1, END_PART, 0),
            AgentEvent::TurnEnded(String::new())
        )]
    );
    assert!(
        derive(&h, &live_busy()).events.is_empty(),
        "busy: the loop goes on"
    );
}

#[test]
fn a_turn_without_the_marker_ends_without_finishing() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            Some(12),
            "stop",
            vec![json!({"type": "text", "text": "Shall I go on?"})],
        ),
    ];
    let d = derive(&h, &Live::default());
    assert_eq!(d.events.len(), 1);
    assert_eq!(
        d.events[0].1,
        AgentEvent::TurnEnded("Shall I go on?".into())
    );
}

#[test]
fn derivation_stops_at_a_running_call_and_resumes_at_the_same_positions() {
    let running = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![
                tool("write", "c1", "completed", json!({"filePath": "a"})),
                tool("bash", "c2", "running", json!({"command": "make"})),
                tool("write", "c3", "completed", json!({"filePath": "b"})),
            ],
        ),
    ];
    let d1 = derive(&running, &live_busy());
    assert_eq!(
        d1.events.len(),
        1,
        "nothing after a running call: {:?}",
        d1.events
    );
    let mut done = running.clone();
    done[1].parts[1].state.as_mut().unwrap().status = "completed".into();
    done[1].info.time.completed = Some(20);
    done[1].info.finish = Some("tool-calls".into());
    let d2 = derive(&done, &live_busy());
    assert_eq!(d2.events.len(), 2);
    assert_eq!(d1.events[0], d2.events[0]);
    assert!(d2.events[1].0 > d1.events[0].0);
}

#[test]
fn a_pending_question_is_asked_and_blocks() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![tool("question", "c9", "running", json!({}))],
        ),
    ];
    let mut live = live_busy();
    let d = derive(&h, &live);
    assert!(
        d.events.is_empty(),
        "the request is not registered yet: wait"
    );
    live.questions.push(serde_json::from_value(json!({
        "id": "que_1", "sessionID": "ses_1",
        "questions": [{"question": "Which db?", "header": "DB", "options": [
            {"label": "Postgres (Recommended)", "description": "x"}, {"label": "SQLite", "description": "y"}]}],
        "tool": {"messageID": "msg_2", "callID": "c9"}})).unwrap());
    let d = derive(&h, &live);
    assert!(d.waiting);
    let AgentEvent::Question(q) = &d.events[0].1 else {
        panic!("{:?}", d.events)
    };
    assert_eq!(q.request_id, "que_1");
    assert_eq!(q.recommended(), "Postgres (Recommended)");
    assert!(q.custom, "OpenCode allows free text unless told otherwise");
}

#[test]
fn a_question_lost_in_a_restart_is_still_asked_and_the_turn_is_interrupted() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![tool(
                "question",
                "c9",
                "running",
                json!({
            "questions": [{"question": "Which db?", "header": "DB", "options": [{"label": "A", "description": ""}]}]}),
            )],
        ),
    ];
    let live = Live {
        busy: false,
        server_started_ms: 100,
        ..Live::default()
    };
    let d = derive(&h, &live);
    let AgentEvent::Question(q) = &d.events[0].1 else {
        panic!("{:?}", d.events)
    };
    assert_eq!(q.request_id, "lost-c9");
    assert!(!d.waiting, "nothing on the server waits for it");
    assert_eq!(d.interrupted.as_deref(), Some("msg_2"));
}

#[test]
fn a_restart_interrupts_an_unfinished_turn_but_not_a_new_prompt() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![tool("write", "c1", "completed", json!({"filePath": "a"}))],
        ),
    ];
    let restarted = Live {
        busy: false,
        server_started_ms: 50,
        ..Live::default()
    };
    let d = derive(&h, &restarted);
    assert_eq!(d.interrupted.as_deref(), Some("msg_2"));
    assert_eq!(
        d.events.len(),
        1,
        "what finished before the crash still counts"
    );
    // The resume prompt comes after the restart: not interrupted, and the dead message
    // does not block what follows.
    let mut h2 = h.clone();
    h2.push(user("msg_3", 60));
    h2.push(assistant(
        "msg_4",
        61,
        Some(62),
        "stop",
        vec![json!({"type": "text", "text": "DONE: ok"})],
    ));
    let d2 = derive(&h2, &restarted);
    assert_eq!(d2.interrupted, None);
    assert_eq!(
        d2.events.last().unwrap().1,
        AgentEvent::Finished("ok".into())
    );
    // A prompt just sent to a live server is not an interruption.
    let fresh = vec![user("msg_1", 10)];
    assert_eq!(
        derive(
            &fresh,
            &Live {
                busy: false,
                server_started_ms: 5,
                ..Live::default()
            }
        )
        .interrupted,
        None
    );
}

#[test]
fn errors_fail_with_retryability_and_aborts_are_quiet() {
    let mut m = assistant("msg_2", 11, Some(12), "", vec![]);
    m.info.error =
        Some(json!({"name": "APIError", "data": {"message": "overloaded", "isRetryable": true}}));
    let d = derive(&[user("msg_1", 10), m.clone()], &Live::default());
    assert_eq!(
        d.events[0].1,
        AgentEvent::Failed {
            message: "APIError: overloaded".into(),
            retryable: true
        }
    );
    m.info.error = Some(json!({"name": "MessageAbortedError", "data": {"message": "aborted"}}));
    assert!(
        derive(&[user("msg_1", 10), m], &Live::default())
            .events
            .is_empty()
    );
}

#[test]
fn a_permission_request_becomes_a_permission_question() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![tool(
                "bash",
                "c1",
                "running",
                json!({"command": "rm -rf x"}),
            )],
        ),
    ];
    let mut live = live_busy();
    live.permissions.push(
        serde_json::from_value(json!({
        "id": "per_1", "sessionID": "ses_1", "permission": "bash", "patterns": ["rm -rf x"],
        "metadata": {}, "always": [], "tool": {"messageID": "msg_2", "callID": "c1"}}))
        .unwrap(),
    );
    let d = derive(&h, &live);
    let AgentEvent::Question(q) = &d.events[0].1 else {
        panic!()
    };
    assert_eq!(q.kind, AskKind::Permission);
    assert_eq!(q.request_id, "per_1");
    assert_eq!(q.options.len(), 3);
    assert!(d.waiting);
}

#[test]
fn done_marker_is_found_in_markdown() {
    assert_eq!(
        done_summary("ok\n**DONE: shipped it**").as_deref(),
        Some("shipped it")
    );
    assert_eq!(done_summary("DONE:").as_deref(), Some(""));
    assert_eq!(done_summary("not done yet"), None);
}

#[test]
fn each_finished_request_counts_its_usage_once_before_a_later_end() {
    let priced = |id: &str, created: i64, completed: Option<i64>, finish: &str, cost: f64| {
        let mut m = assistant(
            id,
            created,
            completed,
            finish,
            vec![tool("bash", "c", "completed", json!({}))],
        );
        m.info.cost = Some(cost);
        m.info.tokens = Some(Tokens {
            input: 100,
            output: 20,
            reasoning: 5,
            cache: CacheTokens { read: 40, write: 0 },
        });
        m
    };
    let h = vec![
        user("msg_1", 10),
        priced("msg_2", 11, Some(12), "tool-calls", 0.003),
        priced("msg_3", 13, Some(14), "tool-calls", 0.0),
        priced("msg_4", 15, None, "", 0.0),
    ];
    let d = derive(&h, &live_busy());
    // The unfinished message counts nothing yet.
    assert_eq!(d.usage.len(), 2);
    let (pos, at, u) = &d.usage[0];
    assert_eq!(*pos, position(1, END_PART - 1, 0));
    assert_eq!(at.as_millisecond(), 12);
    assert_eq!(
        (u.requests, u.input, u.output, u.reasoning, u.cache_read),
        (1, 100, 20, 5, 40)
    );
    assert_eq!((u.cost, u.unpriced), (0.003, 0));
    // A cost of 0 with tokens used: the model has no price; unknown, not free.
    assert_eq!((d.usage[1].2.cost, d.usage[1].2.unpriced), (0.0, 1));
    let mut total = Usage::default();
    total.add(&d.usage[0].2);
    total.add(&d.usage[1].2);
    assert_eq!(total.cost_text(), "$0.0030 + unknown");
    assert_eq!(total.summary(), "330 tokens · $0.0030 + unknown");

    // The session goes idle on the last finished message: its end comes after its usage,
    // so a cursor that passed the usage still sees the end.
    let h = &h[..3];
    let idle = derive(h, &Live::default());
    let usage_pos = idle.usage.last().unwrap().0;
    let end = idle.events.last().unwrap();
    assert_eq!(end.1, AgentEvent::TurnEnded(String::new()));
    assert!(end.0 > usage_pos);
}

/// A week-long session in miniature: turns with todos rewritten, edits, a question asked and
/// answered, an error, and a tool-calls turn that goes idle at the end.
fn long_history() -> Vec<Message> {
    let mut h = Vec::new();
    let mut t = 10;
    let mut id = 0;
    let mut next = || {
        id += 1;
        t += 10;
        (format!("msg_{id:04}"), t)
    };
    for round in 0..6 {
        let (u, ut) = next();
        h.push(user(&u, ut));
        let (a, at) = next();
        h.push(assistant(
            &a,
            at,
            Some(at + 1),
            "tool-calls",
            vec![
                tool(
                    "todowrite",
                    &format!("t{round}"),
                    "completed",
                    todos(&[
                        ("plan", "completed"),
                        (
                            "build",
                            if round > 2 {
                                "completed"
                            } else {
                                "in_progress"
                            },
                        ),
                    ]),
                ),
                tool(
                    "edit",
                    &format!("e{round}"),
                    "completed",
                    json!({"filePath": format!("f{round}.rs")}),
                ),
            ],
        ));
        let (a, at) = next();
        h.push(msg(json!({"info": {"id": a, "role": "assistant", "time": {"created": at, "completed": at + 1},
            "finish": "stop", "tokens": {"input": 10, "output": 5}, "cost": 0.01},
            "parts": [{"type": "text", "text": format!("round {round} done")}]})));
    }
    let (a, at) = next();
    h.push(assistant(
        &a,
        at,
        Some(at + 1),
        "tool-calls",
        vec![tool("bash", "last", "error", json!({}))],
    ));
    h
}

/// What a run of polls reports, each reading what `read` gives it, the cursor filtering.
type Reported = (Vec<(u64, AgentEvent)>, Vec<(u64, jiff::Timestamp, Usage)>);

fn take_new(d: Derived, cursor: &mut u64, into: &mut Reported) {
    let mut next = *cursor;
    for (pos, e) in d.events {
        if pos > *cursor {
            next = next.max(pos);
            into.0.push((pos, e));
        }
    }
    for (pos, at, u) in d.usage {
        if pos > *cursor {
            next = next.max(pos);
            into.1.push((pos, at, u));
        }
    }
    *cursor = next;
}

#[test]
fn deriving_after_the_settled_start_gives_what_a_full_read_gives() {
    let h = long_history();
    for live in [Live::default(), live_busy()] {
        // The history grows a message at a time; one run of polls reads all of it each
        // time, the other only what follows the settled start the previous poll left, as
        // the OpenCode runtime does.
        let (mut full, mut full_cursor) = (Reported::default(), 0);
        let (mut paged, mut cursor) = (Reported::default(), 0);
        let mut tail = Tail::default();
        for n in 1..=h.len() {
            let whole = derive(&h[..n], &live);
            let window = &h[tail.settled..n];
            if let Some(last) = &tail.last_id {
                assert_eq!(&h[tail.settled - 1].info.id, last);
            }
            let d = derive_after(&tail, window, &live, consumed(cursor));
            assert_eq!(d.latest_text, whole.latest_text, "at {n}");
            assert_eq!(d.interrupted, whole.interrupted, "at {n}");
            assert_eq!(d.waiting, whole.waiting, "at {n}");
            assert!(d.tail.settled < n, "the newest message is never settled");
            assert!(
                d.tail.settled <= consumed(cursor),
                "nothing unrecorded is settled"
            );
            assert!(d.tail.settled >= tail.settled);
            tail = d.tail.clone();
            if n % 4 == 0 {
                // gaffer is killed after keeping the tail, before recording what it derived:
                // the next poll, from the recorded cursor, must derive it all again.
                continue;
            }
            take_new(whole, &mut full_cursor, &mut full);
            take_new(d, &mut cursor, &mut paged);
        }
        assert_eq!(paged, full);
        assert_eq!(cursor, full_cursor);
        assert!(
            tail.settled >= h.len() - 3,
            "all but the newest few settled: {}",
            tail.settled
        );
        let todos = paged
            .0
            .iter()
            .filter(|(_, e)| matches!(e, AgentEvent::Todo(_)))
            .count();
        assert_eq!(todos, 2, "each todo reported once: {paged:?}");
        assert_eq!(paged.1.len(), 6, "each model request counted once");
    }
}

#[test]
fn an_open_tool_call_or_unfinished_message_is_never_settled() {
    let h = vec![
        user("msg_1", 10),
        assistant(
            "msg_2",
            11,
            None,
            "",
            vec![tool("question", "q1", "running", json!({}))],
        ),
        user("msg_3", 12),
    ];
    let d = derive_after(&Tail::default(), &h, &live_busy(), usize::MAX);
    assert_eq!(d.tail.settled, 1);
    assert_eq!(d.tail.last_id.as_deref(), Some("msg_1"));
}
