//! The state-repository engine against real bare remotes: tracking, wake-ups, write-back
//! under concurrency, rejected pushes, unreachable remotes, force pushes, packed refs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gaffer::names::TaskRef;
use gaffer::state::path::{ObjectKey, StatePath};
use gaffer::store::watch::{self, Reason, Syncer};
use gaffer::store::{Identity, StatusWriter, Tracker, Transport, Update, WriterConfig, WriterRole};

use crate::common::{commit_to_bare, git};

const SETTINGS: &str = "domain: lab.example.com\nauthors: {answers: [person@example.com]}\n";
const PROJECT: &str = "repos:\n  - {name: app, url: \"https://example.com/app.git\"}\n";

/// A bare state remote with gaffer.yaml and one project.
struct Remote {
    tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Remote {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.git");
        git(
            tmp.path(),
            &["init", "-q", "--bare", "-b", "main", path.to_str().unwrap()],
        );
        commit_to_bare(
            &path,
            "main",
            &[
                ("gaffer.yaml", SETTINGS),
                ("projects/ai-dev/api/project.yaml", PROJECT),
            ],
            "init",
        );
        Remote { tmp, path }
    }

    fn url(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn transport(&self, clone: bool) -> Transport {
        let data = self
            .tmp
            .path()
            .join(if clone { "data-clone" } else { "data" });
        Transport::open(self.url(), "main", &data, clone).unwrap()
    }

    fn head(&self) -> String {
        git(&self.path, &["rev-parse", "main"])
    }

    fn show(&self, path: &str) -> String {
        git(&self.path, &["show", &format!("main:{path}")])
    }

    /// A person's working clone.
    fn person_clone(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        git(
            self.tmp.path(),
            &["clone", "-q", self.url(), dir.to_str().unwrap()],
        );
        dir
    }
}

fn task(name: &str) -> TaskRef {
    TaskRef::parse(&format!("ai-dev/api/{name}")).unwrap()
}

fn task_yaml(title: &str) -> String {
    format!("title: {title}\n")
}

fn status_yaml(phase: &str) -> String {
    format!("phase: {phase}\n")
}

/// A person commits and pushes like anyone would, pulling with rebase when rejected.
fn person_push(dir: &Path, files: &[(&str, &str)], message: &str) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        git(dir, &["add", path]);
    }
    git(dir, &["commit", "-q", "-m", message]);
    for _ in 0..200 {
        let ok = std::process::Command::new("git")
            .current_dir(dir)
            .args(["push", "-q", "origin", "HEAD:main"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        if ok {
            return;
        }
        let _ = std::process::Command::new("git")
            .current_dir(dir)
            .args(["pull", "-q", "--rebase", "origin", "main"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test Person")
            .env("GIT_AUTHOR_EMAIL", "person@example.com")
            .env("GIT_COMMITTER_NAME", "Test Person")
            .env("GIT_COMMITTER_EMAIL", "person@example.com")
            .stderr(std::process::Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(fastrand::u64(1..20)));
    }
    panic!("person could not push after 200 tries");
}

fn writer(transport: Transport, role: WriterRole) -> StatusWriter {
    let identity = match role {
        WriterRole::SlackBot => Identity::slack_bot(),
        _ => Identity::reconciler(),
    };
    StatusWriter::spawn(transport, WriterConfig::new(role, identity))
}

fn tracker_for(role: WriterRole) -> Tracker {
    let email = match role {
        WriterRole::SlackBot => Identity::slack_bot().email,
        _ => Identity::reconciler().email,
    };
    Tracker::new(Some(email), Some(role.owned()))
}

#[test]
fn tracker_loads_and_advances_incrementally() {
    let remote = Remote::new();
    let t = remote.transport(false);
    let repo = t.repo();
    let mut tracker = tracker_for(WriterRole::Reconciler);
    let wake = tracker.resync(&repo, t.head().unwrap()).unwrap();
    assert!(wake.full);
    assert!(wake.keys.contains(&ObjectKey::Settings));
    assert!(tracker.snapshot().settings.is_some());

    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/jwt/task.yaml", &task_yaml("JWT"))],
        "add task",
    );
    let wake = tracker.advance(&repo, t.fetch().unwrap()).unwrap();
    assert!(!wake.full);
    assert_eq!(wake.changed_files, 1);
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("jwt"))]));
    assert_eq!(
        tracker
            .snapshot()
            .task(&task("jwt"))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .title,
        "JWT"
    );
    // Nothing new: nothing woken.
    let wake = tracker.advance(&repo, t.fetch().unwrap()).unwrap();
    assert!(wake.keys.is_empty() && wake.changed_files == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_commits_do_not_wake_but_others_in_the_range_do() {
    let remote = Remote::new();
    let t = remote.transport(false);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    let w = writer(t.clone(), WriterRole::Reconciler);

    // Only our own status commit: no wake, but the snapshot has it.
    w.write(vec![Update::put(
        StatePath::TaskStatus(task("a")),
        status_yaml("Queued"),
        "a Queued",
    )])
    .await
    .unwrap();
    let wake = tracker.advance(&t.repo(), t.head().unwrap()).unwrap();
    assert!(wake.keys.is_empty(), "{:?}", wake.keys);
    assert_eq!(wake.changed_files, 1);
    assert!(
        tracker
            .snapshot()
            .task(&task("a"))
            .unwrap()
            .status
            .is_some()
    );

    // Our commit and a person's commit in one range: only the person's object wakes.
    w.write(vec![Update::put(
        StatePath::TaskStatus(task("a")),
        status_yaml("Running"),
        "a Running",
    )])
    .await
    .unwrap();
    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/b/task.yaml", &task_yaml("B"))],
        "b",
    );
    let wake = tracker.advance(&t.repo(), t.head().unwrap()).unwrap();
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("b"))]));
    assert_eq!(wake.commits, 2);

    // A person editing a reconciler-owned file still wakes it (someone else's change).
    person_push(
        &person,
        &[(
            "projects/ai-dev/api/tasks/a/status.yaml",
            &status_yaml("Failed"),
        )],
        "x",
    );
    let wake = tracker.advance(&t.repo(), t.head().unwrap()).unwrap();
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("a"))]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_refuses_files_it_does_not_own() {
    let remote = Remote::new();
    let before = remote.head();
    let w = writer(remote.transport(false), WriterRole::Reconciler);
    let err = w
        .write(vec![Update::put(
            StatePath::TaskSpec(task("x")),
            task_yaml("x"),
            "nope",
        )])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reconciler may not write projects/ai-dev/api/tasks/x/task.yaml: it is owned by the person"
    );
    let bot = writer(remote.transport(false), WriterRole::SlackBot);
    let err = bot
        .write(vec![Update::put(
            StatePath::TaskStatus(task("x")),
            status_yaml("Running"),
            "no",
        )])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("owned by the reconciler"), "{err}");
    assert_eq!(remote.head(), before, "nothing was committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_arriving_together_share_one_commit_and_no_ops_commit_nothing() {
    let remote = Remote::new();
    let before = remote.head();
    let mut cfg = WriterConfig::new(WriterRole::Reconciler, Identity::reconciler());
    cfg.window = Duration::from_millis(50);
    let w = StatusWriter::spawn(remote.transport(false), cfg);
    let pending: Vec<_> = (0..10)
        .map(|i| {
            w.submit(vec![Update::put(
                StatePath::TaskStatus(task(&format!("t{i}"))),
                status_yaml("Queued"),
                format!("ai-dev/api/t{i} Pending → Queued"),
            )])
            .unwrap()
        })
        .collect();
    let mut ids = BTreeSet::new();
    for p in pending {
        ids.insert(p.published().await.unwrap());
    }
    assert_eq!(ids.len(), 1, "one commit for all ten updates");
    let log = git(
        &remote.path,
        &["log", "--format=%an <%ae>|%s", &format!("{before}..main")],
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    assert_eq!(
        log,
        "gaffer <reconciler@gaffer.invalid>|gaffer: ai-dev/api/t0 Pending → Queued (+9 more)"
    );
    // Writing the same content again changes nothing.
    let head = remote.head();
    let id = w
        .write(vec![Update::put(
            StatePath::TaskStatus(task("t0")),
            status_yaml("Queued"),
            "same",
        )])
        .await
        .unwrap();
    assert_eq!(id.to_string(), head);
    assert_eq!(remote.head(), head);
}

async fn concurrent_writers(clone: bool) {
    const N: usize = 100;
    let remote = Remote::new();
    let rec = writer(remote.transport(clone), WriterRole::Reconciler);
    let bot = writer(remote.transport(clone), WriterRole::SlackBot);
    let person_dir = remote.person_clone("person");
    let person = tokio::task::spawn_blocking(move || {
        for i in 0..N {
            let t = format!("projects/ai-dev/api/tasks/p{}/task.yaml", i % 7);
            person_push(
                &person_dir,
                &[(t.as_str(), &task_yaml(&format!("person {i}")))],
                &format!("person {i}"),
            );
        }
    });
    let r = tokio::spawn(async move {
        for i in 0..N {
            let path = StatePath::TaskStatus(task(&format!("r{}", i % 5)));
            rec.write(vec![Update::put(
                path,
                format!("phase: Running\nattempts: {i}\n"),
                format!("rec {i}"),
            )])
            .await
            .unwrap();
        }
    });
    let b = tokio::spawn(async move {
        for i in 0..N {
            let path = StatePath::Slack(task(&format!("s{}", i % 3)));
            let body = format!("channelId: C1\nthreadTs: \"1.{i}\"\npostedSeq: {i}\n");
            bot.write(vec![Update::put(path, body, format!("bot {i}"))])
                .await
                .unwrap();
        }
    });
    person.await.unwrap();
    r.await.unwrap();
    b.await.unwrap();

    let authors = git(&remote.path, &["log", "--format=%ae", "main"]);
    let count = |email: &str| authors.lines().filter(|l| *l == email).count();
    assert_eq!(
        count("person@example.com"),
        N + 1,
        "every person commit (plus init) is there"
    );
    assert_eq!(
        count("reconciler@gaffer.invalid"),
        N,
        "every reconciler commit is there"
    );
    assert_eq!(
        count("slack-bot@gaffer.invalid"),
        N,
        "every bot commit is there"
    );
    // Each file holds its writer's last value.
    for k in 0..7 {
        let last = (0..N).filter(|i| i % 7 == k).max().unwrap();
        assert_eq!(
            remote.show(&format!("projects/ai-dev/api/tasks/p{k}/task.yaml")),
            format!("title: person {last}")
        );
    }
    for k in 0..5 {
        let last = (0..N).filter(|i| i % 5 == k).max().unwrap();
        assert_eq!(
            remote.show(&format!("projects/ai-dev/api/tasks/r{k}/status.yaml")),
            format!("phase: Running\nattempts: {last}")
        );
    }
    for k in 0..3 {
        let last = (0..N).filter(|i| i % 3 == k).max().unwrap();
        assert!(
            remote
                .show(&format!("projects/ai-dev/api/tasks/s{k}/slack.yaml"))
                .contains(&format!("postedSeq: {last}"))
        );
    }
    // History is linear: nobody merged anything.
    let merges = git(&remote.path, &["rev-list", "--merges", "main"]);
    assert!(merges.is_empty(), "no merge commits: {merges}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_direct() {
    concurrent_writers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_through_fetch_and_push() {
    concurrent_writers(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_push_is_rebuilt_on_the_new_head() {
    let remote = Remote::new();
    let t = remote.transport(true);
    let w = writer(t.clone(), WriterRole::Reconciler);
    // Someone pushes after our clone last fetched: our first push is rejected.
    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/a/task.yaml", &task_yaml("A"))],
        "a",
    );
    let theirs = remote.head();
    let ours = w
        .write(vec![Update::put(
            StatePath::TaskStatus(task("a")),
            status_yaml("Queued"),
            "a Queued",
        )])
        .await
        .unwrap();
    assert_eq!(remote.head(), ours.to_string());
    let parent = git(&remote.path, &["rev-parse", "main^"]);
    assert_eq!(
        parent, theirs,
        "rebuilt on top of the other push, not merged"
    );
    assert_eq!(
        remote.show("projects/ai-dev/api/tasks/a/task.yaml"),
        "title: A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_remote_delays_but_loses_nothing() {
    let remote = Remote::new();
    let t = remote.transport(true);
    let w = writer(t.clone(), WriterRole::Reconciler);
    let moved = remote.tmp.path().join("moved-away.git");
    std::fs::rename(&remote.path, &moved).unwrap();
    assert!(t.fetch().is_err(), "fetch fails while the remote is gone");
    let pending = w
        .submit(vec![Update::put(
            StatePath::TaskStatus(task("a")),
            status_yaml("Queued"),
            "a",
        )])
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&moved, &remote.path).unwrap();
    let id = pending.published().await.unwrap();
    assert_eq!(remote.head(), id.to_string());
    assert_eq!(
        remote.show("projects/ai-dev/api/tasks/a/status.yaml"),
        "phase: Queued"
    );
}

#[test]
fn force_push_is_detected_and_reloaded() {
    let remote = Remote::new();
    let t = remote.transport(false);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/a/task.yaml", &task_yaml("A"))],
        "a",
    );
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    // Someone rewrites history: drop the last commit and push a different one with force.
    git(&person, &["reset", "-q", "--hard", "HEAD~1"]);
    person_push_force(
        &person,
        "projects/ai-dev/api/tasks/b/task.yaml",
        &task_yaml("B"),
    );
    let wake = tracker.advance(&t.repo(), t.head().unwrap()).unwrap();
    assert!(wake.force_pushed);
    assert!(wake.full);
    assert!(
        tracker.snapshot().task(&task("a")).is_none(),
        "rewritten-away task is gone"
    );
    assert!(tracker.snapshot().task(&task("b")).is_some());
}

fn person_push_force(dir: &Path, path: &str, content: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
    git(dir, &["add", path]);
    git(dir, &["commit", "-q", "-m", "rewrite"]);
    git(dir, &["push", "-q", "--force", "origin", "HEAD:main"]);
}

#[test]
fn packed_refs_after_gc_are_still_read() {
    let remote = Remote::new();
    let t = remote.transport(false);
    let head = remote.head();
    git(&remote.path, &["gc", "-q", "--prune=now"]);
    assert!(
        !remote.path.join("refs/heads/main").exists(),
        "gc packed the ref"
    );
    assert_eq!(t.head().unwrap().unwrap().to_string(), head);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    assert!(
        tracker.snapshot().settings.is_some(),
        "objects read from the pack"
    );
}

/// Waits for a wake reason, with a deadline.
async fn next_reason(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Reason>) -> Option<Reason> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_wakes_on_pushes_packed_refs_and_new_ref_directories() {
    let remote = Remote::new();
    let (waker, mut rx) = watch::channel();
    let _watcher = watch::watch_refs(&remote.path, waker).unwrap();

    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/a/task.yaml", &task_yaml("A"))],
        "a",
    );
    assert_eq!(next_reason(&mut rx).await, Some(Reason::Refs), "push wakes");
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
    {}

    git(&remote.path, &["pack-refs", "--all"]);
    assert_eq!(
        next_reason(&mut rx).await,
        Some(Reason::Refs),
        "pack-refs wakes"
    );
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
    {}

    git(
        &person,
        &["push", "-q", "origin", "HEAD:refs/heads/feature/deep/new"],
    );
    assert_eq!(
        next_reason(&mut rx).await,
        Some(Reason::Refs),
        "a ref in a new directory wakes"
    );
    while tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .is_ok()
    {}

    // Our own reads do not wake (Access events are ignored).
    let t = remote.transport(false);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "reading the repository must not wake us"
    );
}

/// A syncer over `t` for the reconciler, woken once to load everything: its waker, its
/// tracker and where its wakes go.
fn started_syncer(
    t: &Transport,
) -> (
    watch::Waker,
    Arc<RwLock<Tracker>>,
    tokio::sync::mpsc::UnboundedReceiver<gaffer::store::Wake>,
) {
    let tracker = Arc::new(RwLock::new(tracker_for(WriterRole::Reconciler)));
    let (waker, rx) = watch::channel();
    let (out_tx, out_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(Syncer::new(t.clone(), tracker.clone()).run(rx, out_tx));
    waker.wake(Reason::Start);
    (waker, tracker, out_rx)
}

/// The syncer's next wake, within ten seconds.
async fn next_wake(
    out: &mut tokio::sync::mpsc::UnboundedReceiver<gaffer::store::Wake>,
) -> gaffer::store::Wake {
    tokio::time::timeout(Duration::from_secs(10), out.recv())
        .await
        .expect("a wake within 10 s")
        .expect("the syncer is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncer_picks_up_pushes_made_while_it_was_down() {
    let remote = Remote::new();
    let person = remote.person_clone("person");
    // gaffer is down; someone pushes.
    person_push(
        &person,
        &[(
            "projects/ai-dev/api/tasks/offline/task.yaml",
            &task_yaml("while down"),
        )],
        "x",
    );
    // gaffer starts: the first wake loads it.
    let t = remote.transport(true);
    let (waker, tracker, mut out_rx) = started_syncer(&t);
    let wake = next_wake(&mut out_rx).await;
    assert!(wake.full);
    assert!(wake.keys.contains(&ObjectKey::Task(task("offline"))));
    // And later pushes arrive through the poller.
    tokio::spawn(watch::poll(
        t.clone(),
        Duration::from_millis(50),
        waker.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(120)).await;
    person_push(
        &person,
        &[(
            "projects/ai-dev/api/tasks/later/task.yaml",
            &task_yaml("later"),
        )],
        "y",
    );
    let wake = next_wake(&mut out_rx).await;
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("later"))]));
    assert!(
        tracker
            .read()
            .unwrap()
            .snapshot()
            .task(&task("later"))
            .is_some()
    );
}

/// A sync that fails (the remote briefly unreachable) is tried again by itself: the wake-up
/// that asked for it may be the last one for a long time (before, the change waited for the
/// next push or the ten-minute resync).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_retried_without_another_wake() {
    let remote = Remote::new();
    let person = remote.person_clone("person");
    let t = remote.transport(true);
    let (waker, _tracker, mut out_rx) = started_syncer(&t);
    next_wake(&mut out_rx).await;
    person_push(
        &person,
        &[(
            "projects/ai-dev/api/tasks/late/task.yaml",
            &task_yaml("late"),
        )],
        "x",
    );
    // The remote is away when the wake-up comes, and back a moment later.
    let away = remote.path.with_extension("away");
    std::fs::rename(&remote.path, &away).unwrap();
    waker.wake(Reason::Poll(None));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&away, &remote.path).unwrap();
    let wake = next_wake(&mut out_rx).await;
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("late"))]));
}

/// A poll that saw the commit this process just pushed needs no fetch (the push already
/// told us): with the remote gone, the wake still comes, from what is already here. A head
/// that is not ours is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_that_saw_our_own_push_needs_no_fetch() {
    let remote = Remote::new();
    let t = remote.transport(true);
    let (waker, _tracker, mut out_rx) = started_syncer(&t);
    next_wake(&mut out_rx).await;
    let person = writer(t.clone(), WriterRole::Person);
    let ours = person
        .write(vec![Update::put(
            StatePath::TaskSpec(task("ours")),
            task_yaml("ours"),
            "a task",
        )])
        .await
        .unwrap();
    let away = remote.path.with_extension("away");
    std::fs::rename(&remote.path, &away).unwrap();
    waker.wake(Reason::Poll(Some(ours)));
    let wake = next_wake(&mut out_rx).await;
    assert_eq!(wake.head, Some(ours));
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("ours"))]));
    // Someone else's commit, seen by the poller, is fetched (once the remote is back).
    std::fs::rename(&away, &remote.path).unwrap();
    let theirs = remote.person_clone("person");
    person_push(
        &theirs,
        &[(
            "projects/ai-dev/api/tasks/theirs/task.yaml",
            &task_yaml("theirs"),
        )],
        "x",
    );
    let head = gix::ObjectId::from_hex(git(&remote.path, &["rev-parse", "main"]).trim().as_bytes())
        .unwrap();
    waker.wake(Reason::Poll(Some(head)));
    let wake = next_wake(&mut out_rx).await;
    assert_eq!(wake.head, Some(head));
    assert_eq!(wake.keys, BTreeSet::from([ObjectKey::Task(task("theirs"))]));
}

/// Each in-process fetch into a clone writes a pack; past the packs gix keeps slots for,
/// objects would go unseen. Forty fetches later, every head is still read.
#[test]
fn a_clone_reads_every_fetch_however_many_packs_they_wrote() {
    let remote = Remote::new();
    let person = remote.person_clone("person");
    let t = remote.transport(true);
    for i in 0..40 {
        person_push(
            &person,
            &[(
                &format!("projects/ai-dev/api/tasks/t{i}/task.yaml"),
                &task_yaml(&format!("t{i}")),
            )],
            "x",
        );
        let head = t.fetch().unwrap().unwrap();
        let mut tracker = Tracker::new(None, None);
        tracker.resync(&t.repo(), Some(head)).unwrap();
        assert_eq!(tracker.snapshot().tasks().count(), i + 1, "after fetch {i}");
    }
    let packs = std::fs::read_dir(remote.tmp.path().join("data-clone/state.git/objects/pack"))
        .map(|r| {
            r.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0);
    assert!(packs <= 33, "the clone was compacted: {packs} packs");
}

#[test]
fn hostile_files_do_not_stop_valid_objects() {
    let remote = Remote::new();
    let bomb = std::fs::read_to_string(
        crate::common::root()
            .join("tests/fixtures/invalid/yaml-bomb/projects/ai-dev/api/tasks/t1/task.yaml"),
    )
    .unwrap();
    let big = format!(
        "title: big\ndescription: \"{}\"\n",
        "x".repeat(2 * 1024 * 1024)
    );
    commit_to_bare(
        &remote.path,
        "main",
        &[
            ("projects/ai-dev/api/tasks/good/task.yaml", "title: good\n"),
            ("projects/ai-dev/api/tasks/bomb/task.yaml", &bomb),
            ("projects/ai-dev/api/tasks/big/task.yaml", &big),
            ("projects/ai-dev/api/tasks/Bad Name/task.yaml", "title: x\n"),
            (
                "projects/ai-dev/api/tasks/dup/task.yaml",
                "title: a\ntitle: b\n",
            ),
        ],
        "hostile",
    );
    let t = remote.transport(false);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    tracker.resync(&t.repo(), t.head().unwrap()).unwrap();
    let snap = tracker.snapshot();
    assert_eq!(
        snap.task(&task("good"))
            .unwrap()
            .spec
            .as_ref()
            .unwrap()
            .title,
        "good"
    );
    let problems: Vec<String> = snap.all_problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("bomb/task.yaml")));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("big/task.yaml: file is"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("invalid task \"Bad Name\""))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("dup/task.yaml:2:1: duplicate mapping key"))
    );
}

#[test]
fn tracker_never_moves_back_to_an_older_head() {
    // Two readers: one read the head earlier but takes the lock later.
    let remote = Remote::new();
    let t = remote.transport(false);
    let mut tracker = tracker_for(WriterRole::Reconciler);
    let old = t.head().unwrap();
    let person = remote.person_clone("person");
    person_push(
        &person,
        &[("projects/ai-dev/api/tasks/a/task.yaml", &task_yaml("A"))],
        "a",
    );
    let new = t.head().unwrap();
    tracker.resync(&t.repo(), new).unwrap();
    let wake = tracker.advance(&t.repo(), old).unwrap();
    assert!(
        !wake.force_pushed && !wake.full && wake.keys.is_empty(),
        "{wake:?}"
    );
    assert_eq!(tracker.head(), new);
    assert!(tracker.snapshot().task(&task("a")).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_never_overwrites() {
    let remote = Remote::new();
    let person = remote.person_clone("person");
    person_push(
        &person,
        &[(
            "projects/ai-dev/api/tasks/a/task.yaml",
            &task_yaml("theirs"),
        )],
        "a",
    );
    let head = remote.head();
    let w = writer(remote.transport(false), WriterRole::Person);
    let mut u = Update::put(
        StatePath::TaskSpec(task("a")),
        task_yaml("mine"),
        "new task a",
    );
    u.create_only = true;
    let id = w.write(vec![u]).await.unwrap();
    assert_eq!(id.to_string(), head, "nothing committed");
    assert_eq!(
        remote.show("projects/ai-dev/api/tasks/a/task.yaml"),
        "title: theirs"
    );
}

/// Commits `file` in the clone `work` as alice, signed with `key` (or unsigned), and pushes.
fn commit_signed(work: &Path, file: &str, key: Option<&Path>) {
    std::fs::write(work.join(file), file).unwrap();
    git(work, &["add", file]);
    let mut cmd = std::process::Command::new("git");
    cmd.current_dir(work)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com");
    if let Some(k) = key {
        cmd.arg("-c")
            .arg("gpg.format=ssh")
            .arg("-c")
            .arg(format!("user.signingkey={}", k.display()));
    }
    cmd.args(["commit", "-q", "-m", file]);
    if key.is_some() {
        cmd.arg("-S");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(work, &["push", "-q", "origin", "HEAD:main"]);
}

#[tokio::test]
async fn a_signature_names_its_signer_only_when_its_key_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, work) = state_and_clone(tmp.path());
    let (alice_key, alice_line) = crate::common::ssh_key(tmp.path(), "alice");
    let (mallory_key, _) = crate::common::ssh_key(tmp.path(), "mallory");
    commit_signed(&work, "signed", Some(&alice_key));
    commit_signed(&work, "by-another-key", Some(&mallory_key));
    commit_signed(&work, "unsigned", None);

    let (store, head) = git_store(&bare, tmp.path());
    use gaffer::store::Store as _;
    let keys = [alice_line];
    let of = |path: &'static str| {
        let (store, head, keys) = (&store, &head, &keys);
        async move { store.last_change(head, path, keys).await.unwrap().unwrap() }
    };
    let signed = of("signed").await;
    assert_eq!(signed.author, "alice@example.com");
    assert_eq!(signed.signer.as_deref(), Some("alice@example.com"));
    // A key nobody listed proves nothing, and neither does no signature.
    assert_eq!(of("by-another-key").await.signer, None);
    assert_eq!(of("unsigned").await.signer, None);
    // Without listed keys nothing is checked.
    let plain = store
        .last_change(&head, "signed", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (plain.author.as_str(), plain.signer),
        ("alice@example.com", None)
    );
}

#[tokio::test]
async fn an_openpgp_signature_by_a_listed_key_names_the_email_of_its_user_id() {
    let tmp = tempfile::tempdir().unwrap();
    let (bare, work) = state_and_clone(tmp.path());
    let gnupg = tmp.path().join("gnupg");
    std::fs::create_dir_all(&gnupg).unwrap();
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = std::process::Command::new("gpg")
            .args(["--batch", "--quiet"])
            .args(args)
            .env("GNUPGHOME", &gnupg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        "Alice <alice@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    let public = gpg(&["--armor", "--export", "alice@example.com"]);
    std::fs::write(work.join("signed"), "x").unwrap();
    git(&work, &["add", "signed"]);
    let out = std::process::Command::new("git")
        .current_dir(&work)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GNUPGHOME", &gnupg)
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .args([
            "-c",
            "user.signingkey=alice@example.com",
            "commit",
            "-q",
            "-S",
            "-m",
            "signed",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(&work, &["push", "-q", "origin", "HEAD:main"]);

    let (store, head) = git_store(&bare, tmp.path());
    use gaffer::store::Store as _;
    let sig = store
        .last_change(&head, "signed", &[public])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sig.signer.as_deref(), Some("alice@example.com"));
    // The same commit, with no key listed for it: no signer.
    let (_, someone_else) = crate::common::ssh_key(tmp.path(), "bob");
    let sig = store
        .last_change(&head, "signed", &[someone_else])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sig.signer, None);
}

/// A bare state repo with `gaffer.yaml`, and a clone of it to commit in.
fn state_and_clone(dir: &Path) -> (PathBuf, PathBuf) {
    let bare = dir.join("state.git");
    git(
        dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    commit_to_bare(&bare, "main", &[("gaffer.yaml", SETTINGS)], "init");
    let work = dir.join("work");
    git(
        dir,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    (bare, work)
}

/// The reconciler's store over `bare`, and its head.
fn git_store(bare: &Path, dir: &Path) -> (gaffer::store::GitStore, String) {
    let transport =
        Transport::open(bare.to_str().unwrap(), "main", &dir.join("data"), false).unwrap();
    let head = transport.head().unwrap().unwrap().to_string();
    let store = gaffer::store::GitStore {
        tracker: Arc::new(RwLock::new(Tracker::new(None, None))),
        writer: StatusWriter::spawn(
            transport.clone(),
            WriterConfig::new(WriterRole::Reconciler, Identity::reconciler()),
        ),
        transport,
    };
    (store, head)
}
