//! Waiting for a deploy's workloads, and saying why one is not ready: conditions, the
//! waiting reasons of its pods' containers, recent events, and the last lines a crashing
//! container wrote (so the builder can fix its own code).

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::{ClusterDeployer, gvk_of, kube_err};
use crate::lab::LabError;

/// Lines of a crashing container's log given back, per container.
pub const LOG_LINES: i64 = 20;
/// Containers whose logs are given back, per report.
const LOG_CONTAINERS: usize = 3;
/// Characters kept of one log line.
const LOG_LINE_CHARS: usize = 240;
/// Restarts after which a crashing container is taken to crash-loop for good: the deploy
/// fails at once instead of waiting out the rollout timeout.
const CRASH_RESTARTS: i32 = 2;

/// A pod's container that is not running as it should.
struct Trouble {
    pod: String,
    container: String,
    /// The waiting reason (`CrashLoopBackOff`, `ErrImagePull`, …) and its message.
    line: String,
    restarts: i32,
    /// Whether it is hopeless without a change: crash-looping, or misconfigured.
    fatal: bool,
    exit: Option<i32>,
}

impl ClusterDeployer {
    /// Waits for the workloads among `docs`; the report of those not ready at the deadline,
    /// or as soon as one of their containers crash-loops.
    pub(super) async fn wait_rollout(&self, docs: &[&Value], ns: &str) -> Result<(), LabError> {
        let deadline = tokio::time::Instant::now() + self.rollout_timeout;
        let mut waiting: Vec<&Value> = docs
            .iter()
            .copied()
            .filter(|d| {
                matches!(
                    d["kind"].as_str(),
                    Some("Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "Pod")
                )
            })
            .collect();
        loop {
            let mut still = Vec::new();
            let mut why = Vec::new();
            for doc in waiting {
                let gvk = gvk_of(doc)?;
                let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                let o = self
                    .api(&gvk, ns)
                    .await?
                    .get(name)
                    .await
                    .map_err(kube_err)?;
                let v = serde_json::to_value(&o).map_err(kube_err)?;
                if let Err(reason) = readiness(&gvk.kind, &v) {
                    still.push(doc);
                    // Until the controller has seen the change, its pods are the old ones.
                    let troubles = if reason.contains("not yet observed") {
                        Vec::new()
                    } else {
                        self.troubles(ns, &gvk.kind, name, &v).await
                    };
                    why.push((gvk.kind.clone(), name.to_string(), reason, troubles));
                }
            }
            if still.is_empty() {
                return Ok(());
            }
            let crashing = why.iter().any(|w| w.3.iter().any(|t| t.fatal));
            if crashing || tokio::time::Instant::now() > deadline {
                let mut lines = Vec::new();
                let mut logs = Vec::new();
                for (kind, name, reason, troubles) in &why {
                    lines.push(format!("{kind} {name}: {reason}"));
                    lines.extend(troubles.iter().map(|t| t.line.clone()));
                    lines.extend(self.events(ns, name).await);
                    for t in troubles {
                        if logs.len() < LOG_CONTAINERS
                            && let Some(l) = self.last_lines(ns, t).await
                        {
                            logs.push(l);
                        }
                    }
                }
                return Err(LabError::NotReady {
                    secs: self.rollout_timeout.as_secs(),
                    crashing,
                    report: lines.join("; "),
                    logs: logs.join("\n"),
                });
            }
            waiting = still;
            tokio::time::sleep(self.poll).await;
        }
    }

    /// The containers of a workload's pods that wait, or have crashed.
    async fn troubles(&self, ns: &str, kind: &str, name: &str, v: &Value) -> Vec<Trouble> {
        let selector = v["spec"]["selector"]["matchLabels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .filter(|s| !s.is_empty());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pod_list = match (kind, selector) {
            ("Pod", _) => pods.get(name).await.map(|p| vec![p]).unwrap_or_default(),
            (_, Some(sel)) => pods
                .list(&ListParams::default().labels(&sel))
                .await
                .map(|l| l.items)
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for p in pod_list {
            let pod = p.metadata.name.clone().unwrap_or_default();
            for cs in p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
            {
                let exit = cs
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .map(|t| t.exit_code);
                let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                    continue;
                };
                let reason = w.reason.clone().unwrap_or_default();
                let fatal = match reason.as_str() {
                    "CrashLoopBackOff" => cs.restart_count >= CRASH_RESTARTS,
                    "CreateContainerConfigError" | "InvalidImageName" | "ErrImageNeverPull" => true,
                    _ => false,
                };
                out.push(Trouble {
                    line: format!(
                        "pod {pod} container {} waiting: {reason}{}{}",
                        cs.name,
                        w.message
                            .as_ref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default(),
                        match (cs.restart_count, exit) {
                            (0, _) => String::new(),
                            (n, Some(code)) => format!(", {n} restarts, last exit code {code}"),
                            (n, None) => format!(", {n} restarts"),
                        }
                    ),
                    pod: pod.clone(),
                    container: cs.name.clone(),
                    restarts: cs.restart_count,
                    fatal,
                    exit,
                });
            }
        }
        out
    }

    /// The last few events about `name`.
    async fn events(&self, ns: &str, name: &str) -> Vec<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let Ok(list) = events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
        else {
            return Vec::new();
        };
        list.items
            .iter()
            .rev()
            .take(3)
            .map(|e| {
                format!(
                    "event {}: {}",
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The last lines a container that has run wrote (its run before the last restart
    /// when it has restarted), bounded, with a heading naming it.
    async fn last_lines(&self, ns: &str, t: &Trouble) -> Option<String> {
        if t.restarts == 0 && t.exit.is_none() {
            return None;
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let text = pods
            .logs(
                &t.pod,
                &LogParams {
                    container: Some(t.container.clone()),
                    previous: t.restarts > 0,
                    tail_lines: Some(LOG_LINES),
                    limit_bytes: Some(LOG_LINES * LOG_LINE_CHARS as i64),
                    ..LogParams::default()
                },
            )
            .await
            .ok()?;
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.chars().take(LOG_LINE_CHARS).collect())
            .collect();
        if lines.is_empty() {
            return None;
        }
        Some(format!(
            "pod {} container {}{}, last lines:\n{}",
            t.pod,
            t.container,
            t.exit
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default(),
            lines.join("\n")
        ))
    }
}

/// The status of condition `type_` in `data.status.conditions`, if present.
pub(super) fn condition(data: &Value, type_: &str) -> Option<bool> {
    data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| c["status"] == "True")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Whether a workload is ready, or why not.
fn readiness(kind: &str, v: &Value) -> Result<(), String> {
    let spec = &v["spec"];
    let st = &v["status"];
    let generation = int(&v["metadata"]["generation"]);
    let observed = int(&st["observedGeneration"]);
    let conditions = || {
        st["conditions"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter(|c| c["status"] != "True" || c["type"] == "Progressing")
                    .map(|c| {
                        format!(
                            "{}={} {}",
                            c["type"].as_str().unwrap_or(""),
                            c["status"].as_str().unwrap_or(""),
                            c["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    match kind {
        "Deployment" | "StatefulSet" => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let have = if kind == "Deployment" {
                int(&st["availableReplicas"])
            } else {
                int(&st["readyReplicas"])
            };
            if generation > 0 && observed < generation {
                return Err(format!("generation {generation} not yet observed"));
            }
            // As `kubectl rollout status`: the new template's pods are all there and the
            // old ones gone, so ready replicas of the old version never pass for the new.
            if kind == "Deployment" {
                let updated = int(&st["updatedReplicas"]);
                if updated < want {
                    return Err(format!(
                        "{updated}/{want} replicas updated{}",
                        match conditions() {
                            c if c.is_empty() => String::new(),
                            c => format!(" ({c})"),
                        }
                    ));
                }
                let old = int(&st["replicas"]) - updated;
                if old > 0 {
                    return Err(format!("{old} old replicas pending termination"));
                }
            }
            if have >= want {
                Ok(())
            } else {
                Err(format!(
                    "{have}/{want} replicas {}{}",
                    if kind == "Deployment" {
                        "available"
                    } else {
                        "ready"
                    },
                    match conditions() {
                        c if c.is_empty() => String::new(),
                        c => format!(" ({c})"),
                    }
                ))
            }
        }
        "DaemonSet" => {
            let want = int(&st["desiredNumberScheduled"]);
            let have = int(&st["numberReady"]);
            if st.is_object() && have >= want && observed >= generation {
                Ok(())
            } else {
                Err(format!("{have}/{want} pods ready"))
            }
        }
        "Job" => match (condition(v, "Complete"), condition(v, "Failed")) {
            (Some(true), _) => Ok(()),
            (_, Some(true)) => Err(format!("failed ({})", conditions())),
            _ => Err("not complete".into()),
        },
        "Pod" => match condition(v, "Ready") {
            Some(true) => Ok(()),
            _ => Err(format!(
                "not ready (phase {})",
                st["phase"].as_str().unwrap_or("Unknown")
            )),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_of_each_workload_kind() {
        let dep = |avail: i64, generation: i64, obs: i64| {
            json!({"metadata": {"generation": generation}, "spec": {"replicas": 2},
                   "status": {"availableReplicas": avail, "observedGeneration": obs,
                   "replicas": 2, "updatedReplicas": 2,
                   "conditions": [{"type": "Available", "status": "False", "message": "Deployment does not have minimum availability."}]}})
        };
        assert!(readiness("Deployment", &dep(2, 1, 1)).is_ok());
        let e = readiness("Deployment", &dep(1, 1, 1)).unwrap_err();
        assert!(
            e.contains("1/2 replicas available") && e.contains("minimum availability"),
            "{e}"
        );
        assert!(
            readiness("Deployment", &dep(2, 2, 1))
                .unwrap_err()
                .contains("not yet observed")
        );
        // A rollout under way: the old version's ready pods do not count.
        let mut rolling = dep(2, 1, 1);
        rolling["status"]["updatedReplicas"] = json!(1);
        rolling["status"]["replicas"] = json!(3);
        assert!(
            readiness("Deployment", &rolling)
                .unwrap_err()
                .contains("1/2 replicas updated")
        );
        rolling["status"]["updatedReplicas"] = json!(2);
        assert_eq!(
            readiness("Deployment", &rolling).unwrap_err(),
            "1 old replicas pending termination"
        );
        let job = |t: &str| json!({"status": {"conditions": [{"type": t, "status": "True"}]}});
        assert!(readiness("Job", &job("Complete")).is_ok());
        assert!(
            readiness("Job", &job("Failed"))
                .unwrap_err()
                .starts_with("failed")
        );
        assert!(
            readiness("Pod", &json!({"status": {"phase": "Pending"}}))
                .unwrap_err()
                .contains("Pending")
        );
        assert!(readiness("ConfigMap", &json!({})).is_ok());
    }
}
