#![no_main]
//! What Slack sends: slash commands, interactions and events over the Events API (their
//! signature headers and bodies, read per route and content type), and Socket Mode
//! envelopes, each through the decoding the bot does before it acts: the form, the JSON,
//! slack-morphism's envelope types, the button's action id, the start form it offers.
//!
//! Input: the first byte chooses the route (or Socket Mode); then
//! `content-type\ntimestamp\nsignature\nbody` for a route, the frame for Socket Mode.

use gaffer::chat::slack::actions::start_view;
use gaffer::chat::slack::blocks::Click;
use gaffer::chat::slack::http::{Inbound, Route, decode};
use gaffer::chat::slack::verify::Verifier;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use slack_morphism::events::{SlackCommandEvent, SlackInteractionEvent, SlackPushEventCallback};

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What the bot reads of an interaction before it looks anything up.
fn interaction(p: &Value) {
    for a in p["actions"].as_array().into_iter().flatten() {
        if let Some(Ok(click)) = Click::parse(str_at(a, "/action_id")) {
            let task = match &click {
                Click::Answer { task, .. }
                | Click::Other { task, .. }
                | Click::Approve { task, .. }
                | Click::Plan { task, .. }
                | Click::Raise { task, .. } => task,
            };
            assert!(!task.to_string().contains(':'), "{click:?}");
        }
        let _ = start_view(
            &[],
            str_at(a, "/selected_option/value"),
            str_at(p, "/view/private_metadata"),
        );
    }
}

/// What the bot reads of a thread reply before it looks anything up: the word, and the
/// message id a reply would be committed under (a valid name, or none).
fn push(e: &Value) {
    let text = str_at(e, "/text");
    let _ = gaffer::chat::slack::replies::Word::parse(text);
    if let Some(id) = gaffer::chat::slack::replies::message_id(str_at(e, "/user"), str_at(e, "/ts"))
    {
        assert!(gaffer::names::Id::new(id.as_str()).is_ok(), "{id}");
        assert!(!id.as_str().contains(['/', '.', ' ']), "{id}");
    }
}

fn command(f: &Value) {
    let text = str_at(f, "/text").trim();
    let (_, rest) = text.split_once(' ').unwrap_or((text, ""));
    let _ = start_view(&[], rest.trim(), str_at(f, "/channel_id"));
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    let route = match kind % 4 {
        0 => Route::Commands,
        1 => Route::Interactive,
        2 => Route::Events,
        _ => {
            let Ok(frame) = std::str::from_utf8(rest) else {
                return;
            };
            // slack-morphism reads an envelope by its `type` into these payload types (its
            // envelope enum is not public); the bot gets their JSON.
            let Ok(envelope) = serde_json::from_str::<Value>(frame) else {
                return;
            };
            let payload = envelope["payload"].clone();
            match envelope["type"].as_str() {
                Some("interactive") => {
                    if let Ok(ev) = serde_json::from_value::<SlackInteractionEvent>(payload) {
                        interaction(&serde_json::to_value(&ev).expect("serializes"));
                    }
                }
                Some("slash_commands") => {
                    if let Ok(ev) = serde_json::from_value::<SlackCommandEvent>(payload) {
                        command(&serde_json::to_value(&ev).expect("serializes"));
                    }
                }
                Some("events_api") => {
                    if let Ok(ev) = serde_json::from_value::<SlackPushEventCallback>(payload) {
                        push(&serde_json::to_value(&ev.event).expect("serializes"));
                    }
                }
                _ => {}
            }
            return;
        }
    };
    let mut parts = rest.splitn(4, |b| *b == b'\n');
    let (Some(ct), Some(ts), Some(sig), Some(body)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let verifier = Verifier::new(b"fuzz".to_vec());
    let _ = verifier.verify(1_700_000_000, Some(&text(ts)), Some(&text(sig)), body);
    // A signed one gets through exactly once.
    let now = 1_700_000_000;
    let good = verifier.sign(now, body);
    assert!(
        verifier
            .verify(now, Some(&now.to_string()), Some(&good), body)
            .is_ok()
    );
    assert!(
        verifier
            .verify(now, Some(&now.to_string()), Some(&good), body)
            .is_err()
    );
    match decode(route, &text(ct), body) {
        Ok(Inbound::Command(f)) => command(&f),
        Ok(Inbound::Interaction(p)) => interaction(&p),
        _ => {}
    }
});
