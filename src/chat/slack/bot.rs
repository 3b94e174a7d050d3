//! The [`Bot`] and its state: one value shared by the loops [`super::serve`] runs (posting
//! in [`super::post`], Socket Mode in [`super::socket`], the Events API in [`super::http`]);
//! what it does for people is in [`super::actions`]. This module uses none of them.
//!
//! The bot reads the state repository and commits to it, nothing else: task files, answers
//! and approvals on behalf of Slack users (committed by the bot, authored by the user as
//! mapped in `gaffer.yaml` `authors.slack_names`, with a `Slack-User:` trailer), and its own
//! `slack.yaml` per task.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gix::ObjectId;

use super::api::{SlackApi, SlackError};
use crate::names::ProjectRef;
use crate::state::snapshot::Snapshot;
use crate::store::watch::Syncer;
use crate::store::{
    Identity, StatusWriter, StoreError, Tracker, Transport, Update, WriterConfig, WriterRole,
};

/// Why the bot could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// Slack refused or could not be reached.
    #[error(transparent)]
    Slack(#[from] SlackError),
    /// The state repository could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (listening, runtime).
    #[error("{0}")]
    Other(String),
}

/// How `gaffer slack` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The state repository.
    pub state: String,
    /// Its branch.
    pub branch: String,
    /// The bot's own data (its clone of a remote state repository).
    pub data_dir: PathBuf,
    /// `xoxb-…`.
    pub bot_token: String,
    /// `xapp-…`: Socket Mode (no public URL needed).
    pub app_token: Option<String>,
    /// The signing secret: the Events API endpoint on `listen`.
    pub signing_secret: Option<Vec<u8>>,
    /// Where the Events API endpoint listens.
    pub listen: Option<SocketAddr>,
    /// Replaces `https://slack.com/api` (tests).
    pub api_url: Option<String>,
    /// How often a URL remote is polled.
    pub poll: Duration,
    /// How often everything is re-read.
    pub resync: Duration,
    /// A web view of the state repository's files (e.g.
    /// `https://github.com/me/state/blob/main`), for links to question documents.
    pub browse_url: Option<String>,
}

impl Options {
    /// Defaults for `state`, keeping data under `data_dir`.
    pub fn new(state: impl Into<String>, data_dir: impl Into<PathBuf>, bot_token: &str) -> Self {
        Self {
            state: state.into(),
            branch: "main".into(),
            data_dir: data_dir.into(),
            bot_token: bot_token.into(),
            app_token: None,
            signing_secret: None,
            listen: None,
            api_url: None,
            poll: Duration::from_secs(5),
            resync: Duration::from_secs(600),
            browse_url: None,
        }
    }
}

/// What the bot shares between its loops.
pub struct Bot {
    /// The Web API client.
    pub(crate) api: SlackApi,
    pub(crate) transport: Transport,
    pub(crate) tracker: Arc<RwLock<Tracker>>,
    /// Writes `slack.yaml` files.
    pub(crate) writer: StatusWriter,
    pub(crate) browse_url: Option<String>,
    /// Project channels found or created: project → channel id.
    pub(crate) channels: Mutex<HashMap<ProjectRef, String>>,
    /// The bot's own user id (`auth.test`).
    pub bot_user: String,
    /// Task threads this process posted or read: (channel, thread ts) → task.
    pub(crate) threads: Mutex<HashMap<(String, String), crate::names::TaskRef>>,
    /// Thread replies already handled (`channel/ts`): Slack may deliver an event twice.
    pub(crate) seen_replies: Mutex<std::collections::HashSet<String>>,
    /// Users who opened the app's Home tab, whose view follows the state (throttled).
    pub(crate) home_users: Mutex<std::collections::BTreeSet<String>>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("bot_user", &self.bot_user)
            .finish()
    }
}

/// Work that must end before Slack's 3-second ack deadline, or go on in the background.
pub(crate) const ACK_BUDGET: Duration = Duration::from_millis(2500);

impl Bot {
    /// Checks the token (`auth.test`: a bad token fails here, loudly), opens the state
    /// repository and reads it.
    pub async fn start(opts: &Options) -> Result<Arc<Bot>, BotError> {
        let api = SlackApi::new(&opts.bot_token, opts.api_url.as_deref())?;
        let bot_user = api.auth_test().await?;
        std::fs::create_dir_all(&opts.data_dir)
            .map_err(|e| BotError::Other(format!("{}: {e}", opts.data_dir.display())))?;
        let (state, branch, data) = (
            opts.state.clone(),
            opts.branch.clone(),
            opts.data_dir.clone(),
        );
        let transport =
            tokio::task::spawn_blocking(move || Transport::open(&state, &branch, &data, false))
                .await
                .map_err(|e| BotError::Other(e.to_string()))??;
        let tracker = Arc::new(RwLock::new(Tracker::new(
            Some(Identity::slack_bot().email),
            Some(WriterRole::SlackBot.owned()),
        )));
        let syncer = Syncer::new(transport.clone(), tracker.clone());
        tokio::task::spawn_blocking(move || syncer.step(true))
            .await
            .map_err(|e| BotError::Other(e.to_string()))??;
        let writer = StatusWriter::spawn(
            transport.clone(),
            WriterConfig::new(WriterRole::SlackBot, Identity::slack_bot()),
        );
        Ok(Arc::new(Bot {
            api,
            transport,
            tracker,
            writer,
            browse_url: opts.browse_url.clone(),
            channels: Mutex::new(HashMap::new()),
            bot_user,
            threads: Mutex::new(HashMap::new()),
            seen_replies: Mutex::new(Default::default()),
            home_users: Mutex::new(Default::default()),
        }))
    }

    /// Reads the current snapshot.
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        let t = self
            .tracker
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(t.snapshot())
    }

    /// Whether `user` is listed in `gaffer.yaml` `authors.slack_users`.
    pub(crate) fn may_act(&self, user: &str) -> bool {
        self.read(|s| {
            s.settings
                .as_ref()
                .is_some_and(|st| st.authors.slack_users.iter().any(|u| u == user))
        })
    }

    /// The commit author for `user`: `authors.slack_names` (`Name <email>`), else a name
    /// saying who it was with the bot's address.
    fn author_of(&self, user: &str) -> Identity {
        let mapped = self.read(|s| {
            s.settings
                .as_ref()
                .and_then(|st| st.authors.slack_names.get(user).cloned())
        });
        mapped
            .and_then(|m| parse_identity(&m))
            .unwrap_or_else(|| Identity {
                name: format!("Slack user {user}"),
                email: Identity::slack_bot().email,
            })
    }

    /// Commits `updates` for Slack user `user` and waits until they are on the remote.
    /// Returns the commit; `create_only` updates whose file someone else created first are
    /// reported as [`StoreError::Exists`]-like errors by the caller comparing contents.
    pub(crate) async fn commit_for(
        &self,
        user: &str,
        updates: Vec<Update>,
    ) -> Result<ObjectId, StoreError> {
        let mut config = WriterConfig::new(WriterRole::SlackBot, Identity::slack_bot());
        config.author = Some(self.author_of(user));
        config.trailers = vec![format!("Slack-User: {user}")];
        for u in &updates {
            if !config.role.may_write(&u.path) {
                return Err(StoreError::NotOwner {
                    writer: config.role.to_string(),
                    path: u.path.to_path(),
                    owner: u.path.owner().to_string(),
                });
            }
        }
        let transport = self.transport.clone();
        let id = tokio::task::spawn_blocking(move || {
            crate::store::writer::publish(&transport, &config, &updates)
        })
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))??;
        Ok(id)
    }

    /// The content of `path` at `commit`.
    pub(crate) fn file_at(&self, commit: ObjectId, path: &str) -> Option<Vec<u8>> {
        crate::store::read::read_file(&self.transport.repo(), commit, path)
            .ok()
            .flatten()
    }
}

/// `Name <email>` → an identity.
fn parse_identity(s: &str) -> Option<Identity> {
    let (name, rest) = s.split_once('<')?;
    let email = rest.strip_suffix('>')?.trim();
    let name = name.trim();
    (!name.is_empty() && email.contains('@')).then(|| Identity {
        name: name.to_string(),
        email: email.to_string(),
    })
}

/// Runs `f` in the background and waits for it at most [`ACK_BUDGET`]: Slack wants its ack
/// within 3 seconds, but work that takes longer (a slow push) still finishes. `None` when
/// the budget ran out.
pub(crate) async fn within_ack<T: Send + 'static>(
    f: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let handle = tokio::spawn(f);
    tokio::time::timeout(ACK_BUDGET, handle)
        .await
        .ok()
        .and_then(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_identities_need_a_name_and_an_address() {
        assert_eq!(
            parse_identity("Jane Doe <jane@example.com>"),
            Some(Identity {
                name: "Jane Doe".into(),
                email: "jane@example.com".into()
            })
        );
        assert_eq!(parse_identity("jane@example.com"), None);
        assert_eq!(parse_identity("<jane@example.com>"), None);
        assert_eq!(parse_identity("Jane <not-an-address>"), None);
    }
}
