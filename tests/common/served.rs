//! A server on a free port for the fakes (Slack, the LLM, GitHub, Kubernetes); shared with
//! the benchmark (`examples/bench`), which includes this file.

/// A server on a free 127.0.0.1 port, run from its own thread and runtime (so tests without
/// a runtime can use it); stopped when dropped.
pub struct Served {
    /// Its address.
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves the axum `app`.
    pub fn start(app: axum::Router) -> Self {
        Self::start_with(move |listener| async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    /// Runs `serve` on a bound listener (servers that are not axum apps).
    pub fn start_with<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::select! {
                    _ = serve(listener) => {}
                    _ = stop_rx => {}
                }
            });
            // Requests a test holds open never finish on their own.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
        });
        Served {
            addr: addr_rx.recv().unwrap(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
