//! The embedded lab deployer: renders a project's overlay with `kubectl kustomize` and records
//! the result without applying it.
//!
//! It exists so a lab works with no cluster at all (and so `gaffer demo` and the tests exercise
//! the same rendering a cluster deployer applies). The overlay is never edited: a generated
//! wrapper kustomization next to the output adds the lab namespace, gaffer's labels, image
//! overrides and the lab host, and every value in it is serialized, never pasted into text.
//! The render is idempotent: an identical render is reported as `no_op` and not rewritten.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{DeployOutcome, DeployRequest, LabDeployer, LabError};
use crate::state::spec::LabTool;
use crate::state::status::InventoryItem;
use crate::state::yaml;

/// How long one `kubectl kustomize` may take (remote bases can be slow, but never endless).
const RENDER_TIMEOUT: Duration = Duration::from_secs(120);

/// The `mode` this deployer reports.
pub const MODE: &str = "render-only";

/// Renders overlays into `out_dir/<category>-<project>/rendered.yaml` without applying them.
#[derive(Debug, Clone)]
pub struct RenderOnly {
    out_dir: PathBuf,
    kubectl: PathBuf,
    helm: PathBuf,
    skaffold: PathBuf,
}

impl RenderOnly {
    /// A deployer writing under `out_dir`, running `kubectl` from `PATH`.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            kubectl: PathBuf::from("kubectl"),
            helm: PathBuf::from("helm"),
            skaffold: PathBuf::from("skaffold"),
        }
    }

    /// Uses another `helm` binary (a path, or a name looked up in `PATH`).
    pub fn with_helm(mut self, helm: impl Into<PathBuf>) -> Self {
        self.helm = helm.into();
        self
    }

    /// Uses another `skaffold` binary (a path, or a name looked up in `PATH`).
    pub fn with_skaffold(mut self, skaffold: impl Into<PathBuf>) -> Self {
        self.skaffold = skaffold.into();
        self
    }

    /// Uses another `kubectl` binary (a path, or a name looked up in `PATH`).
    pub fn with_kubectl(mut self, kubectl: impl Into<PathBuf>) -> Self {
        self.kubectl = kubectl.into();
        self
    }

    /// Runs `kubectl kustomize <dir>` and returns what it printed.
    async fn kustomize(&self, dir: &Path, overlay: &Path) -> Result<String, LabError> {
        self.run_tool(
            &self.kubectl,
            "kubectl",
            "kubectl kustomize",
            &[OsStr::new("kustomize"), dir.as_os_str()],
            None,
            overlay,
        )
        .await
    }

    /// What `lab.tool: helm|skaffold` renders from the overlay (a chart, or a directory with
    /// `skaffold.yaml`), before gaffer's kustomization wraps it.
    async fn pre_render(
        &self,
        tool: LabTool,
        overlay: &Path,
        values: &[String],
        release: &str,
        namespace: &str,
    ) -> Result<Option<String>, LabError> {
        match tool {
            LabTool::Kustomize => Ok(None),
            LabTool::Helm => {
                let files: Vec<PathBuf> = values.iter().map(|v| overlay.join(v)).collect();
                if let Some(missing) = files.iter().find(|f| !f.is_file()) {
                    return Err(LabError::Invalid {
                        overlay: overlay.display().to_string(),
                        message: format!("lab.values: {} does not exist", missing.display()),
                    });
                }
                let mut args = vec![
                    OsStr::new("template"),
                    OsStr::new(release),
                    overlay.as_os_str(),
                    OsStr::new("--namespace"),
                    OsStr::new(namespace),
                ];
                for f in &files {
                    args.push(OsStr::new("--values"));
                    args.push(f.as_os_str());
                }
                self.run_tool(&self.helm, "helm", "helm template", &args, None, overlay)
                    .await
                    .map(Some)
            }
            LabTool::Skaffold => self
                .run_tool(
                    &self.skaffold,
                    "skaffold",
                    "skaffold render",
                    &[
                        OsStr::new("render"),
                        OsStr::new("--offline=true"),
                        OsStr::new("--digest-source=none"),
                    ],
                    Some(overlay),
                    overlay,
                )
                .await
                .map(Some),
        }
    }

    /// Runs a renderer and returns what it printed (never through a shell).
    async fn run_tool(
        &self,
        program: &Path,
        tool: &str,
        what: &str,
        args: &[&OsStr],
        cwd: Option<&Path>,
        overlay: &Path,
    ) -> Result<String, LabError> {
        let render_err = |message: String| LabError::Render {
            overlay: overlay.display().to_string(),
            message,
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        cmd.env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(RENDER_TIMEOUT, cmd.output()).await {
            Err(_) => {
                return Err(render_err(format!(
                    "{what} did not finish within {} seconds",
                    RENDER_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::ToolMissing { tool: tool.into() });
            }
            Ok(Err(e)) => {
                return Err(LabError::Io {
                    path: program.display().to_string(),
                    source: e,
                });
            }
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(render_err(if stderr.is_empty() {
                format!("{what} failed ({})", out.status)
            } else {
                stderr
            }));
        }
        String::from_utf8(out.stdout)
            .map_err(|_| render_err(format!("{what} printed output that is not UTF-8")))
    }
}

/// A render of a project's lab: the objects, their inventory and a digest.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `{category}-{project}-lab`.
    pub namespace: String,
    /// The objects, in render order (the Namespace first).
    pub docs: Vec<Value>,
    /// The rendered YAML.
    pub text: String,
    /// The objects, sorted.
    pub inventory: Vec<InventoryItem>,
    /// SHA-256 of `text`.
    pub digest: String,
}

impl RenderOnly {
    /// Renders the project's overlay wrapped by gaffer's kustomization (namespace, labels,
    /// images, ingress host) with `kubectl kustomize`.
    pub async fn render(&self, req: &DeployRequest) -> Result<Rendered, LabError> {
        let namespace = req.project.lab_namespace();
        let project_dir = self.out_dir.join(req.project.builder_name());
        let wrapper = project_dir.join("wrapper");

        // A fresh wrapper every time, so nothing from an earlier deploy leaks into this one.
        match tokio::fs::remove_dir_all(&wrapper).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&wrapper, e)),
            _ => {}
        }
        tokio::fs::create_dir_all(&wrapper)
            .await
            .map_err(|e| io(&wrapper, e))?;

        if req.tool == LabTool::Kustomize {
            super::overlay::check(&req.workspace, &req.overlay).map_err(|message| {
                LabError::Invalid {
                    overlay: req.overlay.display().to_string(),
                    message,
                }
            })?;
        }
        // kustomize refuses absolute resource paths, so the overlay is referenced relatively.
        let overlay = tokio::fs::canonicalize(&req.overlay)
            .await
            .map_err(|e| io(&req.overlay, e))?;
        let wrapper_abs = tokio::fs::canonicalize(&wrapper)
            .await
            .map_err(|e| io(&wrapper, e))?;
        let overlay_rel = relative_path(&wrapper_abs, &overlay);
        let overlay_rel = overlay_rel
            .to_str()
            .ok_or_else(|| LabError::Render {
                overlay: req.overlay.display().to_string(),
                message: "the overlay path is not valid UTF-8".into(),
            })?
            .to_string();

        let labels = BTreeMap::from([
            ("app.kubernetes.io/managed-by", "gaffer".to_string()),
            ("gaffer.dev/category", req.project.category.to_string()),
            ("gaffer.dev/project", req.project.project.to_string()),
        ]);
        let ns_object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        });
        write_yaml(&wrapper.join(NAMESPACE_FILE), &ns_object).await?;

        // helm and skaffold render first; gaffer's kustomization wraps what they printed.
        let source = match self
            .pre_render(
                req.tool,
                &req.overlay,
                &req.values,
                req.project.project.as_str(),
                &namespace,
            )
            .await?
        {
            Some(text) => {
                write_atomically(&wrapper.join(PRE_RENDERED_FILE), text.as_bytes()).await?;
                PRE_RENDERED_FILE.to_string()
            }
            None => overlay_rel,
        };
        let mut kustomization = Kustomization {
            api_version: "kustomize.config.k8s.io/v1beta1",
            kind: "Kustomization",
            namespace: namespace.clone(),
            resources: vec![NAMESPACE_FILE.to_string(), source],
            labels: vec![LabelSet {
                pairs: labels,
                include_selectors: false,
            }],
            images: req
                .images
                .iter()
                .map(|(name, target)| image_override(name, target))
                .collect(),
            patches: Vec::new(),
        };
        let kustomization_path = wrapper.join("kustomization.yaml");
        write_yaml(&kustomization_path, &kustomization).await?;
        let mut rendered = self.kustomize(&wrapper, &req.overlay).await?;
        let mut docs = parse_render(&rendered, &req.overlay)?;

        // Ingress hosts are only known after a render (how many rules and TLS entries each
        // Ingress has), so the host patches need a second pass, and only when there is an
        // Ingress at all.
        let patches = host_patches(&docs, &req.host)?;
        if !patches.is_empty() {
            kustomization.patches = patches;
            write_yaml(&kustomization_path, &kustomization).await?;
            rendered = self.kustomize(&wrapper, &req.overlay).await?;
            docs = parse_render(&rendered, &req.overlay)?;
        }

        too_big(&docs).map_err(|message| LabError::Invalid {
            overlay: req.overlay.display().to_string(),
            message,
        })?;
        let mut inventory = docs
            .iter()
            .enumerate()
            .map(|(i, doc)| inventory_item(doc, i))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| LabError::Render {
                overlay: req.overlay.display().to_string(),
                message,
            })?;
        inventory.sort();

        let digest = hex::encode(Sha256::digest(rendered.as_bytes()));
        Ok(Rendered {
            namespace,
            docs,
            text: rendered,
            inventory,
            digest,
        })
    }
}

#[async_trait::async_trait]
impl LabDeployer for RenderOnly {
    fn mode(&self) -> &'static str {
        MODE
    }

    #[tracing::instrument(skip_all, fields(project = %req.project, task = %req.task))]
    async fn deploy(&self, req: &DeployRequest) -> Result<DeployOutcome, LabError> {
        let r = self.render(req).await?;
        let project_dir = self.out_dir.join(req.project.builder_name());
        let rendered_path = project_dir.join("rendered.yaml");
        let no_op = match tokio::fs::read(&rendered_path).await {
            Ok(previous) => hex::encode(Sha256::digest(&previous)) == r.digest,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(io(&rendered_path, e)),
        };
        if !no_op {
            write_atomically(&rendered_path, r.text.as_bytes()).await?;
        }
        tracing::debug!(objects = r.inventory.len(), no_op, digest = %r.digest, "rendered lab overlay");

        Ok(DeployOutcome {
            namespace: r.namespace,
            mode: MODE.to_string(),
            inventory: r.inventory,
            urls: vec![req.url.clone()],
            no_op,
            digest: r.digest,
        })
    }
}

/// The most Kubernetes stores of one object (etcd's limit, which a ConfigMap or Secret
/// made from files meets first).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

/// A ConfigMap or Secret over [`MAX_OBJECT_BYTES`]: the API server would refuse it halfway
/// through a deploy, so the render is refused before anything is applied.
fn too_big(docs: &[Value]) -> Result<(), String> {
    for d in docs {
        let kind = d["kind"].as_str().unwrap_or("");
        if !matches!(kind, "ConfigMap" | "Secret") {
            continue;
        }
        let size = d.to_string().len();
        if size > MAX_OBJECT_BYTES {
            return Err(format!(
                "{kind} {} is {size} bytes; Kubernetes stores at most {MAX_OBJECT_BYTES} (1 MiB) \
                 per object: keep big files out of its generator (mount them from elsewhere)",
                d["metadata"]["name"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(())
}

/// What helm or skaffold rendered, inside the wrapper.
const PRE_RENDERED_FILE: &str = "pre-rendered.yaml";

/// The generated Namespace object's file name inside the wrapper.
const NAMESPACE_FILE: &str = "namespace.yaml";

/// The wrapper kustomization, as kustomize reads it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    namespace: String,
    resources: Vec<String>,
    labels: Vec<LabelSet>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    images: Vec<ImageOverride>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    patches: Vec<Patch>,
}

/// One `labels:` entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct LabelSet {
    pairs: BTreeMap<&'static str, String>,
    include_selectors: bool,
}

/// One `images:` entry.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageOverride {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
}

/// One `patches:` entry: a JSON 6902 patch (as JSON text) and the object it targets.
#[derive(Debug, Serialize)]
struct Patch {
    target: PatchTarget,
    patch: String,
}

/// A patch target; kustomize reads `name` as an anchored regular expression.
#[derive(Debug, Serialize)]
struct PatchTarget {
    #[serde(skip_serializing_if = "String::is_empty")]
    group: String,
    version: String,
    kind: String,
    name: String,
}

/// Splits an override `newName[:tag]` or `newName@digest` into a kustomize `images:` entry.
/// A ':' followed by a '/' belongs to a registry port, not a tag.
fn image_override(name: &str, target: &str) -> ImageOverride {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let (new_name, new_tag, digest) = if let Some((n, d)) = target.split_once('@') {
        (non_empty(n), None, non_empty(d))
    } else {
        match target.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (non_empty(n), non_empty(t), None),
            _ => (non_empty(target), None, None),
        }
    };
    ImageOverride {
        name: name.to_string(),
        new_name,
        new_tag,
        digest,
    }
}

/// One JSON patch per rendered Ingress, pointing every rule (and every TLS entry) at `host`.
fn host_patches(docs: &[Value], host: &str) -> Result<Vec<Patch>, LabError> {
    let mut patches = Vec::new();
    for doc in docs {
        if doc.get("kind").and_then(Value::as_str) != Some("Ingress") {
            continue;
        }
        let count = |ptr: &str| {
            doc.pointer(ptr)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        let mut ops = Vec::new();
        for i in 0..count("/spec/rules") {
            ops.push(json!({"op": "add", "path": format!("/spec/rules/{i}/host"), "value": host}));
        }
        for i in 0..count("/spec/tls") {
            ops.push(json!({"op": "add", "path": format!("/spec/tls/{i}/hosts"), "value": [host]}));
        }
        if ops.is_empty() {
            continue;
        }
        let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let (group, version) = split_api_version(api_version);
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let patch = serde_json::to_string(&ops).map_err(|e| LabError::Render {
            overlay: String::new(),
            message: format!("cannot encode the host patch: {e}"),
        })?;
        patches.push(Patch {
            target: PatchTarget {
                group: group.to_string(),
                version: version.to_string(),
                kind: "Ingress".into(),
                name: regex_escape(name),
            },
            patch,
        });
    }
    Ok(patches)
}

/// Escapes regular-expression metacharacters (object names may contain '.').
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Parses kubectl's output, turning a parse error into a render error.
fn parse_render(rendered: &str, overlay: &Path) -> Result<Vec<Value>, LabError> {
    yaml::parse_documents(rendered).map_err(|e| LabError::Render {
        overlay: overlay.display().to_string(),
        message: format!("cannot read the rendered manifests: {e}"),
    })
}

/// The inventory entry of rendered document number `index`.
fn inventory_item(doc: &Value, index: usize) -> Result<InventoryItem, String> {
    let field = |ptr: &str, what: &str| {
        doc.pointer(ptr)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("rendered document {} has no {what}", index + 1))
    };
    let api_version = field("/apiVersion", "apiVersion")?;
    let kind = field("/kind", "kind")?;
    let name = field("/metadata/name", "metadata.name")?;
    let namespace = field("/metadata/namespace", "").unwrap_or_default();
    let (group, version) = split_api_version(&api_version);
    Ok(InventoryItem {
        group: group.to_string(),
        version: version.to_string(),
        kind,
        namespace,
        name,
    })
}

/// The path of `target` relative to the directory `base` (both absolute and canonical).
fn relative_path(base: &Path, target: &Path) -> PathBuf {
    let base: Vec<Component<'_>> = base.components().collect();
    let target: Vec<Component<'_>> = target.components().collect();
    let common = base.iter().zip(&target).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in &target[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// Serializes `value` as YAML into `path`.
async fn write_yaml<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let text = yaml::to_string(value).map_err(|e| LabError::Render {
        overlay: path.display().to_string(),
        message: format!("cannot encode the wrapper kustomization: {e}"),
    })?;
    tokio::fs::write(path, text).await.map_err(|e| io(path, e))
}

/// Writes `bytes` to `path` through a sibling temporary file, so a reader never sees half.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LabError> {
    let (owned_path, bytes) = (path.to_path_buf(), bytes.to_vec());
    tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&owned_path, &bytes, None))
        .await
        .map_err(|e| io(path, std::io::Error::other(e)))?
        .map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> LabError {
    LabError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests;
