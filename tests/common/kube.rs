//! A fake Kubernetes API server on 127.0.0.1 that speaks the real HTTP protocol well enough
//! for kube-rs and kubectl: version, discovery (`/api`, `/apis`, resource lists, CRDs adding
//! their kinds), namespaces, server-side apply (`PATCH` with `application/apply-patch+yaml`,
//! `fieldManager`, `force`; an unchanged apply keeps the `resourceVersion`), get, list with
//! label and field selectors, delete, ServiceAccount token requests and RBAC for those
//! tokens (Roles and RoleBindings are enforced for them). A built-in controller marks
//! workloads ready — or, for names listed with [`FakeKube::never_ready`], leaves a
//! Deployment unavailable with a pod stuck in `ImagePullBackOff` and an event saying why.
//!
//! [`FakeKube::with_kubelet`] instead runs what is deployed: its test kubelet
//! (`kube/kubelet.rs`) runs pods' commands as local processes, serves their logs through
//! `pods/<name>/log`, and its ingress proxy (`kube/proxy.rs`) reaches them.

// Explicit paths: the benchmark includes this file with `#[path]` too.
#[path = "kube/controllers.rs"]
mod controllers;
#[path = "kube/kubelet.rs"]
mod kubelet;
#[path = "kube/logs.rs"]
mod logs;
#[path = "kube/proxy.rs"]
mod proxy;
#[path = "kube/rbac.rs"]
mod rbac;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One resource type the fake serves.
#[derive(Debug, Clone)]
struct Res {
    group: String,
    version: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Content type.
    pub content_type: String,
    /// Whether it was a write that changed something.
    pub changed: bool,
    /// The bearer token, if any.
    pub token: String,
}

#[derive(Default)]
struct Inner {
    resources: Vec<Res>,
    /// (group/version/plural, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    next_rv: u64,
    requests: Vec<Request>,
    never_ready: BTreeSet<String>,
    /// Token → (namespace, service account).
    tokens: BTreeMap<String, (String, String)>,
    /// Whether the test kubelet runs the workloads (the controllers below then leave them).
    kubelet: bool,
    /// The `PATH` of the kubelet's containers.
    kubelet_path: std::ffi::OsString,
    /// (namespace, pod) → its containers' log directory, kept by the kubelet.
    pod_logs: BTreeMap<(String, String), std::path::PathBuf>,
    /// Where the kubelet keeps PersistentVolumeClaims' directories.
    claims: Option<std::path::PathBuf>,
}

/// The fake API server; stops when dropped.
pub struct FakeKube {
    // The kubelet stops (and with it every pod's processes) before the servers.
    _kubelet: Option<kubelet::Kubelet>,
    /// Its address.
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    _server: super::Served,
    proxy: Option<super::Served>,
}

/// The token of the fake's administrator (what gaffer uses).
pub const ADMIN_TOKEN: &str = "admin-token";

fn builtin() -> Vec<Res> {
    let r = |g: &str, v: &str, p: &str, k: &str, ns: bool| Res {
        group: g.into(),
        version: v.into(),
        plural: p.into(),
        kind: k.into(),
        namespaced: ns,
    };
    vec![
        r("", "v1", "namespaces", "Namespace", false),
        r("", "v1", "configmaps", "ConfigMap", true),
        r("", "v1", "secrets", "Secret", true),
        r("", "v1", "services", "Service", true),
        r("", "v1", "pods", "Pod", true),
        r("", "v1", "serviceaccounts", "ServiceAccount", true),
        r("", "v1", "events", "Event", true),
        r("apps", "v1", "deployments", "Deployment", true),
        r("apps", "v1", "statefulsets", "StatefulSet", true),
        r("apps", "v1", "daemonsets", "DaemonSet", true),
        r("batch", "v1", "jobs", "Job", true),
        r("coordination.k8s.io", "v1", "leases", "Lease", true),
        r(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            true,
        ),
        r(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
        ),
        r("networking.k8s.io", "v1", "ingresses", "Ingress", true),
        r("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
        ),
        r(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
        ),
        r(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        ),
    ]
}

impl FakeKube {
    /// Starts the fake.
    pub fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            resources: builtin(),
            ..Inner::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let server = super::Served::start(app);
        FakeKube {
            _kubelet: None,
            addr: server.addr,
            inner,
            _server: server,
            proxy: None,
        }
    }

    /// Starts the fake with its test kubelet and ingress proxy: deployed pods really run,
    /// with `path` as their `PATH` (what their "images" have installed).
    pub fn with_kubelet(path: std::ffi::OsString) -> Self {
        let mut k = Self::start();
        {
            let mut g = k.inner.lock().unwrap();
            g.kubelet = true;
            g.kubelet_path = path;
        }
        k._kubelet = Some(kubelet::Kubelet::start(k.inner.clone()));
        k.proxy = Some(super::Served::start(proxy::router(k.inner.clone())));
        k
    }

    /// The ingress proxy's URL (`http://127.0.0.1:P`), for `HTTP_PROXY`.
    pub fn proxy_url(&self) -> String {
        let p = self.proxy.as_ref().expect("started with_kubelet");
        format!("http://{}", p.addr)
    }

    /// A cluster deployer (the production one) as the administrator, its state under
    /// `dir`, waiting up to `rollout` for rollouts.
    pub async fn deployer(
        &self,
        dir: &std::path::Path,
        rollout: std::time::Duration,
    ) -> gaffer::lab::cluster::ClusterDeployer {
        let kc = dir.join("admin.kubeconfig");
        self.write_kubeconfig(&kc);
        let mut d =
            gaffer::lab::cluster::ClusterDeployer::new(config_of(&kc).await, dir.join("lab"))
                .unwrap();
        d.rollout_timeout = rollout;
        d.poll = std::time::Duration::from_millis(50);
        d
    }

    /// Stops the fake (and every pod's processes) from async code.
    pub async fn stop(self) {
        tokio::task::spawn_blocking(move || drop(self))
            .await
            .unwrap();
    }

    /// `GET url` (`http://host/path`) through the ingress proxy: (status, body).
    pub fn get_via_proxy(&self, url: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let p = self.proxy.as_ref().expect("started with_kubelet");
        let mut s = std::net::TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        write!(
            s,
            "GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let code = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (code, body)
    }

    /// A pod's log (the kubelet's), if the pod runs.
    pub fn log(&self, ns: &str, pod: &str, container: &str) -> Option<String> {
        let dir = self
            .inner
            .lock()
            .unwrap()
            .pod_logs
            .get(&(ns.into(), pod.into()))
            .cloned()?;
        logs::read_log(&dir, container, false, None)
    }

    /// The directory of claim `claim` in `ns` (the kubelet's volume; it may not exist yet).
    pub fn claim_dir(&self, ns: &str, claim: &str) -> std::path::PathBuf {
        let g = self.inner.lock().unwrap();
        g.claims
            .as_ref()
            .expect("started with_kubelet")
            .join(ns)
            .join(claim)
    }

    /// `http://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for the administrator, written to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) {
        self.write_kubeconfig_for(path, ADMIN_TOKEN);
    }

    /// A kubeconfig for the bearer `token`, written to `path`.
    pub fn write_kubeconfig_for(&self, path: &std::path::Path, token: &str) {
        let k = json!({"apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}],
            "current-context": "fake"});
        std::fs::write(path, k.to_string()).unwrap();
    }

    /// Makes namespace `name` (what an administrator does before installing gaffer).
    pub fn namespace(&self, name: &str) {
        let mut g = self.inner.lock().unwrap();
        g.next_rv += 1;
        let rv = g.next_rv.to_string();
        g.objects.insert(
            ("v1/namespaces".into(), String::new(), name.into()),
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "resourceVersion": rv}}),
        );
    }

    /// Deployments with this name never become available.
    pub fn never_ready(&self, name: &str) {
        self.inner.lock().unwrap().never_ready.insert(name.into());
    }

    /// The object, if present: `api` is `v1` or `group/version`, `plural` the resource.
    pub fn get(&self, api: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let g = self.inner.lock().unwrap();
        g.objects
            .get(&(format!("{api}/{plural}"), ns.into(), name.into()))
            .cloned()
    }

    /// Deletes an object (as `kubectl delete` would; the kubelet stops a pod's processes).
    pub fn delete(&self, api: &str, plural: &str, ns: &str, name: &str) {
        let mut g = self.inner.lock().unwrap();
        g.objects
            .remove(&(format!("{api}/{plural}"), ns.into(), name.into()));
    }

    /// Names of the objects of `plural` in `ns`.
    pub fn names(&self, api: &str, plural: &str, ns: &str) -> Vec<String> {
        let g = self.inner.lock().unwrap();
        let k = format!("{api}/{plural}");
        g.objects
            .keys()
            .filter(|(r, n, _)| *r == k && n == ns)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }
}

/// The demo project's lab host.
pub const LAB_HOST: &str = "web-api.builder.lab.example.com";

/// A deploy of the demo project (`demo/web-api`, task `jwt`) of `overlay`, inside
/// `workspace`, to [`LAB_HOST`] reached at `url`.
pub fn deploy_request(
    overlay: &std::path::Path,
    workspace: &std::path::Path,
    url: &str,
) -> gaffer::lab::DeployRequest {
    gaffer::lab::DeployRequest {
        project: gaffer::names::ProjectRef::parse("demo/web-api").unwrap(),
        task: gaffer::names::TaskName::new("jwt").unwrap(),
        overlay: overlay.to_path_buf(),
        workspace: workspace.to_path_buf(),
        host: LAB_HOST.into(),
        url: url.into(),
        commits: Default::default(),
        images: Default::default(),
        tool: Default::default(),
        values: Vec::new(),
        previous: Vec::new(),
    }
}

/// The kube-rs configuration of a kubeconfig file.
pub async fn config_of(kubeconfig: &std::path::Path) -> kube::Config {
    kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()})),
    )
        .into_response()
}

fn api_of(r: &Res) -> String {
    if r.group.is_empty() {
        r.version.clone()
    } else {
        format!("{}/{}", r.group, r.version)
    }
}

fn resource_list(g: &Inner, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = g
        .resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let mut v = vec![
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced, "kind": r.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}),
            ];
            if r.plural == "serviceaccounts" {
                v.push(json!({"name": "serviceaccounts/token", "singularName": "",
                    "namespaced": true, "kind": "TokenRequest", "group": "authentication.k8s.io",
                    "version": "v1", "verbs": ["create"]}));
            }
            v
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// What a path names.
struct Target {
    res: Res,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(g: &Inner, segs: &[&str]) -> Option<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", gr, v, rest @ ..] => (*gr, *v, rest),
        _ => return None,
    };
    let find = |plural: &str| {
        g.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] => {
            let res = find(plural)?;
            Some(Target {
                res,
                ns: ns.to_string(),
                name: tail.first().map(|s| s.to_string()),
                sub: tail.get(1).map(|s| s.to_string()),
            })
        }
        [plural, tail @ ..] => {
            let res = find(plural)?;
            Some(Target {
                res,
                ns: String::new(),
                name: tail.first().map(|s| s.to_string()),
                sub: None,
            })
        }
        _ => None,
    }
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn matches_labels(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn matches_fields(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let mut cur = obj;
        for p in k.split('.') {
            cur = &cur[p];
        }
        cur.as_str() == Some(v)
    })
}

/// The object without what the server owns, to tell whether an apply changed anything.
fn desired(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(m) = v["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    v
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut g = inner.lock().unwrap();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    g.requests.push(Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        content_type: content_type.clone(),
        changed: false,
        token: token.clone(),
    });
    if token != ADMIN_TOKEN && !g.tokens.contains_key(&token) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized".into(),
        );
    }
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Version and discovery.
    match segs.as_slice() {
        ["version"] => {
            return axum::Json(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                "gitCommit": "0", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            )
            .into_response();
        }
        ["api"] => {
            return axum::Json(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}))
            .into_response();
        }
        ["apis"] => {
            let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for r in g.resources.iter().filter(|r| !r.group.is_empty()) {
                groups
                    .entry(r.group.clone())
                    .or_default()
                    .insert(r.version.clone());
            }
            let groups: Vec<Value> = groups
                .iter()
                .map(|(name, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                        .collect();
                    json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            return axum::Json(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
            .into_response();
        }
        ["api", v] => return axum::Json(resource_list(&g, "", v)).into_response(),
        ["apis", gr, v] => return axum::Json(resource_list(&g, gr, v)).into_response(),
        _ => {}
    }
    let Some(t) = parse_target(&g, &segs) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        );
    };
    let rkey = format!("{}/{}", api_of(&t.res), t.res.plural);
    let ns = if t.res.namespaced {
        t.ns.clone()
    } else {
        String::new()
    };
    let verb = match (&method, &t.name, &t.sub) {
        (&Method::GET, None, _) => "list",
        (&Method::GET, Some(_), _) => "get",
        (&Method::PATCH, _, _) => "patch",
        (&Method::DELETE, _, _) => "delete",
        (&Method::POST, _, _) => "create",
        (&Method::PUT, _, _) => "update",
        _ => "get",
    };
    if !rbac::allowed(&g, &token, verb, &t.res, &ns, t.name.as_deref()) {
        let who = g.tokens.get(&token).cloned().unwrap_or_default();
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "{} \"{}\" is forbidden: User \"system:serviceaccount:{}:{}\" cannot {verb} resource \"{}\" in API group \"{}\" in the namespace \"{ns}\"",
                t.res.plural,
                t.name.clone().unwrap_or_default(),
                who.0,
                who.1,
                t.res.plural,
                t.res.group
            ),
        );
    }
    let write = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) && t.sub.is_none();
    let object_name = t.name.clone().unwrap_or_else(|| {
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|b| b["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default()
    });
    if let Err(m) = rbac::admitted(&g, &token, write, &t.res, &ns, &object_name, &body) {
        return status(StatusCode::FORBIDDEN, "Forbidden", m);
    }
    if write
        && method != Method::DELETE
        && let Err(m) = rbac::escalation(&g, &token, &t.res, &ns, &body)
    {
        return status(StatusCode::FORBIDDEN, "Forbidden", m);
    }
    if t.res.namespaced
        && !g
            .objects
            .contains_key(&("v1/namespaces".into(), String::new(), ns.clone()))
        && method != Method::GET
    {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{ns}\" not found"),
        );
    }
    match (method.clone(), t.name.clone(), t.sub.clone()) {
        (Method::GET, None, _) => {
            let labels = query_param(&uri, "labelSelector").unwrap_or_default();
            let fields = query_param(&uri, "fieldSelector").unwrap_or_default();
            let items: Vec<Value> = g
                .objects
                .iter()
                .filter(|((r, n, _), o)| {
                    *r == rkey
                        && (ns.is_empty() || *n == ns)
                        && matches_labels(o, &labels)
                        && matches_fields(o, &fields)
                })
                .map(|(_, o)| o.clone())
                .collect();
            axum::Json(
                json!({"kind": format!("{}List", t.res.kind), "apiVersion": api_of(&t.res),
                "metadata": {"resourceVersion": g.next_rv.to_string()}, "items": items}),
            )
            .into_response()
        }
        (Method::GET, Some(name), None) => {
            match g.objects.get(&(rkey.clone(), ns.clone(), name.clone())) {
                Some(o) => axum::Json(o.clone()).into_response(),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.res.plural),
                ),
            }
        }
        // A JSON merge patch (RFC 7386) of an existing object, e.g. a scale.
        (Method::PATCH, Some(name), None) if content_type == "application/merge-patch+json" => {
            let Ok(patch) = serde_json::from_str::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
            };
            let k = (rkey.clone(), ns.clone(), name.clone());
            let Some(mut obj) = g.objects.get(&k).cloned() else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.res.plural),
                );
            };
            merge_patch(&mut obj, &patch);
            if obj != g.objects[&k] {
                g.next_rv += 1;
                obj["metadata"]["resourceVersion"] = json!(g.next_rv.to_string());
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(generation);
                g.objects.insert(k.clone(), obj);
                if let Some(last) = g.requests.last_mut() {
                    last.changed = true;
                }
                controllers::control(&mut g);
            }
            axum::Json(g.objects[&k].clone()).into_response()
        }
        (Method::PATCH, Some(name), None) => {
            if content_type != "application/apply-patch+yaml" {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    format!("the fake only takes server-side apply, not {content_type}"),
                );
            }
            if query_param(&uri, "fieldManager").is_none() {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".into());
            }
            let Ok(mut obj) = serde_json::from_str::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the fake reads JSON (valid YAML)".into(),
                );
            };
            if obj["kind"].as_str() != Some(t.res.kind.as_str())
                || obj["metadata"]["name"].as_str() != Some(name.as_str())
            {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "kind or name does not match the URL".into(),
                );
            }
            if t.res.namespaced {
                obj["metadata"]["namespace"] = json!(ns);
            }
            let k = (rkey.clone(), ns.clone(), name.clone());
            let old = g.objects.get(&k).cloned();
            let changed = old.as_ref().is_none_or(|o| desired(o) != desired(&obj));
            if changed {
                g.next_rv += 1;
                let rv = g.next_rv.to_string();
                let generation = old
                    .as_ref()
                    .and_then(|o| o["metadata"]["generation"].as_i64())
                    .unwrap_or(0)
                    + 1;
                obj["metadata"]["resourceVersion"] = json!(rv);
                obj["metadata"]["generation"] = json!(generation);
                obj["metadata"]["uid"] = old
                    .as_ref()
                    .map(|o| o["metadata"]["uid"].clone())
                    .unwrap_or_else(|| json!(format!("uid-{rv}")));
                obj["metadata"]["creationTimestamp"] = json!("2026-11-25T00:00:00Z");
                g.objects.insert(k.clone(), obj);
                if let Some(last) = g.requests.last_mut() {
                    last.changed = true;
                }
                controllers::control(&mut g);
            }
            axum::Json(g.objects[&k].clone()).into_response()
        }
        // Create (`POST` to the collection): 409 when the name is taken.
        (Method::POST, None, None) => {
            let Ok(mut obj) = serde_json::from_str::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let k = (rkey.clone(), ns.clone(), name.clone());
            if name.is_empty() || g.objects.contains_key(&k) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", t.res.plural),
                );
            }
            g.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(g.next_rv.to_string());
            obj["metadata"]["uid"] = json!(format!("uid-{}", g.next_rv));
            if t.res.namespaced {
                obj["metadata"]["namespace"] = json!(ns);
            }
            g.objects.insert(k, obj.clone());
            if let Some(last) = g.requests.last_mut() {
                last.changed = true;
            }
            (StatusCode::CREATED, axum::Json(obj)).into_response()
        }
        // Replace (`PUT`): optimistic concurrency on `resourceVersion` (409 when stale).
        (Method::PUT, Some(name), None) => {
            let Ok(mut obj) = serde_json::from_str::<Value>(&body) else {
                return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
            };
            let k = (rkey.clone(), ns.clone(), name.clone());
            let Some(old) = g.objects.get(&k) else {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.res.plural),
                );
            };
            if obj["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                        t.res.plural
                    ),
                );
            }
            g.next_rv += 1;
            obj["metadata"]["resourceVersion"] = json!(g.next_rv.to_string());
            g.objects.insert(k, obj.clone());
            if let Some(last) = g.requests.last_mut() {
                last.changed = true;
            }
            axum::Json(obj).into_response()
        }
        (Method::GET, Some(name), Some(sub)) if sub == "log" && t.res.plural == "pods" => {
            logs::pod_log(&g, &inner, &uri, &ns, &name)
        }
        (Method::POST, Some(name), Some(sub))
            if sub == "token" && t.res.plural == "serviceaccounts" =>
        {
            if !g
                .objects
                .contains_key(&(rkey.clone(), ns.clone(), name.clone()))
            {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("serviceaccounts \"{name}\" not found"),
                );
            }
            g.next_rv += 1;
            let token = format!("sa-token-{ns}-{name}-{}", g.next_rv);
            g.tokens.insert(token.clone(), (ns.clone(), name.clone()));
            let req: Value = serde_json::from_str(&body).unwrap_or_default();
            axum::Json(
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"name": name, "namespace": ns}, "spec": req["spec"],
                "status": {"token": token, "expirationTimestamp": "2026-11-27T00:00:00Z"}}),
            )
            .into_response()
        }
        (Method::DELETE, Some(name), None) => {
            let k = (rkey.clone(), ns.clone(), name.clone());
            match g.objects.remove(&k) {
                Some(o) => {
                    if t.res.plural == "namespaces" {
                        g.objects.retain(|(_, n, _), _| *n != name);
                    }
                    if let Some(last) = g.requests.last_mut() {
                        last.changed = true;
                    }
                    axum::Json(o).into_response()
                }
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("{} \"{name}\" not found", t.res.plural),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} {path}"),
        ),
    }
}

/// Applies a JSON merge patch (RFC 7386): objects merge, `null` removes, the rest replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}
