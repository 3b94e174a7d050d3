//! Reading a lab's logs (`gaffer lab logs`): its pods and containers, the last lines of
//! each, or one container's log followed as it grows.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use super::{ClusterDeployer, kube_err};
use crate::lab::LabError;

/// Whether `name` can be a pod's or container's name (a DNS subdomain: DNS-1123 labels
/// joined by dots): checked before it goes into a request path.
pub fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name
            .split('.')
            .all(|l| crate::names::check(crate::names::NameKind::Id, l).is_ok())
}

impl ClusterDeployer {
    /// The pods of namespace `ns` and their containers, by name.
    pub async fn pods(&self, ns: &str) -> Result<Vec<(String, Vec<String>)>, LabError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut out: Vec<(String, Vec<String>)> = pods
            .list(&ListParams::default())
            .await
            .map_err(kube_err)?
            .items
            .into_iter()
            .map(|p| {
                let containers = p
                    .spec
                    .map(|s| s.containers.into_iter().map(|c| c.name).collect())
                    .unwrap_or_default();
                (p.metadata.name.unwrap_or_default(), containers)
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The last `tail` lines (all when `None`) of a container's log, or of its run before
    /// the last restart (`previous`).
    pub async fn logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        tail: Option<i64>,
        previous: bool,
    ) -> Result<String, LabError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        pods.logs(
            pod,
            &LogParams {
                container: Some(container.to_string()),
                tail_lines: tail,
                previous,
                ..LogParams::default()
            },
        )
        .await
        .map_err(|e| kube_err(format!("logs of {pod}/{container}: {e}")))
    }

    /// Follows a container's log: `out` gets each chunk as it is written, until the pod
    /// goes or the connection ends.
    pub async fn follow_logs(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        tail: Option<i64>,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), LabError> {
        use futures_util::AsyncReadExt as _;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut stream = pods
            .log_stream(
                pod,
                &LogParams {
                    container: Some(container.to_string()),
                    tail_lines: tail,
                    follow: true,
                    ..LogParams::default()
                },
            )
            .await
            .map_err(|e| kube_err(format!("logs of {pod}/{container}: {e}")))?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| kube_err(format!("logs of {pod}/{container}: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n])
                .and_then(|()| out.flush())
                .map_err(|e| kube_err(format!("writing the log: {e}")))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_and_container_names_are_dns_subdomains() {
        for ok in ["hello-7d9f-x2x4q", "app", "web.v2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "../x", "a/b", "-a", "a..b", "A"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
