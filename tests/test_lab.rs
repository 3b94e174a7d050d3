//! The cluster lab deployer (kube-rs, the production client) against the fake Kubernetes API
//! server, with real `kubectl kustomize` renders of the demo app's overlay: staged
//! server-side apply, no-op re-deploys, updates and pruning, rollout failures explained,
//! the builder's namespace-scoped access (checked with the real kubectl too), and the
//! reconciler, `gaffer lab list` and `gaffer lab cleanup` as processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gaffer::cli::demo::sample_app;
use gaffer::lab::cluster::{BUILDER_ACCOUNT, ClusterDeployer, builder_rules};
use gaffer::lab::{DeployRequest, LabDeployer, LabError};
use gaffer::names::ProjectRef;
use serde_json::json;

use crate::common::kube::FakeKube;

/// The demo app written to `dir`; returns the overlay (`deploy/`).
fn app(dir: &Path) -> PathBuf {
    for (path, content) in sample_app() {
        let p = dir.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content.unwrap()).unwrap();
    }
    dir.join("deploy")
}

async fn deployer(fake: &FakeKube, dir: &Path) -> ClusterDeployer {
    let kc = dir.join("admin.kubeconfig");
    fake.write_kubeconfig(&kc);
    let config = crate::common::kube::config_of(&kc).await;
    let mut d = ClusterDeployer::new(config, dir.join("lab")).unwrap();
    d.rollout_timeout = Duration::from_secs(2);
    d.poll = Duration::from_millis(20);
    d
}

fn request(overlay: PathBuf) -> DeployRequest {
    let workspace = overlay.parent().unwrap().to_path_buf();
    crate::common::kube::deploy_request(
        &overlay,
        &workspace,
        "https://web-api.builder.lab.example.com",
    )
}

const NS: &str = "demo-web-api-lab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_applies_in_stages_an_identical_one_is_a_no_op_and_a_change_updates_and_prunes() {
    let fake = tokio::task::spawn_blocking(FakeKube::start).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let overlay = app(&tmp.path().join("ws"));
    let d = deployer(&fake, tmp.path()).await;

    let first = d.deploy(&request(overlay.clone())).await.unwrap();
    assert_eq!(first.mode, "cluster");
    assert!(!first.no_op);
    assert_eq!(first.namespace, NS);
    // The namespace carries gaffer's labels; the objects are in it.
    let ns = fake
        .get("v1", "namespaces", "", NS)
        .expect("namespace created");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gaffer"
    );
    assert_eq!(ns["metadata"]["labels"]["gaffer.dev/project"], "web-api");
    let dep = fake
        .get("apps/v1", "deployments", NS, "web-api")
        .expect("deployment applied");
    assert_eq!(dep["spec"]["replicas"], 1, "the overlay's patch applied");
    let ing = fake
        .get("networking.k8s.io/v1", "ingresses", NS, "web-api")
        .unwrap();
    assert_eq!(
        ing["spec"]["rules"][0]["host"],
        "web-api.builder.lab.example.com"
    );
    let cms = fake.names("v1", "configmaps", NS);
    assert_eq!(cms.len(), 1, "{cms:?}");
    assert!(
        cms[0].starts_with("web-api-code-"),
        "configMapGenerator's hashed name"
    );
    let kinds: Vec<&str> = first.inventory.iter().map(|i| i.kind.as_str()).collect();
    for k in ["Namespace", "ConfigMap", "Service", "Deployment", "Ingress"] {
        assert!(kinds.contains(&k), "{kinds:?}");
    }
    // Every write was a server-side apply by field manager gaffer, forced; the namespace
    // came before anything in it.
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(!writes.is_empty());
    for w in &writes {
        assert_eq!(w.method, "PATCH", "{w:?}");
        assert_eq!(w.content_type, "application/apply-patch+yaml");
        assert!(
            w.query.contains("fieldManager=gaffer") && w.query.contains("force=true"),
            "{w:?}"
        );
    }
    assert_eq!(writes[0].path, format!("/api/v1/namespaces/{NS}"));

    // The same render again changes nothing and says so.
    let before = fake.requests().len();
    let mut again = request(overlay.clone());
    again.previous = first.inventory.clone();
    let second = d.deploy(&again).await.unwrap();
    assert!(second.no_op);
    assert!(
        fake.requests()[before..].iter().all(|r| !r.changed),
        "nothing changed in the cluster"
    );
    assert_eq!(
        fake.get("apps/v1", "deployments", NS, "web-api").unwrap()["metadata"]["generation"],
        1
    );

    // The builder edits the code (the ConfigMap's hash changes) and drops the Service.
    let ws = tmp.path().join("ws");
    std::fs::write(ws.join("app/main.py"), "print('v2')\n").unwrap();
    let k = std::fs::read_to_string(ws.join("app/kustomization.yaml")).unwrap();
    std::fs::write(
        ws.join("app/kustomization.yaml"),
        k.replace("  - service.yaml\n", ""),
    )
    .unwrap();
    let mut changed = request(overlay);
    changed.previous = second.inventory.clone();
    let third = d.deploy(&changed).await.unwrap();
    assert!(!third.no_op);
    let cms_now = fake.names("v1", "configmaps", NS);
    assert_eq!(
        cms_now.len(),
        1,
        "the old ConfigMap was pruned: {cms_now:?}"
    );
    assert_ne!(cms_now, cms);
    assert!(
        fake.names("v1", "services", NS).is_empty(),
        "the Service was pruned"
    );
    let dep = fake.get("apps/v1", "deployments", NS, "web-api").unwrap();
    assert_eq!(
        dep["metadata"]["generation"], 2,
        "the Deployment was updated"
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cms_now[0]
    );
    assert!(
        fake.get("v1", "namespaces", "", NS).is_some(),
        "never the namespace"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_that_never_becomes_ready_is_reported_with_its_reasons() {
    let fake = tokio::task::spawn_blocking(FakeKube::start).await.unwrap();
    fake.never_ready("web-api");
    let tmp = tempfile::tempdir().unwrap();
    let overlay = app(&tmp.path().join("ws"));
    let d = deployer(&fake, tmp.path()).await;
    let e = d.deploy(&request(overlay)).await.unwrap_err();
    let LabError::NotReady { secs, report, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(*secs, 2);
    let msg = e.to_string();
    assert!(msg.contains("not ready after 2s"), "{msg}");
    assert!(
        report.contains("Deployment web-api: 0/1 replicas available"),
        "{report}"
    );
    assert!(report.contains("minimum availability"), "{report}");
    assert!(
        report.contains(
            "container api waiting: ImagePullBackOff (Back-off pulling image ghcr.io/astral-sh/uv:0.13.9-python3.12-bookworm-slim)"
        ),
        "{report}"
    );
    assert!(
        report.contains("pulling the image failed"),
        "the event: {report}"
    );
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_gets_a_kubeconfig_that_reaches_its_namespace_only() {
    let fake = tokio::task::spawn_blocking(FakeKube::start).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = deployer(&fake, tmp.path()).await;
    let project = ProjectRef::parse("demo/web-api").unwrap();
    let env: BTreeMap<String, String> = d
        .builder_access(&project, "https://web-api.builder.lab.example.com")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(env["LAB_NAMESPACE"], NS);
    assert_eq!(env["LAB_URL"], "https://web-api.builder.lab.example.com");
    let kc = PathBuf::from(&env["KUBECONFIG"]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The Role is namespaced, grants no RBAC and is bound to the builder's account only.
    let role = fake
        .get("rbac.authorization.k8s.io/v1", "roles", NS, BUILDER_ACCOUNT)
        .unwrap();
    assert_eq!(role["rules"], builder_rules());
    assert!(
        !role["rules"].to_string().contains("rbac"),
        "no RBAC rights: the builder cannot widen its own access"
    );
    let binding = fake
        .get(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            NS,
            BUILDER_ACCOUNT,
        )
        .unwrap();
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": BUILDER_ACCOUNT, "namespace": NS}])
    );
    // With the builder's kubeconfig (read by kube-rs as kubectl would read it: kubectl
    // itself sends no token to a plain-http server like this fake), the builder works in its
    // lab namespace and is refused anywhere else and for RBAC.
    let config = crate::common::kube::config_of(&kc).await;
    assert_eq!(config.default_namespace, NS);
    let client = kube::Client::try_from(config).unwrap();
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, Patch, PatchParams};
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "probe"}, "data": {"a": "b"}}))
    .unwrap();
    let pp = PatchParams::apply("builder");
    let mine: Api<ConfigMap> = Api::default_namespaced(client.clone());
    mine.patch("probe", &pp, &Patch::Apply(&cm)).await.unwrap();
    assert!(fake.get("v1", "configmaps", NS, "probe").is_some());
    assert_eq!(mine.list(&Default::default()).await.unwrap().items.len(), 1);
    let forbidden = |e: kube::Error| matches!(e, kube::Error::Api(s) if s.code == 403);
    let theirs: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    assert!(forbidden(
        theirs.list(&Default::default()).await.unwrap_err()
    ));
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "someone-else-lab");
    assert!(forbidden(
        other
            .patch("probe", &pp, &Patch::Apply(&cm))
            .await
            .unwrap_err()
    ));
    use k8s_openapi::api::rbac::v1::Role;
    let role: Role = serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role", "metadata": {"name": "more"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}))
    .unwrap();
    let roles: Api<Role> = Api::default_namespaced(client);
    assert!(forbidden(
        roles
            .patch("more", &pp, &Patch::Apply(&role))
            .await
            .unwrap_err()
    ));
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_resources_wait_for_their_definition_to_be_established() {
    let fake = tokio::task::spawn_blocking(FakeKube::start).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let overlay = tmp.path().join("ws/crd");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        "resources: [widget.yaml, crd.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        overlay.join("crd.yaml"),
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         metadata: {name: widgets.example.com}\n\
         spec:\n  group: example.com\n  scope: Namespaced\n\
         \x20 names: {plural: widgets, singular: widget, kind: Widget}\n\
         \x20 versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]\n",
    )
    .unwrap();
    std::fs::write(
        overlay.join("widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    )
    .unwrap();
    let d = deployer(&fake, tmp.path()).await;
    let out = d.deploy(&request(overlay)).await.unwrap();
    assert!(out.inventory.iter().any(|i| i.kind == "Widget"));
    let w = fake
        .get("example.com/v1", "widgets", NS, "w1")
        .expect("the custom resource");
    assert_eq!(w["spec"]["size"], 3);
    // The CRD was applied (and its kind discovered) before the custom resource.
    let paths: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path)
        .collect();
    let crd = paths
        .iter()
        .position(|p| p.contains("customresourcedefinitions"))
        .unwrap();
    let widget = paths.iter().position(|p| p.contains("/widgets/")).unwrap();
    assert!(crd < widget, "{paths:?}");
    fake.stop().await;
}

/// The reconciler as a process with the lab in the fake cluster, driving the demo task to
/// `end` (answering q-001 and approving like a person); returns the lab and the last snapshot.
pub(crate) struct ClusterLab {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) state: PathBuf,
    pub(crate) fake: FakeKube,
    pub(crate) kubeconfig: PathBuf,
    /// `--lab` of the reconciler.
    mode: &'static str,
    /// More environment for gaffer's processes.
    pub(crate) env: Vec<(&'static str, String)>,
}

impl ClusterLab {
    fn new() -> Self {
        Self::with(FakeKube::start())
    }

    /// With the test kubelet: the demo app really runs (by uv, from its ConfigMap).
    fn running() -> Self {
        let uv = crate::common::uv();
        Self::with(FakeKube::with_kubelet(crate::common::path_with(
            uv.parent().unwrap(),
        )))
    }

    pub(crate) fn with(fake: FakeKube) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let state = crate::common::demo_repos(tmp.path(), "1s");
        let kubeconfig = tmp.path().join("admin.kubeconfig");
        fake.write_kubeconfig(&kubeconfig);
        crate::common::commit_to_bare(
            &state,
            "main",
            &[(
                "projects/demo/web-api/tasks/jwt/task.yaml",
                "title: Implement JWT authentication\n",
            )],
            "task",
        );
        ClusterLab {
            tmp,
            state,
            fake,
            kubeconfig,
            mode: "cluster",
            env: Vec::new(),
        }
    }

    pub(crate) fn gaffer(&self) -> Command {
        let mut c = crate::common::gaffer(self.tmp.path());
        c.env("KUBECONFIG", &self.kubeconfig);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn snapshot(&self) -> gaffer::state::snapshot::Snapshot {
        crate::common::snapshot_of(&self.state, &self.tmp.path().join("ro"))
    }

    /// Runs the reconciler until `done` holds for the task's status.
    pub(crate) fn run_until(
        &self,
        rollout_secs: &str,
        done: impl Fn(&gaffer::state::status::TaskStatus) -> bool,
    ) -> gaffer::state::snapshot::Snapshot {
        let log = std::fs::File::create(self.tmp.path().join("daemon.log")).unwrap();
        let _guard = crate::common::Proc(
            self.gaffer()
                .args([
                    "reconcile",
                    "--lab",
                    self.mode,
                    "--lab-rollout-secs",
                    rollout_secs,
                ])
                .args(["--state", self.state.to_str().unwrap()])
                .arg("--data-dir")
                .arg(self.tmp.path().join("data"))
                .arg("--builders")
                .arg(self.tmp.path().join("builders"))
                .env("RUST_LOG", "info")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let t = gaffer::names::TaskRef::parse("demo/web-api/jwt").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let (mut answered, mut approved) = (false, false);
        loop {
            let snap = self.snapshot();
            if let Some(st) = snap.task(&t).and_then(|e| e.status.as_deref()) {
                if done(st) {
                    return snap;
                }
                let e = snap.task(&t).unwrap();
                let q1 = gaffer::names::Qid::new("q-001").unwrap();
                if !answered && e.questions.get(&q1).is_some_and(|q| q.decision.is_none()) {
                    answered = true;
                    crate::common::commit_as(
                        &self.state,
                        gaffer::cli::demo::PERSON,
                        &[(
                            "projects/demo/web-api/tasks/jwt/answers/q-001.yaml",
                            &format!("choice: HS256\nby: {}\n", gaffer::cli::demo::PERSON),
                        )],
                        "answer",
                    );
                }
                if !approved && st.phase == gaffer::state::status::Phase::InReview {
                    approved = true;
                    crate::common::commit_as(
                        &self.state,
                        gaffer::cli::demo::PERSON,
                        &[(
                            "projects/demo/web-api/tasks/jwt/approvals/ok.yaml",
                            &crate::common::approval_body(gaffer::cli::demo::PERSON, Some(st)),
                        )],
                        "approve",
                    );
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out; status {:#?}\n{}",
                snap.task(&t).and_then(|e| e.status.clone()),
                std::fs::read_to_string(self.tmp.path().join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn with_no_cluster_answering_a_task_waits_in_deploying_and_goes_on_when_one_does() {
    let mut lab = ClusterLab::new();
    lab.mode = "auto";
    // The kubeconfig names a port where nothing listens, until the task is seen waiting.
    let real = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    let dead = real.replace(
        &lab.fake.url(),
        &format!("http://127.0.0.1:{}", crate::common::free_port()),
    );
    std::fs::write(&lab.kubeconfig, &dead).unwrap();
    let waited = std::sync::atomic::AtomicBool::new(false);
    let snap = lab.run_until("20", |s| {
        if s.reason.as_deref() == Some("LabUnreachable")
            && !waited.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            assert_eq!(s.phase, gaffer::state::status::Phase::Deploying);
            std::fs::write(&lab.kubeconfig, &real).unwrap();
        }
        s.phase == gaffer::state::status::Phase::Promoted
    });
    assert!(waited.into_inner(), "the task never waited for the cluster");
    let t = gaffer::names::TaskRef::parse("demo/web-api/jwt").unwrap();
    let texts: Vec<String> = snap
        .task(&t)
        .unwrap()
        .progress
        .as_ref()
        .unwrap()
        .milestones
        .iter()
        .map(|m| m.text.clone())
        .collect();
    let unreachable = texts
        .iter()
        .position(|m| m.starts_with("⚠️ the lab is unreachable"))
        .expect("said once");
    assert_eq!(
        texts
            .iter()
            .filter(|m| m.starts_with("⚠️ the lab is unreachable"))
            .count(),
        1
    );
    let deployed = texts
        .iter()
        .position(|m| m.starts_with("🚀 deployed"))
        .expect("deployed when the cluster answered");
    let first_test = texts
        .iter()
        .position(|m| m.contains("Integration tests"))
        .unwrap();
    assert!(
        unreachable < deployed && deployed < first_test,
        "{texts:#?}"
    );
    let project = ProjectRef::parse("demo/web-api").unwrap();
    assert_eq!(
        snap.projects[&project]
            .lab
            .as_ref()
            .unwrap()
            .mode
            .as_deref(),
        Some("cluster")
    );
}

#[test]
fn a_project_that_chose_render_only_is_rendered_not_deployed_and_not_tested() {
    let lab = ClusterLab::new();
    let path = "projects/demo/web-api/project.yaml";
    let project = crate::common::git(&lab.state, &["show", &format!("main:{path}")])
        .replace("test_without_deploy: true}", "mode: render-only}");
    assert!(project.contains("mode: render-only"), "{project}");
    crate::common::commit_to_bare(
        &lab.state,
        "main",
        &[(path, project.as_str())],
        "render only",
    );
    let snap = lab.run_until("20", |s| s.phase == gaffer::state::status::Phase::Promoted);
    let t = gaffer::names::TaskRef::parse("demo/web-api/jwt").unwrap();
    let texts: Vec<String> = snap
        .task(&t)
        .unwrap()
        .progress
        .as_ref()
        .unwrap()
        .milestones
        .iter()
        .map(|m| m.text.clone())
        .collect();
    assert!(
        texts.iter().any(|m| m.contains("not deployed")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|m| m.starts_with("🧪 lab tests not run")),
        "{texts:#?}"
    );
    assert!(
        !texts.iter().any(|m| m.contains("Integration tests")),
        "{texts:#?}"
    );
    assert!(
        lab.fake
            .get("apps/v1", "deployments", NS, "web-api")
            .is_none(),
        "nothing applied"
    );
}

#[test]
fn the_reconciler_deploys_to_the_cluster_and_lab_list_and_cleanup_manage_the_namespace() {
    let lab = ClusterLab::running();
    let snap = lab.run_until("20", |s| s.phase == gaffer::state::status::Phase::Promoted);
    let project = ProjectRef::parse("demo/web-api").unwrap();
    let rec = snap.projects[&project].lab.clone().unwrap();
    assert_eq!(rec.mode.as_deref(), Some("cluster"));
    assert_eq!(rec.namespace, NS);
    assert!(rec.created_at.is_some());
    let last = rec.last_deploy.clone().unwrap();
    assert_eq!(last.task.as_str(), "jwt");
    assert!(
        last.no_op,
        "the redeploy after the test fix rendered the same objects"
    );
    assert_eq!(rec.tests.as_ref().unwrap().passed, 3);
    assert!(
        lab.fake
            .get("apps/v1", "deployments", NS, "web-api")
            .is_some()
    );
    let e = snap
        .task(&gaffer::names::TaskRef::parse("demo/web-api/jwt").unwrap())
        .unwrap();
    let texts: Vec<&str> = e
        .progress
        .as_ref()
        .unwrap()
        .milestones
        .iter()
        .map(|m| m.text.as_str())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("🚀 deployed") && t.contains(NS)),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("(unchanged)")), "{texts:?}");
    // What was deployed runs: the builder's version of the demo app answers at the lab host.
    let pods = lab.fake.names("v1", "pods", NS);
    let log = lab.fake.log(NS, &pods[0], "api").unwrap_or_default();
    assert!(
        log.contains("\"GET / HTTP/1.0\" 200") && !log.contains("Traceback"),
        "{log}"
    );
    let (code, body) = lab
        .fake
        .get_via_proxy("http://web-api.builder.lab.example.com/");
    assert_eq!(
        (code, body.as_str()),
        (200, "hello from the lab, with JWT\n")
    );
    // The builder was started with its lab access.
    let session: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            lab.tmp
                .path()
                .join("data/scripted/scripted-demo-web-api-jwt.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(session["env"]["LAB_NAMESPACE"], NS);
    assert_eq!(
        session["env"]["LAB_URL"],
        "https://web-api.builder.lab.example.com"
    );
    let kc = session["env"]["KUBECONFIG"].as_str().unwrap();
    assert!(
        std::fs::read_to_string(kc)
            .unwrap()
            .contains("sa-token-demo-web-api-lab")
    );

    // gaffer lab list: from the state repo, checked against the cluster.
    let out = crate::common::run(lab.gaffer().args([
        "lab",
        "list",
        "--state",
        lab.state.to_str().unwrap(),
    ]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(NS))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(
        line.contains("demo/web-api") && line.contains("jwt") && line.contains(" yes "),
        "{line}"
    );
    assert!(
        line.contains("https://web-api.builder.lab.example.com"),
        "{line}"
    );
    // cleanup: nothing is old enough; a dry run says what it would do and does nothing.
    let state = lab.state.to_str().unwrap();
    let out = crate::common::run(lab.gaffer().args(["lab", "cleanup", "--state", state]));
    assert!(out.stdout.contains("nothing to clean up"), "{}", out.stdout);
    let out = crate::common::run(lab.gaffer().args([
        "lab",
        "cleanup",
        "--older-than",
        "0s",
        "--dry-run",
        "--state",
        state,
    ]));
    assert!(
        out.stdout.contains(&format!("would remove {NS}")),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert!(lab.fake.get("v1", "namespaces", "", NS).is_some());
    let out = crate::common::run(lab.gaffer().args([
        "lab",
        "cleanup",
        "--older-than",
        "0s",
        "--project",
        "demo/web-api",
        "--state",
        state,
    ]));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("removed {NS}")),
        "{}",
        out.stdout
    );
    assert!(
        lab.fake.get("v1", "namespaces", "", NS).is_none(),
        "the namespace is gone"
    );
    assert!(
        lab.fake
            .get("apps/v1", "deployments", NS, "web-api")
            .is_none()
    );
    let rec = lab.snapshot().projects[&project].lab.clone().unwrap();
    assert!(rec.deleted && rec.inventory.is_empty());
    let who = crate::common::git(&lab.state, &["log", "-1", "--format=%an|%s", "main"]);
    assert!(
        who.starts_with("gaffer lab cleanup|") && who.contains("removed"),
        "{who}"
    );
    let out = crate::common::run(lab.gaffer().args(["lab", "list", "--state", state]));
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with(NS) && l.contains("deleted")),
        "{}",
        out.stdout
    );
    drop(lab.fake);
}

#[test]
fn a_deploy_that_never_becomes_ready_fails_the_task_with_the_reasons() {
    let lab = ClusterLab::new();
    lab.fake.never_ready("web-api");
    let snap = lab.run_until("1", |s| s.phase == gaffer::state::status::Phase::Failed);
    let st = snap
        .task(&gaffer::names::TaskRef::parse("demo/web-api/jwt").unwrap())
        .unwrap()
        .status
        .clone()
        .unwrap();
    assert_eq!(st.reason.as_deref(), Some("DeployFailed"));
    let msg = st.message.unwrap_or_default();
    assert!(
        msg.contains("Deployment web-api: 0/1 replicas available"),
        "{msg}"
    );
    assert!(msg.contains("ImagePullBackOff"), "{msg}");
}
