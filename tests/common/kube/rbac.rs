//! Who may do what in the fake API: RBAC for service-account tokens (Roles, ClusterRoles and
//! their bindings, `resourceNames`), Kubernetes' escalation check for RBAC writes, and the
//! admission policy of `manifests/base/admission-policy.yaml`, emulated.

use serde_json::Value;

use super::{ADMIN_TOKEN, Inner, Res};

/// Whether the bearer token may `verb` `res` (object `name`, if any) in `ns`: the
/// administrator may do anything; a service account token what its bindings grant —
/// ClusterRoleBindings (to ClusterRoles) anywhere, RoleBindings in `ns` (to a Role there or
/// a ClusterRole), rules matched by group, resource, verb and `resourceNames`.
pub(super) fn allowed(
    g: &Inner,
    token: &str,
    verb: &str,
    res: &Res,
    ns: &str,
    name: Option<&str>,
) -> bool {
    if token == ADMIN_TOKEN {
        return true;
    }
    let Some((sa_ns, sa)) = g.tokens.get(token) else {
        return false;
    };
    let names_sa = |b: &Value| {
        b["subjects"].as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"].as_str() == Some(sa)
                    && s["namespace"].as_str() == Some(sa_ns)
            })
        })
    };
    let grants = |role: Option<&Value>| {
        let any = |list: &Value, want: &str| {
            list.as_array()
                .is_some_and(|l| l.iter().any(|x| x == "*" || x == want))
        };
        role.and_then(|r| r["rules"].as_array())
            .is_some_and(|rules| {
                rules.iter().any(|rule| {
                    any(&rule["apiGroups"], &res.group)
                        && any(&rule["resources"], &res.plural)
                        && any(&rule["verbs"], verb)
                        && (rule["resourceNames"].is_null()
                            || name.is_some_and(|n| any(&rule["resourceNames"], n)))
                })
            })
    };
    let rbac = "rbac.authorization.k8s.io/v1";
    let cluster_role = |n: &str| {
        g.objects
            .get(&(format!("{rbac}/clusterroles"), String::new(), n.to_string()))
    };
    for ((r, _, _), b) in &g.objects {
        if *r == format!("{rbac}/clusterrolebindings")
            && names_sa(b)
            && grants(cluster_role(b["roleRef"]["name"].as_str().unwrap_or("")))
        {
            return true;
        }
    }
    if ns.is_empty() {
        return false;
    }
    for ((r, n, _), b) in &g.objects {
        if *r != format!("{rbac}/rolebindings") || n != ns || !names_sa(b) {
            continue;
        }
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        let role = match b["roleRef"]["kind"].as_str() {
            Some("Role") => g.objects.get(&(
                format!("{rbac}/roles"),
                ns.to_string(),
                role_name.to_string(),
            )),
            Some("ClusterRole") => cluster_role(role_name),
            _ => None,
        };
        if grants(role) {
            return true;
        }
    }
    false
}

/// Kubernetes' RBAC escalation check for a service account writing a Role or RoleBinding:
/// it may grant only what it holds itself in that namespace, and bind only roles whose
/// rules it holds or that it may `bind` by name. `Err` is the API server's message.
pub(super) fn escalation(
    g: &Inner,
    token: &str,
    res: &Res,
    ns: &str,
    body: &str,
) -> Result<(), String> {
    if token == ADMIN_TOKEN || res.group != "rbac.authorization.k8s.io" {
        return Ok(());
    }
    let obj: Value = serde_json::from_str(body).unwrap_or_default();
    let holds = |rules: &Value| -> Option<String> {
        for rule in rules.as_array().into_iter().flatten() {
            for group in rule["apiGroups"].as_array().into_iter().flatten() {
                for r in rule["resources"].as_array().into_iter().flatten() {
                    for verb in rule["verbs"].as_array().into_iter().flatten() {
                        let want = Res {
                            group: group.as_str().unwrap_or("").into(),
                            version: String::new(),
                            plural: r.as_str().unwrap_or("").into(),
                            kind: String::new(),
                            namespaced: true,
                        };
                        if !allowed(g, token, verb.as_str().unwrap_or(""), &want, ns, None) {
                            return Some(format!(
                                "{{APIGroups:[{group}], Resources:[{r}], Verbs:[{verb}]}}"
                            ));
                        }
                    }
                }
            }
        }
        None
    };
    let missing = match res.plural.as_str() {
        "roles" | "clusterroles" => holds(&obj["rules"]),
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj["roleRef"]["kind"].as_str().unwrap_or("");
            let name = obj["roleRef"]["name"].as_str().unwrap_or("");
            let (plural, rns) = if kind == "ClusterRole" {
                ("clusterroles", "")
            } else {
                ("roles", ns)
            };
            let bind = Res {
                group: "rbac.authorization.k8s.io".into(),
                version: String::new(),
                plural: plural.into(),
                kind: String::new(),
                namespaced: kind != "ClusterRole",
            };
            if allowed(g, token, "bind", &bind, ns, Some(name)) {
                None
            } else {
                g.objects
                    .get(&(
                        format!("rbac.authorization.k8s.io/v1/{plural}"),
                        rns.into(),
                        name.into(),
                    ))
                    .and_then(|role| holds(&role["rules"]))
            }
        }
        _ => None,
    };
    match missing {
        Some(rule) => Err(format!(
            "{} \"{}\" is forbidden: user is attempting to grant RBAC permissions not currently held: {rule}",
            res.plural,
            obj["metadata"]["name"].as_str().unwrap_or("")
        )),
        None => Ok(()),
    }
}

/// The admission policy of manifests/base/admission-policy.yaml, emulated (the fake has no
/// CEL): once its binding exists, the service account its match condition names may change
/// namespaced objects only in its own namespace and in namespaces labelled managed-by
/// gaffer, create only `*-lab` namespaces with that label, and change or delete only
/// namespaces that carry it. `Err` is the API server's message.
pub(super) fn admitted(
    g: &Inner,
    token: &str,
    write: bool,
    res: &Res,
    ns: &str,
    name: &str,
    body: &str,
) -> Result<(), String> {
    const POLICY: &str = "gaffer-stays-in-its-labs";
    let adm = "admissionregistration.k8s.io/v1";
    let bound = g.objects.contains_key(&(
        format!("{adm}/validatingadmissionpolicybindings"),
        String::new(),
        POLICY.into(),
    ));
    let Some(policy) = g.objects.get(&(
        format!("{adm}/validatingadmissionpolicies"),
        String::new(),
        POLICY.into(),
    )) else {
        return Ok(());
    };
    let Some((sa_ns, sa)) = g.tokens.get(token) else {
        return Ok(());
    };
    let user = format!("system:serviceaccount:{sa_ns}:{sa}");
    let matches = policy["spec"]["matchConditions"]
        .as_array()
        .is_some_and(|c| {
            c.iter().any(|c| {
                c["expression"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("\"{user}\"")))
            })
        });
    if !bound || !write || !matches {
        return Ok(());
    }
    let managed = |o: Option<&Value>| {
        o.is_some_and(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gaffer")
    };
    let deny = |m: &str| {
        Err(format!(
            "ValidatingAdmissionPolicy '{POLICY}' with binding '{POLICY}' denied request: {m}"
        ))
    };
    if res.plural == "namespaces" {
        let old = g
            .objects
            .get(&("v1/namespaces".into(), String::new(), name.to_string()));
        let new: Value = serde_json::from_str(body).unwrap_or_default();
        let ok = match old {
            None => name.ends_with("-lab") && managed(Some(&new)),
            Some(_) => managed(old),
        };
        if !ok {
            return deny(
                "gaffer creates only *-lab namespaces labelled managed-by gaffer, and changes only those",
            );
        }
        return Ok(());
    }
    if res.namespaced
        && ns != sa_ns
        && !managed(
            g.objects
                .get(&("v1/namespaces".into(), String::new(), ns.to_string())),
        )
    {
        return deny("gaffer changes objects only in the lab namespaces it manages");
    }
    Ok(())
}
