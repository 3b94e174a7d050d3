#![no_main]
//! What OpenCode sends: its `/event` stream (server-sent events, cut into chunks anywhere)
//! and a session's message history, through the code that decides what wakes a task and
//! what a session did (and that reading only what follows the settled start of a history
//! derives what a full read derives there).
//!
//! Input: the first byte chooses; for events the rest is the stream and each NUL byte is a
//! chunk boundary; for a history the rest is the JSON of `GET /session/<id>/message`.

use gaffer::agent::opencode::client::SseFrames;
use gaffer::agent::opencode::follow::{session_of, significant};
use gaffer::agent::opencode::history::{self, Live, Message, Tail};
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
        let full = history::derive(&messages, &live);
        // Deriving after the settled start gives exactly the events a full read gives there.
        let tail = history::derive_after(&Tail::default(), &messages, &live, usize::MAX).tail;
        let after = history::derive_after(&tail, &messages[tail.settled..], &live, usize::MAX);
        let from = (tail.settled as u64 + 1) << 24;
        let expected: Vec<_> = full.events.into_iter().filter(|(p, _)| *p >= from).collect();
        assert_eq!(after.events, expected);
        assert_eq!(after.latest_text, full.latest_text);
        let _ = history::question_answered(&messages, "Which one?");
        let _ = history::done_summary(&String::from_utf8_lossy(rest));
    }
});
