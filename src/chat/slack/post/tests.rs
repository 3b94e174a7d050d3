use super::*;
use crate::state::status::{Milestone, MilestoneKind, Progress, TaskStatus};

fn entry(phase: Phase, milestones: u32) -> TaskEntry {
    let spec: crate::state::spec::TaskSpec =
        crate::state::yaml::parse(b"title: Implement JWT authentication\n").unwrap();
    let status: TaskStatus = crate::state::yaml::parse(
        format!("phase: {phase}\nlinks: [{{name: attach, url: tmux attach -t x}}, {{name: 'pr:api', url: 'https://x/pull/1'}}]\n").as_bytes(),
    )
    .unwrap();
    TaskEntry {
        spec: Some(Box::new(spec)),
        spec_present: true,
        status: Some(Box::new(status)),
        progress: Some(Progress {
            milestones: (1..=milestones)
                .map(|seq| Milestone {
                    seq,
                    at: jiff::Timestamp::UNIX_EPOCH,
                    kind: MilestoneKind::Todo,
                    text: format!("step {seq}"),
                    commit: None,
                })
                .collect(),
        }),
        ..TaskEntry::default()
    }
}

fn cx() -> PlanContext<'static> {
    static TZ: std::sync::LazyLock<jiff::tz::TimeZone> =
        std::sync::LazyLock::new(|| jiff::tz::TimeZone::UTC);
    PlanContext {
        tz: &TZ,
        browse_url: None,
        parent_thread: None,
        mentions: &[],
        question_thread: crate::state::spec::QuestionThread::Task,
    }
}

fn keys(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|o| match o {
            Op::Thread { .. } => "thread".into(),
            Op::Parent { phase, .. } => format!("parent:{phase}"),
            Op::Post { key, .. } => format!("post:{}", key_name(key)),
            Op::Update { key, tag, .. } => format!("update:{}:{tag}", key_name(key)),
            Op::OwnQuestion { qid, .. } => format!("own:{qid}"),
        })
        .collect()
}

#[test]
fn a_new_thread_gets_everything_in_order_then_only_what_is_new() {
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let e = entry(Phase::InReview, 2);
    let ops = plan(&t, &e, None, &cx());
    let k = keys(&ops);
    assert_eq!(k[0], "thread");
    assert_eq!(&k[1..3], ["post:m-1", "post:m-2"]);
    assert!(k[3].starts_with("post:links-"), "{k:?}");
    assert!(k[4].starts_with("post:review-"), "{k:?}");
    assert_eq!(k.len(), 5);

    let mut rec = SlackThread {
        channel_id: "C1".into(),
        thread_ts: "1.0".into(),
        shown_phase: Some(Phase::Running),
        ..SlackThread::default()
    };
    for op in &ops {
        match op {
            Op::Post { key, tag, .. } => record(&mut rec, key, "2.0".into(), tag.clone()),
            Op::Thread { tag, .. } => {
                rec.shown.insert(PARENT_TAG.into(), tag.clone());
            }
            _ => {}
        }
    }
    let later = plan(&t, &entry(Phase::InReview, 3), Some(&rec), &cx());
    assert_eq!(keys(&later), ["parent:InReview", "post:m-3"]);
    rec.shown_phase = Some(Phase::Promoted);
    let done = plan(&t, &entry(Phase::Promoted, 2), Some(&rec), &cx());
    let k = keys(&done);
    assert_eq!(k.len(), 1);
    assert!(
        k[0].starts_with("update:review-") && k[0].ends_with(":promoted"),
        "{k:?}"
    );
}

#[test]
fn several_new_questions_get_one_message_linking_the_document_first() {
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let mut e = entry(Phase::AwaitingAnswer, 0);
    let q: Question = crate::state::yaml::parse(
        b"text: Which?\noptions: [{label: A (Recommended)}, {label: B}]\nrecommended: A (Recommended)\naskedAt: 2026-11-25T10:00:00Z\nstate: open\ndeadline: 2026-11-25T12:00:00Z\n",
    )
    .unwrap();
    for id in ["q-001", "q-002"] {
        e.questions
            .insert(Qid::new(id).unwrap(), Box::new(q.clone()));
    }
    e.question_docs
        .insert(crate::names::Id::new("batch-001").unwrap(), "doc".into());
    let cx = PlanContext {
        browse_url: Some("https://git.example.com/state/blob/main/"),
        parent_thread: None,
        ..cx()
    };
    let ops = plan(&t, &e, None, &cx);
    let k = keys(&ops);
    assert_eq!(
        &k[..4],
        ["thread", "post:batch-001", "post:q-001", "post:q-002"]
    );
    let Op::Post {
        message, broadcast, ..
    } = &ops[1]
    else {
        unreachable!()
    };
    assert!(broadcast);
    assert!(
        message.to_string().contains(
            "https://git.example.com/state/blob/main/projects/ai-dev/api/tasks/jwt/questions/batch-001.md"
        ),
        "{message}"
    );
    let Op::Post { message, .. } = &ops[2] else {
        unreachable!()
    };
    assert!(
        message.to_string().contains("Wed 25 Nov 12:00 UTC"),
        "{message}"
    );
    // One new question later: no batch message.
    let mut rec = SlackThread::default();
    for op in &ops {
        match op {
            Op::Post { key, tag, .. } => record(&mut rec, key, "2.0".into(), tag.clone()),
            Op::Thread { tag, .. } => {
                rec.shown.insert(PARENT_TAG.into(), tag.clone());
            }
            _ => {}
        }
    }
    rec.shown_phase = Some(Phase::AwaitingAnswer);
    e.questions.insert(Qid::new("q-003").unwrap(), Box::new(q));
    assert_eq!(keys(&plan(&t, &e, Some(&rec), &cx)), ["post:q-003"]);
}

#[test]
fn keys_found_in_the_thread_count_as_posted() {
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let mut rec = SlackThread::default();
    merge_keys(
        &mut rec,
        vec![
            (Key::Parent.block_id(&t), "1.0".into()),
            (Key::Milestone(1).block_id(&t), "1.1".into()),
            (Key::Milestone(2).block_id(&t), "1.2".into()),
            (
                Key::Question(Qid::new("q-001").unwrap()).block_id(&t),
                "1.3".into(),
            ),
            ("someone-elses-block".into(), "1.4".into()),
        ],
    );
    assert_eq!(rec.posted_seq, 2);
    assert_eq!(rec.questions.len(), 1);
    assert!(rec.shown.is_empty(), "what it shows is unknown");
    let ops = plan(&t, &entry(Phase::Running, 3), Some(&rec), &cx());
    let k = keys(&ops);
    assert!(k.contains(&"post:m-3".to_string()) && !k.contains(&"post:m-2".to_string()));
}

#[test]
fn released_notices_are_posted_once_with_their_mentions() {
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let mut e = entry(Phase::AwaitingAnswer, 0);
    let notice = |key: &str, released: bool| crate::state::status::Notice {
        key: key.into(),
        text: format!("❓ question in ai-dev/api · jwt: {key} <b>"),
        at: jiff::Timestamp::UNIX_EPOCH,
        due: jiff::Timestamp::UNIX_EPOCH,
        released,
    };
    e.status.as_mut().unwrap().notices = vec![
        notice("question:q-001", true),
        notice("question:q-002", false),
    ];
    let mentions = vec!["U1".to_string(), "U2<!channel>".to_string()];
    let cx = PlanContext {
        mentions: &mentions,
        ..cx()
    };
    let ops = plan(&t, &e, None, &cx);
    let posts: Vec<&Value> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Post {
                key: Key::Other(k),
                message,
                ..
            } if k.starts_with("notice-") => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(posts.len(), 1, "only the released one");
    // The valid id is mentioned, the other is not; the notice's own text cannot mention.
    assert_eq!(
        posts[0]["text"],
        "<@U1> ❓ question in ai-dev/api · jwt: question:q-001 &lt;b&gt;"
    );
    let mut rec = SlackThread::default();
    record(
        &mut rec,
        &Key::Other("notice-question:q-001".into()),
        "3.0".into(),
        None,
    );
    let again = plan(&t, &e, Some(&rec), &cx);
    assert!(
        !again
            .iter()
            .any(|o| matches!(o, Op::Post { key: Key::Other(k), .. } if k.starts_with("notice-"))),
        "posted once"
    );
}

#[test]
fn auto_puts_in_context_questions_in_the_task_thread_and_others_in_their_own() {
    use crate::state::spec::QuestionThread;
    let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
    let at = |m: i64| jiff::Timestamp::from_second(1_700_000_000 + m * 60).unwrap();
    let question = |asked: i64, kind: &str| -> Question {
        crate::state::yaml::parse(
            format!(
                "kind: {kind}\ntext: Which?\noptions: [{{label: A}}, {{label: B}}]\nrecommended: A\naskedAt: {}\nstate: open\n",
                at(asked)
            )
            .as_bytes(),
        )
        .unwrap()
    };
    // The builder reported work at minute 0 (a todo), then a phase change and a question at 30.
    let mut e = entry(Phase::AwaitingAnswer, 1);
    let ms = &mut e.progress.as_mut().unwrap().milestones;
    ms[0].at = at(0);
    ms.push(crate::state::status::Milestone {
        seq: 2,
        at: at(30),
        kind: MilestoneKind::Phase,
        text: "Running → AwaitingAnswer".into(),
        commit: None,
    });
    let in_context = question(5, "question");
    let out_of_context = question(30, "question");
    let permission = question(5, "permission");
    let th = SlackThread::default();
    let place = |policy, q: &Question| own::placement(policy, q, &e, &th);
    assert_eq!(
        place(QuestionThread::Auto, &in_context),
        own::Placement::Task
    );
    assert_eq!(
        place(QuestionThread::Auto, &out_of_context),
        own::Placement::Own
    );
    assert_eq!(
        place(QuestionThread::Auto, &permission),
        own::Placement::Own
    );
    assert_eq!(
        place(QuestionThread::Task, &permission),
        own::Placement::Task
    );
    assert_eq!(place(QuestionThread::Own, &in_context), own::Placement::Own);
    // A long thread: its own, even in context.
    let long = SlackThread {
        posted_seq: own::LONG_THREAD as u32,
        ..SlackThread::default()
    };
    assert_eq!(
        own::placement(QuestionThread::Auto, &in_context, &e, &long),
        own::Placement::Own
    );

    // In plan(): an own-thread question is its own op; once posted, its updates keep its key.
    e.questions
        .insert(Qid::new("q-001").unwrap(), Box::new(permission.clone()));
    let cx = PlanContext {
        question_thread: QuestionThread::Auto,
        ..cx()
    };
    let ops = plan(&t, &e, None, &cx);
    assert!(
        keys(&ops).contains(&"own:q-001".to_string()),
        "{:?}",
        keys(&ops)
    );
    let mut rec = SlackThread::default();
    record(
        &mut rec,
        &Key::OwnQuestion(Qid::new("q-001").unwrap()),
        "9.0".into(),
        Some("x".into()),
    );
    assert!(rec.own_threads.contains(&Qid::new("q-001").unwrap()));
    let ops = plan(&t, &e, Some(&rec), &cx);
    assert!(
        ops.iter().any(|o| matches!(
            o,
            Op::Update {
                key: Key::OwnQuestion(_),
                ..
            }
        )),
        "{:?}",
        keys(&ops)
    );
    // Its key names the task, so it is found again among the channel's messages.
    let id = Key::OwnQuestion(Qid::new("q-001").unwrap()).block_id(&t);
    assert_eq!(id, "gaffer:own:ai-dev/api/jwt:q-001");
    assert_eq!(
        Key::parse(&id),
        Some(Key::OwnQuestion(Qid::new("q-001").unwrap()))
    );
}
