//! The builder-host seam: the real OpenCode runtime driven through a second `BuilderHost`, a
//! test double that runs the server as a plain child process (no tmux at all). The runtime
//! starts the server through it, creates a session, sends a prompt and reads the builder's
//! answer back, and the session names the host's kind and attach text, not tmux's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gaffer::agent::host::BuilderHost;
use gaffer::agent::opencode::{Config, OpenCode};
use gaffer::agent::{AgentError, AgentEvent, AgentRuntime, BuilderSetup, SessionRequest};
use gaffer::names::{ProjectRef, TaskRef};
use gaffer::state::status::HostKind;

use crate::common::llm::{Llm, Step};
use crate::common::opencode::World;

/// Runs the server as a child process of the test; records every call.
#[derive(Debug)]
struct ProcessHost {
    log: PathBuf,
    child: Mutex<Option<std::process::Child>>,
    calls: Mutex<Vec<String>>,
}

impl Drop for ProcessHost {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[async_trait::async_trait]
impl BuilderHost for ProcessHost {
    fn kind(&self) -> HostKind {
        HostKind::InProcess
    }
    async fn ensure_server(
        &self,
        project: &ProjectRef,
        dir: &Path,
        argv: &[OsString],
    ) -> Result<(), AgentError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure_server {project}"));
        let mut slot = self.child.lock().unwrap();
        if let Some(mut old) = slot.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let log = std::fs::File::create(&self.log).unwrap();
        let child = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| AgentError::Runtime(e.to_string()))?;
        *slot = Some(child);
        Ok(())
    }
    async fn is_alive(&self, _project: &ProjectRef) -> Result<bool, AgentError> {
        let mut slot = self.child.lock().unwrap();
        Ok(slot
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none()))
    }
    async fn logs(&self, _project: &ProjectRef) -> Result<String, AgentError> {
        Ok(std::fs::read_to_string(&self.log).unwrap_or_default())
    }
    async fn ensure_attach(
        &self,
        project: &ProjectRef,
        _dir: &Path,
        argv: &[OsString],
        restart: bool,
    ) -> Result<(), AgentError> {
        // No terminal here: the person's view is only recorded.
        let attach = argv.iter().any(|a| a == "attach");
        self.calls
            .lock()
            .unwrap()
            .push(format!("ensure_attach {project} {attach} {restart}"));
        Ok(())
    }
    fn attach(&self, project: &ProjectRef) -> Option<String> {
        Some(format!("process host: no terminal for {project}"))
    }
    async fn stop(&self, project: &ProjectRef) -> Result<(), AgentError> {
        self.calls.lock().unwrap().push(format!("stop {project}"));
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opencode_runs_on_a_second_builder_host_without_tmux() {
    let llm = Llm::start();
    let world = World::new(&llm);
    let tmp = tempfile::tempdir().unwrap();
    let host = Arc::new(ProcessHost {
        log: tmp.path().join("server.log"),
        child: Mutex::new(None),
        calls: Mutex::new(Vec::new()),
    });
    let workspaces = tmp.path().join("builders");
    let task = TaskRef::parse("demo/web-api/hello").unwrap();
    let project_dir = workspaces.join(task.project.builder_name());
    std::fs::create_dir_all(&project_dir).unwrap();
    let rt = OpenCode::new(
        Config {
            binary: world.binary.clone(),
            launcher: PathBuf::from(env!("CARGO_BIN_EXE_gaffer")),
            state_dir: tmp.path().join("data/opencode"),
            host: host.clone(),
            pod: None,
            env: world.env(),
            start_timeout: Duration::from_secs(60),
            bwrap: None,
        },
        &workspaces,
        None,
    );
    llm.script("Say hello", vec![Step::text("Hello.\nDONE: said hello")]);
    let req = SessionRequest {
        task: task.clone(),
        title: "Say hello".into(),
        permissions: vec![],
        worktrees: Default::default(),
        model: Some("scripted/m".into()),
        agent: None,
        script: None,
        builder: BuilderSetup {
            project: task.project.clone(),
            project_dir: project_dir.clone(),
            env: vec![],
            sandbox: false,
            builder_dirs: vec![],
            host: Default::default(),
            pod: None,
        },
        stage: gaffer::agent::Stage::Build,
    };
    let session = rt.ensure_session(&req, None).await.unwrap();
    assert_eq!(session.host, HostKind::InProcess);
    assert_eq!(
        session.attach.as_deref(),
        Some("process host: no terminal for demo/web-api")
    );
    rt.send(&task, &session.id, "task", "# Task: Say hello\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut cursor = 0;
    let mut events = Vec::new();
    while !events.iter().any(|e| matches!(e, AgentEvent::Finished(_))) {
        assert!(
            Instant::now() < deadline,
            "no DONE from the builder: {events:?}; server log: {}",
            std::fs::read_to_string(tmp.path().join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let polled = rt.poll(&task, &session.id, cursor).await.unwrap();
        cursor = polled.cursor;
        events.extend(polled.events);
    }
    assert!(
        events.contains(&AgentEvent::Finished("said hello".into())),
        "{events:?}"
    );
    rt.stop(&task, &session.id).await.unwrap();
    let calls = host.calls.lock().unwrap().clone();
    assert_eq!(calls[0], "ensure_server demo/web-api", "{calls:?}");
    assert!(
        calls.contains(&"ensure_attach demo/web-api true true".to_string()),
        "{calls:?}"
    );
    assert_eq!(calls.last().unwrap(), "stop demo/web-api", "{calls:?}");
    // tmux was never asked for anything: no server was started on the world's socket.
    assert!(!world.socket.exists(), "tmux was used");
}
