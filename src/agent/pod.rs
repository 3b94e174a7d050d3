//! A project's builder as a pod (issue "builders as pods", in progress): the objects that
//! run OpenCode in the project's lab namespace. Not wired to a host yet; the shape is fixed
//! here so the host, the workspace seam and the tests build on one definition.
//!
//! - A **StatefulSet of one** (`gaffer-builder`), not a bare Pod: its volume claim template
//!   gives the workspace and OpenCode's data a PVC that outlives the pod, the stable name
//!   makes the attach command stable, and suspending is scaling to zero (the volume stays).
//! - `opencode serve` on port [`PORT`], every route behind Basic auth with the password of
//!   the Secret `gaffer-builder-opencode` (`OPENCODE_SERVER_PASSWORD`); readiness by TCP, as
//!   the health route needs the password too.
//! - The builder's ServiceAccount (`gaffer-builder`, the one the lab already makes, limited to
//!   the namespace), a restricted security context, resources from the project.
//! - A Service for gaffer to reach it, and a NetworkPolicy that admits only gaffer's
//!   reconciler pods (by namespace and label) to that port.

use serde_json::{Value, json};

use crate::lab::cluster::BUILDER_ACCOUNT;
use crate::names::ProjectRef;

/// The port `opencode serve` listens on in the pod.
pub const PORT: u16 = 4096;
/// The StatefulSet, Service and NetworkPolicy name.
pub const NAME: &str = "gaffer-builder";
/// The Secret holding the server's password.
pub const PASSWORD_SECRET: &str = "gaffer-builder-opencode";
/// Where the volume is mounted: the workspace and the builder's HOME (OpenCode's data).
pub const MOUNT: &str = "/workspace";

/// What a builder pod is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct BuilderPod {
    /// The project (its lab namespace holds the pod).
    pub project: ProjectRef,
    /// The image with OpenCode (gaffer's own image carries it).
    pub image: String,
    /// The server's password (kept by gaffer, stable across applies).
    pub password: String,
    /// Running (1) or suspended (0).
    pub running: bool,
    /// The volume's size, e.g. `20Gi`.
    pub storage: String,
    /// Container resources (`{requests: …, limits: …}`), as in a pod spec.
    pub resources: Value,
    /// gaffer's namespace and the label of its reconciler pods: the only peers admitted.
    pub gaffer_namespace: String,
}

impl BuilderPod {
    /// The objects to apply, in order.
    pub fn objects(&self) -> Vec<Value> {
        let ns = self.project.lab_namespace();
        let labels = json!({
            "app.kubernetes.io/name": NAME,
            "app.kubernetes.io/managed-by": "gaffer",
            "gaffer.dev/category": self.project.category.as_str(),
            "gaffer.dev/project": self.project.project.as_str(),
        });
        let selector = json!({"app.kubernetes.io/name": NAME});
        let home = format!("{MOUNT}/home");
        vec![
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": PASSWORD_SECRET, "namespace": ns, "labels": labels},
                "type": "Opaque",
                "stringData": {"password": self.password}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": NAME, "namespace": ns, "labels": labels},
                "spec": {"selector": selector,
                         "ports": [{"name": "opencode", "port": PORT, "targetPort": "opencode"}]}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": NAME, "namespace": ns, "labels": labels},
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [{
                        "namespaceSelector": {"matchLabels":
                            {"kubernetes.io/metadata.name": self.gaffer_namespace}},
                        "podSelector": {"matchLabels":
                            {"app.kubernetes.io/name": "gaffer-reconciler"}},
                    }],
                    "ports": [{"port": PORT, "protocol": "TCP"}],
                }],
            }}),
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": NAME, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": i32::from(self.running),
                "serviceName": NAME,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": BUILDER_ACCOUNT,
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 10001,
                            "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "opencode",
                            "image": self.image,
                            // The pod's own address (the same as 0.0.0.0 in a pod; in
                            // the test kubelet, every pod has one of its own).
                            "command": ["opencode", "serve", "--hostname", "$(POD_IP)",
                                        "--port", PORT.to_string()],
                            "workingDir": MOUNT,
                            "env": [
                                {"name": "POD_IP", "valueFrom":
                                    {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "OPENCODE_SERVER_PASSWORD", "valueFrom":
                                    {"secretKeyRef": {"name": PASSWORD_SECRET, "key": "password"}}},
                                {"name": "HOME", "value": home},
                                {"name": "OPENCODE_DISABLE_AUTOUPDATE", "value": "1"},
                            ],
                            "ports": [{"name": "opencode", "containerPort": PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "opencode"},
                                               "periodSeconds": 5},
                            "resources": self.resources,
                            "securityContext": {"allowPrivilegeEscalation": false,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [{"name": "workspace", "mountPath": MOUNT}],
                        }],
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "workspace"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": self.storage}}},
                }],
            }}),
        ]
    }

    /// What a person runs to reach the builder from a terminal.
    pub fn attach_command(&self) -> String {
        format!(
            "kubectl exec -it -n {} {NAME}-0 -c opencode -- opencode attach http://127.0.0.1:{PORT}",
            self.project.lab_namespace()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(running: bool) -> BuilderPod {
        BuilderPod {
            project: ProjectRef::parse("ai-dev/api").unwrap(),
            image: "ghcr.io/example/gaffer:1".into(),
            password: "p".into(),
            running,
            storage: "20Gi".into(),
            resources: json!({"requests": {"cpu": "1"}}),
            gaffer_namespace: "gaffer".into(),
        }
    }

    #[test]
    fn the_builder_is_a_statefulset_of_one_reachable_by_gaffer_only() {
        let objects = pod(true).objects();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Secret", "Service", "NetworkPolicy", "StatefulSet"]);
        assert!(
            objects
                .iter()
                .all(|o| o["metadata"]["namespace"] == "ai-dev-api-lab")
        );
        let sts = &objects[3];
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(pod(false).objects()[3]["spec"]["replicas"], 0);
        assert_eq!(
            sts["spec"]["template"]["spec"]["serviceAccountName"],
            BUILDER_ACCOUNT
        );
        let np = &objects[2]["spec"];
        assert_eq!(np["ingress"].as_array().unwrap().len(), 1);
        assert_eq!(
            np["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "gaffer"
        );
        assert_eq!(np["ingress"][0]["ports"][0]["port"], PORT);
        assert_eq!(
            pod(true).attach_command(),
            "kubectl exec -it -n ai-dev-api-lab gaffer-builder-0 -c opencode -- opencode attach http://127.0.0.1:4096"
        );
    }
}
