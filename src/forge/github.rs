//! GitHub as the forge, through octocrab: the task branch is pushed with the `git` binary
//! (your ordinary credentials), its pull request found by head branch or created (never a
//! duplicate after a restart), kept up to date, reviewed and merged with the head SHA as a
//! compare-and-swap. Reviews are read with conditional requests (ETags), so polling them
//! costs no rate limit while nothing changed; a rate-limit answer becomes
//! [`ForgeError::RateLimited`] with the reset time. Also dispatches the lab's image-build
//! workflow and follows its run.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{Change, ChangeRequest, Forge, ForgeError, ImageBuild, Review, Reviews};
use crate::state::spec::MergeMethod;

/// GitHub via octocrab.
pub struct GitHubForge {
    octo: octocrab::Octocrab,
    /// Conditional GETs: path → (ETag, last body).
    etags: Mutex<HashMap<String, (String, Value)>>,
    login: tokio::sync::OnceCell<String>,
}

impl std::fmt::Debug for GitHubForge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GitHubForge")
    }
}

/// `owner/name` of a GitHub clone URL (`git@github.com:o/r.git`, `https://github.com/o/r`).
pub fn repo_of_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("git@github.com:")
        .or_else(|| url.strip_prefix("https://github.com/"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    let (o, r) = rest.split_once('/')?;
    (!o.is_empty() && !r.is_empty() && !r.contains('/')).then(|| format!("{o}/{r}"))
}

fn api_err(what: &str, e: impl std::fmt::Display) -> ForgeError {
    ForgeError::Api(format!("{what}: {e}"))
}

impl GitHubForge {
    /// A forge using `token`; `base_uri` replaces `https://api.github.com` (fakes, GHES).
    pub fn new(token: &str, base_uri: Option<&str>) -> Result<Self, ForgeError> {
        let mut b = octocrab::Octocrab::builder().personal_token(token.to_string());
        if let Some(u) = base_uri {
            b = b
                .base_uri(u)
                .map_err(|e| ForgeError::Config(format!("GitHub API URL {u}: {e}")))?;
        }
        Ok(Self {
            octo: b.build().map_err(|e| api_err("github client", e))?,
            etags: Mutex::new(HashMap::new()),
            login: tokio::sync::OnceCell::new(),
        })
    }

    /// The token's user: the author of gaffer's pull requests.
    pub async fn login(&self) -> Result<String, ForgeError> {
        self.login
            .get_or_try_init(|| async {
                let me: Value = self.get("/user").await?;
                Ok(me["login"].as_str().unwrap_or_default().to_string())
            })
            .await
            .cloned()
    }

    /// Turns octocrab's error into ours; a rate limit asks GitHub when it resets.
    async fn fail(&self, what: &str, e: octocrab::Error) -> ForgeError {
        if let octocrab::Error::GitHub { source, .. } = &e {
            let code = source.status_code.as_u16();
            let limited = code == 429
                || (code == 403 && source.message.to_lowercase().contains("rate limit"));
            if limited {
                let reset: Result<Value, _> = self.octo.get("/rate_limit", None::<&()>).await;
                let until = reset
                    .ok()
                    .and_then(|v| v["resources"]["core"]["reset"].as_i64())
                    .and_then(|s| jiff::Timestamp::from_second(s).ok())
                    .unwrap_or_else(|| {
                        jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60)
                    });
                return ForgeError::RateLimited { until };
            }
            return match code {
                405 | 409 | 422 => ForgeError::Blocked(format!("{what}: {}", source.message)),
                _ => api_err(what, format!("{} {}", code, source.message)),
            };
        }
        api_err(what, e)
    }

    async fn get(&self, path: &str) -> Result<Value, ForgeError> {
        match self.octo.get(path, None::<&()>).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.fail(&format!("GET {path}"), e).await),
        }
    }

    /// A GET that sends the last ETag; 304 returns the remembered body (free of rate limit).
    async fn get_cached(&self, path: &str) -> Result<Value, ForgeError> {
        let cached = self
            .etags
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .cloned();
        let mut headers = axum::http::HeaderMap::new();
        if let Some((etag, _)) = &cached
            && let Ok(v) = axum::http::HeaderValue::from_str(etag)
        {
            headers.insert(axum::http::header::IF_NONE_MATCH, v);
        }
        let resp = self
            .octo
            ._get_with_headers(path, Some(headers))
            .await
            .map_err(|e| api_err(&format!("GET {path}"), e))?;
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if status == axum::http::StatusCode::NOT_MODIFIED
            && let Some((_, body)) = cached
        {
            return Ok(body);
        }
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS
            || (status == axum::http::StatusCode::FORBIDDEN
                && header("x-ratelimit-remaining").as_deref() == Some("0"))
        {
            let now = jiff::Timestamp::now();
            let until = header("retry-after")
                .and_then(|s| s.parse::<i64>().ok())
                .map(|s| now + jiff::SignedDuration::from_secs(s))
                .or_else(|| {
                    header("x-ratelimit-reset")
                        .and_then(|s| s.parse::<i64>().ok())
                        .and_then(|s| jiff::Timestamp::from_second(s).ok())
                })
                .unwrap_or(now + jiff::SignedDuration::from_secs(60));
            return Err(ForgeError::RateLimited { until });
        }
        let etag = header("etag");
        let text = self
            .octo
            .body_to_string(resp)
            .await
            .map_err(|e| api_err(&format!("GET {path}"), e))?;
        if !status.is_success() {
            return Err(api_err(&format!("GET {path}"), format!("{status}: {text}")));
        }
        let body: Value = serde_json::from_str(&text).map_err(|e| api_err(path, e))?;
        if let Some(etag) = etag {
            self.etags
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(path.to_string(), (etag, body.clone()));
        }
        Ok(body)
    }

    fn repo<'a>(repo: &'a Option<String>, url: &str) -> Result<&'a str, ForgeError> {
        repo.as_deref().ok_or_else(|| {
            ForgeError::Config(format!(
                "{url} is not a GitHub URL: set `github: owner/name` on the repo in project.yaml"
            ))
        })
    }
}

fn change_of(pr: &Value, req_url: &str, repo: &str, head: &str) -> Change {
    let merged = pr["merged"] == json!(true) || !pr["merged_at"].is_null();
    Change {
        number: pr["number"].as_u64().unwrap_or_default(),
        repo_url: req_url.to_string(),
        head_branch: pr["head"]["ref"].as_str().unwrap_or_default().to_string(),
        base: pr["base"]["ref"].as_str().unwrap_or_default().to_string(),
        title: pr["title"].as_str().unwrap_or_default().to_string(),
        state: if merged {
            "merged".into()
        } else {
            pr["state"].as_str().unwrap_or("open").to_string()
        },
        head_sha: head.to_string(),
        merge_commit: pr["merge_commit_sha"]
            .as_str()
            .filter(|_| merged)
            .map(str::to_string),
        url: pr["html_url"].as_str().unwrap_or_default().to_string(),
        repo: Some(repo.to_string()),
    }
}

#[async_trait::async_trait]
impl Forge for GitHubForge {
    async fn open_change(&self, req: &ChangeRequest) -> Result<Change, ForgeError> {
        let repo = Self::repo(&req.repo, &req.repo_url)?.to_string();
        let head = super::push_branch(&req.mirror, &req.head_branch)?;
        let owner = repo.split('/').next().unwrap_or_default();
        let list: Value = self
            .get(&format!(
                "/repos/{repo}/pulls?head={owner}:{}&state=all&per_page=100",
                req.head_branch
            ))
            .await?;
        let prs = list.as_array().cloned().unwrap_or_default();
        // The open PR of this branch; a merged one only if it merged exactly this head (a
        // crash after merging, before recording it). Otherwise a new PR.
        let found = prs
            .iter()
            .find(|p| p["state"] == "open")
            .or_else(|| {
                prs.iter().find(|p| {
                    !p["merged_at"].is_null() && p["head"]["sha"].as_str() == Some(head.as_str())
                })
            })
            .cloned();
        let pr = match found {
            Some(pr) => {
                let stale = pr["body"].as_str().unwrap_or("") != req.body
                    || pr["title"].as_str().unwrap_or("") != req.title;
                if stale && pr["state"] == "open" {
                    let n = pr["number"].as_u64().unwrap_or_default();
                    let body = json!({"title": req.title, "body": req.body});
                    match self
                        .octo
                        .patch::<Value, _, _>(format!("/repos/{repo}/pulls/{n}"), Some(&body))
                        .await
                    {
                        Ok(v) => v,
                        Err(e) => return Err(self.fail("updating the pull request", e).await),
                    }
                } else {
                    pr
                }
            }
            None => {
                let body = json!({"title": req.title, "head": req.head_branch,
                                  "base": req.base, "body": req.body});
                match self
                    .octo
                    .post::<_, Value>(format!("/repos/{repo}/pulls"), Some(&body))
                    .await
                {
                    Ok(v) => {
                        tracing::info!(%repo, number = %v["number"], "pull request opened");
                        v
                    }
                    Err(e) => return Err(self.fail("opening the pull request", e).await),
                }
            }
        };
        Ok(change_of(&pr, &req.repo_url, &repo, &head))
    }

    async fn merge(
        &self,
        change: &Change,
        head_sha: &str,
        method: MergeMethod,
    ) -> Result<Change, ForgeError> {
        let repo = Self::repo(&change.repo, &change.repo_url)?.to_string();
        let n = change.number;
        let pr = self.get(&format!("/repos/{repo}/pulls/{n}")).await?;
        let current = change_of(&pr, &change.repo_url, &repo, head_sha);
        if current.state == "merged" {
            // Merged before a crash, or by someone else: nothing to do twice.
            return Ok(current);
        }
        let body = json!({
            "sha": head_sha,
            "merge_method": match method {
                MergeMethod::Merge => "merge",
                MergeMethod::Squash => "squash",
                MergeMethod::Rebase => "rebase",
            },
            "commit_title": format!("{} (#{n})", change.title),
        });
        let merged: Value = match self
            .octo
            .put(format!("/repos/{repo}/pulls/{n}/merge"), Some(&body))
            .await
        {
            Ok(v) => v,
            Err(e) => return Err(self.fail(&format!("merging #{n}"), e).await),
        };
        Ok(Change {
            state: "merged".into(),
            merge_commit: merged["sha"].as_str().map(str::to_string),
            ..current
        })
    }

    async fn reviews(&self, change: &Change) -> Result<Reviews, ForgeError> {
        let repo = Self::repo(&change.repo, &change.repo_url)?.to_string();
        let n = change.number;
        let list = self
            .get_cached(&format!("/repos/{repo}/pulls/{n}/reviews?per_page=100"))
            .await?;
        let mut reviews = Vec::new();
        for r in list.as_array().cloned().unwrap_or_default() {
            let state = r["state"].as_str().unwrap_or_default().to_string();
            let id = r["id"].as_u64().unwrap_or_default();
            let mut comments = Vec::new();
            if state == "CHANGES_REQUESTED" {
                let cs = self
                    .get_cached(&format!("/repos/{repo}/pulls/{n}/reviews/{id}/comments"))
                    .await?;
                for c in cs.as_array().cloned().unwrap_or_default() {
                    let line = c["line"].as_u64().or_else(|| c["original_line"].as_u64());
                    comments.push(format!(
                        "{}{}: {}",
                        c["path"].as_str().unwrap_or(""),
                        line.map(|l| format!(":{l}")).unwrap_or_default(),
                        c["body"].as_str().unwrap_or("")
                    ));
                }
            }
            reviews.push(Review {
                id,
                user: r["user"]["login"].as_str().unwrap_or_default().to_string(),
                state,
                body: r["body"].as_str().unwrap_or_default().to_string(),
                commit_id: r["commit_id"].as_str().unwrap_or_default().to_string(),
                comments,
            });
        }
        Ok(Reviews {
            author: self.login().await?,
            reviews,
        })
    }

    async fn build_image(
        &self,
        repo: &str,
        workflow: &str,
        branch: &str,
        head_sha: &str,
        dispatch: bool,
    ) -> Result<ImageBuild, ForgeError> {
        let runs = self
            .get(&format!(
                "/repos/{repo}/actions/workflows/{workflow}/runs?branch={branch}&event=workflow_dispatch&per_page=50"
            ))
            .await?;
        let run = runs["workflow_runs"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["head_sha"].as_str() == Some(head_sha)))
            .cloned();
        match run {
            None if dispatch => {
                let body = json!({"ref": branch});
                let r: Result<Value, _> = self
                    .octo
                    .post(
                        format!("/repos/{repo}/actions/workflows/{workflow}/dispatches"),
                        Some(&body),
                    )
                    .await;
                match r {
                    Ok(_) => {}
                    // 204 No Content: octocrab cannot read an empty body as JSON.
                    Err(octocrab::Error::Json { .. }) | Err(octocrab::Error::Serde { .. }) => {}
                    Err(e) => return Err(self.fail("dispatching the image build", e).await),
                }
                tracing::info!(%repo, %workflow, %branch, "image build dispatched");
                Ok(ImageBuild::Dispatched)
            }
            None => Ok(ImageBuild::Running(String::new())),
            Some(r) => {
                let url = r["html_url"].as_str().unwrap_or_default().to_string();
                match (r["status"].as_str(), r["conclusion"].as_str()) {
                    (Some("completed"), Some("success")) => Ok(ImageBuild::Built),
                    (Some("completed"), c) => Err(ForgeError::Api(format!(
                        "the image build {url} concluded {}",
                        c.unwrap_or("without a conclusion")
                    ))),
                    _ => Ok(ImageBuild::Running(url)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_urls_name_their_repository() {
        for (url, want) in [
            (
                "git@github.com:example/domain-apis.git",
                Some("example/domain-apis"),
            ),
            (
                "https://github.com/example/k8s-lab",
                Some("example/k8s-lab"),
            ),
            (
                "https://github.com/example/k8s-lab.git/",
                Some("example/k8s-lab"),
            ),
            ("ssh://git@github.com/o/r.git", Some("o/r")),
            ("/srv/git/app.git", None),
            ("https://gitlab.com/o/r", None),
            ("https://github.com/o/r/tree/main", None),
        ] {
            assert_eq!(repo_of_url(url).as_deref(), want, "{url}");
        }
    }
}
