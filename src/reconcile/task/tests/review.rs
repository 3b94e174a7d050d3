//! Deploying, Testing and InReview.

use super::*;
use crate::forge::Review;
use crate::state::status::ChangeStatus;

/// The task's change is open at the current head.
fn opened(w: &mut World) {
    w.edit_status(|s| {
        let rs = s.repos.values_mut().next().unwrap();
        rs.head_commit = Some("h".repeat(40));
        rs.change = Some(ChangeStatus {
            number: 7,
            url: Some("https://forge/api/pull/7".into()),
            state: "open".into(),
            merge_commit: None,
            pushed: Some("h".repeat(40)),
        });
    });
}

/// An approval by `by` of review round `round` at heads `api: <c * 40>`.
fn bound(by: &str, round: u32, c: char) -> String {
    format!(
        "by: {by}\nround: {round}\nheads: {{api: '{}'}}\n",
        c.to_string().repeat(40)
    )
}

fn review(id: u64, user: &str, state: &str, commit: &str) -> Review {
    Review {
        id,
        user: user.into(),
        state: state.into(),
        body: "Please rename it.".into(),
        commit_id: commit.into(),
        comments: vec!["app.py:3: here".into()],
    }
}

/// The task has waited for an unreachable lab three times already.
fn waited_for_the_lab(w: &mut World) {
    w.edit_status(|s| {
        s.attempts = 3;
        s.conditions.push(crate::state::status::Condition {
            type_: "LabReachable".into(),
            status: crate::state::status::ConditionStatus::False,
            reason: "LabUnreachable".into(),
            message: String::new(),
            last_transition_time: NOW.parse().unwrap(),
        });
    });
}

fn table() -> Vec<Case> {
    vec![
        Case {
            name: "no lab: straight to review",
            phase: Phase::Deploying,
            given: |w| {
                w.file("projects/demo/api/project.yaml", "repos:\n  - {name: api, url: 'https://example.com/api.git'}\nagent: {runtime: scripted}\n");
            },
            then_phase: Phase::InReview,
            reason: Some("NoLab"),
            action: requeue(0),
            check: |w, _| assert!(w.lab.deploys.lock().unwrap().is_empty()),
        },
        Case {
            name: "a deploy records the lab and goes to the tests",
            phase: Phase::Deploying,
            given: none,
            then_phase: Phase::Testing,
            reason: Some("Deployed"),
            action: requeue(0),
            check: |w, p| {
                let d = w.lab.deploys.lock().unwrap()[0].clone();
                assert_eq!(
                    d.overlay,
                    PathBuf::from("/builders/demo-api/repos/api/deploy")
                );
                assert_eq!(d.host, "api.builder.lab.example.com");
                let lab = p.lab.as_ref().unwrap();
                assert_eq!(lab.namespace, "demo-api-lab");
                assert_eq!(lab.last_deploy.as_ref().unwrap().task.as_str(), "jwt");
                assert!(
                    p.status
                        .links
                        .iter()
                        .any(|l| l.name == "lab" && l.url == "https://api.builder.lab.example.com")
                );
                assert!(milestones(p)[0].starts_with("🚀 deployed 0 objects to demo-api-lab"));
            },
        },
        Case {
            name: "no cluster answers: the task waits in Deploying, says so once, tests nothing",
            phase: Phase::Deploying,
            given: |w| *w.lab.unreachable.lock().unwrap() = true,
            then_phase: Phase::Deploying,
            reason: Some("LabUnreachable"),
            action: requeue(10),
            check: |w, p| {
                assert_eq!(
                    condition(p, "LabReachable"),
                    Some(("False".into(), "LabUnreachable".into()))
                );
                assert!(milestones(p)[0].starts_with("⚠️ the lab is unreachable"));
                assert!(w.lab.results.lock().unwrap().is_empty() || p.lab.is_none());
                assert_eq!(p.status.attempts, 1);
            },
        },
        Case {
            name: "still unreachable: a longer pause, nothing said again",
            phase: Phase::Deploying,
            given: |w| {
                *w.lab.unreachable.lock().unwrap() = true;
                waited_for_the_lab(w);
            },
            then_phase: Phase::Deploying,
            reason: Some("LabUnreachable"),
            action: requeue(80),
            check: |_, p| assert!(milestones(p).is_empty()),
        },
        Case {
            name: "the cluster answers again: deployed, condition cleared, on to the tests",
            phase: Phase::Deploying,
            given: |w| {
                waited_for_the_lab(w);
            },
            then_phase: Phase::Testing,
            reason: Some("Deployed"),
            action: requeue(0),
            check: |_, p| {
                assert_eq!(
                    condition(p, "LabReachable").map(|c| c.0),
                    Some("True".into())
                );
                assert_eq!(p.status.attempts, 0);
            },
        },
        Case {
            name: "rendered, not deployed: the thread says so and no test runs",
            phase: Phase::Deploying,
            given: |w| {
                w.lab = Arc::new(FakeLab {
                    rendered: true,
                    ..FakeLab::default()
                });
            },
            then_phase: Phase::InReview,
            reason: Some("NotDeployed"),
            action: requeue(0),
            check: |_, p| {
                let said = milestones(p);
                assert!(
                    said[0].starts_with("📄 rendered 0 objects for demo-api-lab, not deployed")
                );
                assert!(said.iter().any(|m| m.starts_with("🧪 lab tests not run")));
            },
        },
        Case {
            name: "rendered, with lab.test_without_deploy: the tests run all the same",
            phase: Phase::Deploying,
            given: |w| {
                w.lab = Arc::new(FakeLab {
                    rendered: true,
                    ..FakeLab::default()
                });
                w.file(
                    "projects/demo/api/project.yaml",
                    &PROJECT.replace("test: pytest}", "test: pytest, test_without_deploy: true}"),
                );
            },
            then_phase: Phase::Testing,
            reason: Some("Deployed"),
            action: requeue(0),
            check: |_, _| {},
        },
        Case {
            name: "a failed deploy fails the task in Deploying",
            phase: Phase::Deploying,
            given: |w| *w.lab.fail.lock().unwrap() = Some("unreachable".into()),
            then_phase: Phase::Failed,
            reason: Some("DeployFailed"),
            action: Action::await_change(),
            check: |_, p| assert_eq!(p.status.effects.failed_in, Some(Phase::Deploying)),
        },
        Case {
            name: "an overlay the lab refuses goes back to the builder, located",
            phase: Phase::Deploying,
            given: |w| {
                *w.lab.refuse.lock().unwrap() = Some(
                    "api/deploy/kustomization.yaml:3:5: resources entry \"../../x\" points outside the workspace".into(),
                );
            },
            then_phase: Phase::Running,
            reason: Some("LabNotReady"),
            action: requeue(0),
            check: |w, p| {
                assert_eq!(p.status.effects.test_attempts, 1);
                let message = p.status.message.clone().unwrap_or_default();
                assert!(
                    message.contains("kustomization.yaml:3:5: resources entry"),
                    "{message}"
                );
                assert!(
                    milestones(p)
                        .iter()
                        .any(|m| m.starts_with("💥 the lab deploy failed: api/deploy: "))
                );
                assert!(
                    w.agent
                        .sent_text("feedback-lab")
                        .starts_with("Deploying your work to the lab failed.\napi/deploy: ")
                );
            },
        },
        Case {
            name: "a refused overlay after the retries fails the task",
            phase: Phase::Deploying,
            given: |w| {
                *w.lab.refuse.lock().unwrap() = Some("ConfigMap big is 2000000 bytes".into());
                w.edit_status(|s| s.effects.test_attempts = 2);
            },
            then_phase: Phase::Failed,
            reason: Some("DeployFailed"),
            action: Action::await_change(),
            check: |_, p| assert_eq!(p.status.effects.failed_in, Some(Phase::Deploying)),
        },
        Case {
            name: "passing tests: review",
            phase: Phase::Testing,
            given: |w| {
                w.edit_status(|s| s.effects.test_attempts = 1);
            },
            then_phase: Phase::InReview,
            reason: Some("TestsPassed"),
            action: requeue(0),
            check: |_, p| {
                assert_eq!(p.status.effects.test_attempts, 0);
                assert_eq!(p.lab.as_ref().unwrap().tests.as_ref().unwrap().passed, 3);
                // Entering review starts a round; approvals name it.
                assert_eq!(p.status.review_round, 1);
            },
        },
        Case {
            name: "failing tests go back to the builder",
            phase: Phase::Testing,
            given: |w| w.lab.results.lock().unwrap().push_back(results(1)),
            then_phase: Phase::Running,
            reason: Some("TestsFailed"),
            action: requeue(0),
            check: |w, p| {
                assert_eq!(p.status.effects.test_attempts, 1);
                assert_eq!(w.agent.sent_ids(), ["feedback-tests-1"]);
                assert!(
                    w.agent.sent_text("feedback-tests").starts_with(
                        "The lab tests failed (1 of 3):\n- test_0: assert 401 == 200\n"
                    )
                );
            },
        },
        Case {
            name: "tests still failing after the retries fail the task",
            phase: Phase::Testing,
            given: |w| {
                w.lab.results.lock().unwrap().push_back(results(2));
                w.edit_status(|s| s.effects.test_attempts = 2);
            },
            then_phase: Phase::Failed,
            reason: Some("TestsFailing"),
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(p.status.effects.failed_in, Some(Phase::Testing));
                assert!(w.agent.sent.lock().unwrap().is_empty());
            },
        },
        Case {
            name: "review opens a change per repo with work and waits for approval",
            phase: Phase::InReview,
            given: none,
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(w.forge.opened.lock().unwrap().len(), 1);
                assert!(
                    p.status
                        .effects
                        .pr_body
                        .contains_key(&RepoName::new("api").unwrap())
                );
                assert_eq!(milestones(p), ["🔀 api: change #7 opened"]);
                assert!(p.status.links.iter().any(|l| l.name == "pr:api"));
            },
        },
        Case {
            name: "an approval file by a listed person merges and promotes",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
            },
            then_phase: Phase::Promoted,
            reason: Some("Merged"),
            action: Action::await_change(),
            check: |w, p| {
                assert_eq!(*w.forge.merged.lock().unwrap(), [7]);
                assert_eq!(
                    p.status.message.as_deref(),
                    Some("approved by alice@example.com")
                );
            },
        },
        Case {
            name: "an approval naming a listed person but committed by someone else is ignored, once said",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/forged.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/forged.yaml",
                    "builder@example.com",
                    "builder@example.com",
                );
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, p| {
                assert!(w.forge.merged.lock().unwrap().is_empty());
                let id = crate::names::Id::new("forged").unwrap();
                assert_eq!(
                    p.status.effects.approvals_ignored[&id],
                    "builder@example.com"
                );
                assert_eq!(
                    milestones(p),
                    [
                        "⚠️ approval forged ignored: committed by builder@example.com, who may not approve as alice@example.com"
                    ]
                );
            },
        },
        Case {
            name: "an unsigned approval under the allowed person's email is ignored, once said",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/forged.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/forged.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
                w.signed_by("approvals/forged.yaml", None);
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, p| {
                assert!(w.forge.merged.lock().unwrap().is_empty());
                assert_eq!(
                    milestones(p),
                    [
                        "⚠️ approval forged ignored: committed as alice@example.com without a signature by a key listed for them in gaffer.yaml authors.signing_keys"
                    ]
                );
            },
        },
        Case {
            name: "an_approval_of_other_heads_does_not_approve_this_change",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 0, 'c'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, p| {
                assert!(w.forge.merged.lock().unwrap().is_empty());
                assert_eq!(
                    milestones(p),
                    [
                        "⚠️ approval a1 by alice@example.com ignored: it names review round 0 at api cccccccccccc; the task is in review round 0 at api hhhhhhhhhhhh"
                    ]
                );
            },
        },
        Case {
            name: "an approval of a later round than the task's is not one",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 3, 'h'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, _| assert!(w.forge.merged.lock().unwrap().is_empty()),
        },
        Case {
            name: "an approval that names no round (made before approvals were bound) is ignored",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/old.yaml", "by: alice@example.com\n");
                w.by(
                    "approvals/old.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |_, p| {
                assert!(
                    milestones(p)[0].contains("no review round (re-approve)"),
                    "{:?}",
                    milestones(p)
                );
            },
        },
        Case {
            name: "an approving review of the head by a listed reviewer promotes",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                *w.forge.reviews.lock().unwrap() = Reviews {
                    author: "gaffer".into(),
                    reviews: vec![review(1, "bob", "APPROVED", &"h".repeat(40))],
                };
            },
            then_phase: Phase::Promoted,
            reason: Some("Merged"),
            action: Action::await_change(),
            check: |_, p| {
                assert_eq!(
                    p.status.message.as_deref(),
                    Some("approved by bob (GitHub review)")
                )
            },
        },
        Case {
            name: "an approving review of an older head does not count",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                *w.forge.reviews.lock().unwrap() = Reviews {
                    author: "gaffer".into(),
                    reviews: vec![review(1, "bob", "APPROVED", "old")],
                };
            },
            then_phase: Phase::InReview,
            reason: Some("AwaitingApproval"),
            action: Action::await_change(),
            check: |w, _| assert!(w.forge.merged.lock().unwrap().is_empty()),
        },
        Case {
            name: "changes requested go to the builder once",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                *w.forge.reviews.lock().unwrap() = Reviews {
                    author: "gaffer".into(),
                    reviews: vec![review(42, "bob", "CHANGES_REQUESTED", "old")],
                };
            },
            then_phase: Phase::Running,
            reason: Some("ChangesRequested"),
            action: requeue(0),
            check: |w, p| {
                assert!(p.status.effects.reviews_sent.contains(&42));
                assert_eq!(w.agent.sent_ids(), ["feedback-review-42"]);
                assert_eq!(
                    w.agent.sent_text("feedback-review"),
                    "Reviewers asked for changes to your pull requests:\n\nbob on api #7:\nPlease rename it.\n- app.py:3: here\n\nPlease address them; when you are done the work is deployed, tested and the pull requests are updated.\n"
                );
            },
        },
        Case {
            name: "a merge conflict asks the builder to merge the base in, once",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
                *w.forge.merge.lock().unwrap() =
                    Some(ForgeError::Blocked("not mergeable: conflicts".into()));
            },
            then_phase: Phase::Running,
            reason: Some("MergeConflict"),
            action: requeue(0),
            check: |w, p| {
                assert!(
                    p.status
                        .effects
                        .merge_asked
                        .contains(&RepoName::new("api").unwrap())
                );
                assert!(
                    w.agent
                        .sent_text("feedback-merge-api-7")
                        .contains("git merge origin/main")
                );
            },
        },
        Case {
            name: "a merge blocked again after the builder tried waits for a person",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                w.edit_status(|s| {
                    s.effects.merge_asked.insert(RepoName::new("api").unwrap());
                });
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
                *w.forge.merge.lock().unwrap() =
                    Some(ForgeError::Blocked("not mergeable: conflicts".into()));
            },
            then_phase: Phase::InReview,
            reason: Some("MergeBlocked"),
            action: Action::await_change(),
            check: |w, p| {
                assert!(w.agent.sent.lock().unwrap().is_empty());
                assert_eq!(
                    milestones(p),
                    ["⛔ merge blocked: api #7: not mergeable: conflicts"]
                );
            },
        },
        Case {
            name: "a rate limit is waited out until its reset",
            phase: Phase::InReview,
            given: |w| {
                opened(w);
                let until = w.now + jiff::SignedDuration::from_secs(120);
                *w.forge.merge.lock().unwrap() = Some(ForgeError::RateLimited { until });
                w.task_file("approvals/a1.yaml", &bound("alice@example.com", 0, 'h'));
                w.by(
                    "approvals/a1.yaml",
                    "alice@example.com",
                    "alice@example.com",
                );
            },
            then_phase: Phase::InReview,
            reason: Some("RateLimited"),
            action: requeue(120),
            check: |_, _| {},
        },
    ]
}

#[tokio::test]
async fn deploy_test_and_review() {
    run_table(table()).await;
}
