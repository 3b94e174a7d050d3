//! `project.yaml` `lab:`: where and how a project's work is deployed and tested
//! (docs/lab.md).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::RepoName;
use crate::state::yaml::Located;

/// Where and how the builder runs what it builds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// The overlay to render, as `<repo>/<path>` inside the workspace.
    pub overlay: Located<String>,
    /// The renderer.
    #[serde(default)]
    pub tool: LabTool,
    /// With `tool: helm`: values files, relative to the chart (the overlay), given to
    /// `helm template` in order (`-f`), e.g. `[values-lab.yaml]`: one chart, a values file
    /// per environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<Located<String>>,
    /// The test command, run in the workspace with `LAB_URL` and `LAB_NAMESPACE` set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
    /// A GitHub Actions workflow that builds an image of the task branch, when the project
    /// builds any (most run code from ConfigMaps and build none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// `cluster` (the default): deploy to the cluster, and wait while none answers;
    /// `render-only`: render and record, apply nothing (a person's choice, said in the thread).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: LabMode,
    /// Run `test` even when nothing was deployed (`render-only`): the tests then test
    /// whatever `LAB_URL` reaches, which is not this task's work.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test_without_deploy: bool,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Where a project's lab deploys go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LabMode {
    /// The cluster; a task waits in `Deploying` (`LabUnreachable`) while none answers.
    #[default]
    Cluster,
    /// Render with the lab tool and record; never apply.
    RenderOnly,
}

/// An image built by a GitHub Actions workflow for each deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The workspace repo whose branch is built (and whose GitHub repo runs the workflow).
    pub repo: RepoName,
    /// The workflow file (e.g. `build-image.yml`) or id; dispatched with `ref` = the branch.
    pub workflow: String,
    /// The image name the manifests use (what kustomize `images:` overrides).
    pub name: String,
    /// Where the workflow pushes, tagged with the commit SHA (default
    /// `ghcr.io/<owner>/<repo>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
}

/// Manifest renderers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LabTool {
    /// `kubectl kustomize`.
    #[default]
    Kustomize,
    /// `helm template`.
    Helm,
    /// `skaffold render`.
    Skaffold,
}
