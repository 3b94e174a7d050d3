//! Outbound webhook notifications (n8n and friends): one signed JSON POST per milestone.
//!
//! The body is `{"id","task","text","at"}`; `X-Gaffer-Event-Id` carries the id and
//! `X-Gaffer-Signature-256: sha256=<hex>` an HMAC-SHA256 of the body with the shared secret.
//! Delivered ids are recorded in a local file so a restart does not resend; a crash between
//! sending and recording can resend once with the same id, which receivers deduplicate.
//! `https://` checks the server against the system's roots (rustls with
//! `rustls-native-certs`, so `SSL_CERT_FILE` names a private CA's bundle); `http://` is for a
//! receiver on the same machine or network (a local n8n).

use std::path::PathBuf;
use std::sync::Mutex;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;

use super::{Notification, Notifier, NotifyError};

/// Posts notifications to a URL.
#[derive(Debug)]
pub struct WebhookNotifier {
    url: hyper::Uri,
    secret: Vec<u8>,
    delivered: PathBuf,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Delivered ids, read once from `delivered` and kept up to date.
    seen: Mutex<Option<std::collections::HashSet<String>>>,
}

impl WebhookNotifier {
    /// Posts to `url` (`https://` or `http://`), signing with `secret`, recording deliveries
    /// in `delivered`; an https server must have a certificate the system's roots trust.
    pub fn new(url: &str, secret: Vec<u8>, delivered: PathBuf) -> Result<Self, NotifyError> {
        Self::trusting(url, secret, delivered, &[])
    }

    /// [`WebhookNotifier::new`], also trusting the CA certificates `extra` (DER).
    pub fn trusting(
        url: &str,
        secret: Vec<u8>,
        delivered: PathBuf,
        extra: &[CertificateDer<'static>],
    ) -> Result<Self, NotifyError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| NotifyError(format!("webhook URL {url:?}: {e}")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(NotifyError(format!(
                "webhook URL {url:?}: expected https://host/path (or http:// for a receiver \
                 on this network)"
            )));
        }
        Ok(Self {
            url: uri,
            secret,
            delivered,
            client: Client::builder(TokioExecutor::new()).build(connector(extra)?),
            seen: Mutex::new(None),
        })
    }

    fn with_seen<T>(
        &self,
        f: impl FnOnce(&mut std::collections::HashSet<String>) -> T,
    ) -> Result<T, NotifyError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| NotifyError("lock poisoned".into()))?;
        let set = seen.get_or_insert_with(|| {
            std::fs::read_to_string(&self.delivered)
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        });
        Ok(f(set))
    }

    fn was_delivered(&self, id: &str) -> Result<bool, NotifyError> {
        self.with_seen(|s| s.contains(id))
    }

    fn record(&self, id: &str) -> Result<(), NotifyError> {
        use std::io::Write;
        if let Some(dir) = self.delivered.parent() {
            std::fs::create_dir_all(dir).map_err(|e| NotifyError(e.to_string()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.delivered)
            .map_err(|e| NotifyError(e.to_string()))?;
        writeln!(f, "{id}").map_err(|e| NotifyError(e.to_string()))?;
        self.with_seen(|s| {
            s.insert(id.to_string());
        })
    }
}

/// An http and https connector checking servers against the system's roots and `extra`.
fn connector(
    extra: &[CertificateDer<'static>],
) -> Result<HttpsConnector<HttpConnector>, NotifyError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "a system root certificate could not be read");
    }
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 {
        tracing::debug!(unusable, "system root certificates rustls cannot use");
    }
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| NotifyError(format!("a trusted CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        tracing::warn!(
            "no root certificates found: https webhooks will fail (install ca-certificates or set SSL_CERT_FILE)"
        );
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| NotifyError(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, n: &Notification) -> Result<bool, NotifyError> {
        if self.was_delivered(&n.id)? {
            return Ok(false);
        }
        let body = serde_json::json!({
            "id": n.id,
            "task": n.task,
            "text": n.text,
            "at": jiff::Timestamp::now().to_string(),
        })
        .to_string();
        let sig = crate::server::sign(&self.secret, body.as_bytes());
        let req = hyper::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("x-gaffer-event-id", n.id.as_str())
            .header("x-gaffer-signature-256", sig)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NotifyError(e.to_string()))?;
        let resp =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.client.request(req))
                .await
                .map_err(|_| NotifyError(format!("webhook {} timed out", self.url)))?
                .map_err(|e| NotifyError(format!("webhook {}: {e}", self.url)))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if !status.is_success() {
            return Err(NotifyError(format!(
                "webhook {} answered {status}",
                self.url
            )));
        }
        self.record(&n.id)?;
        Ok(true)
    }
}

/// Delivers to several notifiers; a notification counts as delivered when any took it.
#[derive(Debug)]
pub struct FanOut(pub Vec<std::sync::Arc<dyn Notifier>>);

#[async_trait::async_trait]
impl Notifier for FanOut {
    async fn notify(&self, n: &Notification) -> Result<bool, NotifyError> {
        let mut delivered = false;
        for inner in &self.0 {
            delivered |= inner.notify(n).await?;
        }
        Ok(delivered)
    }
}
