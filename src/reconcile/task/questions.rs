//! Questions, the way docs/questions.md tells them: what the builder asks becomes a question
//! file with a deadline in business hours; several at once also become one document to
//! annotate; people's answers (answer files, annotated documents) count only from allowed
//! people; a passed deadline applies the recommended option; and each decision reaches the
//! builder once, confirming or setting aside the provisional work.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use minijinja::context;

use super::prompts::{self, Prompt};
use super::work::{self, BranchedOff};
use super::{Plan, View, blocking};
use crate::agent::{AskKind, AskedQuestion};
use crate::names::{Id, Qid};
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::StatePath;
use crate::state::accept::{Answer, Refusal};
use crate::state::effects::Applied;
use crate::state::spec::{ContinuePolicy, OnTimeout, PermissionReply, Settings};
use crate::state::status::{
    DecidedBy, Decision, MilestoneKind, Phase, Question, QuestionKind, QuestionState,
};
use crate::store::Signature;

/// The question policy in force: task overrides, then project, then gaffer.yaml.
pub fn policy(view: &View) -> (jiff::SignedDuration, OnTimeout, ContinuePolicy) {
    let g = &view.settings.questions;
    let p = view.project.questions.clone().unwrap_or_default();
    let t = view.spec.questions.clone().unwrap_or_default();
    let timeout = t.timeout.or(p.timeout).unwrap_or(g.timeout);
    (
        timeout.get(),
        t.on_timeout.or(p.on_timeout).unwrap_or(g.on_timeout),
        t.continue_.or(p.continue_).unwrap_or(g.continue_),
    )
}

/// Who a decision counts as coming from, given who committed it and whom it names (`by:`):
/// a delegate (`authors.delegates`; by default the Slack bot) committing for someone it may
/// decide for, or an author listed in `authors.answers` whose commit is signed by a key
/// listed for them (`authors.signing_keys`) — or unsigned, only with
/// `authors.accept_unsigned: true`. A commit author alone proves nothing: anyone who can
/// push can write any email there.
pub fn authorize(
    settings: &Settings,
    commit: Option<&Signature>,
    by: Option<&str>,
) -> Result<String, String> {
    let Some(sig) = commit else {
        return Err("answer ignored: its commit author could not be read".into());
    };
    let delegates = settings.authors.delegates();
    let slack_default = settings.authors.delegates.is_empty();
    if let Some(d) = delegates.iter().find(|d| d.committer == sig.committer) {
        return match by {
            Some(u) if d.for_.iter().any(|p| p == u) => Ok(u.to_string()),
            Some(u) if slack_default => Err(format!(
                "answer from Slack user {u} ignored: not listed in gaffer.yaml authors.slack_users"
            )),
            Some(u) => Err(format!(
                "answer from {} for {u} ignored: {u} is not in its gaffer.yaml authors.delegates",
                d.committer
            )),
            None if slack_default => {
                Err("answer from the Slack bot ignored: it names no Slack user (by:)".into())
            }
            None => Err(format!(
                "answer from {} ignored: it names nobody (by:)",
                d.committer
            )),
        };
    }
    if !settings.authors.answers.contains(&sig.author) {
        return Err(format!(
            "answer committed by {} ignored: not listed in gaffer.yaml authors.answers",
            sig.author
        ));
    }
    match &sig.signer {
        Some(signer) if *signer == sig.author => Ok(sig.author.clone()),
        Some(signer) => Err(format!(
            "answer committed by {} ignored: it is signed by {signer}'s key, not theirs",
            sig.author
        )),
        None if settings.authors.accept_unsigned => Ok(sig.author.clone()),
        None => Err(format!(
            "answer committed by {} ignored: its commit is not signed by a key listed for \
             them in gaffer.yaml authors.signing_keys (or set authors.accept_unsigned: true)",
            sig.author
        )),
    }
}

/// Who made the last change of `path` up to the head this reconcile reads.
pub async fn last_change(
    ctx: &Context,
    view: &View,
    path: &str,
) -> Result<Option<Signature>, ReconcileError> {
    let keys: Vec<String> = view
        .settings
        .authors
        .signing_keys
        .iter()
        .map(|k| k.value.clone())
        .collect();
    match view.head.as_deref() {
        Some(head) => Ok(ctx.store.last_change(head, path, &keys).await?),
        None => Ok(None),
    }
}

/// Turns what the builder asked into a question file (and, going on at once, its
/// provisional branch). Returns its deadline.
pub async fn ask(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
    mut asked: AskedQuestion,
) -> Result<(Qid, Timestamp), ReconcileError> {
    let (timeout, _, cont) = policy(view);
    if asked.kind == AskKind::Permission {
        // Permission requests recommend the project's default reply.
        let default = match view.project.agent.permission_default {
            PermissionReply::Once => "once",
            PermissionReply::Always => "always",
            PermissionReply::Reject => "reject",
        };
        if let Some(i) = asked.options.iter().position(|o| o.label == default) {
            let o = asked.options.remove(i);
            asked.options.insert(0, o);
        }
    }
    // The agent's question is untrusted input: make it a valid question file (unique
    // labels; free text when there are no options), or it would be dropped on re-read and
    // the agent would wait forever.
    let mut seen = BTreeSet::new();
    asked.options.retain(|o| seen.insert(o.label.clone()));
    if asked.options.is_empty() {
        asked.custom = true;
    }
    let qid = Qid::new(format!("q-{:03}", plan.questions.len() + 1))?;
    let deadline = crate::hours::deadline(plan.now, timeout, &view.settings.business_hours)?;
    let state = match cont {
        ContinuePolicy::Immediately => QuestionState::Provisional,
        ContinuePolicy::AtDeadline => QuestionState::Open,
    };
    // Going on at once: the work from here lands on a provisional branch.
    let b = if state == QuestionState::Provisional {
        Some(work::branch_off(ctx, view, &qid).await?)
    } else {
        None
    };
    let q = Question {
        kind: match asked.kind {
            AskKind::Question => QuestionKind::Question,
            AskKind::Permission => QuestionKind::Permission,
        },
        text: asked.text.clone(),
        header: asked.header.clone(),
        recommended: asked.recommended(),
        options: asked.options.clone(),
        multiple: asked.multiple,
        custom: asked.custom,
        asked_at: plan.now,
        deadline: Some(deadline),
        state,
        request_id: Some(asked.request_id.clone()),
        decision: None,
        point: b.as_ref().map(|b| b.point.clone()).unwrap_or_default(),
        provisional_branch: b.as_ref().map(|b| b.branch.clone()),
        parent_branch: b.map(|b| b.parent),
        problems: Vec::new(),
    };
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let when = deadline
        .to_zoned(tz)
        .strftime("%a %d %b %H:%M %Z")
        .to_string();
    let going_on = if state == QuestionState::Provisional {
        format!("; going on with {}", q.recommended)
    } else {
        String::new()
    };
    plan.milestone(
        MilestoneKind::Question,
        format!(
            "❓ {qid}: {} (recommended: {}; deadline {when}{going_on})",
            q.text, q.recommended
        ),
        None,
    );
    plan.question_changed(&qid, q);
    Ok((qid, deadline))
}

/// Several questions waiting at once: one document to annotate them all.
pub fn question_document(
    view: &View,
    plan: &mut Plan,
    asked_now: usize,
) -> Result<(), ReconcileError> {
    let effects = &plan.status.effects;
    let waiting: Vec<(Qid, Question)> = plan
        .questions
        .iter()
        .filter(|(q, qq)| {
            matches!(qq.state, QuestionState::Open | QuestionState::Provisional)
                && !effects.in_doc.contains_key(*q)
                && !effects.moot.contains_key(*q)
        })
        .map(|(q, qq)| (q.clone(), qq.clone()))
        .collect();
    let many = match plan.phase() {
        // Planning: more open questions than `plan.document_over` go into one document.
        Phase::Planning => {
            waiting.len() > super::planning::policy(view).document_over as usize && asked_now > 0
        }
        _ => waiting.len() >= 3 || (asked_now >= 2 && waiting.len() >= 2),
    };
    if !many {
        return Ok(());
    }
    let n = view.question_docs.len() + plan.docs.len() + 1;
    let batch = Id::new(format!("batch-{n:03}"))?;
    let tz = view
        .settings
        .business_hours
        .time_zone()
        .unwrap_or(jiff::tz::TimeZone::UTC);
    let text = crate::state::doc::render(&view.t.to_string(), &view.spec.title, &waiting, &tz);
    for (q, _) in &waiting {
        plan.status.effects.in_doc.insert(q.clone(), batch.clone());
    }
    plan.milestone(
        MilestoneKind::Question,
        format!(
            "🗒 questions/{batch}.md: {} questions to annotate in one place",
            waiting.len()
        ),
        None,
    );
    plan.docs.push((batch, text));
    Ok(())
}

/// An answer as given, from an answer file or an annotated document.
struct Given {
    qid: Qid,
    choice: Vec<String>,
    free_text: bool,
    note: Option<String>,
    by: Option<String>,
    at: Option<Timestamp>,
    path: String,
}

/// Notes a problem on a question once.
fn problem(plan: &mut Plan, qid: &Qid, mut q: Question, why: String) {
    if !q.problems.contains(&why) {
        q.problems.push(why);
        plan.question_changed(qid, q);
    }
}

/// People's answers: answer files, then annotated question documents for questions that
/// have no answer file; each becomes a decision once its commit's author may answer.
pub async fn people_answers(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let t = &view.t;
    let mut given: Vec<Given> = Vec::new();
    for (qid, answer) in &view.answers {
        let (choice, free_text) = match (&answer.choice, &answer.text) {
            (Some(c), _) => (
                c.value.labels().into_iter().map(str::to_string).collect(),
                false,
            ),
            (None, Some(text)) => (vec![text.clone()], true),
            (None, None) => continue,
        };
        given.push(Given {
            qid: qid.clone(),
            choice,
            free_text,
            note: answer.note.clone(),
            by: answer.by.clone(),
            at: answer.at,
            path: StatePath::Answer(t.clone(), qid.clone()).to_path(),
        });
    }
    for (batch, text) in &view.question_docs {
        let path = StatePath::QuestionDoc(t.clone(), batch.clone()).to_path();
        for (qid, a) in crate::state::doc::parse(text) {
            let Some(q) = plan.questions.get(&qid).cloned() else {
                continue;
            };
            if view.answers.contains_key(&qid) {
                continue;
            }
            match crate::state::doc::interpret(&a, &q) {
                Ok(Some(ans)) => given.push(Given {
                    free_text: !ans.choice.iter().all(|c| q.has_option(c)),
                    qid,
                    choice: ans.choice,
                    note: ans.note,
                    by: None,
                    at: None,
                    path: path.clone(),
                }),
                Ok(None) => {}
                Err(e) => problem(
                    plan,
                    &qid,
                    q,
                    format!("{path}:{e}; nothing was answered from it"),
                ),
            }
        }
    }
    for g in given {
        let qid = &g.qid;
        let Some(q) = plan.questions.get(qid).cloned() else {
            continue;
        };
        let choice = g.choice;
        let already = q.decision.as_ref().is_some_and(|d| {
            d.decided_by == DecidedBy::Human && d.choice == choice && d.note == g.note
        });
        if already {
            continue;
        }
        let sig = last_change(ctx, view, &g.path).await?;
        if sig.as_ref().map(|s| s.author.as_str())
            == Some(crate::store::Identity::reconciler().email.as_str())
        {
            // A document as generated, not annotated by anyone yet.
            continue;
        }
        let who = match authorize(&view.settings, sig.as_ref(), g.by.as_deref()) {
            Ok(who) => who,
            Err(why) => {
                problem(plan, qid, q, why);
                continue;
            }
        };
        // Free text that names an option counts as choosing it.
        let text = choice.join(", ");
        let answer = if g.free_text && !choice.iter().all(|c| q.has_option(c)) {
            Answer::Text(&text)
        } else {
            Answer::Choice(&choice)
        };
        if let Err(refusal) = q.accepts(&answer) {
            let why = match refusal {
                Refusal::TooMany(_) => format!("answer {text:?} ignored: {refusal}"),
                Refusal::NotAnOption(_) | Refusal::NoFreeText => {
                    format!("answer {text:?} ignored: not one of the options")
                }
            };
            problem(plan, qid, q, why);
            continue;
        }
        let mut q = q;
        let overriding = matches!(
            q.state,
            QuestionState::Defaulted | QuestionState::Provisional | QuestionState::Overridden
        ) && choice != vec![q.recommended.clone()];
        q.state = if overriding {
            QuestionState::Overridden
        } else {
            QuestionState::Answered
        };
        q.decision = Some(Decision {
            choice: choice.clone(),
            decided_by: DecidedBy::Human,
            by: Some(who.clone()),
            at: g.at.unwrap_or(plan.now),
            note: g.note.clone(),
        });
        let source = if g.path.ends_with(".md") {
            format!(" in {}", g.path.rsplit('/').next().unwrap_or(""))
        } else {
            String::new()
        };
        plan.milestone(
            MilestoneKind::Question,
            format!("✅ {qid} answered {} by {who}{source}", choice.join(", ")),
            None,
        );
        plan.question_changed(qid, q);
    }
    Ok(())
}

/// Applies passed deadlines (the recommended option, as `timeout-default`) and returns the
/// nearest deadline still to come.
pub async fn deadlines(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Option<Timestamp>, ReconcileError> {
    let (_, on_timeout, _) = policy(view);
    let mut next_deadline: Option<Timestamp> = None;
    for (qid, q) in plan.questions.clone() {
        if !matches!(q.state, QuestionState::Open | QuestionState::Provisional) {
            continue;
        }
        let Some(deadline) = q.deadline else { continue };
        if deadline <= plan.now && on_timeout == OnTimeout::Recommended {
            let mut q = q;
            if q.provisional_branch.is_none() {
                // The agent goes on from here with the default: mark the point, so a later
                // human answer can still set this work aside.
                let BranchedOff {
                    branch,
                    parent,
                    point,
                } = work::branch_off(ctx, view, &qid).await?;
                q.point = point;
                q.provisional_branch = Some(branch);
                q.parent_branch = Some(parent);
            }
            q.state = QuestionState::Defaulted;
            q.decision = Some(Decision {
                choice: vec![q.recommended.clone()],
                decided_by: DecidedBy::TimeoutDefault,
                by: None,
                at: plan.now,
                note: None,
            });
            plan.milestone(
                MilestoneKind::Question,
                format!("⏰ {qid} defaulted to {} at the deadline", q.recommended),
                None,
            );
            plan.question_changed(&qid, q);
        } else if deadline > plan.now {
            next_deadline = Some(next_deadline.map_or(deadline, |d: Timestamp| d.min(deadline)));
        }
    }
    Ok(next_deadline)
}

/// Applies decisions to the work and relays them to the agent, once each: the first answer
/// the agent hears; a confirmation fast-forwards the parent branch; a different answer sets
/// the provisional work aside and tells the agent.
pub async fn apply_decisions(
    ctx: &Context,
    view: &View,
    agent: &dyn crate::agent::AgentRuntime,
    session: &str,
    plan: &mut Plan,
) -> Result<(), ReconcileError> {
    let t = &view.t;
    let qids: Vec<Qid> = plan.questions.keys().cloned().collect();
    for qid in qids {
        // Read afresh: confirming an outer question re-parents the ones asked on top of it.
        let Some(q) = plan.questions.get(&qid).cloned() else {
            continue;
        };
        if plan.status.effects.moot.contains_key(&qid) {
            continue;
        }
        let Some(request) = q.request_id.clone() else {
            continue;
        };
        let decision = q
            .decision
            .as_ref()
            .map(|d| (d.choice.clone(), d.note.clone()));
        let provisional = q.provisional_branch.clone().zip(q.parent_branch.clone());
        // The agent hears one answer per question, once: the decision, or the recommended
        // option when the work goes on provisionally. What it heard first is what its work
        // since then is based on.
        if !plan.status.effects.relayed.contains_key(&qid) {
            let first = match (&decision, &provisional) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(_)) => Some((vec![q.recommended.clone()], None)),
                _ => None,
            };
            if let Some((choice, note)) = first {
                let reply = crate::agent::Reply {
                    request_id: &request,
                    question: &q.text,
                    choice: &choice,
                    note: note.as_deref(),
                };
                agent.answer(t, session, &reply).await?;
                tracing::debug!(target: "gaffer::hop", hop = "answer-delivered", task = %t, %qid);
                plan.status.effects.relayed.insert(qid.clone(), choice);
            }
        }
        let (Some((branch, parent)), Some((choice, note))) = (provisional, decision) else {
            continue;
        };
        let Some(heard) = plan.status.effects.relayed.get(&qid) else {
            continue;
        };
        let want = if *heard == choice {
            Applied::Confirmed(choice.clone())
        } else {
            Applied::SetAside(choice.clone())
        };
        if plan.status.effects.applied.get(&qid) == Some(&want) {
            continue;
        }
        let ws = ctx.workspaces.clone();
        let (tt, pp) = (t.clone(), view.project.clone());
        if matches!(want, Applied::Confirmed(_)) {
            let (par, br) = (parent.clone(), branch.clone());
            let tips = blocking(move || ws.confirm(&tt, &pp, &par, &br)).await?;
            plan.milestone(
                MilestoneKind::Question,
                format!("✅ {qid} confirmed: {parent} fast-forwarded to {branch}"),
                tips.values().next().cloned(),
            );
            // Questions asked on top of this one now build on its parent.
            for (other, oq) in plan.questions.clone() {
                if oq.parent_branch.as_deref() == Some(branch.as_str()) {
                    let mut oq = oq;
                    oq.parent_branch = Some(parent.clone());
                    plan.question_changed(&other, oq);
                }
            }
        } else {
            // A different answer: stop the agent, keep its work since the question on the
            // provisional branch, put the worktree back where the question was asked, tell
            // the agent. Replayed after a crash (or a status write that did not land) once
            // the agent was told, none of it is done again: stopping it would cut off its
            // reply, and setting aside again would move the set-aside branch onto the work
            // done for the person's answer.
            let id = format!("override-{qid}-{}", short_hash(&applied_key(&want)));
            let kept_commit = if agent.delivered(t, session, &id).await? {
                None
            } else {
                agent.interrupt(t, session).await?;
                crate::crash::point("override:stopped");
                let (par, br, pt) = (parent.clone(), branch.clone(), q.point.clone());
                let kept = blocking(move || ws.set_aside(&tt, &pp, &par, &br, &pt)).await?;
                let kept_at = kept
                    .iter()
                    .map(|(r, c)| format!("{r} {}", &c[..c.len().min(12)]))
                    .collect::<Vec<_>>()
                    .join(", ");
                let text = prompts::render(
                    Prompt::Overridden,
                    context! {
                        question => &q.text, choice => choice.join(", "), note,
                        recommended => &q.recommended, branch => &branch, kept_at,
                        parent => &parent,
                    },
                )?;
                agent.send(t, session, &id, &text).await?;
                crate::crash::point("override:prompted");
                kept.values().next().cloned()
            };
            plan.record_prompt(&id);
            // Whatever the agent reported done is undone: it works again.
            plan.status.effects.agent_done = None;
            plan.milestone(
                MilestoneKind::Question,
                format!(
                    "↩ {qid}: work since the question set aside on {branch}; worktree reset to the question point"
                ),
                kept_commit,
            );
            // Questions asked during the work set aside no longer apply.
            for (other, oq) in plan.questions.clone() {
                if other != qid
                    && oq.asked_at >= q.asked_at
                    && matches!(oq.state, QuestionState::Provisional | QuestionState::Open)
                {
                    let mut oq = oq;
                    oq.state = QuestionState::Overridden;
                    let why = format!("asked during work set aside by the answer to {qid}");
                    if !oq.problems.contains(&why) {
                        oq.problems.push(why);
                    }
                    plan.status.effects.moot.insert(other.clone(), qid.clone());
                    plan.question_changed(&other, oq);
                }
            }
        }
        plan.status.effects.applied.insert(qid.clone(), want);
    }
    Ok(())
}

/// The ledger value of `applied.<qid>`, which the override prompt's id is derived from
/// (ids stay what earlier releases made, so a replay after an upgrade is recognised).
fn applied_key(a: &Applied) -> String {
    let (kind, c) = match a {
        Applied::Confirmed(c) => ("confirm", c),
        Applied::SetAside(c) => ("aside", c),
    };
    format!("{kind}:{}", c.join("\u{1f}"))
}

/// A short stable digest, for prompt ids and body digests.
pub fn short_hash(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..4])
}

/// A person's answer that came after the work went on (a default applied at the deadline,
/// then someone chose differently): back to `Running`, where answers are applied and the
/// work since the question is set aside. Once per answer.
pub fn late_answer(view: &View, plan: &mut Plan) -> Option<Action> {
    for (qid, a) in &view.answers {
        let Some(q) = plan.questions.get(qid).or_else(|| view.questions.get(qid)) else {
            continue;
        };
        let mut chosen: Vec<String> = a
            .choice
            .as_ref()
            .map(|c| c.value.labels().into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        if chosen.is_empty()
            && let Some(t) = &a.text
        {
            chosen.push(t.clone());
        }
        let differs = match &q.decision {
            Some(d) => d.decided_by == DecidedBy::TimeoutDefault && d.choice != chosen,
            None => false,
        };
        let seen = format!("{chosen:?} {:?}", a.by);
        if differs && plan.status.effects.late_answers.get(qid) != Some(&seen) {
            plan.status.effects.late_answers.insert(qid.clone(), seen);
            plan.transition(
                Phase::Running,
                "AnswerChanged",
                format!("{qid} answered after its default was applied; applying it"),
            );
            return Some(Action::requeue(Duration::ZERO));
        }
    }
    None
}

/// Questions with provisional work that still waits for its answer (or deadline).
pub fn pending_provisional(plan: &Plan) -> Vec<String> {
    plan.questions
        .iter()
        .filter(|(q, qq)| {
            qq.state == QuestionState::Provisional && !plan.status.effects.moot.contains_key(*q)
        })
        .map(|(q, _)| q.to_string())
        .collect()
}

/// Whether a question waits for a person (the builder blocked on it).
pub fn any_open(questions: &BTreeMap<Qid, Question>) -> bool {
    questions.values().any(|q| q.state == QuestionState::Open)
}
