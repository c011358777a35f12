//! What `receive` and `chat` print for a message: one line for people, or
//! one JSON object per line for scripts (docs/client.md, "The
//! `mixnet-client` CLI").

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use client::{RecalledMessage, ReceivedMessage};
use protocol::fragment::MessageId;

/// A message's id as printed: 32 hexadecimal digits.
pub fn message_id(id: &MessageId) -> String {
    hex::encode(id.0)
}

/// Reads a message id as `send` prints it.
pub fn parse_message_id(text: &str) -> anyhow::Result<MessageId> {
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{text:?} is not a message id (32 hexadecimal digits, as `send` printed)"
            )
        })?;
    Ok(MessageId(bytes))
}

/// Who recalled, for people: the contact's name, else the identity.
fn recaller(recalled: &RecalledMessage) -> String {
    match &recalled.contact {
        Some(name) => name.to_string(),
        None => recalled.peer.to_string(),
    }
}

/// One line for people: `TIME SENDER recalled ID`.
pub fn recalled_line(recalled: &RecalledMessage) -> String {
    format!(
        "{} {} recalled {}",
        utc(recalled.recalled_at),
        recaller(recalled),
        message_id(&recalled.id)
    )
}

/// One JSON object on one line: `{"recalled": ID, ...}`.
pub fn recalled_json_line(recalled: &RecalledMessage) -> String {
    let mut object = serde_json::Map::new();
    object.insert("recalled".into(), message_id(&recalled.id).into());
    object.insert("sender".into(), recaller(recalled).into());
    object.insert(
        "contact".into(),
        recalled.contact.as_ref().map(|n| n.to_string()).into(),
    );
    object.insert("identity".into(), recalled.peer.to_string().into());
    object.insert("time".into(), unix_seconds(recalled.recalled_at).into());
    serde_json::Value::Object(object).to_string()
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
