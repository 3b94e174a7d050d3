#![no_main]
//! What OpenCode sends: its `/event` stream (server-sent events, cut into chunks anywhere)
//! and a session's message history, through the code that decides what wakes a task and
//! what a session did.
//!
//! Input: the first byte chooses; for events the rest is the stream and each NUL byte is a
//! chunk boundary; for a history the rest is the JSON of `GET /session/<id>/message`.

use gaffer::agent::opencode::client::SseFrames;
use gaffer::agent::opencode::follow::{session_of, significant};
use gaffer::agent::opencode::history::{self, Live, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        let mut frames = SseFrames::default();
        for chunk in rest.split(|b| *b == 0) {
            frames.push(chunk);
            while let Some(ev) = frames.next_event() {
                let _ = significant(&ev);
                let _ = session_of(&ev);
            }
        }
    } else if let Ok(messages) = serde_json::from_slice::<Vec<Message>>(rest) {
        let live = Live {
            busy: kind & 2 != 0,
            server_started_ms: if kind & 4 != 0 { i64::MAX } else { 0 },
            questions: Vec::new(),
            permissions: Vec::new(),
        };
        let _ = history::derive(&messages, &live);
        let _ = history::question_answered(&messages, "Which one?");
        let _ = history::done_summary(&String::from_utf8_lossy(rest));
    }
});
