//! The Slack Web API calls the bot makes, through slack-morphism (the real client in tests
//! too: point it at a fake with `api_url`).

use serde_json::Value;
use slack_morphism::prelude::*;

/// Why a Slack call failed.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// The API refused or could not be reached.
    #[error("slack {call}: {message}")]
    Api {
        /// The method.
        call: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A message we built is not valid Block Kit for the client.
    #[error("slack message: {0}")]
    Message(String),
}

/// The client's connector: https, or http for fakes.
pub(crate) type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

/// A bot-token client.
pub struct SlackApi {
    client: std::sync::Arc<SlackClient<Connector>>,
    token: SlackApiToken,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.write_str("SlackApi")
    }
}

fn api(call: &'static str) -> impl FnOnce(slack_morphism::errors::SlackClientError) -> SlackError {
    move |e| SlackError::Api {
        call,
        message: e.to_string(),
    }
}

impl SlackApi {
    /// A client for `bot_token`; `api_url` (e.g. `http://127.0.0.1:P/api`, no trailing
    /// slash) replaces `https://slack.com/api` (fakes in tests).
    pub fn new(bot_token: &str, api_url: Option<&str>) -> Result<Self, SlackError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| SlackError::Api {
                call: "tls",
                message: e.to_string(),
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(url) = api_url {
            connector = connector.with_slack_api_url(url);
        }
        Ok(Self {
            client: std::sync::Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue::new(bot_token.to_string())),
        })
    }

    /// The underlying client (the Socket Mode listener shares it).
    pub(crate) fn client(&self) -> std::sync::Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// `auth.test`: the bot's user id (checked at start so a bad token fails loudly).
    pub async fn auth_test(&self) -> Result<String, SlackError> {
        let s = self.client.open_session(&self.token);
        let r = s.auth_test().await.map_err(api("auth.test"))?;
        Ok(r.user_id.to_string())
    }

    /// The id of the public channel `name`, created if there is none; the bot joins it.
    pub async fn ensure_channel(&self, name: &str) -> Result<String, SlackError> {
        let s = self.client.open_session(&self.token);
        let id = match self.find_channel(name).await? {
            Some(id) => id,
            None => {
                let req = SlackApiConversationsCreateRequest::new(name.to_string());
                match s.conversations_create(&req).await {
                    Ok(r) => r.channel.id.to_string(),
                    // Someone made it meanwhile.
                    Err(e) if e.to_string().contains("name_taken") => self
                        .find_channel(name)
                        .await?
                        .ok_or_else(|| SlackError::Api {
                            call: "conversations.create",
                            message: format!("#{name} is taken but not listed (archived?)"),
                        })?,
                    Err(e) => return Err(api("conversations.create")(e)),
                }
            }
        };
        let req = SlackApiConversationsJoinRequest::new(SlackChannelId::new(id.clone()));
        s.conversations_join(&req)
            .await
            .map_err(api("conversations.join"))?;
        Ok(id)
    }

    async fn find_channel(&self, name: &str) -> Result<Option<String>, SlackError> {
        let s = self.client.open_session(&self.token);
        let mut cursor: Option<SlackCursorId> = None;
        loop {
            let mut req = SlackApiConversationsListRequest::new()
                .with_exclude_archived(true)
                .with_limit(200);
            if let Some(c) = cursor.take() {
                req = req.with_cursor(c);
            }
            let r = s
                .conversations_list(&req)
                .await
                .map_err(api("conversations.list"))?;
            if let Some(c) = r.channels.iter().find(|c| c.name.as_deref() == Some(name)) {
                return Ok(Some(c.id.to_string()));
            }
            match r.response_metadata.and_then(|m| m.next_cursor) {
                Some(c) if !c.to_string().is_empty() => cursor = Some(c),
                _ => return Ok(None),
            }
        }
    }

    /// `chat.postMessage` of `message` (`{text, blocks}`), in `thread_ts`'s thread if given;
    /// returns the message's ts.
    pub async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Value,
    ) -> Result<String, SlackError> {
        self.post_reply(channel, thread_ts, message, false).await
    }

    /// Like [`SlackApi::post`]; `broadcast` also shows a thread reply in the channel.
    pub async fn post_reply(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Value,
        broadcast: bool,
    ) -> Result<String, SlackError> {
        let s = self.client.open_session(&self.token);
        let mut req = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(channel.into()),
            content(message)?,
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts.into()));
            if broadcast {
                req = req.with_reply_broadcast(true);
            }
        }
        let r = s
            .chat_post_message(&req)
            .await
            .map_err(api("chat.postMessage"))?;
        Ok(r.ts.to_string())
    }

    /// `chat.update` of the message at `ts`.
    pub async fn update(&self, channel: &str, ts: &str, message: &Value) -> Result<(), SlackError> {
        let s = self.client.open_session(&self.token);
        let req = SlackApiChatUpdateRequest::new(
            SlackChannelId::new(channel.into()),
            content(message)?,
            SlackTs::new(ts.into()),
        );
        s.chat_update(&req).await.map_err(api("chat.update"))?;
        Ok(())
    }
}

impl SlackApi {
    /// `chat.postEphemeral`: `text` shown to `user` only.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        self.post_ephemeral_in(channel, None, user, text).await
    }

    /// Like [`SlackApi::post_ephemeral`], in the thread at `thread_ts` when given.
    pub async fn post_ephemeral_in(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        let s = self.client.open_session(&self.token);
        let mut req = SlackApiChatPostEphemeralRequest::new(
            SlackChannelId::new(channel.into()),
            SlackUserId::new(user.into()),
            SlackMessageContent::new().with_text(text.to_string()),
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts.into()));
        }
        s.chat_post_ephemeral(&req)
            .await
            .map_err(api("chat.postEphemeral"))?;
        Ok(())
    }

    /// `views.open` of a modal (`view` is its JSON).
    pub async fn open_view(&self, trigger_id: &str, view: &Value) -> Result<(), SlackError> {
        let s = self.client.open_session(&self.token);
        let req =
            SlackApiViewsOpenRequest::new(SlackTriggerId::new(trigger_id.into()), typed(view)?);
        s.views_open(&req).await.map_err(api("views.open"))?;
        Ok(())
    }

    /// `views.publish`: `view` (a `home` view) as `user`'s Home tab of the app.
    pub async fn publish_home(&self, user: &str, view: &Value) -> Result<(), SlackError> {
        let s = self.client.open_session(&self.token);
        let req = SlackApiViewsPublishRequest::new(SlackUserId::new(user.into()), typed(view)?);
        s.views_publish(&req).await.map_err(api("views.publish"))?;
        Ok(())
    }

    /// `views.update` of the open modal `view_id`.
    pub async fn update_view(&self, view_id: &str, view: &Value) -> Result<(), SlackError> {
        let s = self.client.open_session(&self.token);
        let req = SlackApiViewsUpdateRequest::new(typed(view)?)
            .with_view_id(SlackViewId::new(view_id.into()));
        s.views_update(&req).await.map_err(api("views.update"))?;
        Ok(())
    }

    /// The bot's message keys in the thread at `thread_ts` (`conversations.replies`, all
    /// pages): the `block_id` of each message's first block, with the message's ts.
    pub async fn thread_keys(
        &self,
        channel: &str,
        thread_ts: &str,
    ) -> Result<Vec<(String, String)>, SlackError> {
        let s = self.client.open_session(&self.token);
        let mut keys = Vec::new();
        let mut cursor: Option<SlackCursorId> = None;
        loop {
            let mut req = SlackApiConversationsRepliesRequest::new(
                SlackChannelId::new(channel.into()),
                SlackTs::new(thread_ts.into()),
            )
            .with_limit(200);
            if let Some(c) = cursor.take() {
                req = req.with_cursor(c);
            }
            let r = s
                .conversations_replies(&req)
                .await
                .map_err(api("conversations.replies"))?;
            keys.extend(r.messages.iter().filter_map(first_block_id));
            match r.response_metadata.and_then(|m| m.next_cursor) {
                Some(c) if !c.to_string().is_empty() => cursor = Some(c),
                _ => return Ok(keys),
            }
        }
    }

    /// Keys of the channel's most recent `pages` × 200 messages (`conversations.history`).
    pub async fn channel_keys(
        &self,
        channel: &str,
        pages: usize,
    ) -> Result<Vec<(String, String)>, SlackError> {
        let s = self.client.open_session(&self.token);
        let mut keys = Vec::new();
        let mut cursor: Option<SlackCursorId> = None;
        for _ in 0..pages {
            let mut req = SlackApiConversationsHistoryRequest::new()
                .with_channel(SlackChannelId::new(channel.into()))
                .with_limit(200);
            if let Some(c) = cursor.take() {
                req = req.with_cursor(c);
            }
            let r = s
                .conversations_history(&req)
                .await
                .map_err(api("conversations.history"))?;
            keys.extend(r.messages.iter().filter_map(first_block_id));
            match r.response_metadata.and_then(|m| m.next_cursor) {
                Some(c) if !c.to_string().is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(keys)
    }
}

/// `(block_id of the first block, ts)` of a message that has one.
fn first_block_id(m: &SlackHistoryMessage) -> Option<(String, String)> {
    let first = m.content.blocks.as_ref()?.first()?;
    let v = serde_json::to_value(first).ok()?;
    let id = v.get("block_id")?.as_str()?.to_string();
    Some((id, m.origin.ts.to_string()))
}

/// A view's JSON as the client's typed view.
fn typed(view: &Value) -> Result<SlackView, SlackError> {
    serde_json::from_value(view.clone()).map_err(|e| SlackError::Message(format!("view: {e}")))
}

/// `{text, blocks}` as the client's message content (the blocks must be valid Block Kit).
fn content(message: &Value) -> Result<SlackMessageContent, SlackError> {
    let mut c = SlackMessageContent::new();
    if let Some(t) = message.get("text").and_then(Value::as_str) {
        c = c.with_text(t.to_string());
    }
    if let Some(b) = message.get("blocks") {
        let blocks: Vec<SlackBlock> =
            serde_json::from_value(b.clone()).map_err(|e| SlackError::Message(e.to_string()))?;
        c = c.with_blocks(blocks);
    }
    Ok(c)
}
