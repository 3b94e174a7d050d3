//! `--lab auto` (the default): the cluster of the environment, probed at each deploy. When
//! none answers, a deploy fails with [`LabError::Unreachable`] and the task waits in
//! `Deploying`; it never falls back to rendering and then tests against nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::cluster::ClusterDeployer;
use super::{DeployOutcome, DeployRequest, LabDeployer, LabError};
use crate::names::ProjectRef;

/// Connects to the cluster when a deploy needs it, and again after it stopped answering.
#[derive(Debug)]
pub struct AutoDeployer {
    dir: PathBuf,
    probe: Duration,
    rollout: Duration,
    cluster: tokio::sync::Mutex<Option<Arc<ClusterDeployer>>>,
}

impl AutoDeployer {
    /// Deploys recorded under `dir`; `probe` bounds each connection attempt, `rollout` each
    /// rollout.
    pub fn new(dir: impl Into<PathBuf>, probe: Duration, rollout: Duration) -> Self {
        Self {
            dir: dir.into(),
            probe,
            rollout,
            cluster: tokio::sync::Mutex::new(None),
        }
    }

    /// The cluster, when it answers now: a known connection is asked for its version
    /// first, so a cluster that went away is noticed before anything is applied.
    async fn cluster(&self) -> Result<Arc<ClusterDeployer>, LabError> {
        let mut cached = self.cluster.lock().await;
        if let Some(c) = cached.as_ref() {
            match c.probe(self.probe).await {
                Ok(()) => return Ok(c.clone()),
                Err(why) => {
                    *cached = None;
                    return Err(LabError::Unreachable(why));
                }
            }
        }
        let mut c = ClusterDeployer::connect(&self.dir, self.probe)
            .await
            .map_err(LabError::Unreachable)?;
        c.rollout_timeout = self.rollout;
        tracing::info!(cluster = ?c, "lab deploys go to the cluster");
        let c = Arc::new(c);
        *cached = Some(c.clone());
        Ok(c)
    }
}

#[async_trait::async_trait]
impl LabDeployer for AutoDeployer {
    fn mode(&self) -> &'static str {
        "cluster"
    }

    async fn kube(&self) -> Option<kube::Client> {
        self.cluster().await.ok()?.kube().await
    }

    async fn deploy(&self, req: &DeployRequest) -> Result<DeployOutcome, LabError> {
        self.cluster().await?.deploy(req).await
    }

    async fn builder_access(
        &self,
        project: &ProjectRef,
        url: &str,
    ) -> Result<Vec<(String, String)>, LabError> {
        match self.cluster().await {
            Ok(c) => c.builder_access(project, url).await,
            // No cluster yet: the builder still learns its namespace and URL.
            Err(LabError::Unreachable(_)) => Ok(vec![
                ("LAB_NAMESPACE".into(), project.lab_namespace()),
                ("LAB_URL".into(), url.to_string()),
            ]),
            Err(e) => Err(e),
        }
    }
}
