//! What `receive` and `chat` print for a message: one line for people, or
//! one JSON object per line for scripts (docs/client.md, "The
//! `mixnet-client` CLI").

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use client::ReceivedMessage;
use protocol::fragment::MessageId;

/// A message's id as printed: 32 hexadecimal digits.
pub fn message_id(id: &MessageId) -> String {
    hex::encode(id.0)
}

/// Seconds since the Unix epoch.
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `t` as RFC 3339 in UTC, to the second (e.g. `2026-12-02T12:20:01Z`).
pub fn utc(t: SystemTime) -> String {
    let seconds = i64::try_from(unix_seconds(t)).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{seconds}"))
}

/// One line for people: `TIME SENDER: TEXT`, line breaks inside the text as
/// `\n`; bytes that are not UTF-8 as `[N bytes, base64 ...]`.
pub fn human_line(message: &ReceivedMessage, sender: &str) -> String {
    let body = match std::str::from_utf8(&message.bytes) {
        Ok(text) => text.trim_end_matches('\n').replace('\n', "\\n"),
        Err(_) => format!(
            "[{} bytes, base64 {}]",
            message.bytes.len(),
            base64::engine::general_purpose::STANDARD.encode(&message.bytes)
        ),
    };
    format!("{} {sender}: {body}", utc(message.received_at))
}

/// One JSON object on one line, for scripts.
pub fn json_line(message: &ReceivedMessage, sender: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), message_id(&message.id).into());
    object.insert("sender".into(), sender.into());
    object.insert(
        "contact".into(),
        message.contact.as_ref().map(|n| n.to_string()).into(),
    );
    object.insert(
        "short_address".into(),
        message.short_from().map(|a| a.to_string()).into(),
    );
    object.insert("address".into(), message.from.map(|a| a.to_string()).into());
    object.insert("identity".into(), message.peer.to_string().into());
    object.insert("time".into(), unix_seconds(message.received_at).into());
    object.insert("time_utc".into(), utc(message.received_at).into());
    match std::str::from_utf8(&message.bytes) {
        Ok(text) => object.insert("text".into(), text.into()),
        Err(_) => object.insert(
            "bytes".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&message.bytes)
                .into(),
        ),
    };
    object.insert(
        "expires".into(),
        message.expires_at.map(unix_seconds).into(),
    );
    object.insert(
        "in_reply_to".into(),
        message.in_reply_to.as_ref().map(message_id).into(),
    );
    object.insert("can_reply".into(), message.reply.is_some().into());
    serde_json::Value::Object(object).to_string()
}
