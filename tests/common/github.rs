//! A fake GitHub REST API on 127.0.0.1, backed by local bare repositories standing in for the
//! GitHub remotes (pushes are real git pushes; merges are real merges of those repos): pull
//! requests (list by head, create, get, update), reviews and their comments (with ETags and
//! `304 Not Modified`), merge with `sha` as a compare-and-swap, workflow dispatch and runs,
//! `/user`, `/rate_limit`, and a knob that makes the next requests hit the rate limit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use gaffer::git::Git;
use serde_json::{Value, json};

/// The token the fake accepts.
pub const TOKEN: &str = "ghp_fake_token";
/// The login of the token's user: the author of gaffer's pull requests.
pub const BOT: &str = "gaffer-bot";

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// When.
    pub at: Instant,
    /// The JSON body sent, if any.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    /// `owner/name` → bare repository.
    repos: BTreeMap<String, PathBuf>,
    /// `owner/name` → pull requests.
    prs: BTreeMap<String, Vec<Value>>,
    /// (`owner/name`, number) → reviews.
    reviews: BTreeMap<(String, u64), Vec<Value>>,
    /// review id → comments.
    comments: BTreeMap<u64, Vec<Value>>,
    runs: Vec<Value>,
    next_id: u64,
    requests: Vec<Request>,
    limited: u32,
    reset_at: u64,
    stall_create: bool,
    stalled: bool,
    released: bool,
    fail_runs: bool,
}

type Shared = Arc<(Mutex<Inner>, Condvar)>;

/// The fake; stops when dropped.
pub struct FakeGitHub {
    /// Its address.
    pub addr: SocketAddr,
    inner: Shared,
    _server: super::Served,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl FakeGitHub {
    /// Starts the fake.
    pub fn start() -> Self {
        let inner: Shared = Arc::new((Mutex::new(Inner::default()), Condvar::new()));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let server = super::Served::start(app);
        FakeGitHub {
            addr: server.addr,
            inner,
            _server: server,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap()
    }

    /// The API URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `owner/name` from the bare repository at `path`.
    pub fn add_repo(&self, full_name: &str, path: &std::path::Path) {
        self.lock().repos.insert(full_name.into(), path.into());
    }

    /// The pull requests of `owner/name`, as the API shows them.
    pub fn prs(&self, full_name: &str) -> Vec<Value> {
        let g = self.lock();
        g.prs
            .get(full_name)
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|p| shown(&g, full_name, p))
            .collect()
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// The workflow runs.
    pub fn runs(&self) -> Vec<Value> {
        self.lock().runs.clone()
    }

    /// Workflow runs conclude `failure`.
    pub fn fail_runs(&self) {
        self.lock().fail_runs = true;
    }

    /// Adds a review of PR `n` by `login` (`APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`) of
    /// the PR's current head, with line comments `(path, line, text)`.
    pub fn review(
        &self,
        full_name: &str,
        n: u64,
        login: &str,
        state: &str,
        body: &str,
        comments: &[(&str, u64, &str)],
    ) -> u64 {
        let mut g = self.lock();
        g.next_id += 1;
        let id = 1000 + g.next_id;
        let head = pr_head(&g, full_name, n);
        let r = json!({"id": id, "node_id": format!("PRR_{id}"), "user": user(login),
            "body": body, "state": state, "commit_id": head,
            "html_url": format!("https://github.com/{full_name}/pull/{n}#pullrequestreview-{id}"),
            "submitted_at": "2026-11-25T12:00:00Z", "author_association": "COLLABORATOR"});
        g.reviews.entry((full_name.into(), n)).or_default().push(r);
        let cs: Vec<Value> = comments
            .iter()
            .map(|(path, line, text)| {
                json!({"id": id * 10, "pull_request_review_id": id, "path": path,
                    "line": line, "body": text, "user": user(login)})
            })
            .collect();
        g.comments.insert(id, cs);
        id
    }

    /// The next `n` requests are refused as over the rate limit, which resets in `secs`.
    pub fn rate_limit(&self, n: u32, secs: u64) {
        let mut g = self.lock();
        g.limited = n;
        g.reset_at = now_secs() + secs;
    }

    /// The next pull request creation is made but not answered until [`FakeGitHub::release`].
    pub fn stall_create(&self) {
        let mut g = self.lock();
        g.stall_create = true;
        g.stalled = false;
        g.released = false;
    }

    /// Whether a creation is stalled now.
    pub fn is_stalled(&self) -> bool {
        let g = self.lock();
        g.stalled && !g.released
    }

    /// Answers the stalled creation.
    pub fn release(&self) {
        let mut g = self.lock();
        g.released = true;
        self.inner.1.notify_all();
    }
}

fn user(login: &str) -> Value {
    json!({"login": login, "id": login.len() as u64 * 1000 + 7, "node_id": format!("U_{login}"),
        "type": "User", "site_admin": false,
        "html_url": format!("https://github.com/{login}")})
}

fn pr_head(g: &Inner, full_name: &str, n: u64) -> String {
    let branch = g
        .prs
        .get(full_name)
        .and_then(|ps| ps.iter().find(|p| p["number"] == n))
        .and_then(|p| p["head"]["ref"].as_str().map(str::to_string))
        .unwrap_or_default();
    branch_sha(g, full_name, &branch).unwrap_or_default()
}

fn branch_sha(g: &Inner, full_name: &str, branch: &str) -> Option<String> {
    let repo = g.repos.get(full_name)?;
    Git::new(repo)
        .run(["rev-parse", "--verify", &format!("refs/heads/{branch}")])
        .ok()
}

/// The PR as GitHub shows it, with its head refreshed from the repository.
fn shown(g: &Inner, full_name: &str, pr: &Value) -> Value {
    let mut p = pr.clone();
    if p["merged"] != json!(true)
        && let Some(sha) = branch_sha(g, full_name, p["head"]["ref"].as_str().unwrap_or(""))
    {
        p["head"]["sha"] = json!(sha);
    }
    p
}

fn error(code: StatusCode, message: &str) -> Response {
    (
        code,
        axum::Json(json!({"message": message,
            "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

fn query(uri: &Uri, key: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Merges `head` into `base` in the bare repository; `None` on conflicts.
fn git_merge(
    repo: &std::path::Path,
    base: &str,
    head_sha: &str,
    method: &str,
    title: &str,
) -> Option<String> {
    let g = Git::new(repo)
        .with_env("GIT_AUTHOR_NAME", "GitHub")
        .with_env("GIT_AUTHOR_EMAIL", "noreply@github.com")
        .with_env("GIT_COMMITTER_NAME", "GitHub")
        .with_env("GIT_COMMITTER_EMAIL", "noreply@github.com");
    let base_ref = format!("refs/heads/{base}");
    let base_sha = g.run(["rev-parse", &base_ref]).ok()?;
    let tree = g
        .run(["merge-tree", "--write-tree", &base_sha, head_sha])
        .ok()?;
    let tree = tree.lines().next()?.to_string();
    let commit = match method {
        "merge" => g
            .run([
                "commit-tree",
                &tree,
                "-p",
                &base_sha,
                "-p",
                head_sha,
                "-m",
                title,
            ])
            .ok()?,
        // squash and rebase both land the change as new commits on the base; one commit here.
        _ => g
            .run(["commit-tree", &tree, "-p", &base_sha, "-m", title])
            .ok()?,
    };
    g.run(["update-ref", &base_ref, &commit, &base_sha]).ok()?;
    Some(commit)
}

async fn handle(
    State(inner): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let body_json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let (resp, stall) = {
        let mut g = inner.0.lock().unwrap();
        let resp = answer(&mut g, &method, &uri, &headers, &body_json);
        let stall = g.stall_create && method == Method::POST && uri.path().ends_with("/pulls");
        if stall {
            g.stall_create = false;
            g.stalled = true;
            inner.1.notify_all();
        }
        let status = resp.status().as_u16();
        g.requests.push(Request {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            status,
            at: Instant::now(),
            body: body_json,
        });
        (resp, stall)
    };
    if stall {
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = inner.0.lock().unwrap();
            while !g.released {
                g = inner.1.wait(g).unwrap();
            }
        })
        .await
        .unwrap();
    }
    resp
}

fn answer(
    g: &mut Inner,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Value,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {TOKEN}") && auth != format!("token {TOKEN}") {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    }
    let path = uri.path().trim_end_matches('/');
    if path == "/rate_limit" {
        let reset = g.reset_at.max(now_secs());
        let core = json!({"limit": 5000, "remaining": if g.limited > 0 {0} else {4999}, "reset": reset, "used": 1});
        return axum::Json(json!({"resources": {"core": core}, "rate": core})).into_response();
    }
    if g.limited > 0 {
        g.limited -= 1;
        let mut r = error(
            StatusCode::FORBIDDEN,
            "API rate limit exceeded for user ID 7007.",
        );
        r.headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        r.headers_mut().insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&g.reset_at.to_string()).unwrap(),
        );
        return r;
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs == ["user"] {
        return axum::Json(user(BOT)).into_response();
    }
    let ["repos", owner, name, rest @ ..] = segs.as_slice() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let full = format!("{owner}/{name}");
    let Some(repo_path) = g.repos.get(&full).cloned() else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    match (method.clone(), rest) {
        (Method::GET, ["pulls"]) => {
            let head = query(uri, "head");
            let state = query(uri, "state").unwrap_or_else(|| "open".into());
            let list: Vec<Value> = g
                .prs
                .get(&full)
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter(|p| head.as_deref().is_none_or(|h| p["head"]["label"] == h))
                .filter(|p| state == "all" || p["state"] == state.as_str())
                .map(|p| shown(g, &full, p))
                .collect();
            axum::Json(Value::Array(list)).into_response()
        }
        (Method::POST, ["pulls"]) => {
            let head = body["head"].as_str().unwrap_or("");
            let base = body["base"].as_str().unwrap_or("");
            let Some(sha) = branch_sha(g, &full, head) else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation Failed: head does not exist",
                );
            };
            let label = format!("{owner}:{head}");
            if g.prs.get(&full).is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["head"]["label"] == label.as_str() && p["state"] == "open")
            }) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("Validation Failed: A pull request already exists for {label}."),
                );
            }
            let n = g.prs.get(&full).map_or(0, Vec::len) as u64 + 1;
            g.next_id += 1;
            let pr = json!({"id": 500 + g.next_id, "node_id": format!("PR_{n}"), "number": n,
                "url": format!("https://api.github.com/repos/{full}/pulls/{n}"),
                "html_url": format!("https://github.com/{full}/pull/{n}"),
                "state": "open", "title": body["title"], "body": body["body"],
                "user": user(BOT), "merged": false, "merged_at": null, "merge_commit_sha": null,
                "mergeable": true,
                "head": {"ref": head, "sha": sha, "label": label},
                "base": {"ref": base, "label": format!("{owner}:{base}")}});
            g.prs.entry(full.clone()).or_default().push(pr.clone());
            (StatusCode::CREATED, axum::Json(pr)).into_response()
        }
        (m, ["pulls", n]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let Some(idx) = g
                .prs
                .get(&full)
                .and_then(|ps| ps.iter().position(|p| p["number"] == n))
            else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            if m == Method::PATCH {
                let p = &mut g.prs.get_mut(&full).unwrap()[idx];
                for k in ["title", "body", "state"] {
                    if !body[k].is_null() {
                        p[k] = body[k].clone();
                    }
                }
            }
            let p = g.prs[&full][idx].clone();
            axum::Json(shown(g, &full, &p)).into_response()
        }
        (Method::GET, ["pulls", n, "reviews"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let list = Value::Array(
                g.reviews
                    .get(&(full.clone(), n))
                    .cloned()
                    .unwrap_or_default(),
            );
            let etag = format!("\"{:x}\"", {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                list.to_string().hash(&mut h);
                h.finish()
            });
            if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                let mut r = StatusCode::NOT_MODIFIED.into_response();
                r.headers_mut()
                    .insert("etag", HeaderValue::from_str(&etag).unwrap());
                return r;
            }
            let mut r = axum::Json(list).into_response();
            r.headers_mut()
                .insert("etag", HeaderValue::from_str(&etag).unwrap());
            r
        }
        (Method::GET, ["pulls", _n, "reviews", id, "comments"]) => {
            let id: u64 = id.parse().unwrap_or(0);
            axum::Json(Value::Array(
                g.comments.get(&id).cloned().unwrap_or_default(),
            ))
            .into_response()
        }
        (Method::PUT, ["pulls", n, "merge"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let Some(idx) = g
                .prs
                .get(&full)
                .and_then(|ps| ps.iter().position(|p| p["number"] == n))
            else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let pr = g.prs[&full][idx].clone();
            if pr["merged"] == json!(true) || pr["state"] != "open" {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable",
                );
            }
            let head = pr_head(g, &full, n);
            if body["sha"].as_str() != Some(head.as_str()) {
                return error(
                    StatusCode::CONFLICT,
                    "Head branch was modified. Review and try the merge again.",
                );
            }
            let method = body["merge_method"].as_str().unwrap_or("merge");
            let title = body["commit_title"].as_str().unwrap_or("merge");
            let base = pr["base"]["ref"].as_str().unwrap_or("main").to_string();
            let Some(commit) = git_merge(&repo_path, &base, &head, method, title) else {
                return error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Pull Request is not mergeable",
                );
            };
            let p = &mut g.prs.get_mut(&full).unwrap()[idx];
            p["state"] = json!("closed");
            p["merged"] = json!(true);
            p["merged_at"] = json!("2026-11-25T12:30:00Z");
            p["merge_commit_sha"] = json!(commit);
            p["head"]["sha"] = json!(head);
            axum::Json(json!({"sha": commit, "merged": true, "message": "Pull Request successfully merged"}))
                .into_response()
        }
        (Method::POST, ["actions", "workflows", wf, "dispatches"]) => {
            let r#ref = body["ref"].as_str().unwrap_or("");
            let Some(sha) = branch_sha(g, &full, r#ref) else {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "No ref found");
            };
            g.next_id += 1;
            let id = 9000 + g.next_id;
            g.runs.push(
                json!({"id": id, "name": wf, "path": format!(".github/workflows/{wf}"),
                "head_branch": r#ref, "head_sha": sha, "event": "workflow_dispatch",
                "status": "queued", "conclusion": null, "polls": 0, "repo": full,
                "html_url": format!("https://github.com/{full}/actions/runs/{id}")}),
            );
            StatusCode::NO_CONTENT.into_response()
        }
        (Method::GET, ["actions", "workflows", wf, "runs"]) => {
            let branch = query(uri, "branch");
            let fail = g.fail_runs;
            let mut out = Vec::new();
            for r in g
                .runs
                .iter_mut()
                .filter(|r| r["repo"] == full.as_str() && r["name"] == *wf)
            {
                if branch.as_deref().is_some_and(|b| r["head_branch"] != b) {
                    continue;
                }
                // Each look moves the run along: queued → in_progress → completed.
                let polls = r["polls"].as_u64().unwrap_or(0) + 1;
                r["polls"] = json!(polls);
                match polls {
                    1 => r["status"] = json!("in_progress"),
                    _ => {
                        r["status"] = json!("completed");
                        r["conclusion"] = json!(if fail { "failure" } else { "success" });
                    }
                }
                out.push(r.clone());
            }
            out.reverse();
            axum::Json(json!({"total_count": out.len(), "workflow_runs": out})).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Waits (polling, with a deadline) until `f` holds.
pub fn wait_for(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
