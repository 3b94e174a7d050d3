//! The Block Kit of every message the bot posts, as JSON (`chat.postMessage` / `chat.update`
//! `blocks`). Text from the agent is untrusted: it is cut to Slack's limits and escaped
//! (`&`, `<`, `>`) so it cannot mention people or channels.
//!
//! Action ids say what a click does: `answer:<task>:<qid>:<option index>`,
//! `other:<task>:<qid>` (free text modal), `change:<task>:<qid>`, `approve:<task>:<review key>`,
//! `plan:<task>:<version>` and `planchg:<task>:<version>` (a plan's approval or changes).

use serde_json::{Value, json};

use crate::names::{Qid, TaskRef};
use crate::state::status::{DecidedBy, Link, Milestone, Phase, Question};

/// Slack's limit for a section's text.
const SECTION_TEXT: usize = 3000;
/// Slack's limit for a button's text.
const BUTTON_TEXT: usize = 75;
/// Slack's limit for a button's value.
const BUTTON_VALUE: usize = 2000;

/// A button's `action_id` (`<kind>:<task>:…`), decoded before anything is read or done.
#[derive(Debug, Clone, PartialEq)]
pub enum Click {
    /// `answer:<task>:<qid>:<option index>`
    Answer {
        /// The task.
        task: TaskRef,
        /// The question.
        qid: Qid,
        /// The option's index in the question.
        option: usize,
    },
    /// `other:<task>:<qid>` (a written answer) or `change:<task>:<qid>` (a new one).
    Other {
        /// The task.
        task: TaskRef,
        /// The question.
        qid: Qid,
        /// Changing an answer already given.
        change: bool,
    },
    /// `approve:<task>[:<key>]`
    Approve {
        /// The task.
        task: TaskRef,
        /// The round and heads the button was made for.
        key: Option<String>,
    },
    /// `raise:<task>:<amount>`: the task's budget set to `amount` (it stopped at its budget);
    /// `raise:<task>:stop`: stop the task instead.
    Raise {
        /// The task.
        task: TaskRef,
        /// The new budget, or `None` to stop.
        amount: Option<crate::state::spec::Amount>,
    },
    /// `plan:<task>:<version>` (approve the plan) or `planchg:<task>:<version>` (ask for
    /// changes: a form).
    Plan {
        /// The task.
        task: TaskRef,
        /// The plan version the button was made for.
        version: u32,
        /// Ask for changes instead of approving.
        changes: bool,
    },
}

impl Click {
    /// `None` for an action that is not gaffer's (another kind, or no task); an error for
    /// one of gaffer's that does not parse.
    pub fn parse(id: &str) -> Option<Result<Click, String>> {
        let parts: Vec<&str> = id.split(':').collect();
        let [kind, task, rest @ ..] = parts.as_slice() else {
            return None;
        };
        if !matches!(
            *kind,
            "answer" | "other" | "change" | "approve" | "plan" | "planchg" | "raise"
        ) {
            return None;
        }
        let task = TaskRef::parse(task).ok()?;
        let malformed = || format!("malformed action {id}");
        Some(match (*kind, rest) {
            ("answer", [qid, index]) => match (Qid::new(*qid), index.parse::<usize>()) {
                (Ok(qid), Ok(option)) => Ok(Click::Answer { task, qid, option }),
                _ => Err(malformed()),
            },
            ("other" | "change", [qid]) => Qid::new(*qid)
                .map(|qid| Click::Other {
                    task,
                    qid,
                    change: *kind == "change",
                })
                .map_err(|e| e.to_string()),
            ("plan" | "planchg", [version]) => version
                .parse::<u32>()
                .map(|version| Click::Plan {
                    task,
                    version,
                    changes: *kind == "planchg",
                })
                .map_err(|_| malformed()),
            ("raise", ["stop"]) => Ok(Click::Raise { task, amount: None }),
            ("raise", [amount]) => crate::state::spec::Amount::parse(amount)
                .map(|a| Click::Raise {
                    task,
                    amount: Some(a),
                })
                .map_err(|_| malformed()),
            ("approve", rest) => Ok(Click::Approve {
                task,
                key: rest.first().map(|k| k.to_string()),
            }),
            _ => Err(malformed()),
        })
    }
}

/// Escapes `&`, `<`, `>` and cuts to `max` characters.
pub fn escape(text: &str, max: usize) -> String {
    let e = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    if e.chars().count() > max {
        let mut t: String = e.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        e
    }
}

/// `text` cut to `max` characters (plain text, which Slack shows as written).
pub(super) fn cut(text: &str, max: usize) -> String {
    if text.chars().count() > max {
        let mut t: String = text.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    } else {
        text.to_string()
    }
}

pub(super) fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

pub(super) fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

pub(super) fn button(text: &str, action_id: String, value: &str, primary: bool) -> Value {
    let mut b = json!({
        "type": "button",
        // Plain text is shown as written: escaping it would show `&amp;`.
        "text": {"type": "plain_text", "text": cut(text, BUTTON_TEXT), "emoji": true},
        "action_id": action_id,
        "value": value.chars().take(BUTTON_VALUE).collect::<String>(),
    });
    if primary {
        b["style"] = json!("primary");
    }
    b
}

/// The thread's parent message: `category/project`, the title, the current phase, and the
/// task's links (to watch and edit it: a code server, a terminal, the lab, the changes).
pub fn thread_parent(
    task: &TaskRef,
    title: &str,
    phase: Phase,
    reason: Option<&str>,
    links: &[Link],
    usage: Option<&crate::state::status::Usage>,
) -> Value {
    let why = reason.map(|r| format!(" · {r}")).unwrap_or_default();
    // What the builder used so far, as of this update of the message.
    let used = usage
        .map(|u| format!(" · {}", escape(&u.summary(), 100)))
        .unwrap_or_default();
    let mut blocks = vec![
        section(&format!(
            "*{}*\n{}",
            escape(title, SECTION_TEXT - 200),
            task
        )),
        context(&format!("Phase: *{phase}*{why}{used}")),
    ];
    let shown: Vec<String> = links
        .iter()
        .filter(|l| l.url.starts_with("https://") || l.url.starts_with("http://"))
        .map(|l| format!("🔗 <{}|{}>", escape(&l.url, 500), escape(&l.name, 60)))
        .collect();
    if !shown.is_empty() {
        // A context block holds at most 10 elements; one mrkdwn element holds them all.
        blocks.push(context(&escape_free(&shown.join("  ·  "))));
    }
    json!({
        "text": format!("{}: {} — {phase}", task.project, escape(title, 200)),
        "blocks": blocks,
    })
}

/// A milestone in the task's thread.
pub fn milestone(m: &Milestone) -> Value {
    let text = escape(&m.text, SECTION_TEXT);
    let mut blocks = vec![section(&text)];
    if let Some(c) = &m.commit {
        blocks.push(context(&format!("checkpoint `{}`", &c[..c.len().min(12)])));
    }
    json!({"text": text, "blocks": blocks})
}

/// The links worth a click (lab, change requests, how to attach to the builder).
pub fn links(links: &[Link]) -> Value {
    let lines: Vec<String> = links
        .iter()
        .map(|l| {
            if l.url.starts_with("http://") || l.url.starts_with("https://") {
                format!("• <{}|{}>", escape(&l.url, 500), escape(&l.name, 100))
            } else {
                format!("• {}: `{}`", escape(&l.name, 100), escape(&l.url, 500))
            }
        })
        .collect();
    let text = format!("🔗 Links\n{}", lines.join("\n"));
    json!({"text": text, "blocks": [section(&escape_free(&text))]})
}

/// Text already escaped piecewise (links keep their `<url|name>` syntax).
fn escape_free(text: &str) -> String {
    text.chars().take(SECTION_TEXT).collect()
}

/// An open question: the text, one button per option (the recommended one primary and
/// marked), "Other…" when free text is allowed, and the deadline in the business time zone.
pub fn question(task: &TaskRef, qid: &Qid, q: &Question, deadline: &str) -> Value {
    let mut buttons: Vec<Value> = q
        .options
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let recommended = o.label == q.recommended;
            let label = if recommended && !o.label.contains("(Recommended)") {
                format!("{} (Recommended)", o.label)
            } else {
                o.label.clone()
            };
            button(
                &label,
                format!("answer:{task}:{qid}:{i}"),
                &o.label,
                recommended,
            )
        })
        .collect();
    if q.custom {
        buttons.push(button(
            "Other…",
            format!("other:{task}:{qid}"),
            qid.as_str(),
            false,
        ));
    }
    let options: Vec<String> = q
        .options
        .iter()
        .filter(|o| !o.description.is_empty())
        .map(|o| {
            format!(
                "• *{}* — {}",
                escape(&o.label, 200),
                escape(&o.description, 300)
            )
        })
        .collect();
    let going_on = match q.state {
        crate::state::status::QuestionState::Provisional => {
            format!(
                " · the builder went on with *{}*",
                escape(&q.recommended, 200)
            )
        }
        _ => " · the builder waits".to_string(),
    };
    let head = if q.header.is_empty() {
        format!("❓ *{qid}*")
    } else {
        format!("❓ *{qid} · {}*", escape(&q.header, 100))
    };
    let mut blocks = vec![section(&format!(
        "{head}\n{}",
        escape(&q.text, SECTION_TEXT - 200)
    ))];
    if !options.is_empty() {
        blocks.push(section(&options.join("\n")));
    }
    // Slack allows 25 elements per actions block.
    for chunk in buttons.chunks(25) {
        blocks.push(
            json!({"type": "actions", "block_id": format!("q:{task}:{qid}"), "elements": chunk}),
        );
    }
    blocks.push(context(&format!(
        "Deadline {deadline}: then *{}*{going_on}",
        escape(&q.recommended, 200)
    )));
    json!({"text": format!("{qid}: {}", escape(&q.text, 500)), "blocks": blocks})
}

/// A decided question: who chose what (or that the default applied), without buttons but
/// "Change answer" after a deadline default.
pub fn decided(task: &TaskRef, qid: &Qid, q: &Question) -> Value {
    let Some(d) = &q.decision else {
        return question(task, qid, q, "");
    };
    let choice = escape(&d.choice.join(", "), 500);
    let line = match d.decided_by {
        DecidedBy::Human => {
            let who = d.by.as_deref().map_or_else(|| "someone".into(), who);
            format!("✅ *{choice}* — answered by {who}")
        }
        DecidedBy::TimeoutDefault => {
            format!("⏰ *{choice}* — the recommended option, applied at the deadline")
        }
    };
    let mut blocks = vec![
        section(&format!(
            "❓ *{qid}*\n{}",
            escape(&q.text, SECTION_TEXT - 200)
        )),
        section(&line),
    ];
    if let Some(n) = &d.note {
        blocks.push(context(&format!("Note: {}", escape(n, 1000))));
    }
    if d.decided_by == DecidedBy::TimeoutDefault {
        blocks.push(
            json!({"type": "actions", "block_id": format!("q:{task}:{qid}"), "elements": [
            button("Change answer", format!("change:{task}:{qid}"), qid.as_str(), false)]}),
        );
    }
    json!({"text": format!("{qid}: {}", line), "blocks": blocks})
}

/// Several questions at once: one message pointing to the question document, with each
/// question's buttons following as their own messages.
pub fn question_batch(task: &TaskRef, doc_url: &str, qids: &[Qid]) -> Value {
    let list: Vec<String> = qids.iter().map(|q| format!("`{q}`")).collect();
    let text = format!(
        "🗒 {} questions at once ({}) — answer them below, or tick boxes in <{}|the question document> and commit",
        qids.len(),
        list.join(", "),
        escape(doc_url, 500)
    );
    json!({"text": format!("{} questions for {task}", qids.len()), "blocks": [section(&text)]})
}

/// In review: the change links and the approve button; `key` names this review round.
pub fn approve(task: &TaskRef, changes: &[Link], key: &str) -> Value {
    let lines: Vec<String> = changes
        .iter()
        .map(|l| format!("• <{}|{}>", escape(&l.url, 500), escape(&l.name, 100)))
        .collect();
    let text = if lines.is_empty() {
        "👀 Ready for review".to_string()
    } else {
        format!("👀 Ready for review\n{}", lines.join("\n"))
    };
    json!({
        "text": format!("{task} is ready for review"),
        "blocks": [
            section(&text),
            {"type": "actions", "block_id": format!("approve:{task}"), "elements": [
                button("Approve & Promote", format!("approve:{task}:{key}"), &task.to_string(), true)]},
        ],
    })
}

/// After approval: the change links, who approved, no button.
pub fn approved(task: &TaskRef, changes: &[Link], by: &str) -> Value {
    reviewed(
        task,
        changes,
        &format!("✅ Approved by {} — promoting", who(by)),
    )
}

/// Promoted: the change links, no button.
pub fn promoted(task: &TaskRef, changes: &[Link]) -> Value {
    reviewed(task, changes, "🚀 Promoted")
}

fn reviewed(task: &TaskRef, changes: &[Link], head: &str) -> Value {
    let lines: Vec<String> = changes
        .iter()
        .map(|l| format!("• <{}|{}>", escape(&l.url, 500), escape(&l.name, 100)))
        .collect();
    let text = if lines.is_empty() {
        head.to_string()
    } else {
        format!("{head}\n{}", lines.join("\n"))
    };
    json!({"text": format!("{task}: {head}"), "blocks": [section(&text)]})
}

/// In the task's thread: a question waits in a thread of its own (`link` opens it).
pub fn own_thread_pointer(qid: &Qid, question: &str, link: &str) -> Value {
    let text = format!(
        "❓ *{qid}* waits in <{}|a thread of its own>: {}",
        escape(link, 500),
        escape(question, 300)
    );
    json!({"text": format!("{qid} waits in a thread of its own"), "blocks": [section(&text)]})
}

/// A notice: the people to push, mentioned, then why the task needs them (one line that
/// reads well as a phone notification).
pub fn notice(text: &str, mentions: &[String]) -> Value {
    let who: Vec<String> = mentions
        .iter()
        .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric()) && !m.is_empty())
        .map(|m| format!("<@{m}>"))
        .collect();
    let line = escape(text, 1000);
    let full = if who.is_empty() {
        line
    } else {
        format!("{} {line}", who.join(" "))
    };
    json!({"text": full, "blocks": [section(&full)]})
}

/// A task stopped at its budget: the notice, and buttons to raise the budget (by half, or
/// double it) or stop the task.
pub fn budget_notice(
    task: &TaskRef,
    text: &str,
    mentions: &[String],
    limit: crate::state::spec::Amount,
) -> Value {
    let mut m = notice(text, mentions);
    let raise = |factor: f64| {
        let to = limit.times(factor);
        button(
            &format!("Raise to {to}"),
            format!("raise:{task}:{to}"),
            &to.to_string(),
            factor < 2.0,
        )
    };
    if let Some(b) = m["blocks"].as_array_mut() {
        b.push(
            json!({"type": "actions", "block_id": format!("budget:{task}"), "elements": [
                raise(1.5),
                raise(2.0),
                button("Stop the task", format!("raise:{task}:stop"), "stop", false),
            ]}),
        );
    }
    m
}

/// A Slack user id as a mention, anything else (an email) as escaped text.
pub(super) fn who(by: &str) -> String {
    if (by.starts_with('U') || by.starts_with('W')) && by.chars().all(|c| c.is_ascii_alphanumeric())
    {
        format!("<@{by}>")
    } else {
        escape(by, 200)
    }
}

/// What identifies a posted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The thread's parent message.
    Parent,
    /// Milestone `seq`.
    Milestone(u32),
    /// A question.
    Question(Qid),
    /// A question posted in a thread of its own: its key names the task too, because it
    /// is found again among the channel's messages.
    OwnQuestion(Qid),
    /// Anything else, by name (`links-…`, `review-…`, a question document id).
    Other(String),
}

impl Key {
    /// The `block_id` carrying the key.
    pub fn block_id(&self, task: &TaskRef) -> String {
        match self {
            Key::Parent => format!("gaffer:parent:{task}"),
            Key::Milestone(seq) => format!("gaffer:m:{seq}"),
            Key::Question(q) => format!("gaffer:q:{q}"),
            Key::OwnQuestion(q) => format!("gaffer:own:{task}:{q}"),
            Key::Other(name) => format!("gaffer:x:{name}"),
        }
    }

    /// The key a `block_id` carries, if it is one of the bot's.
    pub(crate) fn parse(block_id: &str) -> Option<Key> {
        let rest = block_id.strip_prefix("gaffer:")?;
        let (kind, v) = rest.split_once(':')?;
        match kind {
            "parent" => Some(Key::Parent),
            "m" => v.parse().ok().map(Key::Milestone),
            "q" => Qid::new(v).ok().map(Key::Question),
            "own" => v
                .rsplit_once(':')
                .and_then(|(_, q)| Qid::new(q).ok())
                .map(Key::OwnQuestion),
            "x" => Some(Key::Other(v.to_string())),
            _ => None,
        }
    }
}

/// `message` with `key` as its first block's `block_id`.
pub(crate) fn tagged(message: &Value, key: &Key, task: &TaskRef) -> Value {
    let mut m = message.clone();
    if let Some(first) = m
        .get_mut("blocks")
        .and_then(Value::as_array_mut)
        .and_then(|b| b.first_mut())
    {
        first["block_id"] = Value::String(key.block_id(task));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::status::{Decision, MilestoneKind, QuestionOption, QuestionState};

    fn t() -> TaskRef {
        TaskRef::parse("ai-dev/proj-api-service/jwt-auth").unwrap()
    }

    fn q(state: QuestionState, decision: Option<Decision>) -> Question {
        Question {
            kind: Default::default(),
            text: "Should I use RS256 or HS256 for <JWT> signing?".into(),
            header: "JWT signing".into(),
            options: vec![
                QuestionOption {
                    label: "RS256 (Recommended)".into(),
                    description: "Asymmetric keys".into(),
                },
                QuestionOption {
                    label: "HS256".into(),
                    description: "One shared secret".into(),
                },
            ],
            multiple: false,
            custom: true,
            recommended: "RS256 (Recommended)".into(),
            asked_at: jiff::Timestamp::UNIX_EPOCH,
            deadline: None,
            state,
            request_id: None,
            decision,
            point: Default::default(),
            provisional_branch: None,
            parent_branch: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn block_kit_of_each_message_kind() {
        let qid = Qid::new("q-001").unwrap();
        insta::assert_json_snapshot!(
            "thread_parent",
            thread_parent(
                &t(),
                "Implement JWT authentication",
                Phase::Running,
                Some("AgentStarted"),
                &[
                    Link {
                        name: "code".into(),
                        url: "https://code.example.com/?folder=/b/ai-dev-api".into()
                    },
                    Link {
                        name: "attach".into(),
                        url: "tmux attach -t gaffer-ai-dev-api".into()
                    },
                ],
                Some(&crate::state::status::Usage {
                    requests: 3,
                    input: 12_000,
                    output: 300,
                    cost: 0.042,
                    ..Default::default()
                })
            )
        );
        insta::assert_json_snapshot!(
            "milestone",
            milestone(&Milestone {
                seq: 4,
                at: jiff::Timestamp::UNIX_EPOCH,
                kind: MilestoneKind::Checkpoint,
                text: "📝 edited app/auth.py <!channel>".into(),
                commit: Some("0123456789abcdef0123".into()),
            })
        );
        insta::assert_json_snapshot!(
            "question_open",
            question(
                &t(),
                &qid,
                &q(QuestionState::Provisional, None),
                "Wed 25 Nov 15:30 GMT"
            )
        );
        let human = Decision {
            choice: vec!["HS256".into()],
            decided_by: DecidedBy::Human,
            by: Some("U024BE7LH".into()),
            at: jiff::Timestamp::UNIX_EPOCH,
            note: Some("the gateway shares a secret".into()),
        };
        insta::assert_json_snapshot!(
            "question_answered",
            decided(&t(), &qid, &q(QuestionState::Overridden, Some(human)))
        );
        let default = Decision {
            choice: vec!["RS256 (Recommended)".into()],
            decided_by: DecidedBy::TimeoutDefault,
            by: None,
            at: jiff::Timestamp::UNIX_EPOCH,
            note: None,
        };
        insta::assert_json_snapshot!(
            "question_defaulted",
            decided(&t(), &qid, &q(QuestionState::Defaulted, Some(default)))
        );
        insta::assert_json_snapshot!(
            "question_batch",
            question_batch(
                &t(),
                "https://git.example.com/state/blob/main/projects/ai-dev/proj-api-service/tasks/jwt-auth/questions/batch-001.md",
                &[
                    Qid::new("q-001").unwrap(),
                    Qid::new("q-002").unwrap(),
                    Qid::new("q-003").unwrap()
                ]
            )
        );
        let pr = Link {
            name: "pr:domain-apis".into(),
            url: "https://github.com/example/domain-apis/pull/42".into(),
        };
        insta::assert_json_snapshot!(
            "approve",
            approve(&t(), std::slice::from_ref(&pr), "review-0a1b2c3d")
        );
        insta::assert_json_snapshot!(
            "approved",
            approved(&t(), std::slice::from_ref(&pr), "U024BE7LH")
        );
        insta::assert_json_snapshot!("promoted", promoted(&t(), std::slice::from_ref(&pr)));
        insta::assert_json_snapshot!(
            "links",
            links(&[
                Link {
                    name: "lab".into(),
                    url: "https://proj-api-service.builder.lab.example.com".into()
                },
                Link {
                    name: "attach".into(),
                    url: "tmux attach -t gaffer-ai-dev-proj-api-service".into()
                },
            ])
        );
    }

    #[test]
    fn agent_text_cannot_mention_and_is_cut_to_slacks_limits() {
        assert_eq!(
            escape("<!channel> & <@U1>", 100),
            "&lt;!channel&gt; &amp; &lt;@U1&gt;"
        );
        let long = "x".repeat(5000);
        let m = milestone(&Milestone {
            seq: 1,
            at: jiff::Timestamp::UNIX_EPOCH,
            kind: MilestoneKind::Todo,
            text: long,
            commit: None,
        });
        let text = m["blocks"][0]["text"]["text"].as_str().unwrap();
        assert_eq!(text.chars().count(), SECTION_TEXT);
        let mut many = q(QuestionState::Open, None);
        many.options = (0..30)
            .map(|i| QuestionOption {
                label: format!("option {i} {}", "y".repeat(100)),
                description: String::new(),
            })
            .collect();
        let v = question(&t(), &Qid::new("q-009").unwrap(), &many, "soon");
        let actions: Vec<&Value> = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "actions")
            .collect();
        assert_eq!(actions.len(), 2, "31 buttons in blocks of at most 25");
        for a in actions {
            for b in a["elements"].as_array().unwrap() {
                assert!(b["text"]["text"].as_str().unwrap().chars().count() <= BUTTON_TEXT);
            }
        }
    }
}
