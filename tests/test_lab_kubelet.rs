//! The lab runs what it deploys: the uv template (`lab-templates/uv-python`) rendered by the
//! real `kubectl kustomize`, applied by the production kube client to the fake API, and run
//! by its test kubelet — the app really serves from its ConfigMap through the fake ingress,
//! a crash loop is reported with the container's last lines, and the reconciler feeds that
//! back to the builder, redeploys the fix and runs the real pytest suite against `LAB_URL`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gaffer::lab::{DeployRequest, LabDeployer, LabError};

use crate::common::kube::FakeKube;

const HOST: &str = crate::common::kube::LAB_HOST;

/// Copies the template `name` of `lab-templates/` into `dir`.
fn template(name: &str, dir: &Path) {
    let from = crate::common::root().join("lab-templates").join(name);
    let mut stack = vec![from.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let to = dir.join(p.strip_prefix(&from).unwrap());
            if p.is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                stack.push(p);
            } else {
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&p, &to).unwrap();
            }
        }
    }
}

fn fake_with_uv() -> FakeKube {
    let uv = crate::common::uv();
    FakeKube::with_kubelet(crate::common::path_with(uv.parent().unwrap()))
}

const BROKEN: &str = "import sys\n\
print('starting the greeter', flush=True)\n\
print('config error: GREETING_STYLE is not set', file=sys.stderr)\n\
sys.exit(3)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uv_template_serves_from_its_config_map_and_a_crash_loop_is_reported_with_its_lines() {
    let fake = tokio::task::spawn_blocking(fake_with_uv).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("web-api");
    template("uv-python", &app);
    let kc = tmp.path().join("admin.kubeconfig");
    let d = fake.deployer(tmp.path(), Duration::from_secs(60)).await;
    let mut req = render_request(&app, tmp.path());
    let first = d.deploy(&req).await.unwrap();
    let greet = format!("http://{HOST}/greet?name=lab");
    let (code, body) = fake.get_via_proxy(&greet);
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"greeting": "Hello, lab!"}"#)
    );
    // The Service's DNS name reaches it too.
    let (code, _) = fake.get_via_proxy("http://hello.demo-web-api-lab.svc/healthz");
    assert_eq!(code, 200);
    let pod = fake
        .names("v1", "pods", "demo-web-api-lab")
        .into_iter()
        .next()
        .unwrap();
    let log = fake.log("demo-web-api-lab", &pod, "app").unwrap();
    assert!(log.contains("GET /greet?name=lab"), "{log}");
    lab_logs_from_a_terminal(&fake, tmp.path(), &kc, &pod);

    // A change that crashes at start: reported at once (not at the rollout timeout) with
    // the reason, the restarts and the container's own last lines.
    std::fs::write(app.join("app/main.py"), BROKEN).unwrap();
    req.previous = first.inventory.clone();
    let started = std::time::Instant::now();
    let e = d.deploy(&req).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(50), "{e}");
    let LabError::NotReady {
        crashing,
        report,
        logs,
        ..
    } = &e
    else {
        panic!("{e}");
    };
    assert!(crashing, "{e}");
    assert!(report.contains("CrashLoopBackOff"), "{report}");
    assert!(report.contains("last exit code 3"), "{report}");
    assert!(
        logs.contains("config error: GREETING_STYLE is not set")
            && logs.contains("starting the greeter"),
        "{logs}"
    );
    // The old version still serves: a broken rollout never takes the lab down.
    assert_eq!(fake.get_via_proxy(&greet).0, 200);

    // Fixed: the new version rolls out, the old pod goes.
    template("uv-python", &app);
    std::fs::write(
        app.join("deploy/deployment.yaml"),
        std::fs::read_to_string(app.join("deploy/deployment.yaml"))
            .unwrap()
            .replace("value: Hello", "value: Hi"),
    )
    .unwrap();
    d.deploy(&req).await.unwrap();
    let (code, body) = fake.get_via_proxy(&greet);
    assert_eq!((code, body.as_str()), (200, r#"{"greeting": "Hi, lab!"}"#));
    fake.stop().await;
}

/// `gaffer lab logs`: every container's last lines, one followed as it grows, and a name
/// that is not one refused.
fn lab_logs_from_a_terminal(fake: &FakeKube, home: &Path, kc: &Path, pod: &str) {
    tokio::task::block_in_place(|| {
        let lab = |args: &[&str]| {
            let mut c = crate::common::gaffer(home);
            c.env("KUBECONFIG", kc)
                .args(["lab", "logs", "demo/web-api"])
                .args(args);
            c
        };
        let out = lab(&[]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("serving on 127.") && text.contains("GET /greet?name=lab"),
            "{text}"
        );
        let out = lab(&["--pod", "../x"]).output().unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a pod or container name"));

        let mut child = lab(&["--follow", "--pod", pod])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _guard = crate::common::Proc(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The tail first; then a request made now shows up as it happens.
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the tail of the log");
        assert_eq!(
            fake.get_via_proxy(&format!("http://{HOST}/greet?name=followed"))
                .0,
            200
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .expect("the new request in the followed log");
            if line.contains("name=followed") {
                break;
            }
        }
    });
}

/// The state repo and app origin of a project whose app is the uv template and whose
/// scripted builder first breaks it, then fixes it when told why.
fn uv_project(tmp: &Path, proxy: &str) -> PathBuf {
    let app = tmp.join("app");
    template("uv-python", &app);
    let good = std::fs::read_to_string(app.join("app/main.py"))
        .unwrap()
        .replace(
            "{GREETING}, {name}!\"}",
            "{GREETING}, {name}!\", \"warmly\": True}",
        );
    assert!(
        good.contains("warmly"),
        "the template's reply changed: {good}"
    );
    let script = serde_json::json!({
        "steps": [
            {"todo": "Change the greeting"},
            {"write": {"path": "web-api/app/main.py", "content": BROKEN}},
            {"done": "Greeting changed"},
        ],
        "fix": [
            {"write": {"path": "web-api/app/main.py", "content": good}},
            {"done": "Fixed the crash at start"},
        ],
    });
    std::fs::create_dir_all(app.join(".gaffer")).unwrap();
    std::fs::write(app.join(".gaffer/agent-script.yaml"), script.to_string()).unwrap();
    let files: Vec<(String, Option<Vec<u8>>)> = walk(&app);
    let origin = tmp.join("origins/web-api.git");
    gaffer::cli::demo::bare_repo_with(&origin, &files, "web-api").unwrap();
    let state = tmp.join("state.git");
    let settings = format!(
        "domain: lab.example.com\n\
         lab_url: \"http://{{{{ host }}}}\"\n\
         business_hours: {{timezone: Europe/London, days: [mon, tue, wed, thu, fri, sat, sun], start: \"00:00\", end: \"23:59\"}}\n\
         authors: {{answers: [{p}], slack_users: [], accept_unsigned: true}}\n",
        p = gaffer::cli::demo::PERSON
    );
    let project = format!(
        "repos:\n  - {{name: web-api, url: {}, base: main}}\n\
         agent: {{runtime: scripted, script: web-api/.gaffer/agent-script.yaml}}\n\
         lab:\n  overlay: web-api\n  test: env HTTP_PROXY={proxy} uv run --no-project --with pytest==9.2.0 -- pytest -q tests --junitxml=report.xml\n\
         forge: {{kind: local, merge_method: merge}}\n",
        serde_json::Value::String(origin.display().to_string())
    );
    gaffer::cli::demo::bare_repo_with(
        &state,
        &[
            ("gaffer.yaml".into(), Some(settings.into_bytes())),
            (
                "projects/demo/web-api/project.yaml".into(),
                Some(project.into_bytes()),
            ),
            (
                "projects/demo/web-api/tasks/greet/task.yaml".into(),
                Some(b"title: Greet people more warmly\n".to_vec()),
            ),
        ],
        "state",
    )
    .unwrap();
    state
}

fn walk(dir: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

#[test]
fn a_crash_goes_back_to_the_builder_and_the_fix_is_redeployed_and_tested_with_pytest() {
    let fake = fake_with_uv();
    let tmp = tempfile::tempdir().unwrap();
    let state = uv_project(tmp.path(), &fake.proxy_url());
    let kubeconfig = tmp.path().join("admin.kubeconfig");
    fake.write_kubeconfig(&kubeconfig);
    let uv = crate::common::uv();
    let log = std::fs::File::create(tmp.path().join("daemon.log")).unwrap();
    let _guard = crate::common::Proc(
        crate::common::gaffer(tmp.path())
            .env("KUBECONFIG", &kubeconfig)
            .env("PATH", crate::common::path_with(uv.parent().unwrap()))
            .args(["reconcile", "--lab", "cluster", "--lab-rollout-secs", "60"])
            .args(["--state", state.to_str().unwrap()])
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("--builders")
            .arg(tmp.path().join("builders"))
            .env("RUST_LOG", "gaffer=info")
            // uv fetches pytest (pinned) from the package index: the machine's roots and
            // one cache for every test.
            .envs(std::env::var_os("SSL_CERT_FILE").map(|f| ("SSL_CERT_FILE", f)))
            .env(
                "UV_CACHE_DIR",
                crate::common::root().join("target/uv-cache"),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let t = gaffer::names::TaskRef::parse("demo/web-api/greet").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let (st, progress) = loop {
        let snap = crate::common::snapshot_of(&state, &tmp.path().join("ro"));
        let st = snap.task(&t).and_then(|e| e.status.clone());
        if let Some(st) = &st
            && matches!(
                st.phase,
                gaffer::state::status::Phase::InReview | gaffer::state::status::Phase::Failed
            )
        {
            let progress = snap.task(&t).unwrap().progress.clone().unwrap_or_default();
            break ((*st).clone(), progress);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out; status {st:#?}\n{}",
            std::fs::read_to_string(tmp.path().join("daemon.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let texts: Vec<&str> = progress
        .milestones
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert_eq!(
        st.phase,
        gaffer::state::status::Phase::InReview,
        "{texts:#?}\n{st:#?}\n{}",
        std::fs::read_to_string(tmp.path().join("daemon.log")).unwrap_or_default()
    );
    // The crash reached the thread with the container's own words …
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("💥 the lab deploy failed")
                && t.contains("CrashLoopBackOff")
                && t.contains("config error: GREETING_STYLE is not set")),
        "{texts:#?}"
    );
    // … and the builder, which fixed it; the real pytest suite then passed against the
    // deployed fix, and its counts reached the thread.
    let feedback = std::fs::read_to_string(
        std::fs::read_dir(tmp.path().join("data/scripted"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    assert!(
        feedback.contains("a container crash-loops")
            && feedback.contains("config error: GREETING_STYLE is not set"),
        "{feedback}"
    );
    assert!(texts.contains(&"✅ pytest: 2/2 passing"), "{texts:#?}");
    let (code, body) = fake.get_via_proxy(&format!("http://{HOST}/greet?name=you"));
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"greeting": "Hello, you!", "warmly": true}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_overlays_are_refused_with_located_errors_and_nothing_is_applied() {
    let fake = tokio::task::spawn_blocking(FakeKube::start).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repos");
    let app = ws.join("web-api");
    let d = fake.deployer(tmp.path(), Duration::from_secs(300)).await;
    std::fs::create_dir_all(tmp.path().join("elsewhere")).unwrap();
    std::fs::write(
        tmp.path().join("elsewhere/kustomization.yaml"),
        "resources: []\n",
    )
    .unwrap();
    let big = "x".repeat(1_200_000);
    // (kustomization.yaml, what, an extra file, the error wanted)
    type Case<'a> = (&'a str, &'a str, Option<(&'a str, &'a str)>, &'a str);
    let cases: [Case; 3] = [
        (
            "resources:\n  - deploy/service.yaml\n  - ../../elsewhere\n",
            "outside",
            None,
            "web-api/kustomization.yaml:3:5: resources entry \"../../elsewhere\" points outside the workspace",
        ),
        (
            "resources: [deploy/service.yaml]\nconfigMapGenerator:\n  - name: data\n    files: [app/big.txt]\n",
            "too big",
            Some(("app/big.txt", big.as_str())),
            "bytes; Kubernetes stores at most 1048576 (1 MiB) per object",
        ),
        (
            "resources: [deploy/service.yaml, frob.yaml]\n",
            "unknown kind",
            Some((
                "frob.yaml",
                "apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: f}\n",
            )),
            "Frobnicator f: ",
        ),
    ];
    for (kustomization, what, extra, want) in cases {
        let _ = std::fs::remove_dir_all(&app);
        template("uv-python", &app);
        std::fs::write(app.join("kustomization.yaml"), kustomization).unwrap();
        if let Some((path, content)) = extra {
            std::fs::write(app.join(path), content).unwrap();
        }
        let req = render_request(&app, &ws);
        let e = d.deploy(&req).await.unwrap_err();
        assert!(
            matches!(&e, LabError::Invalid { message, .. } if message.contains(want)),
            "{what}: {e}"
        );
        assert!(
            fake.requests().iter().all(|r| r.method != "PATCH"),
            "{what}: something was applied"
        );
    }
    fake.stop().await;
}

fn render_request(app: &Path, ws: &Path) -> DeployRequest {
    crate::common::kube::deploy_request(app, ws, &format!("http://{HOST}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_template_renders_to_valid_manifests_and_helm_takes_the_lab_values() {
    use gaffer::lab::render::RenderOnly;
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repos");
    let helm = tokio::task::spawn_blocking(crate::common::helm)
        .await
        .unwrap();
    // The chart carries the uv template's app (a chart reads only its own files): one app.
    let templates = crate::common::root().join("lab-templates");
    assert_eq!(
        std::fs::read_to_string(templates.join("helm/files/main.py")).unwrap(),
        std::fs::read_to_string(templates.join("uv-python/app/main.py")).unwrap(),
        "lab-templates/helm/files/main.py is a copy of uv-python/app/main.py"
    );
    for name in ["uv-python", "camel-jbang", "helm"] {
        let app = ws.join(name);
        template(name, &app);
        let mut req = render_request(&app, &ws);
        if name == "helm" {
            req.tool = gaffer::state::spec::LabTool::Helm;
            req.values = vec!["values-lab.yaml".into()];
        }
        let r = RenderOnly::new(tmp.path().join("out"))
            .with_helm(&helm)
            .render(&req)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // gaffer's wrapper made it the lab's: its namespace, and the lab host.
        assert!(r.text.contains("namespace: demo-web-api-lab"), "{name}");
        assert!(r.text.contains(&format!("host: {HOST}")), "{name}");
        let file = tmp.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &r.text).unwrap();
        let checked =
            tokio::task::spawn_blocking(move || crate::common::kubernetes_validate(&file))
                .await
                .unwrap();
        assert!(checked.is_ok(), "{name}: {checked:?}");
        if name == "helm" {
            // values-lab.yaml over values.yaml: one replica, the lab's greeting.
            let dep = r.docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
            assert_eq!(dep["spec"]["replicas"], 1);
            let env = &dep["spec"]["template"]["spec"]["containers"][0]["env"];
            assert!(
                env.as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["name"] == "GREETING" && e["value"] == "Hello from the lab"),
                "{env}"
            );
            // A values file that is not there is named.
            req.values = vec!["values-prod.yaml".into()];
            let e = RenderOnly::new(tmp.path().join("out"))
                .with_helm(&helm)
                .render(&req)
                .await
                .unwrap_err();
            assert!(
                e.to_string().contains("values-prod.yaml does not exist"),
                "{e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_whose_command_is_not_on_this_machine_waits_with_a_clear_reason() {
    // The Camel JBang template cannot run here (no `camel`, and its components come from
    // Maven Central): the test kubelet says so in the pod's status, and the deploy's report.
    let fake = tokio::task::spawn_blocking(fake_with_uv).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repos");
    let app = ws.join("web-api");
    template("camel-jbang", &app);
    let d = fake.deployer(tmp.path(), Duration::from_secs(2)).await;
    let e = d.deploy(&render_request(&app, &ws)).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("ErrImagePull")
            && msg.contains("`camel` is not installed here (image apache/camel-jbang:4.18.2"),
        "{msg}"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_gives_containers_their_env_volumes_and_working_dir() {
    let fake = tokio::task::spawn_blocking(fake_with_uv).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repos");
    let app = ws.join("web-api");
    std::fs::create_dir_all(&app).unwrap();
    let files = [
        (
            "kustomization.yaml",
            "resources: [deployment.yaml]\n\
             secretGenerator:\n  - {name: creds, literals: [token=s3cret]}\n\
             configMapGenerator:\n  - {name: settings, literals: [mode=lab], files: [cfg.txt]}\n",
        ),
        ("cfg.txt", "from the config map\n"),
        (
            "deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: envtest}\nspec:\n  \
             selector: {matchLabels: {app: envtest}}\n  template:\n    metadata: {labels: {app: envtest}}\n    spec:\n      \
             containers:\n        - name: sh\n          image: busybox\n          \
             command: [sh, -c, 'echo token=$TOKEN mode=$MODE from=$mode; pwd; cat /etc/settings/cfg.txt; exec sleep 600']\n          \
             workingDir: /work\n          \
             env:\n            - name: TOKEN\n              valueFrom: {secretKeyRef: {name: creds, key: token}}\n            \
             - name: MODE\n              valueFrom: {configMapKeyRef: {name: settings, key: mode}}\n          \
             envFrom: [{configMapRef: {name: settings}}]\n          \
             volumeMounts: [{name: work, mountPath: /work}, {name: settings, mountPath: /etc/settings}]\n      \
             volumes: [{name: work, emptyDir: {}}, {name: settings, configMap: {name: settings}}]\n",
        ),
    ];
    for (p, c) in files {
        std::fs::write(app.join(p), c).unwrap();
    }
    let d = fake.deployer(tmp.path(), Duration::from_secs(30)).await;
    let first = d.deploy(&render_request(&app, &ws)).await.unwrap();
    let pod = fake
        .names("v1", "pods", "demo-web-api-lab")
        .into_iter()
        .next()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = fake.log("demo-web-api-lab", &pod, "sh").unwrap_or_default();
        if log.contains("from the config map") || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.contains("token=s3cret mode=lab from=lab\n"), "{log}");
    assert!(log.contains("from the config map\n"), "{log}");
    assert!(
        log.contains("/volumes/work\n"),
        "the working dir is the emptyDir: {log}"
    );

    // A key that is not there: the container cannot start, and the deploy says so at once.
    std::fs::write(
        app.join("deployment.yaml"),
        files[2].1.replace("key: token", "key: password"),
    )
    .unwrap();
    let mut req = render_request(&app, &ws);
    req.previous = first.inventory;
    let started = std::time::Instant::now();
    let e = d.deploy(&req).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(20), "{e}");
    assert!(
        e.contains("CreateContainerConfigError (couldn't find key password in Secret demo-web-api-lab/creds-"),
        "{e}"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claims_volume_outlives_its_pod() {
    use k8s_openapi::api::core::v1::Pod;
    let fake = tokio::task::spawn_blocking(fake_with_uv).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("repos");
    let app = ws.join("web-api");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("kustomization.yaml"), "resources: [sts.yaml]\n").unwrap();
    std::fs::write(
        app.join("sts.yaml"),
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: keeper}\nspec:\n  \
         serviceName: keeper\n  selector: {matchLabels: {app: keeper}}\n  \
         template:\n    metadata: {labels: {app: keeper}}\n    spec:\n      containers:\n        \
         - name: sh\n          image: busybox\n          \
         command: [sh, -c, 'n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo run $n; exec sleep 600']\n          \
         volumeMounts: [{name: data, mountPath: /data}]\n  \
         volumeClaimTemplates:\n    - metadata: {name: data}\n      \
         spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .unwrap();
    let d = fake.deployer(tmp.path(), Duration::from_secs(30)).await;
    d.deploy(&render_request(&app, &ws)).await.unwrap();
    let ns = "demo-web-api-lab";
    let log_has = |want: &'static str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let log = fake.log(ns, "keeper-0", "sh").unwrap_or_default();
            if log.contains(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{want}: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tokio::task::block_in_place(|| log_has("run 1"));
    // The pod goes; its StatefulSet makes it again, on the same claim.
    let admin = kube::Client::try_from(
        crate::common::kube::config_of(&tmp.path().join("admin.kubeconfig")).await,
    )
    .unwrap();
    kube::Api::<Pod>::namespaced(admin, ns)
        .delete("keeper-0", &Default::default())
        .await
        .unwrap();
    tokio::task::block_in_place(|| log_has("run 2"));
    fake.stop().await;
}
