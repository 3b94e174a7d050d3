//! The workspace seam over HTTP, for builders whose workspace is on a volume gaffer does not
//! mount (a builder pod's): `gaffer workspace serve` runs in the pod, next to OpenCode, and
//! does with [`Workspaces`] exactly what gaffer does with its own disk; gaffer's
//! [`RemoteWorkspace`] calls it.
//!
//! One route, `POST /v1/op`, a JSON [`Op`] in, `{"ok": …}` or `{"error": {kind, message}}`
//! out, behind a bearer token (the builder's password, from the pod's Secret). Names travel
//! as strings and are validated again on arrival; project specs travel as the YAML they
//! were read from and are parsed with the same module. Besides the trait's operations:
//!
//! - `bundle`: a git bundle of a task branch, fetched into gaffer's own mirror of the repo,
//!   from which its pull request is pushed with gaffer's credentials, and checked out in
//!   gaffer's copy of the worktree for what gaffer reads on its side (the lab overlay it
//!   renders, the tests it runs). Deploys and tests follow a checkpoint, so the committed
//!   branch is the work.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Workspace, WorkspaceError, Workspaces};
use crate::git::Git;
use crate::names::{ProjectRef, RepoName, TaskRef};
use crate::state::spec::ProjectSpec;

/// One request to the sidecar. Fields are the trait method's arguments: `task` as
/// `category/project/task`, `project` as `category/project`, `spec` as project.yaml text,
/// repos by name.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Where the pod sees the workspace root.
    Root,
    /// [`Workspace::warm`].
    Warm { project: String, spec: String },
    /// [`Workspace::prepare`].
    Prepare { task: String, spec: String },
    /// [`Workspace::checkpoint`].
    Checkpoint {
        task: String,
        spec: String,
        message: String,
    },
    /// [`Workspace::changed_files`].
    ChangedFiles {
        task: String,
        spec: String,
        bases: BTreeMap<String, String>,
    },
    /// [`Workspace::branch_off`].
    BranchOff {
        task: String,
        spec: String,
        branch: String,
    },
    /// [`Workspace::confirm`].
    Confirm {
        task: String,
        spec: String,
        parent: String,
        branch: String,
    },
    /// [`Workspace::set_aside`].
    SetAside {
        task: String,
        spec: String,
        parent: String,
        branch: String,
        points: BTreeMap<String, String>,
    },
    /// [`Workspace::heads`].
    Heads { task: String, spec: String },
    /// A bundle of `refs/heads/<branch>` of the repo at `url`, without what `have` holds
    /// when the pod's mirror has it.
    Bundle {
        url: String,
        branch: String,
        have: Option<String>,
    },
}

fn bad(e: impl std::fmt::Display) -> WorkspaceError {
    WorkspaceError::Remote(e.to_string())
}

fn project_of(s: &str) -> Result<ProjectRef, WorkspaceError> {
    ProjectRef::parse(s).map_err(bad)
}

fn task_of(s: &str) -> Result<TaskRef, WorkspaceError> {
    TaskRef::parse(s).map_err(bad)
}

fn spec_of(s: &str) -> Result<ProjectSpec, WorkspaceError> {
    crate::state::yaml::parse(s.as_bytes()).map_err(bad)
}

fn repos_of(m: &BTreeMap<String, String>) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
    m.iter()
        .map(|(k, v)| Ok((RepoName::new(k.as_str()).map_err(bad)?, v.clone())))
        .collect()
}

fn plain<K: ToString, V: Serialize>(m: BTreeMap<K, V>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

fn is_hex(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs `op` on the workspaces under `ws` (the sidecar's side).
pub fn run(ws: &Workspaces, op: Op) -> Result<Value, WorkspaceError> {
    Ok(match op {
        Op::Root => json!(ws.root().display().to_string()),
        Op::Warm { project, spec } => json!(ws.warm(&project_of(&project)?, &spec_of(&spec)?)?),
        Op::Prepare { task, spec } => {
            plain(Workspaces::prepare(ws, &task_of(&task)?, &spec_of(&spec)?)?)
        }
        Op::Checkpoint {
            task,
            spec,
            message,
        } => plain(Workspaces::checkpoint(
            ws,
            &task_of(&task)?,
            &spec_of(&spec)?,
            &message,
        )?),
        Op::ChangedFiles { task, spec, bases } => json!(Workspaces::changed_files(
            ws,
            &task_of(&task)?,
            &spec_of(&spec)?,
            &repos_of(&bases)?
        )?),
        Op::BranchOff { task, spec, branch } => {
            let t = task_of(&task)?;
            check_branch(&t, &branch)?;
            let (parent, point) = Workspaces::branch_off(ws, &t, &spec_of(&spec)?, &branch)?;
            json!({"parent": parent, "point": plain(point)})
        }
        Op::Confirm {
            task,
            spec,
            parent,
            branch,
        } => {
            let t = task_of(&task)?;
            check_branch(&t, &branch)?;
            check_branch(&t, &parent)?;
            plain(Workspaces::confirm(
                ws,
                &t,
                &spec_of(&spec)?,
                &parent,
                &branch,
            )?)
        }
        Op::SetAside {
            task,
            spec,
            parent,
            branch,
            points,
        } => {
            let t = task_of(&task)?;
            check_branch(&t, &branch)?;
            check_branch(&t, &parent)?;
            plain(Workspaces::set_aside(
                ws,
                &t,
                &spec_of(&spec)?,
                &parent,
                &branch,
                &repos_of(&points)?,
            )?)
        }
        Op::Heads { task, spec } => {
            plain(Workspaces::heads(ws, &task_of(&task)?, &spec_of(&spec)?)?)
        }
        Op::Bundle { url, branch, have } => {
            json!(bundle(
                ws,
                &url,
                &branch,
                have.as_deref().filter(|h| is_hex(h))
            )?)
        }
    })
}

/// A branch the sidecar moves is the task's own: `gaffer/<task>` or one of its provisional
/// branches (`gaffer-provisional/<task>/<qid>`).
fn check_branch(t: &TaskRef, branch: &str) -> Result<(), WorkspaceError> {
    let provisional = branch
        .split_once('/')
        .map(|(_, rest)| rest)
        .and_then(|rest| crate::names::Qid::new(rest.rsplit('/').next().unwrap_or("")).ok())
        .is_some_and(|qid| t.provisional_branch(&qid) == branch);
    if branch == t.branch() || provisional {
        Ok(())
    } else {
        Err(bad(format!("{branch:?} is not a branch of task {t}")))
    }
}

fn bundle(
    ws: &Workspaces,
    url: &str,
    branch: &str,
    have: Option<&str>,
) -> Result<String, WorkspaceError> {
    let task_branch = branch
        .strip_prefix("gaffer/")
        .is_some_and(|t| crate::names::TaskName::new(t).is_ok());
    if !task_branch {
        return Err(bad(format!("{branch:?} is not a task branch")));
    }
    let mirror = ws.mirror_dir(url);
    let git = Git::new(&mirror);
    let file = tempfile::NamedTempFile::new().map_err(bad)?;
    let out = file.path().to_string_lossy().into_owned();
    let refname = format!("refs/heads/{branch}");
    let mut args = vec![
        "bundle",
        "create",
        "--quiet",
        out.as_str(),
        refname.as_str(),
    ];
    let exclude = have
        .filter(|h| {
            git.run(["cat-file", "-e", &format!("{h}^{{commit}}")])
                .is_ok()
        })
        .map(|h| format!("^{h}"));
    if let Some(e) = &exclude {
        args.push(e);
    }
    match git.run(args) {
        Ok(_) => {}
        // Nothing new since `have`: git refuses an empty bundle; send the whole branch.
        Err(_) if exclude.is_some() => {
            git.run(["bundle", "create", "--quiet", &out, &refname])?;
        }
        Err(e) => return Err(e.into()),
    }
    let bytes = std::fs::read(file.path()).map_err(super::io(file.path()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The sidecar: serves [`Op`]s on `listener` for the workspaces under `root`, to callers
/// holding `token`.
pub async fn serve(
    root: PathBuf,
    token: String,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let ws = Arc::new(Workspaces::new(root));
    let token = Arc::new(format!("Bearer {token}"));
    let app = axum::Router::new().route(
        "/v1/op",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let (ws, token) = (ws.clone(), token.clone());
                async move { handle(&ws, &token, &headers, &body).await }
            },
        ),
    );
    axum::serve(listener, app).await
}

async fn handle(
    ws: &Arc<Workspaces>,
    token: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> (axum::http::StatusCode, axum::Json<Value>) {
    use axum::http::StatusCode;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Compared as digests: the time taken says nothing about the token.
    use sha2::Digest as _;
    if sha2::Sha256::digest(given) != sha2::Sha256::digest(token.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": {"kind": "auth", "message": "bad token"}})),
        );
    }
    let op: Op = match serde_json::from_slice(body) {
        Ok(op) => op,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": {"kind": "request", "message": e.to_string()}})),
            );
        }
    };
    let what = format!("{op:?}").chars().take(120).collect::<String>();
    let ws = ws.clone();
    let result = tokio::task::spawn_blocking(move || run(&ws, op))
        .await
        .unwrap_or_else(|e| Err(bad(e)));
    match result {
        Ok(v) => (StatusCode::OK, axum::Json(json!({"ok": v}))),
        Err(e) => {
            tracing::warn!(op = %what, error = %e, "workspace operation failed");
            let kind = match &e {
                WorkspaceError::Init(_) => "init",
                WorkspaceError::Branch(_) => "branch",
                _ => "other",
            };
            let message = match e {
                WorkspaceError::Init(m) | WorkspaceError::Branch(m) => m,
                e => e.to_string(),
            };
            (
                StatusCode::OK,
                axum::Json(json!({"error": {"kind": kind, "message": message}})),
            )
        }
    }
}

/// How gaffer reaches a builder's sidecar.
#[async_trait::async_trait]
pub trait Sidecar: Send + Sync + std::fmt::Debug {
    /// The sidecar's base URL and token, starting the builder when it is suspended.
    async fn locate(&self, project: &ProjectRef) -> Result<(String, String), WorkspaceError>;
    /// Records where the builder sees its workspace root.
    fn set_root(&self, project: &ProjectRef, root: PathBuf);
    /// Where the builder sees its workspace root.
    fn root(&self, project: &ProjectRef) -> PathBuf;
}

/// Workspaces in builder pods, reached through their sidecars; gaffer keeps a local copy of
/// each (for renders and tests) and its own mirrors (for pushes) under `local`.
#[derive(Debug, Clone)]
pub struct RemoteWorkspace {
    sidecar: Arc<dyn Sidecar>,
    local: Workspaces,
    http: http::Http,
}

impl RemoteWorkspace {
    /// Sidecars found by `sidecar`; local copies and mirrors under `local`.
    pub fn new(sidecar: Arc<dyn Sidecar>, local: impl Into<PathBuf>) -> Self {
        Self {
            sidecar,
            local: Workspaces::new(local),
            http: http::Http::new(),
        }
    }

    fn call(&self, project: &ProjectRef, op: &Op) -> Result<Value, WorkspaceError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| bad("the remote workspace needs a tokio runtime"))?;
        handle.block_on(async {
            let (base, token) = self.sidecar.locate(project).await?;
            let body = serde_json::to_vec(op).map_err(bad)?;
            let reply = self
                .http
                .post(&format!("{base}/v1/op"), &token, body)
                .await
                .map_err(|e| bad(format!("{project}'s workspace sidecar: {e}")))?;
            let v: Value = serde_json::from_slice(&reply).map_err(bad)?;
            if let Some(ok) = v.get("ok") {
                return Ok(ok.clone());
            }
            let message = v["error"]["message"].as_str().unwrap_or("").to_string();
            Err(match v["error"]["kind"].as_str() {
                Some("init") => WorkspaceError::Init(message),
                Some("branch") => WorkspaceError::Branch(message),
                _ => WorkspaceError::Remote(format!("{project}'s workspace: {message}")),
            })
        })
    }

    fn spec_text(spec: &ProjectSpec) -> Result<String, WorkspaceError> {
        crate::state::yaml::to_string(spec).map_err(bad)
    }

    fn task_op(
        &self,
        task: &TaskRef,
        op: impl FnOnce(String, String) -> Op,
        spec: &ProjectSpec,
    ) -> Result<Value, WorkspaceError> {
        let op = op(task.to_string(), Self::spec_text(spec)?);
        self.call(&task.project, &op)
    }

    fn refresh_root(&self, project: &ProjectRef) -> Result<(), WorkspaceError> {
        let root = self.call(project, &Op::Root)?;
        if let Some(r) = root.as_str() {
            self.sidecar.set_root(project, PathBuf::from(r));
        }
        Ok(())
    }
}

fn from<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, WorkspaceError> {
    serde_json::from_value(v).map_err(bad)
}

fn repo_map(v: Value) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
    repos_of(&from::<BTreeMap<String, String>>(v)?)
}

fn strings(m: &BTreeMap<RepoName, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

impl Workspace for RemoteWorkspace {
    fn local_dir(&self, project: &ProjectRef, _spec: &ProjectSpec) -> PathBuf {
        self.local
            .root()
            .join(".copies")
            .join(project.builder_name())
    }

    fn builder_dir(&self, project: &ProjectRef, _spec: &ProjectSpec) -> PathBuf {
        self.sidecar.root(project).join(project.builder_name())
    }

    fn mirror_dir(&self, url: &str) -> PathBuf {
        self.local.mirror_dir(url)
    }

    fn warm(&self, p: &ProjectRef, spec: &ProjectSpec) -> Result<bool, WorkspaceError> {
        self.refresh_root(p)?;
        let op = Op::Warm {
            project: p.to_string(),
            spec: Self::spec_text(spec)?,
        };
        from(self.call(p, &op)?)
    }

    fn prepare(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, crate::state::status::RepoStatus>, WorkspaceError> {
        self.refresh_root(&task.project)?;
        let v: BTreeMap<String, crate::state::status::RepoStatus> =
            from(self.task_op(task, |task, spec| Op::Prepare { task, spec }, project)?)?;
        v.into_iter()
            .map(|(k, v)| Ok((RepoName::new(k.as_str()).map_err(bad)?, v)))
            .collect()
    }

    fn checkpoint(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        message: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let message = message.to_string();
        repo_map(self.task_op(
            task,
            |task, spec| Op::Checkpoint {
                task,
                spec,
                message,
            },
            project,
        )?)
    }

    fn changed_files(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        bases: &BTreeMap<RepoName, String>,
    ) -> Result<Vec<String>, WorkspaceError> {
        let bases = strings(bases);
        from(self.task_op(
            task,
            |task, spec| Op::ChangedFiles { task, spec, bases },
            project,
        )?)
    }

    fn branch_off(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        branch: &str,
    ) -> Result<(String, BTreeMap<RepoName, String>), WorkspaceError> {
        let branch = branch.to_string();
        let v = self.task_op(
            task,
            |task, spec| Op::BranchOff { task, spec, branch },
            project,
        )?;
        let parent = v["parent"].as_str().unwrap_or_default().to_string();
        Ok((parent, repo_map(v["point"].clone())?))
    }

    fn confirm(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let (parent, branch) = (parent.to_string(), branch.to_string());
        repo_map(self.task_op(
            task,
            |task, spec| Op::Confirm {
                task,
                spec,
                parent,
                branch,
            },
            project,
        )?)
    }

    fn set_aside(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
        parent: &str,
        branch: &str,
        points: &BTreeMap<RepoName, String>,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        let (parent, branch, points) = (parent.to_string(), branch.to_string(), strings(points));
        repo_map(self.task_op(
            task,
            |task, spec| Op::SetAside {
                task,
                spec,
                parent,
                branch,
                points,
            },
            project,
        )?)
    }

    fn heads(
        &self,
        task: &TaskRef,
        project: &ProjectSpec,
    ) -> Result<BTreeMap<RepoName, String>, WorkspaceError> {
        repo_map(self.task_op(task, |task, spec| Op::Heads { task, spec }, project)?)
    }

    fn sync_local(&self, task: &TaskRef, spec: &ProjectSpec) -> Result<PathBuf, WorkspaceError> {
        self.export(task, spec)?;
        let dir = self.local_dir(&task.project, spec);
        let branch = task.branch();
        let from = format!("{POD_REFS}{branch}");
        for repo in &spec.repos {
            let mirror = self.local.mirror_dir(&repo.url);
            let wt = dir.join("repos").join(repo.name.value.as_str());
            if !wt.join(".git").exists() {
                if wt.exists() {
                    std::fs::remove_dir_all(&wt).map_err(super::io(&wt))?;
                }
                std::fs::create_dir_all(dir.join("repos")).map_err(super::io(&dir))?;
                Git::new(&mirror).run(["worktree", "prune"])?;
                let w = wt.to_string_lossy().into_owned();
                Git::new(&mirror).run(["worktree", "add", "--quiet", "--detach", &w, &from])?;
            }
            // Exactly the branch as the builder committed it, nothing left from before.
            Git::new(&wt).run(["checkout", "--quiet", "--force", "-B", &branch, &from])?;
            Git::new(&wt).run(["clean", "--quiet", "-fdx"])?;
        }
        Ok(dir)
    }

    fn export(&self, task: &TaskRef, spec: &ProjectSpec) -> Result<(), WorkspaceError> {
        for repo in &spec.repos {
            let mirror = self.local.mirror(repo)?;
            let have = Git::new(&mirror)
                .run([
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("refs/remotes/origin/{}^{{commit}}", repo.base),
                ])
                .ok();
            let op = Op::Bundle {
                url: repo.url.clone(),
                branch: task.branch(),
                have,
            };
            let data: String = from(self.call(&task.project, &op)?)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(bad)?;
            let file = tempfile::NamedTempFile::new().map_err(bad)?;
            std::fs::write(file.path(), bytes).map_err(super::io(file.path()))?;
            let b = file.path().to_string_lossy().into_owned();
            let branch = task.branch();
            let (head, pod) = (
                format!("refs/heads/{branch}"),
                format!("{POD_REFS}{branch}"),
            );
            // Into a ref of its own (the copy's worktree may have the branch checked out),
            // then the branch pull requests are pushed from.
            Git::new(&mirror).run(["fetch", "--quiet", &b, &format!("+{head}:{pod}")])?;
            Git::new(&mirror).run(["update-ref", &head, &pod])?;
        }
        Ok(())
    }
}

/// Where task branches fetched from a builder pod land in gaffer's mirrors.
const POD_REFS: &str = "refs/gaffer-pod/";

/// A small HTTP/1 client over hyper (the one OpenCode's client uses).
mod http {
    use http_body_util::{BodyExt as _, Full};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    #[derive(Clone)]
    pub struct Http(Client<HttpConnector, Full<Bytes>>);

    impl std::fmt::Debug for Http {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Http")
        }
    }

    impl Http {
        pub fn new() -> Self {
            let mut c = HttpConnector::new();
            c.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
            Self(Client::builder(TokioExecutor::new()).build(c))
        }

        pub async fn post(&self, url: &str, token: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
            let req = hyper::Request::post(url)
                .header("authorization", format!("Bearer {token}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            // Generous: a first clone of a large repo happens inside one call.
            let res =
                tokio::time::timeout(std::time::Duration::from_secs(1800), self.0.request(req))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())?;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status == hyper::StatusCode::UNAUTHORIZED {
                return Err("the sidecar refused gaffer's token".into());
            }
            Ok(bytes.to_vec())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sidecar_moves_only_the_tasks_own_branches() {
        let t = TaskRef::parse("ai-dev/api/jwt").unwrap();
        for ok in ["gaffer/jwt", "gaffer-provisional/jwt/q-001"] {
            assert!(check_branch(&t, ok).is_ok(), "{ok}");
        }
        for bad in [
            "main",
            "gaffer/other",
            "gaffer/jwt/q-001",
            "gaffer-provisional/other/q-001",
            "gaffer-provisional/jwt/../main",
            "gaffer-provisional/jwt/q-001/x",
        ] {
            assert!(check_branch(&t, bad).is_err(), "{bad}");
        }
    }
}
