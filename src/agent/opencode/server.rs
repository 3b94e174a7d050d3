//! A builder's server: found, started or adopted where its host runs it, with the sandbox
//! and environment its project asks for, and its event stream followed.

use super::*;

impl Inner {
    /// Makes sure the project's server answers (adopting a running one, starting or restarting
    /// it otherwise) and returns a client and the server's start time.
    pub(super) async fn ensure_server(
        &self,
        project: &ProjectRef,
    ) -> Result<(Client, i64), AgentError> {
        let b = self.builder(project)?;
        let mut b = b.lock().await;
        let name = project.builder_name();
        let host = self.host_of(&b.record)?;
        if let Some(base) = host.base_url(project, b.record.port).await? {
            let client = Client::at(&base, &b.password);
            // A server whose process is alive but slow to answer (a busy machine) is waited
            // for, not restarted: a restart would cut the turn it is working on.
            let patience = tokio::time::Instant::now() + SLOW_SERVER_PATIENCE;
            loop {
                match client.health_within(Duration::from_secs(5)).await {
                    Ok(h) if h.healthy => {
                        if b.record.stopped {
                            b.record.stopped = false;
                            write_record(&self.cfg.state_dir, &name, &b.record)?;
                        }
                        self.adopt_instance(&mut b, host.as_ref()).await?;
                        self.follow(&mut b, &client);
                        return Ok((client, b.record.started_ms));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::info!(builder = %name, error = %e, "OpenCode server not answering")
                    }
                }
                let alive = host.is_alive(&b.project).await.unwrap_or(false);
                if !alive || tokio::time::Instant::now() >= patience {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let client = self.start_server(&mut b).await?;
        self.follow(&mut b, &client);
        Ok((client, b.record.started_ms))
    }

    /// Notices a server its host started by itself (a pod made again by its controller):
    /// from then on a turn left unfinished by the one before counts as cut off, and events
    /// are followed from the new one.
    async fn adopt_instance(
        &self,
        b: &mut Builder,
        host: &dyn BuilderHost,
    ) -> Result<(), AgentError> {
        let Some((id, started_ms)) = host.instance(&b.project).await? else {
            return Ok(());
        };
        if b.record.instance.as_deref() == Some(id.as_str()) {
            return Ok(());
        }
        if b.record.instance.is_some() {
            tracing::warn!(builder = %b.project.builder_name(), "the builder's server was started again by its host");
        }
        b.record.instance = Some(id);
        b.record.started_ms = b.record.started_ms.max(started_ms);
        write_record(&self.cfg.state_dir, &b.project.builder_name(), &b.record)?;
        if let Some(f) = b.follower.take() {
            f.abort();
        }
        Ok(())
    }

    /// The host `record` runs on.
    pub(super) fn host_of(&self, record: &Record) -> Result<Arc<dyn BuilderHost>, AgentError> {
        match record.host {
            HostKind::Pod => match &self.cfg.pod {
                Some(p) => Ok(p.clone()),
                None => Err(AgentError::Config(
                    crate::agent::pod::host::NO_CLUSTER.into(),
                )),
            },
            _ => Ok(self.cfg.host.clone()),
        }
    }

    async fn start_server(&self, b: &mut Builder) -> Result<Client, AgentError> {
        let name = b.project.builder_name();
        let session = b.project.tmux_session();
        let host = self.host_of(&b.record)?;
        let port = match host.fixed_port() {
            Some(port) => port,
            None => {
                std::fs::create_dir_all(&b.project_dir)
                    .map_err(|e| runtime(format!("{}: {e}", b.project_dir.display())))?;
                if b.record.port != 0 && port_free(b.record.port) {
                    b.record.port
                } else {
                    free_port()?
                }
            }
        };
        let serve: Vec<OsString> = vec![
            OsString::from(&self.cfg.binary),
            "serve".into(),
            "--hostname".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string().into(),
        ];
        let serve = match (&b.record.sandbox, &self.cfg.bwrap) {
            (Some(sandbox), Some(bwrap)) => {
                std::fs::create_dir_all(&sandbox.home)
                    .map_err(|e| runtime(format!("{}: {e}", sandbox.home.display())))?;
                sandbox.wrap(bwrap, &serve)
            }
            _ => serve,
        };
        let argv = self.launch(&name, serve);
        let started_ms = now_ms();
        tracing::info!(builder = %name, port, "OpenCode server on port {port}");
        host.ensure_server(&b.project, &b.project_dir, &argv)
            .await?;
        let deadline = tokio::time::Instant::now() + self.cfg.start_timeout;
        let client = loop {
            if let Some(base) = host.base_url(&b.project, port).await? {
                let client = Client::at(&base, &b.password);
                if let Ok(h) = client.health_within(Duration::from_secs(1)).await
                    && h.healthy
                {
                    break client;
                }
            }
            if !host.is_alive(&b.project).await? {
                let screen = host.logs(&b.project).await.unwrap_or_default();
                return Err(runtime(format!(
                    "OpenCode exited on start ({}): {}",
                    self.cfg.binary.display(),
                    last_lines(&screen, 6)
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(runtime(format!(
                    "OpenCode did not answer on port {port} within {:?}",
                    self.cfg.start_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        b.record.port = port;
        b.record.started_ms = started_ms;
        b.record.instance = host.instance(&b.project).await?.map(|(id, _)| id);
        b.record.tmux = session.clone();
        b.record.stopped = false;
        // The attach window talked to the old process (or went with the tmux session): point
        // it at the new one.
        if let Some(id) = b.record.attached.clone() {
            let argv = self.attach_argv(&name, port, &id, &b.project_dir);
            host.ensure_attach(&b.project, &b.project_dir, &argv, true)
                .await?;
        }
        write_record(&self.cfg.state_dir, &name, &b.record)?;
        if let Some(f) = b.follower.take() {
            f.abort();
        }
        Ok(client)
    }

    /// The sandbox a builder calls for, when bubblewrap works here; its HOME is the
    /// configured one, else `<data>/opencode/homes/<builder>`.
    fn sandbox_for(&self, setup: &BuilderSetup) -> Option<crate::agent::sandbox::Sandbox> {
        self.cfg.bwrap.as_ref()?;
        let home = self
            .cfg
            .env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| {
                self.cfg
                    .state_dir
                    .join("homes")
                    .join(setup.project.builder_name())
            });
        setup
            .sandbox
            .then(|| crate::agent::sandbox::Sandbox::for_builder(setup, &self.cfg.binary, home))
    }

    /// Writes the builder's lab environment and gives it the sandbox `setup` calls for: a
    /// server started otherwise (an older release, or the setting changed) is started again
    /// inside the one wanted. Returns the builder's record as it now is.
    pub(super) async fn set_up(&self, setup: &BuilderSetup) -> Result<Record, AgentError> {
        let name = setup.project.builder_name();
        write_lab_env(&self.cfg.state_dir, &name, &setup.env)?;
        let host = match setup.host {
            crate::state::spec::BuilderHostKind::Pod => HostKind::Pod,
            crate::state::spec::BuilderHostKind::Tmux => HostKind::Tmux,
        };
        // A pod is its builder's sandbox: nothing of gaffer's is in it.
        let want = match host {
            HostKind::Pod => None,
            _ => self.sandbox_for(setup),
        };
        let b = self.builder(&setup.project)?;
        let mut b = b.lock().await;
        if b.record.host != host {
            // Moved to another host: the old server goes, the new one starts on demand.
            if b.record.port != 0
                && let Ok(old) = self.host_of(&b.record)
            {
                old.stop(&b.project).await?;
            }
            if let Some(f) = b.follower.take() {
                f.abort();
            }
            b.record.host = host;
            b.record.port = 0;
            write_record(&self.cfg.state_dir, &name, &b.record)?;
        }
        self.host_of(&b.record)?.set_up(setup, &b.password).await?;
        if b.record.sandbox != want {
            b.record.sandbox = want;
            write_record(&self.cfg.state_dir, &name, &b.record)?;
            if b.record.port != 0 {
                self.start_server(&mut b).await?;
            }
        }
        Ok(b.record.clone())
    }

    /// `gaffer exec-env --env-file <builder>.env --env-file <builder>.lab.env -- <argv>`.
    pub(super) fn launch(
        &self,
        name: &str,
        argv: impl IntoIterator<Item = OsString>,
    ) -> Vec<OsString> {
        let mut v: Vec<OsString> = vec![
            self.cfg.launcher.clone().into(),
            "exec-env".into(),
            "--env-file".into(),
            env_path(&self.cfg.state_dir, name).into(),
            "--env-file".into(),
            lab_env_path(&self.cfg.state_dir, name).into(),
            "--".into(),
        ];
        v.extend(argv);
        v
    }

    pub(super) fn attach_argv(
        &self,
        name: &str,
        port: u16,
        session: &str,
        dir: &Path,
    ) -> Vec<OsString> {
        self.launch(
            name,
            [
                OsString::from(&self.cfg.binary),
                "attach".into(),
                format!("http://127.0.0.1:{port}").into(),
                "--session".into(),
                session.into(),
                "--dir".into(),
                dir.into(),
            ],
        )
    }

    /// Follows the builder's event stream (once per server process).
    pub(super) fn follow(&self, b: &mut Builder, client: &Client) {
        if b.follower.as_ref().is_some_and(|f| !f.is_finished()) {
            return;
        }
        let follower = Follower {
            client: client.clone(),
            tasks: self.tasks.clone(),
            wake: self.wake.clone(),
            project: b.project.clone(),
            state_dir: self.cfg.state_dir.clone(),
        };
        b.follower = Some(tokio::spawn(follower.run()));
    }
}
