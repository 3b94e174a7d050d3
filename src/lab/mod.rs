//! The lab: deploying what a builder built to its project's namespace and testing it there.
//!
//! [`LabDeployer`] is the connector trait; [`render::RenderOnly`] is the embedded default
//! (`kubectl kustomize` of the project's overlay, recorded but not applied). [`junit`] runs the
//! project's `lab.test` command and reads its JUnit XML report.

pub mod auto;
pub mod cluster;
pub mod junit;
pub mod overlay;
pub mod render;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::names::{ProjectRef, RepoName, TaskName};
use crate::state::status::{InventoryItem, TestResults};

/// What a deploy needs to know.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// The project.
    pub project: ProjectRef,
    /// The task whose work is deployed.
    pub task: TaskName,
    /// The overlay directory (already resolved inside the workspace and checked to stay in it).
    pub overlay: PathBuf,
    /// The workspace (the folder of the project's repos): nothing the overlay names may lie
    /// outside it.
    pub workspace: PathBuf,
    /// The lab host, `{project}.builder.<domain>`.
    pub host: String,
    /// The lab's URL (`lab_url` in gaffer.yaml; `https://<host>` by default).
    pub url: String,
    /// The commit of each workspace repo being deployed.
    pub commits: BTreeMap<RepoName, String>,
    /// Image overrides (`name` → `newName:tag`), when images were built.
    pub images: BTreeMap<String, String>,
    /// The renderer (`lab.tool`).
    pub tool: crate::state::spec::LabTool,
    /// `lab.values`: helm values files, relative to the chart (checked to stay inside it).
    pub values: Vec<String>,
    /// The objects the previous deploy applied (from `lab/status.yaml`): what is no longer
    /// rendered is pruned.
    pub previous: Vec<InventoryItem>,
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployOutcome {
    /// `{category}-{project}-lab`.
    pub namespace: String,
    /// `render-only` or `cluster`.
    pub mode: String,
    /// Objects rendered (and applied, in cluster mode), sorted.
    pub inventory: Vec<InventoryItem>,
    /// The lab URLs (the request's `url`).
    pub urls: Vec<String>,
    /// Whether the render was identical to the previous one (nothing changed).
    pub no_op: bool,
    /// A digest of the rendered manifests.
    pub digest: String,
}

/// Errors of the lab connectors.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The renderer binary is not installed.
    #[error(
        "{tool} is not installed (needed for lab.tool: {tool}); install it or use lab.tool: kustomize"
    )]
    ToolMissing {
        /// The tool.
        tool: String,
    },
    /// Rendering failed.
    #[error("rendering {overlay} failed: {message}")]
    Render {
        /// The overlay.
        overlay: String,
        /// What the renderer said.
        message: String,
    },
    /// The overlay or its render is not acceptable (it reaches outside the workspace, an
    /// object is too big, a kind the cluster does not serve): nothing was applied.
    #[error("{overlay}: {message}")]
    Invalid {
        /// The overlay.
        overlay: String,
        /// Where and why (`file:line:col: …` when it is about a file).
        message: String,
    },
    /// The test command could not run.
    #[error("lab test command {command:?} could not run: {message}")]
    TestCommand {
        /// The command.
        command: String,
        /// Why.
        message: String,
    },
    /// The cluster refused or could not be reached.
    #[error("kubernetes: {0}")]
    Cluster(String),
    /// No cluster answers (or none is configured): nothing was deployed; try again later.
    #[error("no cluster answers: {0}")]
    Unreachable(String),
    /// Objects did not become ready in time, or a container crash-loops.
    #[error(
        "{}: {report}",
        if *crashing { "not ready, crash-looping".to_string() } else { format!("not ready after {secs}s") }
    )]
    NotReady {
        /// How long gaffer waited (at most).
        secs: u64,
        /// Whether a container crash-loops (or cannot start as configured): no point waiting.
        crashing: bool,
        /// What is not ready and why, `; `-separated.
        report: String,
        /// The last lines of the containers that crashed, each under a heading (bounded).
        logs: String,
    },
    /// Filesystem trouble.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Deploys a project's work to its lab namespace.
#[async_trait::async_trait]
pub trait LabDeployer: Send + Sync + std::fmt::Debug {
    /// Renders (and, for a cluster deployer, applies) the overlay. Idempotent: deploying the
    /// same render twice reports `no_op` and changes nothing.
    async fn deploy(&self, req: &DeployRequest) -> Result<DeployOutcome, LabError>;

    /// The environment a project's builder gets so it can run its own work in the lab
    /// (`LAB_NAMESPACE`, `LAB_URL`, and for a cluster `KUBECONFIG`: a kubeconfig limited to the
    /// lab namespace). Called when the builder starts and again at each deploy.
    async fn builder_access(
        &self,
        project: &ProjectRef,
        url: &str,
    ) -> Result<Vec<(String, String)>, LabError> {
        Ok(vec![
            ("LAB_NAMESPACE".into(), project.lab_namespace()),
            ("LAB_URL".into(), url.to_string()),
        ])
    }

    /// `render-only` or `cluster`.
    fn mode(&self) -> &'static str;

    /// A client of the cluster, when this deployer has one that answers (builder pods run
    /// there); `None` when it renders only or no cluster answers.
    async fn kube(&self) -> Option<kube::Client> {
        None
    }
}

/// Runs the project's lab tests.
#[async_trait::async_trait]
pub trait TestRunner: Send + Sync + std::fmt::Debug {
    /// Runs `command` (an argument vector, never a shell string built from task text) in
    /// `workdir` with `LAB_NAMESPACE` and `LAB_URL` set, and reads `report.xml` (JUnit) when
    /// the command leaves one in `workdir`.
    async fn run(
        &self,
        command: &[String],
        workdir: &std::path::Path,
        namespace: &str,
        url: &str,
    ) -> Result<TestResults, LabError>;
}
