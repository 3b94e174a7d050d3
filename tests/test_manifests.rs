//! `manifests/`: the kustomize base and the example overlay render with the real
//! `kubectl kustomize`, every object validates against the Kubernetes 1.33 schemas
//! (`kubernetes-validate`, offline), and the shape the docs promise holds: secrets only by
//! reference, gaffer's in-namespace rights never bound cluster-wide, restricted pods.

use std::process::Command;

use serde_json::Value;

use crate::common::kube::config_of;
use crate::common::root;

fn render(dir: &str) -> (String, Vec<Value>) {
    let out = Command::new("kubectl")
        .args(["kustomize"])
        .arg(root().join(dir))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs = gaffer::state::yaml::parse_documents(&text).unwrap();
    (text, docs)
}

#[test]
fn the_manifests_render_validate_and_keep_their_promises() {
    for dir in ["manifests/base", "manifests/overlays/example"] {
        let (text, docs) = render(dir);
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("rendered.yaml");
        std::fs::write(&file, &text).unwrap();
        crate::common::kubernetes_validate(&file).unwrap_or_else(|e| panic!("{dir}: {e}"));

        let kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k);
        // Secrets are referenced, never held.
        assert_eq!(kind("Secret").count(), 0, "{dir}");
        // The lab rights are bound per lab namespace by gaffer, never cluster-wide.
        for b in kind("ClusterRoleBinding") {
            assert_ne!(b["roleRef"]["name"], "gaffer-lab", "{dir}: {b}");
        }
        // Cluster-wide: namespaces, and binding gaffer-lab (rolebindings create + bind by
        // name) — nothing else.
        let cluster = kind("ClusterRole")
            .find(|r| r["metadata"]["name"] == "gaffer-namespaces")
            .unwrap();
        let mut granted: Vec<String> = Vec::new();
        for rule in cluster["rules"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                granted.push(format!(
                    "{}{}",
                    r.as_str().unwrap(),
                    rule["resourceNames"]
                        .as_array()
                        .map(|n| format!("/{}", n[0].as_str().unwrap()))
                        .unwrap_or_default()
                ));
            }
        }
        assert_eq!(
            granted,
            ["namespaces", "rolebindings", "clusterroles/gaffer-lab"],
            "{dir}"
        );
        // Every pod runs restricted: non-root, no privilege escalation, read-only root.
        for d in kind("Deployment") {
            let spec = &d["spec"]["template"]["spec"];
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{dir}");
            for c in spec["containers"].as_array().unwrap() {
                assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
                assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
            }
        }
        // The admission policy that confines gaffer to its labs is bound.
        assert_eq!(kind("ValidatingAdmissionPolicyBinding").count(), 1, "{dir}");
    }
    // The overlay names the state repository and a pinned image.
    let (text, _) = render("manifests/overlays/example");
    assert!(text.contains("git@github.com:example/gaffer-state.git"));
    assert!(text.contains("image: ghcr.io/example/gaffer:0.1.0"));
    assert!(!text.contains("set-by-the-overlay"));
}

/// Applies `docs` as the administrator (namespaced ones without a namespace into `ns`).
pub(crate) async fn apply_all(config: kube::Config, docs: &[Value], ns: &str) {
    use kube::api::{Api, DynamicObject, Patch, PatchParams};
    let c = kube::Client::try_from(config).unwrap();
    for d in docs {
        let (group, version) = match d["apiVersion"].as_str().unwrap().split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), d["apiVersion"].as_str().unwrap().to_string()),
        };
        let gvk = kube::core::GroupVersionKind::gvk(&group, &version, d["kind"].as_str().unwrap());
        let (ar, caps) = kube::discovery::pinned_kind(&c, &gvk).await.unwrap();
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(
                c.clone(),
                d["metadata"]["namespace"].as_str().unwrap_or(ns),
                &ar,
            ),
            kube::discovery::Scope::Cluster => Api::all_with(c.clone(), &ar),
        };
        let name = d["metadata"]["name"].as_str().unwrap();
        api.patch(name, &PatchParams::apply("admin").force(), &Patch::Apply(d))
            .await
            .unwrap_or_else(|e| panic!("{} {name}: {e}", d["kind"]));
    }
}

/// gaffer's rights from `manifests/base`, against the fake API (which enforces RBAC for
/// service-account tokens and, emulated, the admission policy): a project's whole lab life
/// works with them, and each dangerous right is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaffers_rights_run_the_lab_and_refuse_everything_else() {
    use gaffer::lab::LabDeployer as _;
    use gaffer::lab::cluster::{ClusterDeployer, OwnBinding};
    use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let fake = tokio::task::spawn_blocking(crate::common::kube::FakeKube::start)
        .await
        .unwrap();
    for ns in ["gaffer", "team-a", "kube-system"] {
        fake.namespace(ns);
    }
    let tmp = tempfile::tempdir().unwrap();
    let admin_kc = tmp.path().join("admin.kubeconfig");
    fake.write_kubeconfig(&admin_kc);
    let (_, docs) = render("manifests/base");
    apply_all(config_of(&admin_kc).await, &docs, "gaffer").await;

    // gaffer's own identity: a token of its ServiceAccount.
    let admin = kube::Client::try_from(config_of(&admin_kc).await).unwrap();
    let token = Api::<ServiceAccount>::namespaced(admin, "gaffer")
        .create_token_request("gaffer", &PostParams::default(), &Default::default())
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let kc = tmp.path().join("gaffer.kubeconfig");
    fake.write_kubeconfig_for(&kc, &token);
    let mut d = ClusterDeployer::new(config_of(&kc).await, tmp.path().join("lab")).unwrap();
    d.own_binding = Some(OwnBinding {
        cluster_role: "gaffer-lab".into(),
        namespace: "gaffer".into(),
        name: "gaffer".into(),
    });
    d.rollout_timeout = std::time::Duration::from_secs(5);
    d.poll = std::time::Duration::from_millis(50);

    // The lab's life: the namespace made and bound, the overlay applied, the builder's
    // access, a change pruned, the namespace deleted.
    let ws = tmp.path().join("repos");
    let app = ws.join("web-api");
    for (path, content) in gaffer::cli::demo::sample_app() {
        let p = app.join(&path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content.unwrap()).unwrap();
    }
    let project = gaffer::names::ProjectRef::parse("demo/web-api").unwrap();
    let mut req = crate::common::kube::deploy_request(
        &app.join("deploy"),
        &ws,
        "https://web-api.builder.lab.example.com",
    );
    let first = d.deploy(&req).await.unwrap();
    assert!(
        fake.get(
            "rbac.authorization.k8s.io/v1",
            "rolebindings",
            "demo-web-api-lab",
            "gaffer"
        )
        .is_some()
    );
    d.builder_access(&project, &req.url).await.unwrap();
    std::fs::write(
        app.join("app/kustomization.yaml"),
        "resources: [deployment.yaml, service.yaml]\nconfigMapGenerator:\n  - name: web-api-code\n    files: [main.py]\n",
    )
    .unwrap();
    req.previous = first.inventory;
    d.deploy(&req).await.unwrap();
    assert!(
        fake.names("networking.k8s.io/v1", "ingresses", "demo-web-api-lab")
            .is_empty()
    );
    assert!(d.delete_namespace("demo-web-api-lab").await.unwrap());

    // And nothing else.
    let me = kube::Client::try_from(config_of(&kc).await).unwrap();
    let refused = |r: Result<(), kube::Error>, what: &str| match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what} was not refused: {other:?}"),
    };
    refused(
        Api::<Secret>::all(me.clone())
            .list(&Default::default())
            .await
            .map(|_| ()),
        "listing Secrets cluster-wide",
    );
    refused(
        Api::<Secret>::namespaced(me.clone(), "team-a")
            .list(&Default::default())
            .await
            .map(|_| ()),
        "reading another team's Secrets",
    );
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "x"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    }))
    .unwrap();
    refused(
        Api::<Role>::namespaced(me.clone(), "kube-system")
            .create(&PostParams::default(), &role)
            .await
            .map(|_| ()),
        "a Role in kube-system",
    );
    let crb: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "x"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gaffer-lab"},
        "subjects": [{"kind": "ServiceAccount", "name": "gaffer", "namespace": "gaffer"}]
    }))
    .unwrap();
    refused(
        Api::<ClusterRoleBinding>::all(me.clone())
            .create(&PostParams::default(), &crb)
            .await
            .map(|_| ()),
        "a ClusterRoleBinding",
    );
    // What RBAC alone would let through, the admission policy refuses: binding its lab
    // rights in another team's namespace, adopting that namespace, a namespace of its own
    // that is not a lab.
    let rb: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "gaffer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gaffer-lab"},
        "subjects": [{"kind": "ServiceAccount", "name": "gaffer", "namespace": "gaffer"}]
    }))
    .unwrap();
    refused(
        Api::<RoleBinding>::namespaced(me.clone(), "team-a")
            .create(&PostParams::default(), &rb)
            .await
            .map(|_| ()),
        "binding gaffer-lab in team-a",
    );
    let adopt = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"app.kubernetes.io/managed-by": "gaffer"}}});
    refused(
        Api::<Namespace>::all(me.clone())
            .patch(
                "team-a",
                &PatchParams::apply("gaffer").force(),
                &Patch::Apply(&adopt),
            )
            .await
            .map(|_| ()),
        "labelling team-a as gaffer's",
    );
    let other = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "scratch", "labels": {"app.kubernetes.io/managed-by": "gaffer"}}});
    refused(
        Api::<Namespace>::all(me)
            .patch(
                "scratch",
                &PatchParams::apply("gaffer").force(),
                &Patch::Apply(&other),
            )
            .await
            .map(|_| ()),
        "a namespace that is not a lab",
    );
    fake.stop().await;
}

/// A Secret without a key the manifests mount is a missing file: gaffer stops at start and
/// says which, instead of crash-looping with a stack trace.
#[test]
fn a_missing_secret_key_stops_gaffer_at_start_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets/github");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("webhook-secret"), "s3cret\n").unwrap();
    let cases = [
        (
            vec![("GITHUB_TOKEN_FILE", secrets.join("token"))],
            vec![],
            "GITHUB_TOKEN_FILE",
        ),
        (
            vec![],
            vec![
                "--webhook-secret-file".to_string(),
                secrets.join("nope").display().to_string(),
            ],
            "nope",
        ),
    ];
    for (env, args, named) in cases {
        let out = crate::common::gaffer(tmp.path())
            .args([
                "reconcile",
                "--state",
                "/nonexistent/state.git",
                "--lab",
                "render-only",
            ])
            .args(&args)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(named) && err.contains("No such file"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = crate::common::gaffer(tmp.path())
        .args(["slack", "--state", "/nonexistent/state.git"])
        .env(
            "SLACK_BOT_TOKEN_FILE",
            tmp.path().join("secrets/slack/bot-token"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SLACK_BOT_TOKEN_FILE") && err.contains("bot-token"),
        "{err}"
    );
}

/// The reconciler itself, as gaffer's ServiceAccount with the manifests' RBAC: a task's
/// whole life with its lab (namespace made and bound, overlay applied, the builder's access,
/// redeploy), then `gaffer lab cleanup` removing the namespace.
#[test]
fn the_reconciler_runs_a_task_and_its_lab_as_gaffers_service_account() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{Api, PostParams};

    let mut lab = crate::test_lab::ClusterLab::with(crate::common::kube::FakeKube::start());
    lab.fake.namespace("gaffer");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let token = rt.block_on(async {
        let (_, docs) = render("manifests/base");
        apply_all(config_of(&lab.kubeconfig).await, &docs, "gaffer").await;
        let admin = kube::Client::try_from(config_of(&lab.kubeconfig).await).unwrap();
        Api::<ServiceAccount>::namespaced(admin, "gaffer")
            .create_token_request("gaffer", &PostParams::default(), &Default::default())
            .await
            .unwrap()
            .status
            .unwrap()
            .token
    });
    // From here on every process of gaffer's is the ServiceAccount, configured as the
    // manifests configure the reconciler.
    lab.fake.write_kubeconfig_for(&lab.kubeconfig, &token);
    lab.env = vec![
        ("POD_NAMESPACE", "gaffer".into()),
        ("GAFFER_SERVICE_ACCOUNT", "gaffer".into()),
        ("GAFFER_LAB_CLUSTERROLE", "gaffer-lab".into()),
    ];
    let snap = lab.run_until("20", |s| s.phase == gaffer::state::status::Phase::Promoted);
    let project = gaffer::names::ProjectRef::parse("demo/web-api").unwrap();
    let rec = snap.projects[&project].lab.clone().unwrap();
    assert_eq!(rec.mode.as_deref(), Some("cluster"));
    let ns = "demo-web-api-lab";
    assert!(
        lab.fake
            .get("apps/v1", "deployments", ns, "web-api")
            .is_some()
    );
    assert!(
        lab.fake
            .get("rbac.authorization.k8s.io/v1", "rolebindings", ns, "gaffer")
            .is_some()
    );
    assert!(
        lab.fake
            .get(
                "rbac.authorization.k8s.io/v1",
                "rolebindings",
                ns,
                "gaffer-builder"
            )
            .is_some()
    );
    // The changes were made as gaffer's ServiceAccount.
    assert!(
        lab.fake
            .requests()
            .iter()
            .any(|r| r.token == token && r.changed && r.path.contains(ns))
    );
    let out = lab
        .gaffer()
        .args(["lab", "cleanup", "--older-than", "0s", "--state"])
        .arg(&lab.state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lab.fake.get("v1", "namespaces", "", ns).is_none());
    drop(rt);
}
