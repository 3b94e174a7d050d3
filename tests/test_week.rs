//! A simulated week of daily use: an injected clock runs Monday 08:00 to the next Monday
//! over 10 projects and 50 tasks with scripted builders (each task asks two questions: the
//! first answered at once, left to its default, or answered after the default; the second
//! always defaulted; its lab tests fail once and then pass; its change is approved and
//! merged), while the reconciler and the Slack bot are killed with SIGKILL at random points
//! every few simulated hours and the reconciler cleans up after tasks finished two days ago.
//! At the end every task is `Promoted`, every effect happened once, and what gaffer holds
//! — its RSS and open files, worktrees, branches, git objects — is bounded; the table is
//! printed (`cargo nextest run -E 'test(a_simulated_week)' --no-capture`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use gaffer::cli::demo::{PERSON, bare_repo_with, sample_app};
use gaffer::names::Qid;
use gaffer::state::snapshot::Snapshot;
use gaffer::state::status::{Phase, QuestionState};

use crate::common::slack::{APP_TOKEN, BOT_TOKEN, FakeSlack};
use crate::common::{Proc, commit_as, commit_to_bare, git, snapshot_of};

const PROJECTS: usize = 10;
const TASKS: usize = 5;

struct Week {
    tmp: tempfile::TempDir,
    state: PathBuf,
    slack: FakeSlack,
}

fn project(p: usize) -> String {
    format!("p{p:02}")
}

fn task_name(p: usize, k: usize) -> String {
    format!("t{p:02}-{k}")
}

impl Week {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let settings = format!(
            "domain: lab.example.com\n\
             business_hours: {{timezone: Europe/London, days: [mon, tue, wed, thu, fri], start: \"09:00\", end: \"17:00\"}}\n\
             questions: {{timeout: 1h, on_timeout: recommended, continue: at-deadline}}\n\
             authors: {{answers: [{PERSON}], slack_users: [], accept_unsigned: true}}\n\
             retention: {{worktrees: 2d}}\n"
        );
        let mut files = vec![("gaffer.yaml".to_string(), Some(settings.into_bytes()))];
        for p in 0..PROJECTS {
            let origin = tmp.path().join(format!("origins/{}.git", project(p)));
            bare_repo_with(&origin, &sample_app(), "web-api").unwrap();
            let spec = format!(
                "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
                 agent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n\
                 lab: {{overlay: web-api/deploy, test: sh tests/run-tests.sh, test_without_deploy: true}}\n\
                 forge: {{kind: local, merge_method: merge}}\n",
                serde_json::json!(origin.display().to_string())
            );
            files.push((
                format!("projects/week/{}/project.yaml", project(p)),
                Some(spec.into_bytes()),
            ));
        }
        let state = tmp.path().join("state.git");
        bare_repo_with(&state, &files, "state").unwrap();
        Week {
            tmp,
            state,
            slack: FakeSlack::start(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn set_clock(&self, t: jiff::Timestamp) {
        let f = self.path("clock");
        std::fs::write(self.path("clock.tmp"), t.to_string()).unwrap();
        std::fs::rename(self.path("clock.tmp"), f).unwrap();
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap()
    }

    fn reconciler(&self) -> Proc {
        let log = self.log("daemon.log");
        Proc(
            crate::common::gaffer(self.tmp.path())
                .args(["reconcile", "--lab", "render-only", "--gc-secs", "2"])
                .args(["--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.path("data"))
                .arg("--builders")
                .arg(self.path("builders"))
                .arg("--clock-file")
                .arg(self.path("clock"))
                .env(
                    "RUST_LOG",
                    "warn,gaffer::workspace=info,gaffer::reconcile::daemon=info",
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    fn bot(&self) -> Proc {
        let log = self.log("bot.log");
        Proc(
            crate::common::gaffer(self.tmp.path())
                .args(["slack", "--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.path("bot"))
                .env("SLACK_BOT_TOKEN", BOT_TOKEN)
                .env("SLACK_APP_TOKEN", APP_TOKEN)
                .env("GAFFER_SLACK_API_URL", self.slack.api_url())
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    }

    /// Across the mirrors: worktrees, task branches (`gaffer/…`), git objects.
    fn holdings(&self) -> (usize, usize, u64) {
        let (mut worktrees, mut branches, mut objects_n) = (0, 0, 0);
        for m in std::fs::read_dir(self.path("builders/.mirrors")).unwrap() {
            let m = m.unwrap().path();
            worktrees += git(&m, &["worktree", "list", "--porcelain"])
                .lines()
                .filter(|l| l.starts_with("worktree ") && !l.ends_with(".git"))
                .count();
            branches += git(
                &m,
                &["for-each-ref", "--format=%(refname)", "refs/heads/gaffer"],
            )
            .lines()
            .count();
            objects_n += objects(&m);
        }
        (worktrees, branches, objects_n)
    }

    fn snapshot(&self) -> Snapshot {
        snapshot_of(&self.state, &self.path("scratch"))
    }

    fn head(&self) -> String {
        git(&self.state, &["rev-parse", "main"])
    }

    /// Waits until nothing was committed for `quiet` (at most `max`).
    fn settle(&self, quiet: Duration, max: Duration) {
        let start = Instant::now();
        let mut head = self.head();
        let mut since = Instant::now();
        while start.elapsed() < max {
            std::thread::sleep(Duration::from_millis(100));
            let h = self.head();
            if h != head {
                head = h;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    fn commit_task(&self, p: usize, k: usize) {
        let path = format!(
            "projects/week/{}/tasks/{}/task.yaml",
            project(p),
            task_name(p, k)
        );
        let body = format!("title: Week task {p}-{k}\ndescription: JWT auth, day {k}.\n");
        commit_to_bare(
            &self.state,
            "main",
            &[(path.as_str(), body.as_str())],
            "task",
        );
    }

    /// Plays the person: q-001 answered at once (task index 0 mod 3), never (1 mod 3, its
    /// default applies) or after its default (2 mod 3, the recommended option again); q-002
    /// never; changes approved when they wait for approval. Each thing once.
    fn act(&self, snap: &Snapshot, done: &mut BTreeSet<String>) {
        let q1 = Qid::new("q-001").unwrap();
        for (t, e) in snap.tasks() {
            let idx: usize = t.task.as_str()[1..3].parse::<usize>().unwrap() * TASKS
                + t.task.as_str()[4..].parse::<usize>().unwrap();
            if let Some(q) = e.questions.get(&q1) {
                let now = idx.is_multiple_of(3) && q.state == QuestionState::Open;
                let late = idx % 3 == 2 && q.state == QuestionState::Defaulted;
                if (now || late) && done.insert(format!("{t}/answer")) {
                    let path =
                        format!("projects/{}/tasks/{}/answers/q-001.yaml", t.project, t.task);
                    let body = format!("choice: {}\nby: {PERSON}\n", q.options[0].label);
                    commit_as(
                        &self.state,
                        PERSON,
                        &[(path.as_str(), body.as_str())],
                        "answer",
                    );
                }
            }
            if let Some(s) = e.status.as_deref()
                && s.phase == Phase::InReview
                && s.reason.as_deref() == Some("AwaitingApproval")
                && done.insert(format!("{t}/approve/{}", s.review_round))
            {
                let path = format!(
                    "projects/{}/tasks/{}/approvals/r{}.yaml",
                    t.project, t.task, s.review_round
                );
                let body = crate::common::approval_body(PERSON, Some(s));
                commit_as(
                    &self.state,
                    PERSON,
                    &[(path.as_str(), body.as_str())],
                    "approve",
                );
            }
        }
    }
}

/// (RSS KiB, open file descriptors) of a process.
fn usage(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

/// Objects in a repository (loose and packed).
fn objects(repo: &Path) -> u64 {
    git(repo, &["count-objects", "-v"])
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            matches!(k, "count" | "in-pack").then(|| v.parse::<u64>().ok())?
        })
        .sum()
}

fn business(t: jiff::Timestamp) -> bool {
    let z = t.to_zoned(jiff::tz::TimeZone::UTC);
    z.weekday().to_monday_one_offset() <= 5 && (8..18).contains(&z.hour())
}

#[test]
fn a_simulated_week_ends_with_every_task_promoted_each_effect_once_and_bounded_resources() {
    let seed = std::env::var("GAFFER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("simulated week seed {seed} (set GAFFER_CRASH_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let w = Week::new();
    let started = Instant::now();
    // Monday 30 November 2026, 08:00 in London (UTC in winter).
    let monday: jiff::Timestamp = "2026-11-30T08:00:00Z".parse().unwrap();
    let end = monday + jiff::SignedDuration::from_hours(7 * 24);
    let mut now = monday;
    w.set_clock(now);
    let mut reconciler = Some(w.reconciler());
    let mut bot = Some(w.bot());
    let mut done = BTreeSet::new();
    let mut next_kill = monday + jiff::SignedDuration::from_mins(rng.i64(60..240));
    let (mut kills, mut peak_rss, mut peak_fds) = (0u32, 0u64, 0usize);
    let mut committed = BTreeSet::new();
    while now < end {
        // Each project gets a task at 09:00 (+ a few minutes per project) Monday to Friday.
        let z = now.to_zoned(jiff::tz::TimeZone::UTC);
        let day = z.weekday().to_monday_zero_offset() as usize;
        let days = now.duration_since(monday).as_hours() / 24;
        for p in 0..PROJECTS {
            let at = jiff::SignedDuration::from_hours(days * 24 + 1)
                + jiff::SignedDuration::from_mins(5 * p as i64);
            if day < TASKS && now >= monday + at && committed.insert((p, day)) {
                w.commit_task(p, day);
            }
        }
        if now >= next_kill {
            if rng.bool() {
                reconciler.take().unwrap().kill9();
                reconciler = Some(w.reconciler());
            } else {
                bot.take().unwrap().kill9();
                bot = Some(w.bot());
            }
            kills += 1;
            next_kill = now + jiff::SignedDuration::from_mins(rng.i64(60..240));
        }
        w.settle(Duration::from_millis(300), Duration::from_secs(5));
        w.act(&w.snapshot(), &mut done);
        let (rss, fds) = usage(reconciler.as_ref().unwrap().0.id());
        peak_rss = peak_rss.max(rss);
        peak_fds = peak_fds.max(fds);
        now += jiff::SignedDuration::from_mins(if business(now) { 10 } else { 60 });
        w.set_clock(now);
    }
    // The week is over: what is still in flight finishes (the clock stays).
    let deadline = Instant::now() + Duration::from_secs(180);
    let all_promoted = |s: &Snapshot| {
        s.tasks().count() == PROJECTS * TASKS
            && s.tasks().all(|(_, e)| {
                e.status
                    .as_ref()
                    .is_some_and(|st| st.phase == Phase::Promoted)
            })
    };
    loop {
        let snap = w.snapshot();
        if all_promoted(&snap) {
            break;
        }
        let left: Vec<String> = snap
            .tasks()
            .filter(|(_, e)| e.status.as_ref().is_none_or(|s| s.phase != Phase::Promoted))
            .map(|(t, e)| {
                format!(
                    "{t}: {:?}",
                    e.status.as_ref().map(|s| (s.phase, s.reason.clone()))
                )
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "not all promoted (seed {seed}): {left:#?}\n{}",
            std::fs::read_to_string(w.path("daemon.log")).unwrap_or_default()
        );
        w.act(&snap, &mut done);
        std::thread::sleep(Duration::from_millis(300));
    }
    let wall = started.elapsed();
    // Three days later (simulated) the reconciler's cleanup (every 2 s) finds every task
    // finished two days ago: waited for until its work shows, at most a minute.
    w.set_clock(end + jiff::SignedDuration::from_hours(72));
    let cleaned = Instant::now() + Duration::from_secs(60);
    while Instant::now() < cleaned && w.holdings().1 > 0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = reconciler.as_ref().unwrap().0.id();
    let (rss, fds) = usage(pid);
    peak_rss = peak_rss.max(rss);
    peak_fds = peak_fds.max(fds);

    // Every effect once.
    let snap = w.snapshot();
    let q1 = Qid::new("q-001").unwrap();
    let mut decided: BTreeMap<String, usize> = BTreeMap::new();
    for (t, e) in snap.tasks() {
        let ms = &e.progress.as_ref().unwrap().milestones;
        let merged = ms
            .iter()
            .filter(|m| m.text.contains("change #") && m.text.contains("merged"))
            .count();
        assert_eq!(merged, 1, "{t}: one merge: {ms:#?}");
        let seqs: Vec<u32> = ms.iter().map(|m| m.seq).collect();
        assert!(seqs.windows(2).all(|p| p[0] < p[1]), "{t}: {seqs:?}");
        let q = e.questions.get(&q1).unwrap();
        *decided.entry(format!("{:?}", q.state)).or_default() += 1;
        let origin = w.path(&format!("origins/{}.git", t.project.project));
        let merges = git(&origin, &["log", "--merges", "--format=%s", "main"])
            .lines()
            .filter(|l| l.contains(&format!("gaffer/{}", t.task)))
            .count();
        assert_eq!(merges, 1, "{t}: merged into its repo once");
    }
    // The bot catches up with the last milestones, then each of its messages is there once
    // (a key is unique within its thread).
    let milestones: usize = snap
        .tasks()
        .map(|(_, e)| e.progress.as_ref().map_or(0, |p| p.milestones.len()))
        .sum();
    let posted = |w: &Week| {
        w.slack
            .messages()
            .iter()
            .filter(|m| m.key().starts_with("gaffer:m:"))
            .count()
    };
    let caught_up = Instant::now() + Duration::from_secs(60);
    while Instant::now() < caught_up && posted(&w) < milestones {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        posted(&w),
        milestones,
        "every milestone posted in its thread"
    );
    let msgs = w.slack.messages();
    let parents = msgs
        .iter()
        .filter(|m| m.key().starts_with("gaffer:parent:"))
        .count();
    assert_eq!(parents, PROJECTS * TASKS, "a thread per task");
    let mut keys: Vec<String> = msgs
        .iter()
        .filter(|m| !m.key().is_empty())
        .map(|m| {
            format!(
                "{} {} {}",
                m.channel,
                m.thread_ts.as_deref().unwrap_or("-"),
                m.key()
            )
        })
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no Slack message posted twice");

    // What gaffer holds.
    let (worktrees, branches, mirror_objects) = w.holdings();
    let state_objects = objects(&w.state);
    let table = format!(
        "| what | end of week | bound |\n| --- | --- | --- |\n\
         | wall time | {:.0} s | - |\n\
         | SIGKILLs (reconciler or bot) | {kills} | - |\n\
         | q-001 decisions | {decided:?} | - |\n\
         | reconciler RSS (peak seen) | {:.1} MiB ({:.1} MiB) | ≤ 200 MiB |\n\
         | reconciler open files (peak seen) | {fds} ({peak_fds}) | ≤ 256 |\n\
         | tmux sessions | 0 (scripted builders run none) | ≤ {PROJECTS} |\n\
         | worktrees | {worktrees} | ≤ {PROJECTS} |\n\
         | task branches left in the mirrors | {branches} | 0 |\n\
         | git objects, state repository | {state_objects} | ≤ 60000 |\n\
         | git objects, all mirrors | {mirror_objects} | ≤ 20000 |\n",
        wall.as_secs_f64(),
        rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
    );
    println!("{table}");
    assert!(peak_rss <= 200 * 1024, "{table}");
    assert!(peak_fds <= 256, "{table}");
    assert!(worktrees <= PROJECTS, "{table}");
    assert_eq!(branches, 0, "{table}");
    assert!(state_objects <= 60_000, "{table}");
    assert!(mirror_objects <= 20_000, "{table}");
    assert!(kills >= 20, "{table}");
    drop(bot);
    drop(reconciler);
}
