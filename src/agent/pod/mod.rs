//! A project's builder as a pod (`agent.host: pod`): the objects that run it in the
//! project's lab namespace, and the host that starts, finds and suspends it ([`host`]).
//!
//! - A **StatefulSet of one** (`gaffer-builder`), not a bare Pod: its volume claim template
//!   gives the workspace and OpenCode's data a PVC that outlives the pod, the stable pod name
//!   makes the attach command stable, the controller recreates a deleted pod on the same
//!   volume, and suspending is scaling to zero (the volume stays).
//! - Container `opencode`: `opencode serve` on port [`PORT`], every route behind Basic auth
//!   with the builder's password; HOME on the volume, so its sessions survive the pod.
//! - Container `workspace`: `gaffer workspace serve` on port [`WORKSPACE_PORT`], the
//!   workspace seam (mirrors, worktrees, checkpoints, provisional branches, bundles of a task
//!   branch for its pull request) behind a bearer token; git credentials for the project's
//!   repos come from the Secret, as a git credential store file.
//! - The builder's ServiceAccount (`gaffer-builder`, the one the lab makes, limited to the
//!   namespace), a restricted security context, resources from the project.
//! - Secrets: `gaffer-builder` (password, OpenCode's config, git credentials) and
//!   `gaffer-builder-env` (the builder's environment: its lab, the credentials the project
//!   names). Changing them changes no pod template, so nothing restarts a turn; they apply
//!   at the pod's next start, as the tmux builder's env files do.
//! - A Service for gaffer to reach it, and a NetworkPolicy that admits only gaffer's
//!   reconciler pods (by namespace and label) to those ports.

pub mod host;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::lab::cluster::BUILDER_ACCOUNT;
use crate::names::ProjectRef;

/// The port `opencode serve` listens on in the pod.
pub const PORT: u16 = 4096;
/// The port of the workspace sidecar.
pub const WORKSPACE_PORT: u16 = 4097;
/// The StatefulSet, Service and NetworkPolicy name.
pub const NAME: &str = "gaffer-builder";
/// The builder's one pod.
pub const POD: &str = "gaffer-builder-0";
/// The Secret holding the password, OpenCode's config and git credentials.
pub const SECRET: &str = "gaffer-builder";
/// The Secret holding the builder's environment.
pub const ENV_SECRET: &str = "gaffer-builder-env";
/// Where the volume is mounted: `<MOUNT>/<builder>` is the project's workspace,
/// `<MOUNT>/.mirrors` its mirrors, `<MOUNT>/home` the builder's HOME (OpenCode's data).
pub const MOUNT: &str = "/workspace";
/// Where the git credentials are mounted in the workspace container.
const GIT_DIR: &str = "/etc/gaffer-git";

/// What a builder pod is made from.
#[derive(Debug, Clone, PartialEq)]
pub struct BuilderPod {
    /// The project (its lab namespace holds the pod).
    pub project: ProjectRef,
    /// The image with OpenCode, git and gaffer (gaffer's own image carries them).
    pub image: String,
    /// The server's password, also the workspace sidecar's token (kept by gaffer, stable
    /// across applies).
    pub password: String,
    /// Running (1) or suspended (0).
    pub running: bool,
    /// The volume's size, e.g. `20Gi`.
    pub storage: String,
    /// Container resources (`{requests: …, limits: …}`), as in a pod spec.
    pub resources: Value,
    /// gaffer's namespace (the reconciler pods there are the only peers admitted).
    pub gaffer_namespace: String,
    /// OpenCode's config (`opencode.json`: providers, models), when gaffer has one.
    pub opencode_config: Option<String>,
    /// A git credential store file for the project's repos, when gaffer has one.
    pub git_credentials: Option<String>,
    /// The builder's environment.
    pub env: BTreeMap<String, String>,
}

impl BuilderPod {
    /// The labels of every object.
    fn labels(&self) -> Value {
        json!({
            "app.kubernetes.io/name": NAME,
            "app.kubernetes.io/managed-by": "gaffer",
            "gaffer.dev/category": self.project.category.as_str(),
            "gaffer.dev/project": self.project.project.as_str(),
        })
    }

    /// The Secrets (password, config, credentials; environment).
    pub fn secrets(&self) -> Vec<Value> {
        let (ns, labels) = (self.project.lab_namespace(), self.labels());
        let mut data = serde_json::Map::new();
        data.insert("password".into(), json!(self.password));
        if let Some(c) = &self.opencode_config {
            data.insert("opencode.json".into(), json!(c));
        }
        if let Some(c) = &self.git_credentials {
            data.insert("git-credentials".into(), json!(c));
        }
        vec![
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": ns, "labels": labels},
                "type": "Opaque", "stringData": data}),
            json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": ENV_SECRET, "namespace": ns, "labels": labels},
                "type": "Opaque", "stringData": self.env}),
        ]
    }

    /// The objects to apply, in order: the Secrets, the Service, the NetworkPolicy and
    /// the StatefulSet.
    pub fn objects(&self) -> Vec<Value> {
        let ns = self.project.lab_namespace();
        let labels = self.labels();
        let selector = json!({"app.kubernetes.io/name": NAME});
        let home = format!("{MOUNT}/home");
        let project_dir = format!("{MOUNT}/{}", self.project.builder_name());
        let secret = |key: &str, optional: bool| json!({"secretKeyRef": {"name": SECRET, "key": key, "optional": optional}});
        let restricted = json!({"allowPrivilegeEscalation": false,
                                "capabilities": {"drop": ["ALL"]}});
        let mut workspace_env = vec![
            json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
            json!({"name": "GAFFER_WORKSPACE_TOKEN", "valueFrom": secret("password", false)}),
            json!({"name": "HOME", "value": home}),
        ];
        let mut workspace_mounts = vec![json!({"name": "workspace", "mountPath": MOUNT})];
        let mut volumes = Vec::new();
        if self.git_credentials.is_some() {
            workspace_env.extend([
                json!({"name": "GIT_CONFIG_COUNT", "value": "1"}),
                json!({"name": "GIT_CONFIG_KEY_0", "value": "credential.helper"}),
                json!({"name": "GIT_CONFIG_VALUE_0",
                       "value": format!("store --file={GIT_DIR}/credentials")}),
            ]);
            workspace_mounts.push(json!({"name": "git", "mountPath": GIT_DIR, "readOnly": true}));
            volumes.push(json!({"name": "git", "secret": {"secretName": SECRET,
                "items": [{"key": "git-credentials", "path": "credentials"}],
                "defaultMode": 0o400}}));
        }
        let mut objects = self.secrets();
        objects.extend([
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": NAME, "namespace": ns, "labels": labels},
                "spec": {"selector": selector, "ports": [
                    {"name": "opencode", "port": PORT, "targetPort": "opencode"},
                    {"name": "workspace", "port": WORKSPACE_PORT, "targetPort": "workspace"}]}}),
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
                    "ports": [{"port": PORT, "protocol": "TCP"},
                              {"port": WORKSPACE_PORT, "protocol": "TCP"}],
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
                            "workingDir": project_dir,
                            "env": [
                                {"name": "POD_IP", "valueFrom":
                                    {"fieldRef": {"fieldPath": "status.podIP"}}},
                                {"name": "OPENCODE_SERVER_PASSWORD",
                                 "valueFrom": secret("password", false)},
                                {"name": "OPENCODE_CONFIG_CONTENT",
                                 "valueFrom": secret("opencode.json", true)},
                                {"name": "HOME", "value": home},
                                {"name": "OPENCODE_DISABLE_AUTOUPDATE", "value": "1"},
                            ],
                            "envFrom": [{"secretRef": {"name": ENV_SECRET}}],
                            "ports": [{"name": "opencode", "containerPort": PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "opencode"},
                                               "periodSeconds": 5},
                            "resources": self.resources,
                            "securityContext": restricted,
                            "volumeMounts": [{"name": "workspace", "mountPath": MOUNT}],
                        }, {
                            "name": "workspace",
                            "image": self.image,
                            "command": ["gaffer", "workspace", "serve", "--root", MOUNT,
                                        "--listen",
                                        format!("$(POD_IP):{WORKSPACE_PORT}")],
                            "env": workspace_env,
                            "ports": [{"name": "workspace", "containerPort": WORKSPACE_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "workspace"},
                                               "periodSeconds": 5},
                            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                            "securityContext": restricted,
                            "volumeMounts": workspace_mounts,
                        }],
                        "volumes": volumes,
                    },
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "workspace"},
                    "spec": {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": self.storage}}},
                }],
            }}),
        ]);
        objects
    }

    /// What a person runs to reach the builder from a terminal.
    pub fn attach_command(project: &ProjectRef) -> String {
        format!(
            "kubectl exec -it -n {} {POD} -c opencode -- opencode attach http://127.0.0.1:{PORT}",
            project.lab_namespace()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pod(running: bool) -> BuilderPod {
        BuilderPod {
            project: ProjectRef::parse("ai-dev/api").unwrap(),
            image: "ghcr.io/example/gaffer:1".into(),
            password: "p".into(),
            running,
            storage: "20Gi".into(),
            resources: json!({"requests": {"cpu": "1"}}),
            gaffer_namespace: "gaffer".into(),
            opencode_config: Some("{}".into()),
            git_credentials: Some("https://x:t@github.com\n".into()),
            env: [("LAB_NAMESPACE".to_string(), "ai-dev-api-lab".to_string())].into(),
        }
    }

    #[test]
    fn the_builder_is_a_statefulset_of_one_reachable_by_gaffer_only() {
        let objects = pod(true).objects();
        let kinds: Vec<&str> = objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Secret",
                "Secret",
                "Service",
                "NetworkPolicy",
                "StatefulSet"
            ]
        );
        assert!(
            objects
                .iter()
                .all(|o| o["metadata"]["namespace"] == "ai-dev-api-lab")
        );
        let sts = &objects[4];
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(pod(false).objects()[4]["spec"]["replicas"], 0);
        let spec = &sts["spec"]["template"]["spec"];
        assert_eq!(spec["serviceAccountName"], BUILDER_ACCOUNT);
        assert_eq!(spec["containers"][0]["workingDir"], "/workspace/ai-dev-api");
        assert_eq!(spec["containers"][1]["command"][1], "workspace");
        // The credentials reach only the workspace container, as a file.
        assert_eq!(
            spec["volumes"][0]["secret"]["items"][0]["key"],
            "git-credentials"
        );
        assert!(
            spec["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .len()
                == 1
        );
        let np = &objects[3]["spec"];
        assert_eq!(np["ingress"].as_array().unwrap().len(), 1);
        assert_eq!(
            np["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "gaffer"
        );
        assert_eq!(np["ingress"][0]["ports"][0]["port"], PORT);
        assert_eq!(np["ingress"][0]["ports"][1]["port"], WORKSPACE_PORT);
        assert_eq!(
            BuilderPod::attach_command(&ProjectRef::parse("ai-dev/api").unwrap()),
            "kubectl exec -it -n ai-dev-api-lab gaffer-builder-0 -c opencode -- opencode attach http://127.0.0.1:4096"
        );
    }
}
