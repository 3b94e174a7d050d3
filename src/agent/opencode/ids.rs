//! gaffer's message ids in OpenCode sessions: ascending like OpenCode's own, and naming the
//! prompt they carry, so a prompt is recognised in the history after a crash.

use super::*;

/// Whether the session's history has gaffer's message for `prompt_id` (its id ends with the
/// prompt's suffix).
pub(super) async fn has_prompt(
    client: &Client,
    session: &str,
    prompt_id: &str,
) -> Result<bool, AgentError> {
    let suffix = prompt_suffix(prompt_id);
    let messages = match client.messages(session).await {
        Ok(m) => m,
        Err(e) if matches!(e.status(), Some(404) | Some(400)) => {
            return Err(AgentError::NoSession(session.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(messages
        .iter()
        .any(|m| m.info.role == "user" && m.info.id.ends_with(&suffix)))
}

/// A message id in OpenCode's ascending format (`msg_` + 12 hex digits of
/// `ms * 0x1000 + counter` + 14 characters), whose last 14 characters name the prompt, so
/// the prompt is recognised in the history after a crash.
pub fn message_id(prompt_id: &str) -> String {
    static LAST: Mutex<(i64, u64)> = Mutex::new((0, 0));
    let now = now_ms();
    let counter = match LAST.lock() {
        Ok(mut l) => {
            if l.0 == now {
                l.1 += 1;
            } else {
                *l = (now, 0);
            }
            l.1
        }
        Err(_) => 0,
    };
    let stamp = ((now as u64).wrapping_mul(0x1000).wrapping_add(counter)) & 0xFFFF_FFFF_FFFF;
    format!("msg_{stamp:012x}{}", prompt_suffix(prompt_id))
}

/// The 14-character tail of gaffer's message ids: `gaffer` and 8 characters of the prompt
/// id's hash.
pub fn prompt_suffix(prompt_id: &str) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let hash = sha2::Sha256::digest(prompt_id.as_bytes());
    let mut s = String::from("gaffer");
    for b in hash.iter().take(8) {
        s.push(B62[(*b as usize) % 62] as char);
    }
    s
}
