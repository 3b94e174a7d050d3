//! The leader lease: with two reconcilers (a rolling update, a second replica), exactly one
//! acts. A `coordination.k8s.io/v1` Lease names the holder; the others wait.
//!
//! - **Acquire**: create the Lease, or take it over when it is free (no holder) or has not
//!   changed for its duration *as this process observed it* (a local clock from the moment
//!   the record was first seen, never the holder's `renewTime`, so clocks that disagree
//!   cannot end a live lease early). Writes carry the `resourceVersion` they read: two
//!   takers race, the API server lets one win (409 for the other).
//! - **Keep**: renew every third of the duration; a renewal that cannot succeed for two
//!   thirds of it means another may take over, so the holder stops acting (the process
//!   exits and is restarted, to wait again).
//! - **Release** on a graceful stop, after in-flight steps finished: the holder is cleared,
//!   so a waiting reconciler takes over at once instead of after the duration.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// A lease gaffer holds or waits for.
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl std::fmt::Debug for LeaderLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderLease")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

/// What `NAMESPACE/NAME` names, checked (DNS-1123 labels).
pub fn parse_lease(spec: &str) -> Result<(String, String), String> {
    let label = |s: &str| crate::names::check(crate::names::NameKind::Id, s);
    match spec.split_once('/') {
        Some((ns, name)) => match label(ns).and_then(|()| label(name)) {
            Ok(()) => Ok((ns.to_string(), name.to_string())),
            Err(e) => Err(format!("--leader-lease {spec:?}: {e}")),
        },
        None => Err(format!("--leader-lease {spec:?}: expected NAMESPACE/NAME")),
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl LeaderLease {
    /// The lease `namespace/name` on the cluster of `client`, held as `identity`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaderLease {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Waits until this process holds the lease. Errors of the API are logged and retried.
    pub async fn acquire(&self) {
        let retry = (self.duration / 3).max(Duration::from_millis(200));
        // The record last seen and when this process first saw it.
        let mut seen: Option<(String, tokio::time::Instant)> = None;
        let mut said = false;
        loop {
            match self.try_acquire(&mut seen).await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "leading: this reconciler holds the lease");
                    return;
                }
                Ok(false) => {
                    if !said {
                        tracing::info!(lease = %self.name, "another reconciler leads; waiting for the lease");
                        said = true;
                    }
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "the leader lease"),
            }
            tokio::time::sleep(retry).await;
        }
    }

    async fn try_acquire(
        &self,
        seen: &mut Option<(String, tokio::time::Instant)>,
    ) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let rv = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let free = holder.is_empty() || holder == self.identity;
        let expired = match seen {
            Some((v, at)) if *v == rv => {
                let d =
                    Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
                at.elapsed() > d
            }
            _ => {
                *seen = Some((rv.clone(), tokio::time::Instant::now()));
                false
            }
        };
        if !free && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
        let mut taken = current.clone();
        taken.spec = Some(self.spec(transitions, None));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &taken)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Renews the lease until it cannot be renewed for two thirds of its duration (or
    /// another holds it): then returns, and the caller stops acting.
    pub async fn keep(&self) -> String {
        let every = (self.duration / 3).max(Duration::from_millis(100));
        let deadline = self.duration * 2 / 3;
        let mut last_ok = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            match self.renew().await {
                Ok(true) => last_ok = tokio::time::Instant::now(),
                Ok(false) => return "another reconciler holds the lease".into(),
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the leader lease");
                    if last_ok.elapsed() > deadline {
                        return format!("the lease could not be renewed for {deadline:?}: {e}");
                    }
                }
            }
        }
    }

    async fn renew(&self) -> Result<bool, kube::Error> {
        let mut current = self.api.get(&self.name).await?;
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        current.spec = Some(self.spec(
            spec.lease_transitions.unwrap_or(0),
            spec.acquire_time.clone(),
        ));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &current)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (if still held), so a waiting reconciler takes over at once.
    pub async fn release(&self) {
        let r = async {
            let mut current = self.api.get(&self.name).await?;
            let mut spec = current.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok::<_, kube::Error>(());
            }
            spec.holder_identity = None;
            spec.renew_time = Some(now());
            current.spec = Some(spec);
            self.api
                .replace(&self.name, &PostParams::default(), &current)
                .await
                .map(|_| ())
        }
        .await;
        match r {
            Ok(()) => tracing::info!(lease = %self.name, "released the leader lease"),
            Err(e) => tracing::warn!(lease = %self.name, error = %e, "releasing the leader lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_named_by_two_dns_labels() {
        assert_eq!(
            parse_lease("gaffer/gaffer-reconciler"),
            Ok(("gaffer".into(), "gaffer-reconciler".into()))
        );
        assert!(
            parse_lease("gaffer")
                .unwrap_err()
                .contains("NAMESPACE/NAME")
        );
        assert!(parse_lease("Gaffer/x").unwrap_err().contains("uppercase"));
        assert!(parse_lease("g/a/b").is_err());
    }
}
