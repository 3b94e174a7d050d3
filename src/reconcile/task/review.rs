//! InReview: a change (pull request) per repo with work, kept up to date; an approval from
//! an allowed person (an `approvals/` file, or an approving review of the current head);
//! changes requested go back to the builder; then the merges, in repo-name order, with the
//! head as a compare-and-swap, and `Promoted`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use minijinja::context;

use super::prompts::{self, Prompt};
use super::questions::{authorize, last_change, short_hash};
use super::{Plan, View, work};
use crate::forge::{Change, ChangeRequest, ForgeError, Review};
use crate::names::RepoName;
use crate::reconcile::{Action, Context, ReconcileError};
use crate::state::StatePath;
use crate::state::spec::{ForgeKind, RepoSpec, TaskSpec};
use crate::state::status::{ChangeStatus, MilestoneKind, Phase, Question, RepoStatus};

/// A review that asked for changes, with where.
struct Requested {
    repo: String,
    number: u64,
    review: Review,
}

/// Opens or updates the changes, waits for an approval, merges.
pub async fn in_review(
    ctx: &Context,
    view: &View,
    plan: &mut Plan,
) -> Result<Action, ReconcileError> {
    let (t, project, spec, settings) = (&view.t, &view.project, &view.spec, &view.settings);
    work::sync_heads(ctx, view, plan).await?;
    let forge = ctx.forge_for(project)?;
    let method = project
        .forge
        .as_ref()
        .map(|f| f.merge_method)
        .unwrap_or_default();
    let github = project
        .forge
        .as_ref()
        .is_some_and(|f| f.kind == ForgeKind::Github);
    let poll = || {
        if github {
            // Without webhooks, reviews are polled (conditional requests: free when unchanged).
            Action::requeue(ctx.settings.forge_poll)
        } else {
            Action::await_change()
        }
    };
    // Open (or find) a change per repo with commits beyond its base, in a stable order; push
    // new work and keep the body up to date.
    let mut repos: Vec<_> = project.repos.iter().collect();
    repos.sort_by(|a, b| a.name.value.cmp(&b.name.value));
    let questions: Vec<(String, &Question)> = view
        .questions
        .iter()
        .map(|(q, v)| (q.to_string(), v))
        .collect();
    let mut exported = false;
    for repo in &repos {
        let name = repo.name.value.clone();
        let Some(rs) = plan.status.repos.get(&name).cloned() else {
            continue;
        };
        let Some(head) = rs.head_commit.clone() else {
            continue;
        };
        if rs.change.is_none() && rs.head_commit == rs.base_commit {
            continue;
        }
        if rs.change.as_ref().is_some_and(|c| c.state == "merged") {
            continue;
        }
        let status_now = plan.status.clone();
        let lab = plan.lab.clone().or_else(|| view.lab.clone());
        let body = crate::forge::body::render(&crate::forge::body::BodyInput {
            task: t,
            spec,
            status: &status_now,
            progress: Some(&view.progress),
            questions: questions.clone(),
            lab: lab.as_ref(),
            repo: name.as_str(),
        })
        .map_err(ReconcileError::PullRequestBody)?;
        let digest = short_hash(&format!("{}\n{body}", spec.title));
        let pushed = rs.change.as_ref().and_then(|c| c.pushed.clone());
        if pushed.as_deref() == Some(head.as_str())
            && plan.status.effects.pr_body.get(&name) == Some(&digest)
        {
            continue;
        }
        if !exported {
            // The task's branches, where the push goes from (from a builder pod's volume
            // into gaffer's mirror; nothing to do for a builder on gaffer's disk).
            let (ws, tt, sp) = (ctx.workspaces.clone(), t.clone(), project.clone());
            super::blocking(move || ws.export(&tt, &sp)).await?;
            exported = true;
        }
        let req = ChangeRequest {
            repo_url: repo.url.clone(),
            mirror: ctx.workspaces.repo_git_dir(&t.project, project, repo),
            head_branch: rs.branch.clone(),
            base: repo.base.clone(),
            title: spec.title.clone(),
            body,
            repo: repo
                .github
                .clone()
                .or_else(|| crate::forge::github::repo_of_url(&repo.url)),
        };
        let change = match forge.open_change(&req).await {
            Ok(c) => c,
            Err(ForgeError::RateLimited { until }) => return Ok(rate_limited(plan, until)),
            Err(e) => return Err(e.into()),
        };
        let first = rs.change.is_none();
        if let Some(rs) = plan.status.repos.get_mut(&name) {
            rs.change = Some(ChangeStatus {
                number: change.number,
                url: Some(change.url.clone()),
                state: change.state.clone(),
                merge_commit: change.merge_commit.clone(),
                pushed: Some(change.head_sha.clone()),
            });
        }
        plan.status.effects.pr_body.insert(name.clone(), digest);
        plan.link(&format!("pr:{name}"), change.url.clone());
        if first {
            plan.milestone(
                MilestoneKind::Review,
                format!("🔀 {name}: change #{} opened", change.number),
                None,
            );
        } else if pushed.as_deref() != Some(change.head_sha.as_str()) {
            plan.milestone(
                MilestoneKind::Review,
                format!(
                    "⬆️ {name}: change #{} updated to {}",
                    change.number,
                    &change.head_sha[..change.head_sha.len().min(12)]
                ),
                None,
            );
        }
    }
    // Approval: an approvals/ file committed by an allowed author (or by a delegate for a
    // person it may decide for), or an approving review of the current head by an allowed
    // reviewer who is not the change's author.
    let mut approver = None;
    for (id, a) in &view.approvals {
        // A plan's approval or change request decides the plan, never the review.
        if a.plan.is_some() || !settings.authors.may_decide(&a.by) {
            continue;
        }
        let path = StatePath::Approval(t.clone(), id.clone()).to_path();
        let sig = last_change(ctx, view, &path).await?;
        match authorize(settings, sig.as_ref(), Some(a.by.as_str())) {
            Ok(who) if who == a.by => {
                // It approves exactly these heads, or nothing: an approval given in an earlier
                // round still approves the same commits (a merge the builder could not make
                // sends the task round again unchanged), never different ones.
                let (round, heads) = plan.status.review_target();
                if a.round.is_some_and(|r| r <= round) && a.heads == heads {
                    approver = Some(who);
                    break;
                }
                if !plan.status.effects.approvals_ignored.contains_key(id) {
                    plan.status
                        .effects
                        .approvals_ignored
                        .insert(id.clone(), who.clone());
                    let named = match a.round {
                        Some(r) => format!("review round {r} at {}", short_heads(&a.heads)),
                        None => "no review round (re-approve)".to_string(),
                    };
                    plan.milestone(
                        MilestoneKind::Error,
                        format!(
                            "⚠️ approval {id} by {who} ignored: it names {named}; the task is in \
                             review round {round} at {}",
                            short_heads(&heads)
                        ),
                        None,
                    );
                }
            }
            Ok(_) | Err(_) => {
                // Said once per approval file.
                if !plan.status.effects.approvals_ignored.contains_key(id) {
                    // The person's own email, but no signature of theirs: anyone can write it.
                    let unsigned = sig.as_ref().is_some_and(|s| {
                        s.author == a.by && s.signer.as_deref() != Some(a.by.as_str())
                    });
                    let who = sig.map(|s| shown_author(&s, settings)).unwrap_or_default();
                    plan.status
                        .effects
                        .approvals_ignored
                        .insert(id.clone(), who.clone());
                    let who = if who.is_empty() {
                        "someone unknown"
                    } else {
                        &who
                    };
                    let text = if unsigned {
                        format!(
                            "⚠️ approval {id} ignored: committed as {who} without a signature by \
                             a key listed for them in gaffer.yaml authors.signing_keys"
                        )
                    } else {
                        format!(
                            "⚠️ approval {id} ignored: committed by {who}, who may not approve as {}",
                            a.by
                        )
                    };
                    plan.milestone(MilestoneKind::Error, text, None);
                }
            }
        }
    }
    let mut requested: Vec<Requested> = Vec::new();
    let mut review_approvals = Vec::new();
    for (repo, cs, head, change) in unmerged(plan, &repos, spec) {
        let reviews = match forge.reviews(&change).await {
            Ok(r) => r,
            Err(ForgeError::RateLimited { until }) => return Ok(rate_limited(plan, until)),
            Err(e) => return Err(e.into()),
        };
        // Each reviewer's latest verdict counts (comments do not change it).
        let mut latest: BTreeMap<String, Review> = BTreeMap::new();
        for r in reviews.reviews {
            if matches!(
                r.state.as_str(),
                "APPROVED" | "CHANGES_REQUESTED" | "DISMISSED"
            ) {
                latest.insert(r.user.clone(), r);
            }
        }
        let mut approved_here = None;
        for (user, r) in latest {
            if user == reviews.author || !settings.authors.reviewers.contains(&user) {
                continue;
            }
            match r.state.as_str() {
                "APPROVED" if r.commit_id == head => approved_here = Some(user),
                "CHANGES_REQUESTED" if !plan.status.effects.reviews_sent.contains(&r.id) => {
                    requested.push(Requested {
                        repo: repo.name.value.to_string(),
                        number: cs.number,
                        review: r,
                    });
                }
                _ => {}
            }
        }
        review_approvals.push(approved_here);
    }
    if !requested.is_empty() {
        return changes_requested(ctx, plan, requested).await;
    }
    if approver.is_none()
        && let Some(Some(user)) = review_approvals.first()
    {
        // A review approves the task when it approves one of its changes and no other
        // change waits on changes.
        approver = Some(format!("{user} (GitHub review)"));
    }
    let Some(approver) = approver else {
        plan.waiting(
            "AwaitingApproval",
            "waiting for an approval (a review, gaffer approve or Slack)",
        );
        return Ok(poll());
    };
    for (repo, cs, head, change) in unmerged(plan, &repos, spec) {
        let name = repo.name.value.clone();
        match forge.merge(&change, &head, method).await {
            Ok(merged) => {
                if let Some(rs) = plan.status.repos.get_mut(&name)
                    && let Some(c) = rs.change.as_mut()
                {
                    c.state = "merged".into();
                    c.merge_commit = merged.merge_commit.clone();
                }
                plan.milestone(
                    MilestoneKind::Review,
                    format!("✅ {name}: change #{} merged", cs.number),
                    merged.merge_commit.clone(),
                );
            }
            Err(ForgeError::Blocked(why)) => {
                if why.contains("not mergeable") && !plan.status.effects.merge_asked.contains(&name)
                {
                    // Conflicts with the base: the builder can resolve them (once; after that
                    // the task waits here for a person).
                    plan.status.effects.merge_asked.insert(name.clone());
                    return merge_conflict(ctx, plan, &name, &repo.base, cs.number, &why).await;
                }
                let why = format!("{name} #{}: {why}", cs.number);
                if plan.status.message.as_deref() != Some(why.as_str()) {
                    plan.milestone(
                        MilestoneKind::Error,
                        format!("⛔ merge blocked: {why}"),
                        None,
                    );
                }
                plan.waiting("MergeBlocked", why);
                return Ok(poll());
            }
            Err(ForgeError::RateLimited { until }) => return Ok(rate_limited(plan, until)),
            Err(e) => return Err(e.into()),
        }
    }
    plan.transition(Phase::Promoted, "Merged", format!("approved by {approver}"));
    Ok(Action::await_change())
}

/// Heads as people read them: `repo 0123456789ab, …`.
fn short_heads(heads: &BTreeMap<RepoName, String>) -> String {
    if heads.is_empty() {
        return "no changes".into();
    }
    heads
        .iter()
        .map(|(r, h)| format!("{r} {}", &h[..h.len().min(12)]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who committed a decision, as people read it: the delegate bot when a bot committed it,
/// else the author.
fn shown_author(sig: &crate::store::Signature, settings: &crate::state::spec::Settings) -> String {
    let delegate = settings
        .authors
        .delegates()
        .iter()
        .any(|d| d.committer == sig.committer);
    if delegate {
        sig.committer.clone()
    } else {
        sig.author.clone()
    }
}

/// Asks the builder to bring the base branch in and resolve the conflicts, then back to
/// `Running` (the approval stays; the merge is tried again after the lab).
async fn merge_conflict(
    ctx: &Context,
    plan: &mut Plan,
    repo: &RepoName,
    base: &str,
    number: u64,
    why: &str,
) -> Result<Action, ReconcileError> {
    let text = prompts::render(
        Prompt::MergeConflict,
        context! { repo => repo.as_str(), number, why, base },
    )?;
    plan.milestone(
        MilestoneKind::Error,
        format!("⛔ {repo} #{number} conflicts with {base}; asked the builder to merge it in"),
        None,
    );
    plan.send_feedback(
        ctx,
        &format!("merge-{repo}-{number}"),
        &text,
        "MergeConflict",
        "asked the agent to resolve conflicts",
    )
    .await
}

/// The repos whose change is recorded and not merged yet, in `repos`' order: the repo, its
/// change, its head and the forge's view of it.
fn unmerged<'a>(
    plan: &Plan,
    repos: &[&'a RepoSpec],
    spec: &TaskSpec,
) -> Vec<(&'a RepoSpec, ChangeStatus, String, Change)> {
    repos
        .iter()
        .filter_map(|repo| {
            let rs = plan.status.repos.get(&repo.name.value)?;
            let (cs, head) = (rs.change.clone()?, rs.head_commit.clone()?);
            (cs.state != "merged").then(|| {
                let change = change_of_status(repo, rs, &cs, spec, &head);
                (*repo, cs, head, change)
            })
        })
        .collect()
}

/// The forge's view of a recorded change.
fn change_of_status(
    repo: &RepoSpec,
    rs: &RepoStatus,
    cs: &ChangeStatus,
    spec: &TaskSpec,
    head: &str,
) -> Change {
    Change {
        number: cs.number,
        repo_url: repo.url.clone(),
        head_branch: rs.branch.clone(),
        base: repo.base.clone(),
        title: spec.title.clone(),
        state: cs.state.clone(),
        head_sha: head.to_string(),
        merge_commit: None,
        url: cs.url.clone().unwrap_or_default(),
        repo: repo
            .github
            .clone()
            .or_else(|| crate::forge::github::repo_of_url(&repo.url)),
    }
}

/// Waits for the forge's rate limit to reset, saying so.
pub fn rate_limited(plan: &mut Plan, until: Timestamp) -> Action {
    plan.waiting(
        "RateLimited",
        format!("the forge's rate limit resets at {until}"),
    );
    let wait = until.duration_since(plan.now).as_secs().max(1) as u64;
    Action::requeue(Duration::from_secs(wait))
}

/// Sends review comments that ask for changes to the builder and goes back to `Running`.
async fn changes_requested(
    ctx: &Context,
    plan: &mut Plan,
    requested: Vec<Requested>,
) -> Result<Action, ReconcileError> {
    let reviews: Vec<_> = requested
        .iter()
        .map(|r| {
            context! {
                user => &r.review.user, repo => &r.repo, number => r.number,
                body => r.review.body.trim(), comments => &r.review.comments,
            }
        })
        .collect();
    let text = prompts::render(Prompt::ChangesRequested, context! { reviews })?;
    let ids: Vec<String> = requested.iter().map(|r| r.review.id.to_string()).collect();
    // Recorded with the prompt, in one status commit (a failed send records nothing).
    for r in &requested {
        plan.status.effects.reviews_sent.insert(r.review.id);
        plan.milestone(
            MilestoneKind::Review,
            format!(
                "💬 {} asked for changes on {} #{}; sent to the builder",
                r.review.user, r.repo, r.number
            ),
            None,
        );
    }
    plan.send_feedback(
        ctx,
        &format!("review-{}", ids.join("-")),
        &text,
        "ChangesRequested",
        "review comments sent back to the agent",
    )
    .await
}
