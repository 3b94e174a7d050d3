//! `cargo run --release --example bench -- [--json] [--runs N] [--only P1,P6,…] [--decisions N]`
//!
//! Benchmarks of the state-repository engine, each printed beside the floor measured in the
//! same run (see docs/store.md for the targets and the latest table):
//!
//! - P1 push of one task.yaml to a local bare remote → wake → first status commit on the remote
//! - P2 cost of one wake for a one-file commit in repos of 10, 1,000 and 10,000 tasks
//! - P3 full resync of 10,000 tasks, and cold start (open + load)
//! - P4 status updates/s with coalescing; 8 concurrent writers × 100 commits
//! - P5 peak and idle RSS with 10,000 tasks loaded (measured in a child process)
//! - P6 a person's decision (Slack click, Events API, git push) → delivered to the builder
//! - P7 task commit → the builder's first model request, cold and warm (real OpenCode)
//! - P8 builders as pods: gaffer's RSS and CPU per idle pod builder (`--pods N`, default 50),
//!   and task commit → first model request with a suspended pod builder and a running one
//! - P9 one builder poll in a session of 10,000 messages against one of 10 (a fake speaking
//!   OpenCode's paging API)
//! - P10 gaffer's RSS and CPU per idle tmux builder (`--builders N`, default 20)
//! - WEEK the simulated week (`tests/test_week.rs`, built and run in release): its wall time
//!   and end-of-week resource table

mod common;
mod decisions;
mod long;
mod pods;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use gaffer::names::TaskRef;
use gaffer::state::path::{ObjectKey, StatePath};
use gaffer::store::watch::{self, Reason, Syncer};
use gaffer::store::{Identity, StatusWriter, Tracker, Transport, Update, WriterConfig, WriterRole};
use gix::ObjectId;
use gix::objs::tree::EntryKind;

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn git(dir: &Path, args: &[&str]) -> Res<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Bench Person")
        .env("GIT_AUTHOR_EMAIL", "person@example.com")
        .env("GIT_COMMITTER_NAME", "Bench Person")
        .env("GIT_COMMITTER_EMAIL", "person@example.com")
        .output()?;
    if !out.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `git clone -q from to`.
pub(crate) fn clone_repo(from: &Path, to: &Path) -> Res<()> {
    let (f, t) = (from.to_str().ok_or("path")?, to.to_str().ok_or("path")?);
    git(from.parent().unwrap_or(from), &["clone", "-q", f, t]).map(drop)
}

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Row {
    id: &'static str,
    what: String,
    value: String,
    floor: String,
    ratio: String,
    target: &'static str,
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn sig() -> gix::actor::Signature {
    gix::actor::Signature {
        name: "Bench Person".into(),
        email: "person@example.com".into(),
        time: gix::date::Time::now_utc(),
    }
}

fn commit(
    repo: &gix::Repository,
    parent: Option<ObjectId>,
    tree: ObjectId,
    msg: &str,
) -> Res<ObjectId> {
    let c = gix::objs::Commit {
        tree,
        parents: parent.into_iter().collect(),
        author: sig(),
        committer: sig(),
        encoding: None,
        message: msg.into(),
        extra_headers: Vec::new(),
    };
    Ok(repo.write_object(&c)?.detach())
}

/// A bare repo with `tasks` tasks (task, status and progress files each) and `history`
/// further one-file commits on top.
fn make_repo(dir: &Path, tasks: usize, history: usize) -> Res<PathBuf> {
    let path = dir.join(format!("state-{tasks}.git"));
    git(
        dir,
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            path.to_str().ok_or("path")?,
        ],
    )?;
    let repo = gix::open(&path)?;
    let mut ed = repo.edit_tree(ObjectId::empty_tree(repo.object_hash()))?;
    let blob = |s: String| -> Res<ObjectId> { Ok(repo.write_blob(s.as_bytes())?.detach()) };
    ed.upsert(
        "gaffer.yaml",
        EntryKind::Blob,
        blob("domain: lab.example.com\n".into())?,
    )?;
    let projects = (tasks / 100).max(1);
    for p in 0..projects {
        ed.upsert(
            format!("projects/bench/p{p}/project.yaml").as_str(),
            EntryKind::Blob,
            blob("repos:\n  - {name: app, url: \"https://example.com/app.git\"}\n".into())?,
        )?;
    }
    for t in 0..tasks {
        let base = format!("projects/bench/p{}/tasks/t{t}", t % projects);
        ed.upsert(
            format!("{base}/task.yaml").as_str(),
            EntryKind::Blob,
            blob(format!("title: Task number {t}\ndescription: |\n  Do the thing {t} with care.\npriority: medium\n"))?,
        )?;
        ed.upsert(
            format!("{base}/status.yaml").as_str(),
            EntryKind::Blob,
            blob(
                "observedCommit: 4b1c0de5a7f2e3d9c8b6a5f4e3d2c1b0a9f8e7d6\nphase: Running\nconditions:\n  - {type: Ready, status: \"False\", reason: Running, lastTransitionTime: \"2026-11-24T14:05:00Z\"}\nphaseSince: \"2026-11-24T14:05:00Z\"\n"
                    .to_string(),
            )?,
        )?;
        ed.upsert(
            format!("{base}/progress.yaml").as_str(),
            EntryKind::Blob,
            blob(format!("milestones:\n  - {{seq: 1, at: \"2026-11-24T13:02:11Z\", kind: phase, text: \"Pending → Running {t}\"}}\n"))?,
        )?;
    }
    let tree = ed.write()?.detach();
    let mut head = commit(&repo, None, tree, "bench: initial")?;
    let mut tree_id = tree;
    for h in 0..history {
        let mut ed = repo.edit_tree(tree_id)?;
        let t = h % tasks.max(1);
        ed.upsert(
            format!("projects/bench/p{}/tasks/t{t}/task.yaml", t % projects).as_str(),
            EntryKind::Blob,
            blob(format!("title: Task number {t} (edit {h})\n"))?,
        )?;
        tree_id = ed.write()?.detach();
        head = commit(&repo, Some(head), tree_id, &format!("bench: edit {h}"))?;
    }
    repo.reference(
        "refs/heads/main",
        head,
        gix::refs::transaction::PreviousValue::Any,
        "bench",
    )?;
    Ok(path)
}

/// P1: a person's push → wake → status commit on the remote, vs the bare push floor.
async fn p1(
    dir: &Path,
    runs: usize,
    clone: bool,
) -> Res<(Vec<Duration>, Vec<Duration>, Vec<decisions::Timing>)> {
    let sub = dir.join(if clone { "p1-clone" } else { "p1-direct" });
    std::fs::create_dir_all(&sub)?;
    let remote = make_repo(&sub, 10, 0)?;
    let person = sub.join("person");
    clone_repo(&remote, &person)?;
    let floor_dir = sub.join("floor");
    clone_repo(&remote, &floor_dir)?;

    let transport = Transport::open(
        remote.to_str().ok_or("path")?,
        "main",
        &sub.join("data"),
        clone,
    )?;
    let writer = StatusWriter::spawn(
        transport.clone(),
        WriterConfig::new(WriterRole::Reconciler, Identity::reconciler()),
    );
    let tracker = Arc::new(RwLock::new(Tracker::new(
        Some(Identity::reconciler().email),
        Some(WriterRole::Reconciler.owned()),
    )));
    let (waker, rx) = watch::channel();
    let _watcher = watch::watch_refs(&remote, waker.clone())?;
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(
        Syncer::new(transport.clone(), tracker.clone())
            .debounce(Duration::ZERO)
            .run(rx, out_tx),
    );
    waker.wake(Reason::Start);
    let _ = out_rx.recv().await;
    // The stand-in reconciler: every woken task without a status gets one.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let w = writer.clone();
    let tr = tracker.clone();
    tokio::spawn(async move {
        while let Some(wake) = out_rx.recv().await {
            let mut updates = Vec::new();
            {
                let Ok(t) = tr.read() else { return };
                for k in &wake.keys {
                    if let ObjectKey::Task(task) = k
                        && t.snapshot().task(task).is_some_and(|e| e.status.is_none())
                    {
                        updates.push(Update::put(
                            StatePath::TaskStatus(task.clone()),
                            "phase: Queued\n",
                            format!("{task} Pending → Queued"),
                        ));
                    }
                }
            }
            if updates.is_empty() {
                continue;
            }
            if w.write(updates).await.is_ok() {
                let _ = done_tx.send(Instant::now());
            }
        }
    });

    let mut floor = Vec::new();
    let mut gaffer = Vec::new();
    let mut hops = Vec::new();
    for i in 0..runs {
        // Floor: a one-file commit pushed, then rev-parse on the remote.
        std::fs::write(floor_dir.join("floor.txt"), format!("{i}\n"))?;
        git(&floor_dir, &["add", "floor.txt"])?;
        git(&floor_dir, &["commit", "-q", "-m", "floor"])?;
        git(&floor_dir, &["pull", "-q", "--rebase", "origin", "main"])?;
        let t0 = Instant::now();
        git(&floor_dir, &["push", "-q", "origin", "HEAD:main"])?;
        git(&remote, &["rev-parse", "main"])?;
        floor.push(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(20)).await;
        while done_rx.try_recv().is_ok() {}

        // gaffer: a person pushes a new task; wait for the status commit on the remote.
        let task = format!("projects/bench/p0/tasks/new-{i}/task.yaml");
        std::fs::create_dir_all(person.join(&task).parent().ok_or("parent")?)?;
        std::fs::write(person.join(&task), format!("title: new {i}\n"))?;
        git(&person, &["add", &task])?;
        git(&person, &["commit", "-q", "-m", "new task"])?;
        git(&person, &["pull", "-q", "--rebase", "origin", "main"])?;
        let t0 = Instant::now();
        git(&person, &["push", "-q", "origin", "HEAD:main"])?;
        let done = tokio::time::timeout(Duration::from_secs(10), done_rx.recv())
            .await
            .map_err(|_| {
                let d = sub.join("data/state.git");
                let packs = std::fs::read_dir(d.join("objects/pack")).map(|r| r.count()).unwrap_or(0);
                let id = git(&d, &["rev-parse", "refs/remotes/origin/main"]).unwrap_or_default();
                let t = git(&d, &["cat-file", "-t", &id]).unwrap_or_else(|e| e.to_string());
                let fsck = git(&d, &["count-objects", "-v"]).unwrap_or_else(|e| e.to_string());
                format!("P1 run {i} (clone: {clone}): no status commit within 10 s; packs {packs}, {id} is {t}; {fsck}")
            })?
            .ok_or("reconciler stopped")?;
        gaffer.push(done.duration_since(t0));
        hops.push(decisions::Timing {
            hops: [
                (
                    "reconciler saw the commit (fetched, diffed)",
                    "synced",
                    &[][..],
                ),
                (
                    "status commit on the remote (committed, pushed)",
                    "published",
                    &[("writer", "reconciler")][..],
                ),
            ]
            .into_iter()
            .filter_map(|(what, hop, fields)| {
                Some((what, decisions::first_hop(t0, hop, fields)? - t0))
            })
            .collect(),
            ..decisions::Timing::default()
        });
        let tref = TaskRef::parse(&format!("bench/p0/new-{i}"))?;
        let head = git(&remote, &["log", "-1", "--format=%ae", "main"])?;
        if head != Identity::reconciler().email {
            return Err(
                format!("expected the status commit on the remote for {tref}, got {head}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((gaffer, floor, hops))
}

/// P2: one wake for a one-file commit, in a repo of `tasks` tasks with deep history.
fn p2(dir: &Path, tasks: usize, runs: usize) -> Res<Vec<Duration>> {
    let remote = make_repo(dir, tasks, 1_000)?;
    let transport = Transport::open(
        remote.to_str().ok_or("path")?,
        "main",
        &dir.join("d2"),
        false,
    )?;
    let repo = transport.repo();
    let mut tracker = Tracker::new(
        Some(Identity::reconciler().email),
        Some(WriterRole::Reconciler.owned()),
    );
    let mut head = transport.head()?.ok_or("no head")?;
    tracker.resync(&repo, Some(head))?;
    let mut times = Vec::new();
    for i in 0..runs + 5 {
        let tree = repo.find_commit(head)?.tree_id()?.detach();
        let mut ed = repo.edit_tree(tree)?;
        let t = (i * 7919) % tasks;
        ed.upsert(
            format!(
                "projects/bench/p{}/tasks/t{t}/task.yaml",
                t % (tasks / 100).max(1)
            )
            .as_str(),
            EntryKind::Blob,
            repo.write_blob(format!("title: wake {i}\n").as_bytes())?
                .detach(),
        )?;
        let new_tree = ed.write()?.detach();
        head = commit(&repo, Some(head), new_tree, "one file")?;
        let t0 = Instant::now();
        let wake = tracker.advance(&repo, Some(head))?;
        if i >= 5 {
            // The first few warm the object caches.
            times.push(t0.elapsed());
        }
        if wake.keys.len() != 1 || wake.changed_files != 1 {
            return Err(format!("expected one changed task, got {wake:?}").into());
        }
    }
    Ok(times)
}

/// P3: full resync of a loaded repo, and a cold start (fresh open + load).
fn p3(remote: &Path, runs: usize) -> Res<(Vec<Duration>, Vec<Duration>)> {
    let mut warm = Vec::new();
    let mut cold = Vec::new();
    let t = Transport::open(remote.to_str().ok_or("path")?, "main", remote, false)?;
    let repo = t.repo();
    let head = t.head()?;
    let mut tracker = Tracker::new(None, None);
    for _ in 0..runs {
        let t0 = Instant::now();
        tracker.resync(&repo, head)?;
        warm.push(t0.elapsed());
    }
    for _ in 0..runs.min(5) {
        let t0 = Instant::now();
        let t = Transport::open(remote.to_str().ok_or("path")?, "main", remote, false)?;
        let mut tracker = Tracker::new(None, None);
        tracker.resync(&t.repo(), t.head()?)?;
        cold.push(t0.elapsed());
        if tracker.snapshot().tasks().count() < 10_000 {
            return Err("not all tasks loaded".into());
        }
    }
    Ok((warm, cold))
}

/// P4a: many updates submitted at once; P4b: 8 writers × 100 commits each.
async fn p4(dir: &Path) -> Res<(f64, usize, f64, usize, usize)> {
    let remote = make_repo(dir, 10, 0)?;
    let url = remote.to_str().ok_or("path")?;
    let t = Transport::open(url, "main", &dir.join("d4"), false)?;
    let w = StatusWriter::spawn(
        t.clone(),
        WriterConfig::new(WriterRole::Reconciler, Identity::reconciler()),
    );
    let n = 2_000;
    let t0 = Instant::now();
    let mut pending = Vec::new();
    for i in 0..n {
        let task = TaskRef::parse(&format!("bench/p0/u{}", i % 500))?;
        pending.push(w.submit(vec![Update::put(
            StatePath::TaskStatus(task),
            format!("phase: Running\nattempts: {i}\n"),
            format!("update {i}"),
        )])?);
    }
    let mut commits = std::collections::BTreeSet::new();
    for p in pending {
        commits.insert(p.published().await?);
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();

    let before = git(&remote, &["rev-list", "--count", "main"])?.parse::<usize>()?;
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for wi in 0..8 {
        let w = StatusWriter::spawn(
            t.clone(),
            WriterConfig::new(WriterRole::Reconciler, Identity::reconciler()),
        );
        handles.push(tokio::spawn(async move {
            for i in 0..100 {
                let task = TaskRef::parse(&format!("bench/p0/w{wi}"))?;
                w.write(vec![Update::put(
                    StatePath::TaskStatus(task),
                    format!("phase: Running\nattempts: {i}\n"),
                    format!("writer {wi} commit {i}"),
                )])
                .await?;
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = git(&remote, &["rev-list", "--count", "main"])?.parse::<usize>()?;
    let landed = after - before;
    let mut lost = 0;
    for wi in 0..8 {
        let v = git(
            &remote,
            &[
                "show",
                &format!("main:projects/bench/p0/tasks/w{wi}/status.yaml"),
            ],
        )?;
        if !v.ends_with("attempts: 99") {
            lost += 1;
        }
    }
    Ok((rate, commits.len(), landed as f64 / secs, landed, lost))
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// P5 in a child process: load 10,000 tasks, report idle and peak RSS.
fn p5_child(remote: &str) -> Res<()> {
    let before = rss_kib("VmRSS:");
    let t = Transport::open(remote, "main", Path::new(remote), false)?;
    let mut tracker = Tracker::new(None, None);
    tracker.resync(&t.repo(), t.head()?)?;
    drop(t);
    std::thread::sleep(Duration::from_millis(200));
    println!(
        "{} {} {} {before}",
        tracker.snapshot().tasks().count(),
        rss_kib("VmRSS:"),
        rss_kib("VmHWM:")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--p5-child") {
        return p5_child(args.get(i + 1).ok_or("path")?);
    }
    if let Some(i) = args.iter().position(|a| a == "--make-repo") {
        // `--make-repo DIR TASKS`: leave a generated state repo behind to explore.
        let dir = PathBuf::from(args.get(i + 1).ok_or("--make-repo DIR TASKS")?);
        let tasks = args.get(i + 2).ok_or("--make-repo DIR TASKS")?.parse()?;
        std::fs::create_dir_all(&dir)?;
        let path = make_repo(&dir, tasks, 0)?;
        git(&path, &["gc", "-q"])?;
        println!("{}", path.display());
        return Ok(());
    }
    // Hops are recorded for the paths printed after the table; RUST_LOG adds a log.
    decisions::record_hops(std::env::var_os("RUST_LOG").is_some());
    let json = args.iter().any(|a| a == "--json");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let only: Option<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let want = |id: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|x| x == id))
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let mut rows = Vec::new();
    // Each path's hops, printed after the table.
    let mut paths = Vec::new();
    // Tables printed as they are after the main one.
    let mut paths_tables: Vec<String> = Vec::new();
    if want("P1") {
        eprintln!("P1: push → wake → status commit ({runs} runs each)...");
    }
    for clone in [false, true].into_iter().filter(|_| want("P1")) {
        let (mut g, mut f, hops) = p1(dir, runs, clone).await?;
        let (g50, g99, f50, f99) = (
            pct(&mut g, 0.5),
            pct(&mut g, 0.99),
            pct(&mut f, 0.5),
            pct(&mut f, 0.99),
        );
        rows.push(Row {
            id: "P1",
            what: format!(
                "push → status commit on remote ({})",
                if clone {
                    "data-dir clone, git fetch/push"
                } else {
                    "local remote opened in place"
                }
            ),
            value: format!("p50 {} / p99 {}", ms(g50), ms(g99)),
            floor: format!("p50 {} / p99 {}", ms(f50), ms(f99)),
            ratio: format!("{:.2}×", g50.as_secs_f64() / f50.as_secs_f64()),
            target: if clone {
                "p50 ≤ 2× floor"
            } else {
                "p50 ≤ 1.5× floor"
            },
        });
        if clone {
            paths.push((
                "P1, a person's push → status commit (data-dir clone)".to_string(),
                hops,
            ));
        }
    }
    let need_big = want("P2") || want("P3") || want("P5");
    if need_big {
        eprintln!("P2: one wake in repos of 10, 1,000, 10,000 tasks (1,000 commits of history)...");
    }
    let mut p2s = Vec::new();
    for tasks in [10, 1_000, 10_000].into_iter().filter(|_| need_big) {
        let sub = dir.join(format!("p2-{tasks}"));
        std::fs::create_dir_all(&sub)?;
        let mut t = p2(&sub, tasks, runs)?;
        p2s.push((tasks, pct(&mut t, 0.5), pct(&mut t, 0.99)));
    }
    let base = p2s.first().map(|p| p.1).unwrap_or_default();
    for (tasks, p50, p99) in p2s.iter().filter(|_| want("P2")) {
        rows.push(Row {
            id: "P2",
            what: format!("one wake, one-file commit, {tasks} tasks"),
            value: format!("p50 {} / p99 {}", ms(*p50), ms(*p99)),
            floor: if *tasks == 10 {
                "(10-task repo)".into()
            } else {
                format!("p50 {}", ms(base))
            },
            ratio: format!("{:.2}×", p50.as_secs_f64() / base.as_secs_f64()),
            target: "≤ 1.2× between 10 and 10,000",
        });
    }
    let big = dir.join("p2-10000").join("state-10000.git");
    if need_big {
        // A remote that receives pushes is packed by git's auto-gc; measure that layout.
        git(&big, &["gc", "-q"])?;
    }
    if want("P3") {
        eprintln!("P3: full resync and cold start of 10,000 tasks...");
        let (mut warm, mut cold) = p3(&big, 10)?;
        rows.push(Row {
            id: "P3",
            what: "full resync, 10,000 tasks (30,000 files)".into(),
            value: format!("p50 {}", ms(pct(&mut warm, 0.5))),
            floor: "-".into(),
            ratio: "-".into(),
            target: "≤ 300 ms",
        });
        rows.push(Row {
            id: "P3",
            what: "cold start (open + load), 10,000 tasks".into(),
            value: format!("p50 {}", ms(pct(&mut cold, 0.5))),
            floor: "-".into(),
            ratio: "-".into(),
            target: "≤ 500 ms",
        });
    }
    if want("P4") {
        eprintln!("P4: write throughput...");
        let sub = dir.join("p4");
        std::fs::create_dir_all(&sub)?;
        let (rate, commits, crate_, landed, lost) = p4(&sub).await?;
        rows.push(Row {
            id: "P4",
            what: format!("2,000 updates submitted at once → {commits} commits"),
            value: format!("{rate:.0} updates/s"),
            floor: "-".into(),
            ratio: "-".into(),
            target: "≥ 200 updates/s",
        });
        rows.push(Row {
            id: "P4",
            what: "8 writers × 100 commits, one remote".into(),
            value: format!("{crate_:.0} commits/s, {landed}/800 landed, {lost} lost"),
            floor: "-".into(),
            ratio: "-".into(),
            target: "0 lost",
        });
    }
    if want("P5") {
        eprintln!("P5: memory with 10,000 tasks loaded...");
        let out = Command::new(std::env::current_exe()?)
            .args(["--p5-child", big.to_str().ok_or("path")?])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let nums: Vec<u64> = text
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if nums.len() == 4 {
            rows.push(Row {
                id: "P5",
                what: format!("RSS with {} tasks loaded", nums[0]),
                value: format!(
                    "idle {:.1} MB / peak {:.1} MB (the process before loading: {:.1} MB)",
                    nums[1] as f64 / 1024.0,
                    nums[2] as f64 / 1024.0,
                    nums[3] as f64 / 1024.0
                ),
                floor: "-".into(),
                ratio: "-".into(),
                target: "idle ≤ 30 MB",
            });
        } else {
            eprintln!("P5 child failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    if want("P6") {
        let per_via: usize = args
            .iter()
            .position(|a| a == "--decisions")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        use decisions::{Builder, Via};
        let plan = [
            (Builder::Scripted, vec![Via::Socket, Via::Events, Via::Push]),
            (Builder::OpenCode, vec![Via::Socket]),
        ];
        for (builder, vias) in plan {
            eprintln!("P6: {per_via} decisions each by {vias:?}, {builder:?} builder...");
            let measured = decisions::p6(builder, &vias, per_via).await?;
            for m in measured {
                let mut d: Vec<Duration> = m.timings.iter().map(|t| t.delivered).collect();
                let mut r: Vec<Duration> = m.timings.iter().map(|t| t.recorded).collect();
                let builder = match m.builder {
                    Builder::Scripted => "scripted builder",
                    Builder::OpenCode => "real OpenCode",
                };
                rows.push(Row {
                    id: "P6",
                    what: format!(
                        "{} → delivered to the {builder} ({} decisions)",
                        m.via.name(),
                        d.len()
                    ),
                    value: format!(
                        "p50 {} / p99 {}",
                        ms(pct(&mut d, 0.5)),
                        ms(pct(&mut d, 0.99))
                    ),
                    floor: format!(
                        "recorded: p50 {} / p99 {}",
                        ms(pct(&mut r, 0.5)),
                        ms(pct(&mut r, 0.99))
                    ),
                    ratio: "-".into(),
                    target: "p99 ≤ 1 s",
                });
                paths.push((format!("{} ({builder})", m.via.name()), m.timings));
            }
        }
    }
    if want("P7") {
        for warm in [false, true] {
            let kind = if warm { "warm" } else { "cold" };
            eprintln!("P7: a task's first model request, {kind} builder...");
            let (first, later) = decisions::p7(warm).await?;
            let total = first.last().map(|(_, d)| *d).ok_or("no first request")?;
            let floor = later.as_ref().and_then(|l| l.last()).map(|(_, d)| *d);
            rows.push(Row {
                id: "P7",
                what: format!(
                    "task commit → the builder's first model request, {kind} (real OpenCode)"
                ),
                value: ms(total),
                floor: floor
                    .map(|f| format!("a later task: {}", ms(f)))
                    .unwrap_or_else(|| "-".into()),
                ratio: floor
                    .map(|f| format!("{:.2}×", total.as_secs_f64() / f.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
                target: if warm { "≤ ~1 s" } else { "-" },
            });
            paths.push((
                format!("task commit → first model request (real OpenCode, {kind})"),
                vec![decisions::Timing {
                    hops: first,
                    ..decisions::Timing::default()
                }],
            ));
            if let Some(later) = later {
                paths.push((
                    "task commit → first model request (real OpenCode, a later task)".into(),
                    vec![decisions::Timing {
                        hops: later,
                        ..decisions::Timing::default()
                    }],
                ));
            }
        }
    }
    if want("P8") {
        let pods: usize = args
            .iter()
            .position(|a| a == "--pods")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(50);
        eprintln!("P8: {pods} idle pod builders...");
        let idle = tokio::task::spawn_blocking(move || {
            pods::idle(pods, "pod", Duration::from_secs(20)).map_err(|e| e.to_string())
        })
        .await??;
        rows.extend(pods::idle_rows("P8", "pod", &idle));
        let mut first = Vec::new();
        for suspended in [true, false] {
            let kind = if suspended { "suspended" } else { "running" };
            eprintln!("P8: a task's first model request, {kind} pod builder...");
            first.push(
                tokio::task::spawn_blocking(move || {
                    pods::first_request(suspended).map_err(|e| e.to_string())
                })
                .await??,
            );
        }
        rows.push(Row {
            id: "P8",
            what: "task commit → first model request, suspended pod builder (real OpenCode)".into(),
            value: ms(first[0]),
            floor: format!("running pod builder: {}", ms(first[1])),
            ratio: format!("{:.2}×", first[0].as_secs_f64() / first[1].as_secs_f64()),
            target: "-",
        });
    }
    if want("P9") {
        eprintln!("P9: one builder poll in sessions of 10 and 10,000 messages...");
        let (short, short_full) = long::poll_cost(10, 300, 300).await?;
        let (long, long_full) = long::poll_cost(10_000, 300, 10).await?;
        rows.push(Row {
            id: "P9",
            what: "one builder poll, session of 10,000 messages (fake OpenCode paging API)".into(),
            value: ms(long),
            floor: format!("10 messages: {}", ms(short)),
            ratio: format!("{:.2}×", long.as_secs_f64() / short.as_secs_f64()),
            target: "≤ 1.2×",
        });
        rows.push(Row {
            id: "P9",
            what: "the same poll reading the whole history (before paging)".into(),
            value: ms(long_full),
            floor: format!("10 messages: {}", ms(short_full)),
            ratio: format!("{:.0}×", long_full.as_secs_f64() / short_full.as_secs_f64()),
            target: "-",
        });
    }
    if want("P10") {
        let n: usize = args
            .iter()
            .position(|a| a == "--builders")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(20);
        eprintln!("P10: {n} idle tmux builders...");
        let idle = tokio::task::spawn_blocking(move || {
            pods::idle(n, "tmux", Duration::from_secs(20)).map_err(|e| e.to_string())
        })
        .await??;
        rows.extend(pods::idle_rows("P10", "tmux", &idle));
    }
    if want("WEEK") {
        eprintln!("WEEK: the simulated week (the long test, in release)...");
        let (wall, table) = long::week()?;
        rows.push(Row {
            id: "WEEK",
            what: "a simulated week: 10 projects, 50 tasks, SIGKILLs every few hours".into(),
            value: format!("{:.0} s", wall.as_secs_f64()),
            floor: "-".into(),
            ratio: "-".into(),
            target: "all promoted, each effect once",
        });
        paths_tables.push(table);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("| id | what | gaffer | floor | ratio | target |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for r in &rows {
            println!(
                "| {} | {} | {} | {} | {} | {} |",
                r.id, r.what, r.value, r.floor, r.ratio, r.target
            );
        }
        for t in &paths_tables {
            println!("\nThe simulated week, at its end:\n\n{t}");
        }
        for (name, timings) in &paths {
            println!("\n{name}: each hop, from the decision or commit (p50 / p99)\n");
            println!("| hop | p50 | p99 |");
            println!("| --- | --- | --- |");
            let names: Vec<&str> = timings
                .first()
                .map(|t| t.hops.iter().map(|(n, _)| *n).collect())
                .unwrap_or_default();
            for hop in names {
                let mut v: Vec<Duration> = timings
                    .iter()
                    .filter_map(|t| t.hops.iter().find(|(n, _)| *n == hop).map(|(_, d)| *d))
                    .collect();
                println!(
                    "| {hop} | {} | {} |",
                    ms(pct(&mut v, 0.5)),
                    ms(pct(&mut v, 0.99))
                );
            }
        }
    }
    Ok(())
}
