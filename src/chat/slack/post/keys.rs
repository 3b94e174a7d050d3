//! What a thread's record says was posted, by the keys in the messages' `block_id`s.

use super::{Key, SlackThread};

pub(super) fn key_name(key: &Key) -> String {
    match key {
        Key::Question(q) | Key::OwnQuestion(q) => q.to_string(),
        Key::Other(n) => n.clone(),
        Key::Parent => "parent".into(),
        Key::Milestone(s) => format!("m-{s}"),
    }
}

pub(super) fn posted(rec: &SlackThread, key: &Key) -> bool {
    match key {
        Key::Parent => true,
        Key::Milestone(seq) => *seq <= rec.posted_seq,
        Key::Question(q) | Key::OwnQuestion(q) => rec.questions.contains_key(q),
        Key::Other(n) => rec.posted.contains_key(n),
    }
}

pub(super) fn record(rec: &mut SlackThread, key: &Key, ts: String, tag: Option<String>) {
    match key {
        Key::Parent => {}
        Key::Milestone(seq) => rec.posted_seq = rec.posted_seq.max(*seq),
        Key::Question(q) => {
            rec.questions.insert(q.clone(), ts);
        }
        Key::OwnQuestion(q) => {
            rec.questions.insert(q.clone(), ts);
            rec.own_threads.insert(q.clone());
        }
        Key::Other(n) => {
            rec.posted.insert(n.clone(), ts);
        }
    }
    if let Some(tag) = tag {
        rec.shown.insert(key_name(key), tag);
    }
}

/// Takes the keys found in the thread as posted (what a crash left unrecorded).
pub(super) fn merge_keys(rec: &mut SlackThread, keys: Vec<(String, String)>) {
    for (block_id, ts) in keys {
        if let Some(key) = Key::parse(&block_id)
            && !posted(rec, &key)
        {
            tracing::info!(key = %block_id, "found a post not yet recorded; not posting it again");
            // What it shows is unknown: leave `shown` empty so it is updated if needed.
            record(rec, &key, ts, None);
        }
    }
}
