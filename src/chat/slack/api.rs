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

type Connector = SlackClientHyperConnector<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

/// A bot-token client.
pub struct SlackApi {
    client: SlackClient<Connector>,
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
            client: SlackClient::new(connector),
            token: SlackApiToken::new(SlackApiTokenValue::new(bot_token.to_string())),
        })
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
        let s = self.client.open_session(&self.token);
        let mut req = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(channel.into()),
            content(message)?,
        );
        if let Some(ts) = thread_ts {
            req = req.with_thread_ts(SlackTs::new(ts.into()));
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
