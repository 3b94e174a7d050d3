//! A test kubelet for the fake Kubernetes API: the pods the fake's controllers make (and
//! pods applied as such) run as local processes, so what a lab deploys really runs.
//!
//! - **Controllers.** A Deployment (or StatefulSet) gets `replicas` pods of its template,
//!   named by a hash of the template; a changed template rolls: the new pods start, the old
//!   ones stay until the new ones are ready (so a broken change never takes the lab down,
//!   and `updatedReplicas` tells the rollout apart).
//! - **Containers.** Each container's `command` + `args` runs on this machine; the image is
//!   ignored. A command that is not installed here gets the waiting reason `ErrImagePull`
//!   with a message that says so. Env comes from the spec (`value`, ConfigMap and Secret key
//!   refs, `envFrom`, and the downward API's `status.podIP`, `metadata.name`,
//!   `metadata.namespace`); ConfigMap, Secret and emptyDir volumes are directories of the
//!   pod, a PersistentVolumeClaim's a directory of the claim that outlives its pods, and a
//!   container's `mountPath` (in its command, args, env values and working dir) is
//!   rewritten to that directory.
//! - **Network.** Each pod gets its own loopback address (a random 127.x.y.z, so tests that
//!   run in parallel do not meet); an app must listen on its pod's IP (`status.podIP`), as
//!   the lab templates do. The fake's ingress proxy (`proxy.rs`) routes Ingress hosts and
//!   Service names to ready pods.
//! - **Health.** Readiness comes from the readiness probe (`httpGet`, `tcpSocket`, `exec`),
//!   or from the process running when there is none; a container that exits restarts as
//!   its pod's `restartPolicy` says, after a back-off that doubles (from 200 ms to 3.2 s),
//!   waiting meanwhile as `CrashLoopBackOff`.
//! - **Logs.** stdout and stderr go to a file per container (the one before the last
//!   restart is kept as `previous`), served by `pods/<name>/log`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Inner;
use super::controllers::controllers;

type PodKey = (String, String);

/// The kubelet's thread; stops every process it started when dropped.
pub(super) struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelet {
    pub(super) fn start(inner: Arc<Mutex<Inner>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // PersistentVolumeClaims' directories, by namespace and claim, for the kubelet's
        // lifetime (a claim outlives its pods).
        let claims = tempfile::tempdir().unwrap();
        inner.lock().unwrap().claims = Some(claims.path().to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut pods: BTreeMap<PodKey, Pod> = BTreeMap::new();
            while !flag.load(Ordering::Relaxed) {
                step(&inner, &mut pods, claims.path());
                std::thread::sleep(Duration::from_millis(50));
            }
            for (_, p) in std::mem::take(&mut pods) {
                p.stop();
            }
        });
        Kubelet {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One pod the kubelet runs.
struct Pod {
    name: String,
    uid: String,
    ip: Ipv4Addr,
    dir: tempfile::TempDir,
    restart: String,
    containers: Vec<Ctr>,
}

/// One container of a pod.
struct Ctr {
    name: String,
    image: String,
    spec: Value,
    /// What to run, or why it cannot run (reason, message).
    run: Result<Prepared, (String, String)>,
    child: Option<Child>,
    restarts: u32,
    started_at: Option<String>,
    next_start: Option<Instant>,
    last_exit: Option<i32>,
    done: bool,
    ready: bool,
    last_probe: Option<Instant>,
    log: PathBuf,
}

struct Prepared {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

impl Pod {
    fn stop(self) {
        for mut c in self.containers {
            if let Some(child) = c.child.take() {
                kill_group(child);
            }
        }
    }
}

/// Stops a container's process and everything it started (its own process group).
fn kill_group(mut child: Child) {
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
    for _ in 0..20 {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
    let _ = child.kill();
    let _ = child.wait();
}

/// One pass: controllers, then start, watch and probe the pods, then publish statuses.
fn step(inner: &Arc<Mutex<Inner>>, pods: &mut BTreeMap<PodKey, Pod>, claims: &Path) {
    let mut path = std::ffi::OsString::new();
    let (want, objects) = {
        let mut g = inner.lock().unwrap();
        controllers(&mut g);
        path.clone_from(&g.kubelet_path);
        let want: BTreeMap<PodKey, Value> = g
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == "v1/pods")
            .map(|((_, ns, name), o)| ((ns.clone(), name.clone()), o.clone()))
            .collect();
        // ConfigMaps and Secrets, for pods about to start.
        let objects: BTreeMap<(String, String, String), Value> = if want
            .iter()
            .any(|(k, o)| pods.get(k).is_none_or(|p| p.uid != uid(o)))
        {
            g.objects
                .iter()
                .filter(|((r, _, _), _)| r == "v1/configmaps" || r == "v1/secrets")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        (want, objects)
    };
    // Pods deleted (or made again under the same name): stop them.
    let gone: Vec<PodKey> = pods
        .iter()
        .filter(|(k, p)| want.get(*k).is_none_or(|o| uid(o) != p.uid))
        .map(|(k, _)| k.clone())
        .collect();
    for k in gone {
        if let Some(p) = pods.remove(&k) {
            p.stop();
        }
    }
    for (k, o) in &want {
        if !pods.contains_key(k) {
            pods.insert(k.clone(), prepare(k, o, &objects, &path, claims));
        }
    }
    for p in pods.values_mut() {
        for c in &mut p.containers {
            tend(c, &p.restart, p.ip);
        }
    }
    let mut g = inner.lock().unwrap();
    for (k, p) in pods.iter() {
        let obj_key = ("v1/pods".to_string(), k.0.clone(), k.1.clone());
        if let Some(o) = g.objects.get_mut(&obj_key) {
            o["status"] = status(p);
        }
        g.pod_logs.insert(k.clone(), p.dir.path().join("logs"));
    }
    g.pod_logs.retain(|k, _| pods.contains_key(k));
}

fn uid(o: &Value) -> String {
    o["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// A random loopback address other than 127.0.0.1.
fn pod_ip() -> Ipv4Addr {
    loop {
        let ip = Ipv4Addr::new(
            127,
            fastrand::u8(1..255),
            fastrand::u8(..),
            fastrand::u8(1..255),
        );
        if std::net::TcpListener::bind((ip, 0)).is_ok() {
            return ip;
        }
    }
}

/// Makes a pod's directories and works out each container's command, or why it cannot run.
fn prepare(
    key: &PodKey,
    o: &Value,
    objects: &BTreeMap<(String, String, String), Value>,
    path: &std::ffi::OsStr,
    claims: &Path,
) -> Pod {
    let (ns, name) = key;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let ip = pod_ip();
    let spec = &o["spec"];
    let get = |kind: &str, n: &str| objects.get(&(format!("v1/{kind}"), ns.clone(), n.to_string()));
    // Volumes: name → directory, or why it cannot be made.
    let mut volumes: BTreeMap<String, Result<PathBuf, String>> = BTreeMap::new();
    for v in spec["volumes"].as_array().cloned().unwrap_or_default() {
        let vname = v["name"].as_str().unwrap_or("").to_string();
        // A claim's directory belongs to the claim, not the pod: it outlives the pod.
        let path = match v["persistentVolumeClaim"]["claimName"].as_str() {
            Some(claim) => claims.join(ns).join(claim),
            None => dir.path().join("volumes").join(&vname),
        };
        std::fs::create_dir_all(&path).unwrap();
        let files = if let Some(cm) = v["configMap"]["name"].as_str() {
            match get("configmaps", cm) {
                Some(c) => Ok(data_of(c, false)),
                None => Err(format!("configmap \"{cm}\" not found")),
            }
        } else if let Some(s) = v["secret"]["secretName"].as_str() {
            match get("secrets", s) {
                Some(c) => Ok(data_of(c, true)),
                None => Err(format!("secret \"{s}\" not found")),
            }
        } else {
            // emptyDir and the rest: an empty directory of the pod's; a claim's, as it is.
            Ok(BTreeMap::new())
        };
        let made = files.map(|files| {
            for (k, bytes) in files {
                std::fs::write(path.join(k), bytes).unwrap();
            }
            path
        });
        volumes.insert(vname, made);
    }
    let containers = spec["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            let run = command_of(&c, dir.path(), &volumes, ip, o, &get, path);
            Ctr {
                name: cname.clone(),
                image: c["image"].as_str().unwrap_or("").to_string(),
                spec: c,
                run,
                child: None,
                restarts: 0,
                started_at: None,
                next_start: Some(Instant::now()),
                last_exit: None,
                done: false,
                ready: false,
                last_probe: None,
                log: dir.path().join("logs").join(format!("{cname}.log")),
            }
        })
        .collect();
    Pod {
        name: name.clone(),
        uid: uid(o),
        ip,
        dir,
        restart: spec["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string(),
        containers,
    }
}

/// A ConfigMap's or Secret's keys and contents.
fn data_of(o: &Value, secret: bool) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    let mut out = BTreeMap::new();
    for (k, v) in o["data"].as_object().cloned().unwrap_or_default() {
        let s = v.as_str().unwrap_or("");
        let bytes = if secret {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .unwrap_or_default()
        } else {
            s.as_bytes().to_vec()
        };
        out.insert(k, bytes);
    }
    for key in ["binaryData", "stringData"] {
        for (k, v) in o[key].as_object().cloned().unwrap_or_default() {
            let s = v.as_str().unwrap_or("");
            let bytes = if key == "binaryData" {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .unwrap_or_default()
            } else {
                s.as_bytes().to_vec()
            };
            out.insert(k, bytes);
        }
    }
    out
}

/// The program, arguments, env and working directory of a container, or the waiting
/// reason and message that keep it from starting.
fn command_of<'a>(
    c: &Value,
    pod_dir: &Path,
    volumes: &BTreeMap<String, Result<PathBuf, String>>,
    ip: Ipv4Addr,
    pod: &Value,
    get: &dyn Fn(&str, &str) -> Option<&'a Value>,
    path: &std::ffi::OsStr,
) -> Result<Prepared, (String, String)> {
    let config_error = |m: String| ("CreateContainerConfigError".to_string(), m);
    // mountPath → directory, longest first so nested mounts win.
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
        let vname = m["name"].as_str().unwrap_or("");
        let dir = match volumes.get(vname) {
            Some(Ok(d)) => d.clone(),
            Some(Err(e)) => return Err(config_error(e.clone())),
            None => {
                return Err(config_error(format!(
                    "volume \"{vname}\" is not in the pod"
                )));
            }
        };
        let dir = match m["subPath"].as_str() {
            Some(s) if !s.is_empty() => dir.join(s),
            _ => dir,
        };
        let at = m["mountPath"].as_str().unwrap_or("").trim_end_matches('/');
        mounts.push((at.to_string(), dir));
    }
    mounts.sort_by_key(|(at, _)| std::cmp::Reverse(at.len()));
    // Every mention of a mount path as a path (`/app`, `/app/main.py`, `--x=/app`, inside
    // `sh -c '… /app/x …'`), not as part of a longer name (`/application`); one pass, so a
    // directory put in for one mount is never rewritten for another (`/tmp`).
    let rewrite = |s: &str| -> String {
        let mut out = String::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            let before = s[..i].chars().next_back();
            let starts = before.is_none_or(|c| c.is_whitespace() || "='\":".contains(c));
            let hit = starts
                .then(|| {
                    mounts.iter().find(|(at, _)| {
                        !at.is_empty()
                            && s[i..].starts_with(at.as_str())
                            && s[i + at.len()..]
                                .chars()
                                .next()
                                .is_none_or(|c| c == '/' || c.is_whitespace() || "'\"".contains(c))
                    })
                })
                .flatten();
            match hit {
                Some((at, dir)) => {
                    out.push_str(&dir.display().to_string());
                    i += at.len();
                }
                None => {
                    let c = s[i..].chars().next().unwrap();
                    out.push(c);
                    i += c.len_utf8();
                }
            }
        }
        out
    };
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path.to_string_lossy().into_owned()),
        (
            "HOSTNAME".into(),
            pod["metadata"]["name"].as_str().unwrap_or("").into(),
        ),
        ("HOME".into(), pod_dir.display().to_string()),
    ];
    for from in c["envFrom"].as_array().cloned().unwrap_or_default() {
        let (kind, name, secret) = if let Some(n) = from["configMapRef"]["name"].as_str() {
            ("configmaps", n, false)
        } else if let Some(n) = from["secretRef"]["name"].as_str() {
            ("secrets", n, true)
        } else {
            continue;
        };
        let Some(o) = get(kind, name) else {
            return Err(config_error(format!(
                "{} \"{name}\" not found",
                &kind[..kind.len() - 1]
            )));
        };
        for (k, v) in data_of(o, secret) {
            env.push((k, String::from_utf8_lossy(&v).into_owned()));
        }
    }
    for e in c["env"].as_array().cloned().unwrap_or_default() {
        let name = e["name"].as_str().unwrap_or("").to_string();
        let value = if let Some(v) = e["value"].as_str() {
            rewrite(v)
        } else if let Some(path) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match path {
                "status.podIP" => ip.to_string(),
                "metadata.name" => pod["metadata"]["name"].as_str().unwrap_or("").into(),
                "metadata.namespace" => pod["metadata"]["namespace"].as_str().unwrap_or("").into(),
                other => {
                    return Err(config_error(format!(
                        "fieldRef {other} is not supported by the test kubelet"
                    )));
                }
            }
        } else {
            let (kind, r, secret) = if e["valueFrom"]["configMapKeyRef"].is_object() {
                ("configmaps", &e["valueFrom"]["configMapKeyRef"], false)
            } else if e["valueFrom"]["secretKeyRef"].is_object() {
                ("secrets", &e["valueFrom"]["secretKeyRef"], true)
            } else {
                continue;
            };
            let (n, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            let optional = r["optional"].as_bool().unwrap_or(false);
            match get(kind, n)
                .map(|o| data_of(o, secret))
                .and_then(|d| d.get(key).cloned())
            {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None if optional => continue,
                None => {
                    return Err(config_error(format!(
                        "couldn't find key {key} in {} {}/{n}",
                        if secret { "Secret" } else { "ConfigMap" },
                        pod["metadata"]["namespace"].as_str().unwrap_or("")
                    )));
                }
            }
        };
        env.push((name, value));
    }
    // `$(VAR)` in command and args is the container's env var, as Kubernetes expands it
    // (`$$` escapes; an unknown name stays as written).
    let expand = |a: &str| -> String {
        let mut out = String::new();
        let mut rest = a;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('(')
                && let Some(end) = inner.find(')')
                && let Some((_, v)) = env.iter().rev().find(|(k, _)| *k == inner[..end])
            {
                out.push_str(v);
                rest = &inner[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    };
    let argv: Vec<String> = c["command"]
        .as_array()
        .into_iter()
        .chain(c["args"].as_array())
        .flatten()
        .map(|a| rewrite(&expand(a.as_str().unwrap_or(""))))
        .collect();
    let image = c["image"].as_str().unwrap_or("");
    let Some((first, args)) = argv.split_first() else {
        return Err((
            "ErrImagePull".into(),
            format!(
                "the test kubelet runs a container's command on this machine, and {image} has none in the spec (its entrypoint is not run)"
            ),
        ));
    };
    let program = if first.contains('/') {
        Some(PathBuf::from(first)).filter(|p| p.is_file())
    } else {
        let path = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(first))
            .find(|p| p.is_file())
    };
    let Some(program) = program else {
        return Err((
            "ErrImagePull".into(),
            format!(
                "the test kubelet runs a container's command on this machine, and `{first}` is not installed here (image {image} is not pulled)"
            ),
        ));
    };
    let cwd = match c["workingDir"].as_str() {
        Some(w) if !w.is_empty() => {
            let r = PathBuf::from(rewrite(w));
            // Inside one of the pod's volumes: made when missing, as container runtimes do.
            if r.starts_with(pod_dir) || mounts.iter().any(|(_, dir)| r.starts_with(dir)) {
                std::fs::create_dir_all(&r).unwrap();
                r
            } else {
                let d = pod_dir.join("workdir");
                std::fs::create_dir_all(&d).unwrap();
                d
            }
        }
        _ => pod_dir.to_path_buf(),
    };
    Ok(Prepared {
        program,
        args: args.to_vec(),
        env,
        cwd,
    })
}

/// Starts, restarts and probes one container.
fn tend(c: &mut Ctr, restart: &str, ip: Ipv4Addr) {
    let Ok(run) = &c.run else {
        return;
    };
    if let Some(child) = &mut c.child
        && let Ok(Some(st)) = child.try_wait()
    {
        c.child = None;
        c.ready = false;
        let code = st.code().unwrap_or(137);
        c.last_exit = Some(code);
        let again = match restart {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if again {
            let backoff = Duration::from_millis(200 * 2u64.pow(c.restarts.min(4)));
            c.next_start = Some(Instant::now() + backoff);
        } else {
            c.done = true;
        }
    }
    if c.child.is_none() && !c.done && c.next_start.is_some_and(|t| Instant::now() >= t) {
        if c.last_exit.is_some() {
            c.restarts += 1;
            let _ = std::fs::rename(&c.log, c.log.with_extension("previous.log"));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&c.log)
            .unwrap();
        let child = Command::new(&run.program)
            .args(&run.args)
            .envs(run.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&run.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn();
        c.next_start = None;
        match child {
            Ok(ch) => {
                c.child = Some(ch);
                c.started_at = Some(
                    jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap()
                        .to_string(),
                );
            }
            Err(e) => {
                c.run = Err((
                    "RunContainerError".into(),
                    format!("{}: {e}", run.program.display()),
                ));
                return;
            }
        }
    }
    if c.child.is_some()
        && c.last_probe
            .is_none_or(|t| t.elapsed() > Duration::from_millis(200))
    {
        c.last_probe = Some(Instant::now());
        c.ready = probe(&c.spec, ip, run);
    }
}

/// The port a probe names: a number, or the name of one of the container's ports.
fn port_of(c: &Value, p: &Value) -> Option<u16> {
    if let Some(n) = p.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = p.as_str()?;
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    c["ports"]
        .as_array()?
        .iter()
        .find(|x| x["name"].as_str() == Some(name))
        .and_then(|x| x["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// Whether a running container is ready: its readiness probe passes, or it has none.
fn probe(c: &Value, ip: Ipv4Addr, run: &Prepared) -> bool {
    let p = &c["readinessProbe"];
    if p.is_null() {
        return true;
    }
    let timeout = Duration::from_millis(500);
    if p["httpGet"].is_object() {
        let Some(port) = port_of(c, &p["httpGet"]["port"]) else {
            return false;
        };
        let path = p["httpGet"]["path"].as_str().unwrap_or("/");
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\n\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        // The whole answer, as a kubelet reads it: a probe that hangs up early makes the
        // app's write fail.
        let mut answer = Vec::new();
        let _ = (&mut s).take(64 * 1024).read_to_end(&mut answer);
        let line = String::from_utf8_lossy(&answer);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        return (200..400).contains(&code);
    }
    if p["tcpSocket"].is_object() {
        return port_of(c, &p["tcpSocket"]["port"]).is_some_and(|port| {
            TcpStream::connect_timeout(&SocketAddr::from((ip, port)), timeout).is_ok()
        });
    }
    if let Some(cmd) = p["exec"]["command"].as_array() {
        let argv: Vec<&str> = cmd.iter().filter_map(|a| a.as_str()).collect();
        return argv.split_first().is_some_and(|(first, rest)| {
            Command::new(first)
                .args(rest)
                .envs(run.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&run.cwd)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }
    true
}

/// The pod's `status`, as a kubelet reports it.
fn status(p: &Pod) -> Value {
    let mut statuses = Vec::new();
    for c in &p.containers {
        let state = match (&c.run, &c.child) {
            (Err((reason, message)), _) => {
                json!({"waiting": {"reason": reason, "message": message}})
            }
            (Ok(_), Some(_)) => json!({"running": {"startedAt": c.started_at}}),
            (Ok(_), None) if c.done => json!({"terminated": {
                "exitCode": c.last_exit.unwrap_or(0),
                "reason": if c.last_exit == Some(0) { "Completed" } else { "Error" }}}),
            (Ok(_), None) if c.last_exit.is_some() => json!({"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off restarting failed container {} in pod {}", c.name, p.name)}}),
            (Ok(_), None) => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        let mut s = json!({"name": c.name, "image": c.image, "imageID": "",
            "ready": c.ready, "restartCount": c.restarts, "started": c.child.is_some(),
            "state": state});
        if let Some(code) = c.last_exit.filter(|_| c.restarts > 0 || c.child.is_none()) {
            s["lastState"] = json!({"terminated": {"exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" }}});
        }
        statuses.push(s);
    }
    let ready = p.containers.iter().all(|c| c.ready);
    let phase = if p.containers.iter().all(|c| c.done) && !p.containers.is_empty() {
        if p.containers.iter().all(|c| c.last_exit == Some(0)) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if p
        .containers
        .iter()
        .any(|c| c.child.is_some() || c.last_exit.is_some())
    {
        "Running"
    } else {
        "Pending"
    };
    let r = if ready { "True" } else { "False" };
    json!({"phase": phase, "podIP": p.ip.to_string(), "podIPs": [{"ip": p.ip.to_string()}],
        "hostIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": r}, {"type": "ContainersReady", "status": r}],
        "containerStatuses": statuses})
}
