//! The cluster deployer: the render of [`super::render`] applied to the project's lab
//! namespace with kube-rs.
//!
//! - **Apply** is server-side apply with field manager `gaffer`, in stages: Namespaces and
//!   CustomResourceDefinitions first (CRDs waited for until `Established`), then the rest;
//!   kinds are mapped to resources by discovery (one group-version at a time, cached).
//! - **Prune**: objects of the previous deploy's inventory that are no longer rendered are
//!   deleted (never the namespace itself).
//! - **Rollout**: Deployments, StatefulSets and DaemonSets must become available, Jobs
//!   complete and Pods ready within the timeout; otherwise the deploy fails with a report of
//!   what is not ready and why (conditions, container waiting reasons, recent events).
//! - **No-op**: when every applied object's `resourceVersion` is the one recorded after the
//!   previous apply and nothing was pruned, the deploy changed nothing and says so.
//! - **Builder access**: a ServiceAccount, a Role limited to the lab namespace and its
//!   RoleBinding, and a kubeconfig (a TokenRequest token) written for the builder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::{Value, json};

pub mod logs;
mod rollout;

use rollout::condition;

use super::render::RenderOnly;
use super::{DeployOutcome, DeployRequest, LabDeployer, LabError};
use crate::names::ProjectRef;
use crate::state::status::InventoryItem;

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "gaffer";
/// The builder's ServiceAccount, Role and RoleBinding name.
pub const BUILDER_ACCOUNT: &str = "gaffer-builder";
const MODE: &str = "cluster";

/// Deploys to a real (or fake) Kubernetes API.
pub struct ClusterDeployer {
    client: kube::Client,
    config: kube::Config,
    render: RenderOnly,
    state_dir: PathBuf,
    /// How long objects may take to become ready.
    pub rollout_timeout: Duration,
    /// How often readiness is checked.
    pub poll: Duration,
    resources: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    /// In a cluster whose RBAC grants gaffer its lab rights per namespace
    /// (manifests/base/rbac-cluster.yaml): the ClusterRole to bind to gaffer's own
    /// ServiceAccount in each lab namespace it makes.
    pub own_binding: Option<OwnBinding>,
}

/// gaffer's own RoleBinding in each lab namespace: `cluster_role` for the ServiceAccount
/// `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnBinding {
    /// The ClusterRole (`gaffer-lab`).
    pub cluster_role: String,
    /// gaffer's ServiceAccount's namespace.
    pub namespace: String,
    /// gaffer's ServiceAccount.
    pub name: String,
}

impl OwnBinding {
    /// From `GAFFER_LAB_CLUSTERROLE`, `POD_NAMESPACE` and `GAFFER_SERVICE_ACCOUNT` (the
    /// manifests set all three), when all are set.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(OwnBinding {
            cluster_role: var("GAFFER_LAB_CLUSTERROLE")?,
            namespace: var("POD_NAMESPACE")?,
            name: var("GAFFER_SERVICE_ACCOUNT")?,
        })
    }
}

impl std::fmt::Debug for ClusterDeployer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDeployer")
            .field("cluster", &self.config.cluster_url.to_string())
            .finish()
    }
}

fn kube_err(e: impl std::fmt::Display) -> LabError {
    LabError::Cluster(e.to_string())
}

impl ClusterDeployer {
    /// A deployer for the cluster `config` describes, rendering into and keeping its records
    /// under `state_dir`.
    pub fn new(config: kube::Config, state_dir: impl Into<PathBuf>) -> Result<Self, LabError> {
        let state_dir = state_dir.into();
        let client = kube::Client::try_from(config.clone()).map_err(kube_err)?;
        Ok(Self {
            client,
            config,
            render: RenderOnly::new(state_dir.clone()),
            state_dir,
            rollout_timeout: Duration::from_secs(300),
            poll: Duration::from_millis(500),
            resources: Mutex::new(HashMap::new()),
            own_binding: OwnBinding::from_env(),
        })
    }

    /// After a lab namespace is made: gaffer's own RoleBinding in it, when configured
    /// ([`OwnBinding`]). Created (never patched), so the only right it needs is to create
    /// RoleBindings and bind that ClusterRole; one that exists is left as it is.
    async fn bind_self(&self, ns: &str) -> Result<(), LabError> {
        let Some(b) = &self.own_binding else {
            return Ok(());
        };
        let api: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
            Api::namespaced(self.client.clone(), ns);
        let binding: k8s_openapi::api::rbac::v1::RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": "gaffer", "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "gaffer"}},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": b.cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": b.name, "namespace": b.namespace}],
        }))
        .map_err(kube_err)?;
        match api.create(&PostParams::default(), &binding).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(kube_err(format!("gaffer's RoleBinding in {ns}: {e}"))),
        }
    }

    /// The cluster from the environment (in a pod: the service account; else `KUBECONFIG` or
    /// `~/.kube/config` and its current context), if it answers within `timeout`.
    pub async fn connect(state_dir: &Path, timeout: Duration) -> Result<Self, String> {
        let mut config = kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster configured ({e})"))?;
        config.connect_timeout = Some(timeout);
        let this = Self::new(config, state_dir).map_err(|e| e.to_string())?;
        this.probe(timeout).await?;
        Ok(this)
    }

    /// Whether the cluster answers (its version) within `timeout`.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!(
                "the cluster at {} did not answer: {e}",
                self.config.cluster_url
            )),
            Err(_) => Err(format!(
                "the cluster at {} did not answer within {}s",
                self.config.cluster_url,
                timeout.as_secs()
            )),
        }
    }

    /// The API resource of `gvk` (discovery, cached).
    async fn resource(
        &self,
        gvk: &GroupVersionKind,
    ) -> Result<(ApiResource, ApiCapabilities), LabError> {
        if let Some(r) = self
            .resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(gvk)
        {
            return Ok(r.clone());
        }
        let r = kube::discovery::pinned_kind(&self.client, gvk)
            .await
            .map_err(|e| {
                LabError::Cluster(format!(
                    "the cluster does not serve {}/{} {}: {e}",
                    gvk.group, gvk.version, gvk.kind
                ))
            })?;
        self.resources
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(gvk.clone(), r.clone());
        Ok(r)
    }

    async fn api(&self, gvk: &GroupVersionKind, ns: &str) -> Result<Api<DynamicObject>, LabError> {
        let (ar, caps) = self.resource(gvk).await?;
        Ok(match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        })
    }

    /// Server-side applies `doc`; returns its key and new resourceVersion.
    async fn apply(&self, doc: &Value, ns: &str) -> Result<(String, String), LabError> {
        let gvk = gvk_of(doc)?;
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let api = self.api(&gvk, ns).await?;
        let obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(kube_err)?;
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&obj),
            )
            .await
            .map_err(|e| LabError::Cluster(format!("applying {} {name}: {e}", gvk.kind)))?;
        Ok((
            key(&gvk.kind, ns, &name),
            applied.metadata.resource_version.unwrap_or_default(),
        ))
    }

    /// Waits until every CRD in `docs` is Established.
    async fn wait_established(&self, docs: &[&Value]) -> Result<(), LabError> {
        let deadline = tokio::time::Instant::now() + self.rollout_timeout;
        for doc in docs {
            let gvk = gvk_of(doc)?;
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let api = self.api(&gvk, "").await?;
            loop {
                let o = api.get(name).await.map_err(kube_err)?;
                if condition(&o.data, "Established") == Some(true) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(LabError::NotReady {
                        secs: self.rollout_timeout.as_secs(),
                        crashing: false,
                        logs: String::new(),
                        report: format!("CustomResourceDefinition {name} is not Established"),
                    });
                }
                tokio::time::sleep(self.poll).await;
            }
        }
        Ok(())
    }

    /// Whether namespace `ns` exists.
    pub async fn namespace_exists(&self, ns: &str) -> Result<bool, LabError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        Ok(api.get_opt(ns).await.map_err(kube_err)?.is_some())
    }

    /// Deletes namespace `ns` (and so everything in it); `false` when it was not there.
    pub async fn delete_namespace(&self, ns: &str) -> Result<bool, LabError> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        match api.delete(ns, &DeleteParams::default()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(kube_err(format!("deleting namespace {ns}: {e}"))),
        }
    }

    fn record_path(&self, project: &ProjectRef) -> PathBuf {
        self.state_dir
            .join(project.builder_name())
            .join("applied.json")
    }

    /// The kubeconfig the builder of `project` gets.
    pub fn kubeconfig_path(&self, project: &ProjectRef) -> PathBuf {
        self.state_dir
            .join(project.builder_name())
            .join("kubeconfig")
    }
}

/// `kind/namespace/name`.
fn key(kind: &str, ns: &str, name: &str) -> String {
    format!("{kind}/{ns}/{name}")
}

fn gvk_of(doc: &Value) -> Result<GroupVersionKind, LabError> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    if version.is_empty() || kind.is_empty() {
        return Err(LabError::Cluster(format!(
            "an object without apiVersion/kind: {doc}"
        )));
    }
    Ok(GroupVersionKind::gvk(group, version, kind))
}

fn gvk_of_item(i: &InventoryItem) -> GroupVersionKind {
    GroupVersionKind::gvk(&i.group, &i.version, &i.kind)
}

#[async_trait::async_trait]
impl LabDeployer for ClusterDeployer {
    fn mode(&self) -> &'static str {
        MODE
    }

    async fn kube(&self) -> Option<kube::Client> {
        Some(self.client.clone())
    }

    #[tracing::instrument(skip_all, fields(project = %req.project, task = %req.task))]
    async fn deploy(&self, req: &DeployRequest) -> Result<DeployOutcome, LabError> {
        let r = self.render.render(req).await?;
        let ns = r.namespace.clone();
        let (first, rest): (Vec<&Value>, Vec<&Value>) = r.docs.iter().partition(|d| {
            matches!(
                d["kind"].as_str(),
                Some("Namespace" | "CustomResourceDefinition")
            )
        });
        // Every kind the render names is served (or defined by a CRD of the render) before
        // anything is applied: an unknown kind fails the deploy with nothing changed.
        let defined: Vec<(String, String)> = first
            .iter()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .map(|d| {
                (
                    d["spec"]["group"].as_str().unwrap_or("").to_string(),
                    d["spec"]["names"]["kind"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        for doc in &rest {
            let gvk = gvk_of(doc)?;
            if defined.contains(&(gvk.group.clone(), gvk.kind.clone())) {
                continue;
            }
            if let Err(e) = self.resource(&gvk).await {
                return Err(LabError::Invalid {
                    overlay: req.overlay.display().to_string(),
                    message: format!(
                        "{} {}: {e}; nothing was applied",
                        gvk.kind,
                        doc["metadata"]["name"].as_str().unwrap_or("")
                    ),
                });
            }
        }
        let mut applied: BTreeMap<String, String> = BTreeMap::new();
        for doc in &first {
            let (k, rv) = self.apply(doc, &ns).await?;
            applied.insert(k, rv);
            if doc["kind"] == "Namespace" {
                self.bind_self(&ns).await?;
            }
        }
        let crds: Vec<&Value> = first
            .iter()
            .copied()
            .filter(|d| d["kind"] == "CustomResourceDefinition")
            .collect();
        self.wait_established(&crds).await?;
        for doc in &rest {
            let (k, rv) = self.apply(doc, &ns).await?;
            applied.insert(k, rv);
        }
        // Prune what the previous deploy applied and this one no longer renders.
        let mut pruned = 0;
        for old in &req.previous {
            if old.kind == "Namespace" || r.inventory.contains(old) {
                continue;
            }
            let api = self.api(&gvk_of_item(old), &old.namespace).await?;
            match api.delete(&old.name, &DeleteParams::default()).await {
                Ok(_) => {
                    pruned += 1;
                    tracing::info!(kind = %old.kind, name = %old.name, "pruned");
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube_err(format!("pruning {} {}: {e}", old.kind, old.name))),
            }
        }
        self.wait_rollout(&rest, &ns).await?;

        let record = self.record_path(&req.project);
        let before: BTreeMap<String, String> = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let no_op = pruned == 0 && before == applied;
        if !no_op {
            write_private(
                &record,
                &serde_json::to_vec_pretty(&applied).map_err(kube_err)?,
            )?;
        }
        tracing::info!(objects = applied.len(), pruned, no_op, "applied lab");
        Ok(DeployOutcome {
            namespace: ns,
            mode: MODE.into(),
            inventory: r.inventory,
            urls: vec![req.url.clone()],
            no_op,
            digest: r.digest,
        })
    }

    async fn builder_access(
        &self,
        project: &ProjectRef,
        url: &str,
    ) -> Result<Vec<(String, String)>, LabError> {
        let ns = project.lab_namespace();
        let labels = json!({
            "app.kubernetes.io/managed-by": "gaffer",
            "gaffer.dev/category": project.category.as_str(),
            "gaffer.dev/project": project.project.as_str(),
        });
        let objects = [
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "labels": labels}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": BUILDER_ACCOUNT, "namespace": ns, "labels": labels}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": BUILDER_ACCOUNT, "namespace": ns, "labels": labels},
                   "rules": builder_rules()}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": BUILDER_ACCOUNT, "namespace": ns, "labels": labels},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": BUILDER_ACCOUNT},
                   "subjects": [{"kind": "ServiceAccount", "name": BUILDER_ACCOUNT,
                                 "namespace": ns}]}),
        ];
        for (i, o) in objects.iter().enumerate() {
            self.apply(o, &ns).await?;
            if i == 0 {
                self.bind_self(&ns).await?;
            }
        }
        let sa: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &ns);
        let token = sa
            .create_token_request(
                BUILDER_ACCOUNT,
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        expiration_seconds: Some(48 * 3600),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| kube_err(format!("token for the builder: {e}")))?
            .status
            .map(|s| s.token)
            .unwrap_or_default();
        let path = self.kubeconfig_path(project);
        let config = kubeconfig(&self.config, &ns, &token);
        write_private(&path, config.as_bytes())?;
        Ok(vec![
            ("KUBECONFIG".into(), path.display().to_string()),
            ("LAB_NAMESPACE".into(), ns),
            ("LAB_URL".into(), url.to_string()),
        ])
    }
}

/// What a builder may do in its lab namespace: workloads, config, networking and their
/// logs — but not RBAC (it cannot grant itself more) and nothing outside the namespace
/// (a Role and RoleBinding are namespaced).
pub fn builder_rules() -> Value {
    json!([
        {"apiGroups": ["", "apps", "batch", "networking.k8s.io", "autoscaling", "policy"],
         "resources": ["*"],
         "verbs": ["*"]},
    ])
}

/// A kubeconfig for `token` on the cluster of `config`, defaulting to `namespace`.
fn kubeconfig(config: &kube::Config, namespace: &str, token: &str) -> String {
    use base64::Engine;
    let mut cluster = json!({"server": config.cluster_url.to_string().trim_end_matches('/')});
    if let Some(certs) = &config.root_cert {
        let pem: String = certs
            .iter()
            .map(|der| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(der);
                let lines: Vec<&str> = b64
                    .as_bytes()
                    .chunks(64)
                    .map(|c| std::str::from_utf8(c).unwrap_or_default())
                    .collect();
                format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    lines.join("\n")
                )
            })
            .collect();
        cluster["certificate-authority-data"] =
            json!(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    if config.accept_invalid_certs {
        cluster["insecure-skip-tls-verify"] = json!(true);
    }
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": BUILDER_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": BUILDER_ACCOUNT,
                                                  "namespace": namespace}}],
        "current-context": "lab",
    });
    // JSON is valid YAML, and kubectl reads it as such.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Writes `bytes` to `path` (mode 0600) atomically, creating its directory.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    let io = |source| LabError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    crate::fsutil::write_atomic(path, bytes, Some(0o600)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builders_kubeconfig_names_its_namespace_and_token_only() {
        let config = kube::Config::new("https://10.0.0.1:6443/".parse().unwrap());
        let k: Value = serde_json::from_str(&kubeconfig(&config, "ai-dev-api-lab", "tok")).unwrap();
        assert_eq!(
            k["clusters"][0]["cluster"]["server"],
            "https://10.0.0.1:6443"
        );
        assert_eq!(k["contexts"][0]["context"]["namespace"], "ai-dev-api-lab");
        assert_eq!(k["users"][0]["user"]["token"], "tok");
        assert_eq!(k["current-context"], "lab");
    }
}
