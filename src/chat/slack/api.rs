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
