//! `pods/<name>/log` of the fake, from the files the test kubelet writes.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{Inner, query_param, status};

/// `GET pods/<name>/log`: `container` (needed when the pod has several), `previous`,
/// `tailLines`, and `follow` (streams what is appended until the pod is gone).
pub(super) fn pod_log(
    g: &Inner,
    inner: &Arc<Mutex<Inner>>,
    uri: &Uri,
    ns: &str,
    name: &str,
) -> Response {
    let Some(pod) = g.objects.get(&("v1/pods".into(), ns.into(), name.into())) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    };
    let names: Vec<String> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    let container = match query_param(uri, "container") {
        Some(c) if names.contains(&c) => c,
        Some(c) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("container {c} is not valid for pod {name}"),
            );
        }
        None if names.len() == 1 => names[0].clone(),
        None => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                ),
            );
        }
    };
    let Some(dir) = g.pod_logs.get(&(ns.into(), name.into())).cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container \"{container}\" in pod \"{name}\" is waiting to start"),
        );
    };
    let previous = query_param(uri, "previous").as_deref() == Some("true");
    let tail = query_param(uri, "tailLines").and_then(|n| n.parse().ok());
    let Some(text) = read_log(&dir, &container, previous, tail) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("previous terminated container \"{container}\" in pod \"{name}\" not found"),
        );
    };
    if query_param(uri, "follow").as_deref() != Some("true") {
        return text.into_response();
    }
    // Follow: what is there, then what is appended, until the pod is gone.
    let file = dir.join(format!("{container}.log"));
    let offset = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let key = (ns.to_string(), name.to_string());
    let inner = inner.clone();
    let rest = futures_util::stream::unfold((file, offset), move |(file, offset)| {
        let inner = inner.clone();
        let key = key.clone();
        async move {
            loop {
                if !inner.lock().unwrap().pod_logs.contains_key(&key) {
                    return None;
                }
                let bytes = std::fs::read(&file).unwrap_or_default();
                // A restart starts a new file.
                let from = if (bytes.len() as u64) < offset {
                    0
                } else {
                    offset as usize
                };
                if bytes.len() > from {
                    let chunk = bytes[from..].to_vec();
                    let next = bytes.len() as u64;
                    return Some((Ok::<_, std::io::Error>(chunk), (file, next)));
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    });
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(text.into_bytes())]);
    axum::body::Body::from_stream(futures_util::StreamExt::chain(first, rest)).into_response()
}

/// The last `tail` lines (all when `None`) of a container's log, or of the one before its
/// last restart.
pub(super) fn read_log(
    dir: &Path,
    container: &str,
    previous: bool,
    tail: Option<usize>,
) -> Option<String> {
    let file = if previous {
        dir.join(format!("{container}.previous.log"))
    } else {
        dir.join(format!("{container}.log"))
    };
    let text = std::fs::read_to_string(file).ok()?;
    Some(match tail {
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let mut s = lines[lines.len().saturating_sub(n)..].join("\n");
            if !s.is_empty() {
                s.push('\n');
            }
            s
        }
        None => text,
    })
}
