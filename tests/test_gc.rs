//! `gaffer gc`: what finished tasks left on this machine goes after `retention.worktrees`,
//! never a branch whose work is nowhere else — against real git worktrees and mirrors.

use std::path::Path;

use gaffer::names::{Qid, TaskRef};
use gaffer::state::effects::Applied;
use gaffer::state::status::{Phase, TaskStatus};
use gaffer::workspace::Workspaces;

use crate::common::{commit_to_bare, gaffer, git, run, snapshot_of};

fn status(phase: Phase, days_ago: i64) -> TaskStatus {
    TaskStatus {
        phase,
        phase_since: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago)),
        ..TaskStatus::default()
    }
}

fn branches(mirror: &Path) -> Vec<String> {
    git(
        mirror,
        &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn gc_removes_only_what_is_safe_elsewhere_and_says_what_it_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin.git");
    git(
        tmp.path(),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            origin.to_str().unwrap(),
        ],
    );
    commit_to_bare(&origin, "main", &[("README.md", "hello\n")], "init");
    let state = tmp.path().join("state.git");
    let r = run(gaffer(tmp.path())
        .arg("init")
        .arg(&state)
        .args(["--domain", "lab.example.com"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let project = format!(
        "repos:\n  - {{name: app, url: {}, base: main}}\n",
        serde_json::json!(origin.display().to_string())
    );
    commit_to_bare(
        &state,
        "main",
        &[
            ("projects/demo/app/project.yaml", project.as_str()),
            ("projects/demo/other/project.yaml", project.as_str()),
        ],
        "projects",
    );
    let snap = snapshot_of(&state, &tmp.path().join("scratch"));
    let spec = |p: &str| {
        snap.projects
            .iter()
            .find(|(r, _)| r.to_string() == p)
            .and_then(|(_, e)| e.spec.clone())
            .unwrap()
    };
    let (app, other) = (spec("demo/app"), spec("demo/other"));
    let task = |s: &str| TaskRef::parse(s).unwrap();
    let builders = tmp.path().join("data/builders");
    let ws = Workspaces::new(&builders);

    // demo/app: `done` pushed its branch (and left two provisional branches, one set
    // aside), `dropped` was cancelled with uncommitted work in the worktree.
    ws.prepare(&task("demo/app/done"), &app).unwrap();
    let app_dir = ws.repo_dir(&task("demo/app/done").project, &app.repos[0].name.value);
    std::fs::write(app_dir.join("done.txt"), "done\n").unwrap();
    ws.checkpoint(&task("demo/app/done"), &app, "the work")
        .unwrap();
    let mirror = ws.mirror_dir(&app.repos[0].url);
    git(&mirror, &["push", "-q", "origin", "gaffer/done"]);
    ws.mirror(&app.repos[0]).unwrap();
    for q in ["q-001", "q-002"] {
        let c = git(
            &mirror,
            &[
                "commit-tree",
                "gaffer/done^{tree}",
                "-p",
                "gaffer/done",
                "-m",
                q,
            ],
        );
        git(
            &mirror,
            &["branch", &format!("gaffer-provisional/done/{q}"), &c],
        );
    }
    ws.prepare(&task("demo/app/dropped"), &app).unwrap();
    std::fs::write(app_dir.join("wip.txt"), "half done\n").unwrap();
    // demo/other: `past` finished long ago, `now` is running in the same worktree.
    ws.prepare(&task("demo/other/past"), &other).unwrap();
    ws.prepare(&task("demo/other/now"), &other).unwrap();
    let other_dir = ws.repo_dir(&task("demo/other/now").project, &other.repos[0].name.value);

    let mut done = status(Phase::Promoted, 8);
    done.effects.applied.insert(
        Qid::new("q-001").unwrap(),
        Applied::SetAside(vec!["No".into()]),
    );
    let statuses = [
        ("demo/app/done", done),
        ("demo/app/dropped", status(Phase::Cancelled, 8)),
        ("demo/other/past", status(Phase::Promoted, 9)),
        ("demo/other/now", status(Phase::Running, 0)),
    ];
    let files: Vec<(String, String)> = statuses
        .iter()
        .flat_map(|(t, s)| {
            let dir = format!(
                "projects/{}/tasks/{}",
                &t[..t.rfind('/').unwrap()],
                &t[t.rfind('/').unwrap() + 1..]
            );
            [
                (format!("{dir}/task.yaml"), "title: t\n".to_string()),
                (
                    format!("{dir}/status.yaml"),
                    gaffer::state::yaml::to_string(s).unwrap(),
                ),
            ]
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    commit_to_bare(&state, "main", &refs, "tasks");

    let gc = |extra: &[&str]| {
        let r = run(gaffer(tmp.path())
            .arg("gc")
            .arg("--state")
            .arg(&state)
            .arg("--builders")
            .arg(&builders)
            .args(extra));
        assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
        r.stdout
    };
    let before = branches(&mirror);

    // Dry: says what would go, changes nothing.
    let out = gc(&["--dry-run"]);
    assert!(
        out.contains(&format!("would remove worktree {}", app_dir.display())),
        "{out}"
    );
    for b in [
        "gaffer/done ",
        "gaffer-provisional/done/q-001 ",
        "gaffer/past ",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("would delete branch") && l.contains(b)),
            "{b}: {out}"
        );
    }
    for b in ["gaffer-provisional/done/q-002 ", "gaffer/dropped "] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("kept branch") && l.contains(b)),
            "{b}: {out}"
        );
    }
    assert!(!out.contains("gaffer/now"), "{out}");
    assert_eq!(branches(&mirror), before);
    assert!(app_dir.join("wip.txt").is_file());

    // For real.
    let out = gc(&[]);
    assert!(
        out.contains(&format!("removed worktree {}", app_dir.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("garbage-collected {}", mirror.display())),
        "{out}"
    );
    assert!(!app_dir.exists(), "the idle project's worktree is gone");
    assert!(
        other_dir.join(".git").exists(),
        "a project with a running task keeps its worktree"
    );
    let after = branches(&mirror);
    for gone in [
        "gaffer/done",
        "gaffer-provisional/done/q-001",
        "gaffer/past",
    ] {
        assert!(!after.contains(&gone.to_string()), "{gone}: {after:?}");
    }
    for kept in [
        "gaffer-provisional/done/q-002",
        "gaffer/dropped",
        "gaffer/now",
        "main",
    ] {
        assert!(
            after.contains(&kept.to_string()) || kept == "main",
            "{kept}: {after:?}"
        );
    }
    // The cancelled task's uncommitted work was committed on its branch, which stays.
    assert_eq!(
        git(&mirror, &["show", "gaffer/dropped:wip.txt"]),
        "half done"
    );
    // The pushed work is still on the remote.
    assert_eq!(git(&origin, &["show", "gaffer/done:done.txt"]), "done");

    // Again: nothing more to remove; the kept branches are still reported.
    let out = gc(&[]);
    assert!(
        !out.lines()
            .any(|l| l.starts_with("removed") || l.starts_with("deleted")),
        "{out}"
    );
    assert!(
        out.contains("0 worktree(s) and 0 branch(es) removed; 2 branch(es) kept"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("kept branch")).count(),
        2,
        "{out}"
    );

    // A task finished a day ago is left alone with the default retention (7d).
    let out = gc(&["--older-than", "30d"]);
    assert!(out.contains("nothing to clean up"), "{out}");
}
