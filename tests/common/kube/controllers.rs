//! The fake's controllers: without the test kubelet, workloads are marked ready
//! (`control`); with it, Deployments and StatefulSets get pods of their template, rolled
//! when it changes (`controllers`, see `kubelet.rs`).

use serde_json::{Value, json};

use super::{Inner, Res};

/// The Deployment and StatefulSet controllers: pods for each workload's template, rolled
/// when it changes, and the workload's status from its pods.
pub(super) fn controllers(g: &mut Inner) {
    let workloads: Vec<((String, String, String), Value)> = g
        .objects
        .iter()
        .filter(|((r, _, _), _)| r == "apps/v1/deployments" || r == "apps/v1/statefulsets")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Pods whose owner is gone.
    let owners: Vec<String> = workloads
        .iter()
        .map(|((_, ns, name), _)| format!("{ns}/{name}"))
        .collect();
    g.objects.retain(|(r, ns, _), o| {
        r != "v1/pods"
            || o["metadata"]["annotations"]["fake.gaffer/owner"]
                .as_str()
                .is_none_or(|owner| owners.contains(&format!("{ns}/{owner}")))
    });
    for ((r, ns, name), w) in workloads {
        let replicas = w["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let template = &w["spec"]["template"];
        let hash = {
            use sha2::Digest as _;
            let d = sha2::Sha256::digest(template.to_string().as_bytes());
            hex::encode(&d[..5])
        };
        let ours = |o: &Value| {
            o["metadata"]["annotations"]["fake.gaffer/owner"].as_str() == Some(name.as_str())
        };
        let pods: Vec<(String, Value)> = g
            .objects
            .iter()
            .filter(|((pr, pns, _), o)| pr == "v1/pods" && *pns == ns && ours(o))
            .map(|((_, _, n), o)| (n.clone(), o.clone()))
            .collect();
        let is_ready = |o: &Value| {
            o["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        };
        let current: Vec<&(String, Value)> = pods
            .iter()
            .filter(|(_, o)| o["metadata"]["annotations"]["fake.gaffer/template"] == hash.as_str())
            .collect();
        let ready_current = current.iter().filter(|(_, o)| is_ready(o)).count();
        // Make the missing pods of the current template.
        for i in 0..replicas {
            let pname = if r == "apps/v1/statefulsets" {
                format!("{name}-{i}")
            } else {
                format!("{name}-{hash}-{i}")
            };
            let k = ("v1/pods".to_string(), ns.clone(), pname.clone());
            let stale = g.objects.get(&k).is_some_and(|o| {
                o["metadata"]["annotations"]["fake.gaffer/template"] != hash.as_str()
            });
            if stale && ready_current < replicas && r == "apps/v1/statefulsets" {
                // A StatefulSet replaces its pods in place.
                g.objects.remove(&k);
            }
            if !g.objects.contains_key(&k) {
                g.next_rv += 1;
                let mut meta = template["metadata"].clone();
                if !meta.is_object() {
                    meta = json!({});
                }
                meta["name"] = json!(pname);
                meta["namespace"] = json!(ns);
                meta["uid"] = json!(format!("uid-{}", g.next_rv));
                meta["resourceVersion"] = json!(g.next_rv.to_string());
                meta["annotations"]["fake.gaffer/owner"] = json!(name);
                meta["annotations"]["fake.gaffer/template"] = json!(hash);
                // A StatefulSet's volumeClaimTemplates: one claim per pod ordinal,
                // `<template>-<statefulset>-<i>`, kept across the pod's replacements.
                let mut spec = template["spec"].clone();
                for t in w["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let tname = t["metadata"]["name"].as_str().unwrap_or("");
                    let claim = format!("{tname}-{name}-{i}");
                    if let Some(vols) = spec["volumes"].as_array_mut() {
                        vols.push(
                            json!({"name": tname, "persistentVolumeClaim": {"claimName": claim}}),
                        );
                    } else {
                        spec["volumes"] =
                            json!([{"name": tname, "persistentVolumeClaim": {"claimName": claim}}]);
                    }
                }
                g.objects.insert(
                    k,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                        "spec": spec, "status": {"phase": "Pending"}}),
                );
            }
        }
        // Scaled down: the pods past `replicas` go (a StatefulSet's highest ordinals).
        let wanted: Vec<String> = (0..replicas)
            .map(|i| {
                if r == "apps/v1/statefulsets" {
                    format!("{name}-{i}")
                } else {
                    format!("{name}-{hash}-{i}")
                }
            })
            .collect();
        g.objects.retain(|(pr, pns, pn), o| {
            !(pr == "v1/pods"
                && *pns == ns
                && ours(o)
                && (r == "apps/v1/statefulsets"
                    || o["metadata"]["annotations"]["fake.gaffer/template"] == hash.as_str())
                && !wanted.contains(pn))
        });
        // Old pods that are not ready go at once (they serve nothing); the ready ones once
        // the new ones are all ready.
        let all_new_ready = ready_current >= replicas;
        g.objects.retain(|(pr, pns, _), o| {
            !(pr == "v1/pods"
                && *pns == ns
                && ours(o)
                && o["metadata"]["annotations"]["fake.gaffer/template"] != hash.as_str()
                && (all_new_ready || !is_ready(o)))
        });
        let total = pods.len().max(current.len());
        let ready = pods.iter().filter(|(_, o)| is_ready(o)).count();
        let generation = w["metadata"]["generation"].clone();
        let available = ready >= replicas && ready_current >= replicas;
        let st = json!({"observedGeneration": generation, "replicas": total,
        "updatedReplicas": current.len(), "readyReplicas": ready, "availableReplicas": ready,
        "unavailableReplicas": total.saturating_sub(ready),
        "conditions": [if available {
            json!({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"})
        } else {
            json!({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability."})
        }]});
        if let Some(o) = g.objects.get_mut(&(r.clone(), ns.clone(), name.clone())) {
            o["status"] = st;
        }
    }
}

/// The fake's controllers: workloads become ready (unless listed as never ready), CRDs
/// become Established and serve their kinds.
pub(super) fn control(g: &mut Inner) {
    let keys: Vec<(String, String, String)> = g.objects.keys().cloned().collect();
    let mut extra: Vec<((String, String, String), Value)> = Vec::new();
    let mut new_res = Vec::new();
    for k in keys {
        let o = g.objects.get_mut(&k).unwrap();
        let generation = o["metadata"]["generation"].clone();
        let replicas = o["spec"]["replicas"].as_i64().unwrap_or(1);
        match k.0.as_str() {
            "apps/v1/deployments" | "apps/v1/statefulsets" | "v1/pods" if g.kubelet => {}
            "apps/v1/deployments" => {
                if g.never_ready.contains(&k.2) {
                    o["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                        "updatedReplicas": replicas, "availableReplicas": 0, "unavailableReplicas": replicas,
                        "conditions": [
                            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                             "message": "Deployment does not have minimum availability."},
                            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                             "message": format!("ReplicaSet \"{}-7d9f\" is progressing.", k.2)}]});
                    let labels = o["spec"]["selector"]["matchLabels"].clone();
                    let image = o["spec"]["template"]["spec"]["containers"][0]["image"].clone();
                    let container = o["spec"]["template"]["spec"]["containers"][0]["name"].clone();
                    let pod = format!("{}-7d9f-x2x4q", k.2);
                    extra.push(((String::from("v1/pods"), k.1.clone(), pod.clone()), json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod, "namespace": k.1, "labels": labels},
                        "status": {"phase": "Pending", "containerStatuses": [{"name": container, "ready": false,
                            "restartCount": 0, "image": image, "imageID": "",
                            "state": {"waiting": {"reason": "ImagePullBackOff",
                                "message": format!("Back-off pulling image {}", image.as_str().unwrap_or(""))}}}]}})));
                    let ev = format!("{}.backoff", k.2);
                    extra.push((
                        (String::from("v1/events"), k.1.clone(), ev.clone()),
                        json!({
                        "apiVersion": "v1", "kind": "Event",
                        "metadata": {"name": ev, "namespace": k.1},
                        "involvedObject": {"kind": "Deployment", "name": k.2, "namespace": k.1},
                        "reason": "FailedCreatePodSandBox",
                        "message": "pulling the image failed: not found", "type": "Warning"}),
                    ));
                } else {
                    o["status"] = json!({"observedGeneration": generation, "replicas": replicas,
                        "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                        "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]});
                }
            }
            "apps/v1/statefulsets" => {
                o["status"] = json!({"observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas});
            }
            "apps/v1/daemonsets" => {
                o["status"] = json!({"observedGeneration": generation, "desiredNumberScheduled": 1, "numberReady": 1});
            }
            "batch/v1/jobs" => {
                o["status"] =
                    json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
            }
            "v1/pods" if o["status"].is_null() => {
                o["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
            }
            "apiextensions.k8s.io/v1/customresourcedefinitions" => {
                o["status"] = json!({"conditions": [{"type": "Established", "status": "True"}]});
                let spec = &o["spec"];
                for v in spec["versions"].as_array().cloned().unwrap_or_default() {
                    new_res.push(Res {
                        group: spec["group"].as_str().unwrap_or("").into(),
                        version: v["name"].as_str().unwrap_or("").into(),
                        plural: spec["names"]["plural"].as_str().unwrap_or("").into(),
                        kind: spec["names"]["kind"].as_str().unwrap_or("").into(),
                        namespaced: spec["scope"] == "Namespaced",
                    });
                }
            }
            _ => {}
        }
    }
    for (k, v) in extra {
        g.objects.entry(k).or_insert(v);
    }
    for r in new_res {
        if !g
            .resources
            .iter()
            .any(|x| x.group == r.group && x.version == r.version && x.plural == r.plural)
        {
            g.resources.push(r);
        }
    }
}
