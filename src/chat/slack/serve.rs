//! The `gaffer slack` process's loops: watching the state repository and posting
//! ([`super::post`]), and receiving Slack's payloads by Socket Mode ([`super::socket`]) or
//! the Events API ([`super::http`]), all around one [`Bot`].

use std::future::Future;

use super::bot::{Bot, BotError, Options};
use super::{http, post, socket};
use crate::store::watch::{self, Reason, Syncer};

/// Runs the bot until `shutdown` resolves: watches the state repository and posts, and
/// listens for Slack (Socket Mode with an app token, the Events API with `listen`).
pub async fn run(
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BotError> {
    if opts.app_token.is_none() && opts.listen.is_none() {
        tracing::warn!(
            "no app token (Socket Mode) and no --listen (Events API): the bot posts but \
             cannot receive clicks or slash commands"
        );
    }
    let bot = Bot::start(&opts).await?;
    tracing::info!(bot_user = %bot.bot_user, state = %opts.state, "slack bot started");
    let (waker, wake_rx) = watch::channel();
    let watcher = match bot.transport.watch_dir() {
        Some(dir) => watch::watch_refs(&dir, waker.clone()).ok(),
        None => None,
    };
    let mut background = Vec::new();
    if !bot.transport.is_direct() || watcher.is_none() {
        background.push(tokio::spawn(watch::poll(
            bot.transport.clone(),
            opts.poll,
            waker.clone(),
        )));
    }
    background.push(tokio::spawn(watch::resync_every(
        opts.resync,
        waker.clone(),
    )));
    let (wake_tx, wakes) = tokio::sync::mpsc::unbounded_channel();
    background.push(tokio::spawn(
        Syncer::new(bot.transport.clone(), bot.tracker.clone()).run(wake_rx, wake_tx),
    ));
    background.push(tokio::spawn(post::run(bot.clone(), wakes)));
    waker.wake(Reason::Start);

    let socket = match &opts.app_token {
        Some(token) => Some(socket::listen(bot.clone(), token, opts.api_url.as_deref()).await?),
        None => None,
    };
    if let Some(addr) = opts.listen {
        let secret = opts.signing_secret.clone().ok_or_else(|| {
            BotError::Other("--listen needs the signing secret (SLACK_SIGNING_SECRET)".into())
        })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| BotError::Other(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "events API endpoint listening");
        let record = opts.data_dir.join("slack-seen-requests");
        let app = http::router(bot.clone(), secret, record);
        background.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "events API endpoint stopped");
            }
        }));
    }
    shutdown.await;
    if let Some(s) = socket {
        s.shutdown().await;
    }
    for b in background {
        b.abort();
    }
    drop(watcher);
    tracing::info!("slack bot stopped");
    Ok(())
}
