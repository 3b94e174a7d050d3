use super::*;
use crate::names::{ProjectRef, TaskName};

const KUSTOMIZATION: &str = r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
  - service.yaml
  - ingress.yaml
configMapGenerator:
  - name: app-code
    files:
      - app.py
patches:
  - target:
      kind: Deployment
      name: web
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 2
images:
  - name: busybox
    newTag: "1.36"
"#;

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: app
          image: shop-app
          volumeMounts: [{name: code, mountPath: /app}]
        - name: sidecar
          image: busybox
      volumes:
        - name: code
          configMap:
            name: app-code
"#;

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

const INGRESS: &str = r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web.public
spec:
  tls:
    - hosts: [HOST-PLACEHOLDER]
      secretName: web-tls
  rules:
    - host: HOST-PLACEHOLDER
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80}}}
    - host: OTHER-PLACEHOLDER
      http:
        paths:
          - path: /api
            pathType: Prefix
            backend: {service: {name: web, port: {number: 80}}}
"#;

fn overlay(dir: &Path, app_py: &str) -> PathBuf {
    let o = dir.join("repos/shop/deploy/lab");
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(o.join("kustomization.yaml"), KUSTOMIZATION).unwrap();
    std::fs::write(o.join("deployment.yaml"), DEPLOYMENT).unwrap();
    std::fs::write(o.join("service.yaml"), SERVICE).unwrap();
    std::fs::write(o.join("ingress.yaml"), INGRESS).unwrap();
    std::fs::write(o.join("app.py"), app_py).unwrap();
    o
}

fn request(overlay: PathBuf) -> DeployRequest {
    DeployRequest {
        previous: Vec::new(),
        tool: Default::default(),
        values: Vec::new(),
        project: ProjectRef::parse("web/shop").unwrap(),
        task: TaskName::new("add-cart").unwrap(),
        workspace: overlay.parent().unwrap().to_path_buf(),
        overlay,
        host: "shop.builder.example.test".into(),
        url: "https://shop.builder.example.test".into(),
        commits: BTreeMap::new(),
        images: BTreeMap::from([(
            "shop-app".to_string(),
            "localhost:5000/shop-app:abc123".to_string(),
        )]),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

#[tokio::test]
async fn renders_overlay_with_lab_settings_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let ov = overlay(tmp.path(), "print('hello')\n");
    let out = tmp.path().join("lab");
    let deployer = RenderOnly::new(&out);
    let req = request(ov.clone());

    let first = deployer.deploy(&req).await.unwrap();
    assert_eq!(first.namespace, "web-shop-lab");
    assert_eq!(first.mode, "render-only");
    assert_eq!(first.urls, vec!["https://shop.builder.example.test"]);
    assert!(!first.no_op);
    assert_eq!(first.digest.len(), 64);

    let kinds: Vec<(&str, &str, &str)> = first
        .inventory
        .iter()
        .map(|i| (i.group.as_str(), i.kind.as_str(), i.namespace.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("", "ConfigMap", "web-shop-lab"),
            ("", "Namespace", ""),
            ("", "Service", "web-shop-lab"),
            ("apps", "Deployment", "web-shop-lab"),
            ("networking.k8s.io", "Ingress", "web-shop-lab"),
        ]
    );
    let ns = first.inventory.iter().find(|i| i.kind == "Namespace");
    assert_eq!(ns.unwrap().name, "web-shop-lab");
    let cm1 = first
        .inventory
        .iter()
        .find(|i| i.kind == "ConfigMap")
        .unwrap()
        .name
        .clone();
    assert!(cm1.starts_with("app-code-") && cm1.len() > "app-code-".len());
    let ingress = first
        .inventory
        .iter()
        .find(|i| i.kind == "Ingress")
        .unwrap();
    assert_eq!(
        (ingress.version.as_str(), ingress.name.as_str()),
        ("v1", "web.public")
    );

    let text = std::fs::read_to_string(out.join("web-shop/rendered.yaml")).unwrap();
    assert_eq!(hex::encode(Sha256::digest(text.as_bytes())), first.digest);
    let docs = yaml::parse_documents(&text).unwrap();
    for doc in &docs {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "gaffer");
        assert_eq!(labels["gaffer.dev/category"], "web");
        assert_eq!(labels["gaffer.dev/project"], "shop");
    }
    let ing = find(&docs, "Ingress");
    assert_eq!(ing["spec"]["rules"][0]["host"], "shop.builder.example.test");
    assert_eq!(ing["spec"]["rules"][1]["host"], "shop.builder.example.test");
    assert_eq!(
        ing["spec"]["tls"][0]["hosts"],
        json!(["shop.builder.example.test"])
    );
    assert!(!text.contains("PLACEHOLDER"));
    let dep = find(&docs, "Deployment");
    assert_eq!(
        dep["spec"]["replicas"], 2,
        "the overlay's own patch applies"
    );
    // includeSelectors: false leaves selectors alone.
    assert_eq!(
        dep["spec"]["selector"]["matchLabels"],
        json!({"app": "web"})
    );
    let containers = &dep["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "localhost:5000/shop-app:abc123");
    assert_eq!(containers[1]["image"], "busybox:1.36");
    assert_eq!(
        dep["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        cm1.as_str(),
        "kustomize rewrote the reference to the hashed name"
    );

    let second = deployer.deploy(&req).await.unwrap();
    assert!(second.no_op);
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.inventory, first.inventory);

    std::fs::write(ov.join("app.py"), "print('changed')\n").unwrap();
    let third = deployer.deploy(&req).await.unwrap();
    assert!(!third.no_op);
    assert_ne!(third.digest, first.digest);
    let cm3 = &third
        .inventory
        .iter()
        .find(|i| i.kind == "ConfigMap")
        .unwrap()
        .name;
    assert_ne!(cm3, &cm1);
    assert!(cm3.starts_with("app-code-"));
    let text = std::fs::read_to_string(out.join("web-shop/rendered.yaml")).unwrap();
    assert_eq!(hex::encode(Sha256::digest(text.as_bytes())), third.digest);
}

#[tokio::test]
async fn render_without_ingress_needs_no_host_patch() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("overlay");
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(o.join("kustomization.yaml"), "resources: [service.yaml]\n").unwrap();
    std::fs::write(o.join("service.yaml"), SERVICE).unwrap();
    let mut req = request(o);
    req.images.clear();
    let outcome = RenderOnly::new(tmp.path().join("out"))
        .deploy(&req)
        .await
        .unwrap();
    let kinds: Vec<&str> = outcome.inventory.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, vec!["Namespace", "Service"]);
    let wrapper =
        std::fs::read_to_string(tmp.path().join("out/web-shop/wrapper/kustomization.yaml"))
            .unwrap();
    assert!(!wrapper.contains("patches"));
}

#[tokio::test]
async fn broken_overlay_is_a_render_error_with_kubectl_message() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("overlay");
    std::fs::create_dir_all(&o).unwrap();
    std::fs::write(o.join("kustomization.yaml"), "resources: [missing.yaml]\n").unwrap();
    let err = RenderOnly::new(tmp.path().join("out"))
        .deploy(&request(o))
        .await
        .unwrap_err();
    match err {
        LabError::Render { message, .. } => {
            assert!(message.contains("missing.yaml"), "{message}");
            assert_eq!(message, message.trim());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn missing_kubectl_is_tool_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let o = tmp.path().join("overlay");
    std::fs::create_dir_all(&o).unwrap();
    let err = RenderOnly::new(tmp.path().join("out"))
        .with_kubectl(tmp.path().join("no-such-kubectl"))
        .deploy(&request(o))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LabError::ToolMissing { tool } if tool == "kubectl"),
        "{err:?}"
    );
}

#[tokio::test]
async fn helm_and_skaffold_renders_are_wrapped_and_a_missing_tool_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("chart");
    std::fs::create_dir_all(&chart).unwrap();
    for (tool, name) in [(LabTool::Helm, "helm"), (LabTool::Skaffold, "skaffold")] {
        let mut req = request(chart.clone());
        req.tool = tool;
        let err = RenderOnly::new(tmp.path().join("out"))
            .with_helm(tmp.path().join("no-helm"))
            .with_skaffold(tmp.path().join("no-skaffold"))
            .deploy(&req)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LabError::ToolMissing { tool } if tool == name),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "{name} is not installed (needed for lab.tool: {name})"
            )),
            "{err}"
        );
    }
    // A stand-in for helm (helm is not on this machine image) that checks the arguments
    // gaffer passes and prints what `helm template` prints: the wrapper then sets the
    // namespace, gaffer's labels and the image, as for kustomize overlays.
    let fake_helm = tmp.path().join("helm");
    std::fs::write(
        &fake_helm,
        format!(
            "#!/bin/sh\n[ \"$1 $2 $3 $4 $5\" = \"template shop {} --namespace web-shop-lab\" ] || {{ echo \"bad args: $*\" >&2; exit 2; }}\n\
                 cat <<'EOF'\n---\n# Source: shop/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: shop}}\nspec:\n  selector: {{matchLabels: {{app: shop}}}}\n  template:\n    metadata: {{labels: {{app: shop}}}}\n    spec: {{containers: [{{name: app, image: shop-app}}]}}\nEOF\n",
            chart.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake_helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut req = request(chart);
    req.tool = LabTool::Helm;
    let r = RenderOnly::new(tmp.path().join("out"))
        .with_helm(&fake_helm)
        .render(&req)
        .await
        .unwrap();
    let dep = r.docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(dep["metadata"]["namespace"], "web-shop-lab");
    assert_eq!(
        dep["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "gaffer"
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["image"],
        "localhost:5000/shop-app:abc123"
    );
    assert!(r.docs.iter().any(|d| d["kind"] == "Namespace"));
}

#[test]
fn image_overrides_split_on_the_last_colon_outside_the_registry() {
    let o = image_override("app", "registry.example/app:v2");
    assert_eq!(
        (
            o.new_name.as_deref(),
            o.new_tag.as_deref(),
            o.digest.as_deref()
        ),
        (Some("registry.example/app"), Some("v2"), None)
    );
    let o = image_override("app", "localhost:5000/app");
    assert_eq!(
        (o.new_name.as_deref(), o.new_tag.as_deref()),
        (Some("localhost:5000/app"), None)
    );
    let o = image_override("app", "localhost:5000/app@sha256:abcd");
    assert_eq!(
        (
            o.new_name.as_deref(),
            o.new_tag.as_deref(),
            o.digest.as_deref()
        ),
        (Some("localhost:5000/app"), None, Some("sha256:abcd"))
    );
    let o = image_override("app", ":only-tag");
    assert_eq!((o.new_name, o.new_tag.as_deref()), (None, Some("only-tag")));
}

#[test]
fn relative_paths_climb_out_of_the_wrapper() {
    assert_eq!(
        relative_path(
            Path::new("/a/b/out/p/wrapper"),
            Path::new("/a/b/ws/overlay")
        ),
        PathBuf::from("../../../ws/overlay")
    );
    assert_eq!(
        relative_path(Path::new("/a"), Path::new("/a")),
        PathBuf::from(".")
    );
}

#[test]
fn regex_escape_protects_dots() {
    assert_eq!(regex_escape("web.public"), "web\\.public");
}

#[test]
fn parse_documents_splits_streams_and_skips_empty_documents() {
    let docs = yaml::parse_documents("a: 1\n---\n---\nkind: B\nlist: [x, y]\n...\n").unwrap();
    assert_eq!(
        docs,
        vec![json!({"a": 1}), json!({"kind": "B", "list": ["x", "y"]})]
    );
    assert!(yaml::parse_documents("a: [1\n").is_err());
    assert!(yaml::parse_documents("a: 1\na: 2\n").is_err());
}
