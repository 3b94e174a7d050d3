//! [`PodHost`]: builders in pods of their own ([`super::BuilderPod`]), reached over the
//! cluster network. It applies the builder's objects when the builder is set up, scales the
//! StatefulSet to one when the server is wanted and to zero when it is stopped or idle
//! (suspended: the pod goes, the volume stays), and finds the pod's address each time, as a
//! pod deleted or rescheduled comes back with another.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ApiResource, DynamicObject, LogParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::{BuilderPod, MOUNT, NAME, POD, PORT, WORKSPACE_PORT};
use crate::agent::host::BuilderHost;
use crate::agent::{AgentError, BuilderSetup};
use crate::lab::LabDeployer;
use crate::names::ProjectRef;
use crate::state::status::HostKind;

/// What a task says when its project wants a pod builder and no cluster answers.
pub const NO_CLUSTER: &str = "the project's builder runs in a pod (agent.host: pod), and no \
     Kubernetes cluster answers: run the reconciler with --lab cluster (or auto) and a \
     kubeconfig or in-cluster service account, or set agent.host: tmux";

/// Builders as pods.
pub struct PodHost {
    lab: Arc<dyn LabDeployer>,
    client: tokio::sync::Mutex<Option<kube::Client>>,
    settings: PodHostSettings,
    /// The pod each builder was last set up with.
    known: Mutex<HashMap<ProjectRef, BuilderPod>>,
    /// The workspace root as each builder's pod sees it (reported by its sidecar).
    roots: Mutex<HashMap<ProjectRef, PathBuf>>,
}

/// What every builder pod of this reconciler shares.
#[derive(Clone, Default)]
pub struct PodHostSettings {
    /// gaffer's namespace (its reconciler pods are the builders' only peers).
    pub gaffer_namespace: String,
    /// OpenCode's config for the builders (`opencode.json`).
    pub opencode_config: Option<String>,
    /// A git credential store file for the projects' repos.
    pub git_credentials: Option<String>,
    /// Environment every builder gets besides its own (OpenCode's switches).
    pub env: Vec<(String, String)>,
    /// How long a pod may take to be ready.
    pub start_timeout: Duration,
    /// The OpenCode runtime's records, where each builder's password is kept.
    pub state_dir: PathBuf,
}

/// A builder pod as found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodState {
    /// Its address.
    pub ip: Option<String>,
    /// Every container ready.
    pub ready: bool,
    /// Being deleted.
    pub deleting: bool,
    /// Why a container cannot run (`CrashLoopBackOff: …`), when one cannot.
    pub failing: Option<String>,
    /// The OpenCode container's run: the pod's uid and its restarts, and when it started.
    pub server: Option<(String, i64)>,
}

impl std::fmt::Debug for PodHostSettings {
    // The config and credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodHostSettings")
            .field("gaffer_namespace", &self.gaffer_namespace)
            .field("opencode_config", &self.opencode_config.is_some())
            .field("git_credentials", &self.git_credentials.is_some())
            .field("start_timeout", &self.start_timeout)
            .finish_non_exhaustive()
    }
}

fn runtime(e: impl std::fmt::Display) -> AgentError {
    AgentError::Runtime(e.to_string())
}

impl std::fmt::Debug for PodHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodHost")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PodHost {
    /// Builder pods in the cluster `lab` deploys to.
    pub fn new(lab: Arc<dyn LabDeployer>, settings: PodHostSettings) -> Self {
        Self {
            lab,
            client: tokio::sync::Mutex::new(None),
            settings,
            known: Mutex::new(HashMap::new()),
            roots: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster's client, found once.
    pub async fn kube(&self) -> Result<kube::Client, AgentError> {
        let mut cached = self.client.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let c = self
            .lab
            .kube()
            .await
            .ok_or_else(|| AgentError::Config(NO_CLUSTER.into()))?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// Whether a cluster answers.
    pub async fn available(&self) -> bool {
        self.kube().await.is_ok()
    }

    /// The builder pod `setup` calls for, with `password`.
    pub fn pod_for(&self, setup: &BuilderSetup, password: &str) -> Result<BuilderPod, AgentError> {
        let pod = setup
            .pod
            .as_ref()
            .ok_or_else(|| AgentError::Config(format!("{} has no pod settings", setup.project)))?;
        let mut env: std::collections::BTreeMap<String, String> =
            self.settings.env.iter().cloned().collect();
        // In its pod the builder reaches the lab with its own service account.
        env.extend(setup.env.iter().filter(|(k, _)| k != "KUBECONFIG").cloned());
        Ok(BuilderPod {
            project: setup.project.clone(),
            image: pod.image.clone(),
            password: password.to_string(),
            running: true,
            storage: pod.spec.storage().to_string(),
            resources: pod.spec.resources(),
            gaffer_namespace: self.settings.gaffer_namespace.clone(),
            opencode_config: self.settings.opencode_config.clone(),
            git_credentials: self.settings.git_credentials.clone(),
            env,
        })
    }

    async fn apply(&self, objects: &[Value]) -> Result<(), AgentError> {
        let client = self.kube().await?;
        for o in objects {
            let kind = o["kind"].as_str().unwrap_or_default();
            let ar = match kind {
                "Secret" => ApiResource::erase::<Secret>(&()),
                "Service" => ApiResource::erase::<Service>(&()),
                "NetworkPolicy" => ApiResource::erase::<NetworkPolicy>(&()),
                "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
                other => return Err(runtime(format!("a builder pod has no {other}"))),
            };
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            api.patch(
                name,
                &PatchParams::apply("gaffer").force(),
                &Patch::Apply(o),
            )
            .await
            .map_err(|e| runtime(format!("applying {kind} {ns}/{name}: {e}")))?;
        }
        Ok(())
    }

    /// Scales the builder's StatefulSet; `Ok(false)` when it does not exist.
    async fn scale(&self, project: &ProjectRef, replicas: i32) -> Result<bool, AgentError> {
        let api: Api<StatefulSet> = Api::namespaced(self.kube().await?, &project.lab_namespace());
        match api
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas}})),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
            Err(e) => Err(runtime(format!("scaling {project}'s builder: {e}"))),
        }
    }

    /// The builder's pod as it is now, `None` when there is none.
    pub async fn state(&self, project: &ProjectRef) -> Result<Option<PodState>, AgentError> {
        let api: Api<Pod> = Api::namespaced(self.kube().await?, &project.lab_namespace());
        let Some(pod) = api
            .get_opt(POD)
            .await
            .map_err(|e| runtime(format!("reading {project}'s builder pod: {e}")))?
        else {
            return Ok(None);
        };
        let status = pod.status.unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let containers = status.container_statuses.unwrap_or_default();
        let server = containers
            .iter()
            .find(|c| c.name == "opencode")
            .and_then(|c| {
                let started = c.state.as_ref()?.running.as_ref()?.started_at.as_ref()?;
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                Some((
                    format!("{uid}/{}", c.restart_count),
                    started.0.as_millisecond(),
                ))
            });
        let failing = containers.into_iter().find_map(|c| {
            let w = c.state?.waiting?;
            let reason = w.reason.unwrap_or_default();
            matches!(
                reason.as_str(),
                "CrashLoopBackOff"
                    | "ErrImagePull"
                    | "ImagePullBackOff"
                    | "CreateContainerConfigError"
            )
            .then(|| format!("{}: {reason}: {}", c.name, w.message.unwrap_or_default()))
        });
        Ok(Some(PodState {
            ip: status.pod_ip.filter(|ip| !ip.is_empty()),
            ready,
            deleting: pod.metadata.deletion_timestamp.is_some(),
            failing,
            server,
        }))
    }

    /// The address of the builder's ready pod, starting it (scaling it to one, or applying
    /// it as last set up) and waiting for it when it is not running.
    pub async fn running(&self, project: &ProjectRef) -> Result<String, AgentError> {
        let deadline = tokio::time::Instant::now() + self.settings.start_timeout;
        let mut scaled = false;
        loop {
            let state = self.state(project).await?;
            match &state {
                Some(PodState {
                    ip: Some(ip),
                    ready: true,
                    deleting: false,
                    ..
                }) => return Ok(ip.clone()),
                Some(PodState {
                    failing: Some(why), ..
                }) => {
                    let logs = self.logs(project).await.unwrap_or_default();
                    return Err(runtime(format!(
                        "{project}'s builder pod cannot run: {why}\n{logs}"
                    )));
                }
                _ => {}
            }
            if !scaled {
                if !self.scale(project, 1).await? {
                    let known = self.known.lock().ok().and_then(|k| k.get(project).cloned());
                    match known {
                        Some(pod) => self.apply(&pod.objects()).await?,
                        None => {
                            return Err(runtime(format!(
                                "{project}'s builder pod was never set up"
                            )));
                        }
                    }
                }
                scaled = true;
                tracing::info!(%project, "starting the builder pod");
            }
            if tokio::time::Instant::now() > deadline {
                return Err(runtime(format!(
                    "{project}'s builder pod was not ready within {:?} ({state:?})",
                    self.settings.start_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The sidecar's address of the builder's running pod (started when suspended).
    pub async fn workspace_url(&self, project: &ProjectRef) -> Result<String, AgentError> {
        Ok(format!(
            "http://{}:{WORKSPACE_PORT}",
            self.running(project).await?
        ))
    }

    /// The password the builder was set up with (kept with the OpenCode runtime's
    /// records, so it is known again after a restart).
    pub fn password(&self, project: &ProjectRef) -> Option<String> {
        self.known
            .lock()
            .ok()
            .and_then(|k| k.get(project).map(|p| p.password.clone()))
            .or_else(|| {
                crate::agent::opencode::password_of(
                    &self.settings.state_dir,
                    &project.builder_name(),
                )
            })
    }

    /// Where the builder's pod sees its workspace root (`/workspace`, or wherever its
    /// sidecar said).
    pub fn root(&self, project: &ProjectRef) -> PathBuf {
        self.roots
            .lock()
            .ok()
            .and_then(|r| r.get(project).cloned())
            .unwrap_or_else(|| PathBuf::from(MOUNT))
    }

    /// Records where the builder's pod sees its workspace root.
    pub fn set_root(&self, project: &ProjectRef, root: PathBuf) {
        if let Ok(mut r) = self.roots.lock() {
            r.insert(project.clone(), root);
        }
    }

    /// Suspends the builder: its pod goes, its volume stays.
    pub async fn suspend(&self, project: &ProjectRef) -> Result<(), AgentError> {
        self.scale(project, 0).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BuilderHost for PodHost {
    fn kind(&self) -> HostKind {
        HostKind::Pod
    }

    async fn set_up(&self, setup: &BuilderSetup, password: &str) -> Result<(), AgentError> {
        let pod = self.pod_for(setup, password)?;
        let same = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(&setup.project).cloned())
            .is_some_and(|k| k == pod);
        if !same {
            self.apply(&pod.objects()).await?;
            if let Ok(mut k) = self.known.lock() {
                k.insert(setup.project.clone(), pod);
            }
        }
        Ok(())
    }

    fn fixed_port(&self) -> Option<u16> {
        Some(PORT)
    }

    fn isolates(&self) -> bool {
        true
    }

    async fn base_url(
        &self,
        project: &ProjectRef,
        _port: u16,
    ) -> Result<Option<String>, AgentError> {
        Ok(match self.state(project).await? {
            Some(PodState {
                ip: Some(ip),
                ready: true,
                deleting: false,
                ..
            }) => Some(format!("http://{ip}:{PORT}")),
            _ => None,
        })
    }

    async fn instance(&self, project: &ProjectRef) -> Result<Option<(String, i64)>, AgentError> {
        Ok(self.state(project).await?.and_then(|s| s.server))
    }

    async fn ensure_server(
        &self,
        project: &ProjectRef,
        _dir: &std::path::Path,
        _argv: &[std::ffi::OsString],
    ) -> Result<(), AgentError> {
        self.running(project).await.map(|_| ())
    }

    async fn is_alive(&self, project: &ProjectRef) -> Result<bool, AgentError> {
        Ok(self
            .state(project)
            .await?
            .is_some_and(|s| !s.deleting && s.failing.is_none()))
    }

    async fn logs(&self, project: &ProjectRef) -> Result<String, AgentError> {
        let api: Api<Pod> = Api::namespaced(self.kube().await?, &project.lab_namespace());
        api.logs(
            POD,
            &LogParams {
                container: Some("opencode".into()),
                tail_lines: Some(30),
                ..LogParams::default()
            },
        )
        .await
        .map_err(runtime)
    }

    async fn ensure_attach(
        &self,
        _project: &ProjectRef,
        _dir: &std::path::Path,
        _argv: &[std::ffi::OsString],
        _restart: bool,
    ) -> Result<(), AgentError> {
        // A person attaches with `kubectl exec` into the pod; nothing runs for them ahead.
        Ok(())
    }

    fn attach(&self, project: &ProjectRef) -> Option<String> {
        Some(BuilderPod::attach_command(project))
    }

    async fn stop(&self, project: &ProjectRef) -> Result<(), AgentError> {
        self.suspend(project).await
    }
}

#[async_trait::async_trait]
impl crate::workspace::remote::Sidecar for PodHost {
    async fn locate(
        &self,
        project: &ProjectRef,
    ) -> Result<(String, String), crate::workspace::WorkspaceError> {
        let remote = |e: String| crate::workspace::WorkspaceError::Remote(e);
        let url = self
            .workspace_url(project)
            .await
            .map_err(|e| remote(e.to_string()))?;
        let token = self
            .password(project)
            .ok_or_else(|| remote(format!("{project}'s builder has no password yet")))?;
        Ok((url, token))
    }

    fn set_root(&self, project: &ProjectRef, root: PathBuf) {
        PodHost::set_root(self, project, root);
    }

    fn root(&self, project: &ProjectRef) -> PathBuf {
        PodHost::root(self, project)
    }
}
