//! Socket Mode: Slack delivers slash commands and interactions over a WebSocket the bot
//! opens with its app-level token (`apps.connections.open`), so no public URL is needed.
//! slack-morphism keeps the connection (reconnecting with backoff) and sends each ack with
//! the payload [`super::actions`] returns.

use std::sync::Arc;

use slack_morphism::prelude::*;

use super::actions::Reply;
use super::api::Connector;
use super::bot::{Bot, BotError};

/// A running Socket Mode connection; [`Listener::shutdown`] closes it.
pub struct Listener(SlackClientSocketModeListener<Connector>);

impl Listener {
    /// Closes the connection.
    pub async fn shutdown(&self) {
        self.0.shutdown().await;
    }
}

type Client = Arc<SlackClient<Connector>>;

async fn bot_of(states: &SlackClientEventsUserState) -> Result<Arc<Bot>, BotError> {
    states
        .read()
        .await
        .get_user_state::<Arc<Bot>>()
        .cloned()
        .ok_or_else(|| BotError::Other("socket mode: the bot is missing".into()))
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Client,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let bot = bot_of(&states).await?;
    let payload = serde_json::to_value(&event)?;
    Ok(match bot.on_command(&payload).await {
        Reply::Ephemeral(text) => {
            SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
                .with_response_type(SlackMessageResponseType::Ephemeral)
        }
        _ => SlackCommandEventResponse::new(SlackMessageContent::new()),
    })
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Client,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let bot = bot_of(&states).await?;
    let payload = serde_json::to_value(&event)?;
    Ok(match bot.on_interaction(&payload).await {
        Reply::Errors(errors) => SlackViewSubmissionResponse::Errors(
            SlackViewSubmissionErrorsResponse::new(errors.into_iter().collect()),
        )
        .into(),
        _ => SlackInteractionResponse::Empty,
    })
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Client,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    // Thread replies (`message.channels`) and the Home tab (`app_home_opened`); anything
    // else is acknowledged and ignored.
    let bot = bot_of(&states).await?;
    let payload = serde_json::to_value(&event.event)?;
    bot.on_event(&payload).await;
    Ok(())
}

/// Connects with `app_token` and starts handling envelopes.
pub async fn listen(
    bot: Arc<Bot>,
    app_token: &str,
    _api_url: Option<&str>,
) -> Result<Listener, BotError> {
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_push);
    let env = Arc::new(
        SlackClientEventsListenerEnvironment::new(bot.api.client())
            .with_error_handler(|e, _client, _states| {
                tracing::warn!(error = %e, "socket mode");
                axum::http::StatusCode::OK
            })
            .with_user_state(bot.clone()),
    );
    let config = SlackClientSocketModeConfig::new().with_max_connections_count(1);
    let listener = SlackClientSocketModeListener::new(&config, env, callbacks);
    let token = SlackApiToken::new(SlackApiTokenValue::new(app_token.to_string()));
    listener
        .listen_for(&token)
        .await
        .map_err(|e| BotError::Other(format!("socket mode: {e}")))?;
    listener.start().await;
    Ok(Listener(listener))
}
