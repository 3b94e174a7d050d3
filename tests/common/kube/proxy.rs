//! The fake cluster's ingress: an HTTP forward proxy on 127.0.0.1 (what a test gives as
//! `HTTP_PROXY`, so `http://` URLs go through it and `https://` ones — a package index —
//! do not) that routes a request's host to a ready pod of the test kubelet:
//!
//! - an Ingress rule's `host` (the lab host), by its longest matching path, to the rule's
//!   backend Service;
//! - `<service>.<namespace>[.svc[.cluster.local]]`, to that Service directly;
//!
//! and then, by the Service's selector and port (`targetPort` by number or by the
//! container port's name), to a pod whose Ready condition is true. No route, or no ready
//! pod, answers 502 with what was missing.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Inner;

pub(super) fn router(inner: Arc<Mutex<Inner>>) -> axum::Router {
    axum::Router::new().fallback(forward).with_state(inner)
}

fn bad_gateway(message: String) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        format!("fake ingress: {message}\n"),
    )
        .into_response()
}

async fn forward(State(inner): State<Arc<Mutex<Inner>>>, req: Request) -> Response {
    let host = req
        .uri()
        .host()
        .map(str::to_string)
        .or_else(|| {
            req.headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    let port = req.uri().port_u16().unwrap_or(80);
    let path = req.uri().path().to_string();
    let target = {
        let g = inner.lock().unwrap();
        route(&g, &host, port, &path)
    };
    let addr = match target {
        Ok(a) => a,
        Err(e) => return bad_gateway(e),
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (mut parts, body) = req.into_parts();
    parts.uri = match format!("http://{addr}{pq}").parse() {
        Ok(u) => u,
        Err(e) => return bad_gateway(format!("{e}")),
    };
    parts.headers.remove("proxy-connection");
    parts.headers.remove("proxy-authorization");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    match client
        .request(axum::http::Request::from_parts(parts, body))
        .await
    {
        Ok(resp) => resp.map(Body::new),
        Err(e) => bad_gateway(format!("{host}{path} → {addr}: {e}")),
    }
}

/// The pod address (`ip:port`) a request for `host:port/path` goes to.
fn route(g: &Inner, host: &str, port: u16, path: &str) -> Result<String, String> {
    let obj = |r: &str, ns: &str, n: &str| {
        g.objects
            .get(&(r.to_string(), ns.to_string(), n.to_string()))
    };
    // An Ingress rule for the host.
    let mut best: Option<(usize, String, String, Value)> = None;
    for ((r, ns, _), ing) in &g.objects {
        if r != "networking.k8s.io/v1/ingresses" {
            continue;
        }
        for rule in ing["spec"]["rules"].as_array().into_iter().flatten() {
            if rule["host"].as_str() != Some(host) {
                continue;
            }
            for p in rule["http"]["paths"].as_array().into_iter().flatten() {
                let prefix = p["path"].as_str().unwrap_or("/");
                let exact = p["pathType"] == "Exact";
                let hit = if exact {
                    path == prefix
                } else {
                    let prefix = prefix.trim_end_matches('/');
                    path == prefix || path.starts_with(&format!("{prefix}/")) || prefix.is_empty()
                };
                if hit && best.as_ref().is_none_or(|(len, ..)| prefix.len() > *len) {
                    let svc = &p["backend"]["service"];
                    best = Some((
                        prefix.len(),
                        ns.clone(),
                        svc["name"].as_str().unwrap_or("").to_string(),
                        svc["port"].clone(),
                    ));
                }
            }
        }
    }
    let (ns, svc_name, svc_port) = match best {
        Some((_, ns, name, port)) => (ns, name, port),
        None => {
            let parts: Vec<&str> = host.split('.').collect();
            match parts.as_slice() {
                [svc, ns] | [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => {
                    (ns.to_string(), svc.to_string(), serde_json::json!(port))
                }
                _ => return Err(format!("no Ingress rule for host {host} and path {path}")),
            }
        }
    };
    let Some(svc) = obj("v1/services", &ns, &svc_name) else {
        return Err(format!("service {ns}/{svc_name} not found"));
    };
    let sp = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| match &svc_port {
            Value::Object(o) => {
                o.get("number").is_some_and(|n| *n == p["port"])
                    || o.get("name").is_some_and(|n| *n == p["name"])
            }
            n => *n == p["port"],
        })
        .ok_or_else(|| format!("service {ns}/{svc_name} has no port {svc_port}"))?;
    let target = if sp["targetPort"].is_null() {
        sp["port"].clone()
    } else {
        sp["targetPort"].clone()
    };
    let selector = svc["spec"]["selector"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for ((r, pns, _), pod) in &g.objects {
        if r != "v1/pods" || *pns != ns {
            continue;
        }
        let labels = &pod["metadata"]["labels"];
        if selector.is_empty() || !selector.iter().all(|(k, v)| labels[k] == *v) {
            continue;
        }
        let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        let Some(ip) = pod["status"]["podIP"].as_str().filter(|_| ready) else {
            continue;
        };
        let port = match &target {
            Value::String(name) => pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_u64()),
            n => n.as_u64(),
        };
        if let Some(port) = port {
            return Ok(format!("{ip}:{port}"));
        }
    }
    Err(format!("no ready pod behind service {ns}/{svc_name}"))
}
