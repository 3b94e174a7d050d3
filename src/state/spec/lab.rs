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

/// The lab's URL, where `gaffer.yaml` says it is.
impl super::Settings {
    /// The lab host of a project: `{project}.builder.<domain>`.
    pub fn lab_host(&self, project: &crate::names::Project) -> String {
        format!("{project}.builder.{}", self.domain)
    }

    /// The URL of a project's lab, from `lab_url` (checked when the settings are read, so
    /// a template that does not render falls back to the default here).
    pub fn lab_url(&self, project: &crate::names::ProjectRef) -> String {
        let host = self.lab_host(&project.project);
        self.lab_url
            .as_deref()
            .and_then(|t| render_lab_url(t, &host, project).ok())
            .unwrap_or_else(|| format!("https://{host}"))
    }
}

/// Renders a `lab_url` template; an error says why it is not a URL.
pub fn render_lab_url(
    template: &str,
    host: &str,
    project: &crate::names::ProjectRef,
) -> Result<String, String> {
    render_url(
        template,
        minijinja::context! {
            host => host,
            project => project.project.as_str(),
            category => project.category.as_str(),
            namespace => project.lab_namespace(),
        },
    )
}

/// Renders a URL template of `gaffer.yaml` (every name it may use is given, an unknown one
/// is an error) and checks that it is an `http://` or `https://` URL.
pub(crate) fn render_url(template: &str, names: minijinja::Value) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let url = env.render_str(template, names).map_err(|e| e.to_string())?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} does not start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(format!("{url:?} is not a URL"));
    }
    Ok(url)
}
