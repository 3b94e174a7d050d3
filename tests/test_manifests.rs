//! `manifests/`: the kustomize base and the example overlay render with the real
//! `kubectl kustomize`, every object validates against the Kubernetes 1.33 schemas
//! (`kubernetes-validate`, offline), and the shape the docs promise holds: secrets only by
//! reference, gaffer's in-namespace rights never bound cluster-wide, restricted pods.

use std::process::Command;

use serde_json::Value;

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
