//! The chat wire protocol (DESIGN §3): JSON text frames, the same on the data channel and the
//! WebSocket.

use serde::{Deserialize, Serialize};

use crate::emotes::EmoteRange;

/// Largest frame a client may send, in bytes (a 500-character message is at most 2 KB of UTF-8).
pub const MAX_CLIENT_FRAME: usize = 8 * 1024;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// Post a message.
    Send {
        /// The client's id for this message; a resend with the same id is not posted twice.
        #[serde(rename = "clientMsgId", default)]
        client_msg_id: Option<String>,
        /// The text.
        message: String,
    },
    /// The client shows every message up to `offset`.
    Seen {
        /// Highest offset on screen.
        offset: u64,
    },
    /// Replay what was missed since (`epoch`, `offset`).
    Resume {
        /// Epoch the client last saw.
        epoch: String,
        /// Last offset the client holds.
        offset: u64,
    },
    /// WebSocket only: authenticate after connecting (browsers cannot set headers).
    Auth {
        /// A user JWT.
        token: String,
    },
}

/// One chat message as clients see it (and as it is stored and carried on the bus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    /// Unique id.
    #[serde(rename = "messageID")]
    pub message_id: String,
    /// Gapless per-channel position.
    pub offset: u64,
    /// Author.
    #[serde(rename = "userID")]
    pub user_id: String,
    /// Author's display name.
    pub user_name: String,
    /// The text, trimmed.
    pub message: String,
    /// Emote tokens in the text.
    pub emotes: Vec<EmoteRange>,
    /// Accepted at (RFC 3339, milliseconds, UTC).
    pub sent_at: String,
    /// `broadcaster`, `subscriber/<tier>`.
    pub badges: Vec<String>,
}

/// Delivery status of a sender's own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    /// Durably stored.
    Delivered,
    /// Published to every node.
    Sent,
    /// Another viewer has it on screen.
    Seen,
}

/// Why a client is told no (the `code` of a notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeCode {
    /// Permanently banned in this channel.
    Banned,
    /// Timed out for some seconds more.
    TimedOut,
    /// Too many messages.
    RateLimited,
    /// Over 500 characters.
    TooLong,
    /// Nothing left after trimming.
    Empty,
    /// Control characters in the text.
    InvalidText,
    /// Slow mode: wait before the next message.
    SlowMode,
    /// Sending needs a signed-in user.
    AuthRequired,
    /// The frame is not a valid client frame.
    BadFrame,
    /// The token of an `auth` frame is not valid.
    InvalidToken,
    /// The message could not be stored; nothing was posted.
    Unavailable,
}

impl NoticeCode {
    /// Stable label (also the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Banned => "banned",
            Self::TimedOut => "timed_out",
            Self::RateLimited => "rate_limited",
            Self::TooLong => "too_long",
            Self::Empty => "empty",
            Self::InvalidText => "invalid_text",
            Self::SlowMode => "slow_mode",
            Self::AuthRequired => "auth_required",
            Self::BadFrame => "bad_frame",
            Self::InvalidToken => "invalid_token",
            Self::Unavailable => "unavailable",
        }
    }
}

/// A notice to one client: a code and a readable sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Machine-readable reason.
    pub code: NoticeCode,
    /// Human-readable sentence.
    pub message: String,
    /// Seconds to wait (rate limit, slow mode, timeout), when known.
    pub retry_after: Option<u64>,
    /// The message this answers, when it answers a `send`.
    pub client_msg_id: Option<String>,
}

impl Notice {
    /// A notice with no wait and no message id.
    pub fn new(code: NoticeCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            client_msg_id: None,
        }
    }

    /// Adds the seconds to wait.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

/// A frame to a client.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// First frame on every connection: where the channel's history stands.
    Welcome {
        /// History epoch.
        epoch: &'a str,
        /// Newest offset at connect time.
        offset: u64,
        /// Who the server thinks you are (`null` = reading only).
        #[serde(rename = "userID")]
        user_id: Option<&'a str>,
        /// Slow mode in force (0 = off).
        #[serde(rename = "slowModeSeconds")]
        slow_mode_seconds: u32,
    },
    /// A chat message.
    Message(&'a ChatMessage),
    /// The fate of the sender's own message.
    Ack {
        /// The client's id.
        #[serde(rename = "clientMsgId")]
        client_msg_id: Option<&'a str>,
        /// Delivery state.
        status: AckStatus,
        /// Server id.
        #[serde(rename = "messageID")]
        message_id: &'a str,
        /// Offset.
        offset: u64,
    },
    /// A user was banned (room-wide).
    Ban {
        /// Who.
        #[serde(rename = "userID")]
        user_id: &'a str,
        /// Timeout length; `null` = permanent.
        #[serde(rename = "durationSeconds")]
        duration_seconds: Option<u64>,
    },
    /// To one client: why something was refused.
    Notice {
        /// Reason.
        code: NoticeCode,
        /// Sentence.
        message: &'a str,
        /// Seconds to wait, when known.
        #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
        /// The refused message, when a `send` is refused.
        #[serde(rename = "clientMsgId", skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
    },
    /// The answer to `resume`.
    Resumed {
        /// `false`: the gap is too old; reload history over REST.
        recovered: bool,
        /// Current epoch.
        epoch: &'a str,
        /// Newest offset sent.
        offset: u64,
    },
    /// Chat settings changed.
    Settings {
        /// Slow mode (0 = off).
        #[serde(rename = "slowModeSeconds")]
        slow_mode_seconds: u32,
    },
    /// The channel's watcher count.
    Watchers {
        /// Count.
        count: u64,
    },
    /// The stream went live or offline.
    Stream {
        /// `live` or `offline`.
        status: &'a str,
    },
}

impl ServerFrame<'_> {
    /// The JSON text of the frame.
    pub fn to_text(&self) -> String {
        // Serializing these plain structs cannot fail (no maps with non-string keys).
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

impl<'a> From<&'a Notice> for ServerFrame<'a> {
    fn from(n: &'a Notice) -> Self {
        ServerFrame::Notice {
            code: n.code,
            message: &n.message,
            retry_after: n.retry_after,
            client_msg_id: n.client_msg_id.as_deref(),
        }
    }
}

/// Parses a client frame; a notice for anything that is not one.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, Notice> {
    if text.len() > MAX_CLIENT_FRAME {
        return Err(Notice::new(
            NoticeCode::TooLong,
            format!("frames are limited to {MAX_CLIENT_FRAME} bytes"),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        Notice::new(
            NoticeCode::BadFrame,
            format!("not a chat frame ({e}); expected send, seen, resume or auth"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_frames_of_the_contract() {
        assert_eq!(
            parse_client_frame(r#"{"type":"send","clientMsgId":"c1","message":"hi"}"#),
            Ok(ClientFrame::Send {
                client_msg_id: Some("c1".into()),
                message: "hi".into()
            })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"seen","offset":7}"#),
            Ok(ClientFrame::Seen { offset: 7 })
        );
        assert_eq!(
            parse_client_frame(r#"{"type":"resume","epoch":"e","offset":0}"#),
            Ok(ClientFrame::Resume {
                epoch: "e".into(),
                offset: 0
            })
        );
        for bad in [
            "",
            "null",
            "[]",
            r#"{"type":"nope"}"#,
            r#"{"type":"seen","offset":-1}"#,
            r#"{"message":"no type"}"#,
        ] {
            assert_eq!(
                parse_client_frame(bad).map_err(|n| n.code),
                Err(NoticeCode::BadFrame),
                "{bad}"
            );
        }
        let huge = format!(
            r#"{{"type":"send","message":"{}"}}"#,
            "a".repeat(MAX_CLIENT_FRAME)
        );
        assert_eq!(
            parse_client_frame(&huge).map_err(|n| n.code),
            Err(NoticeCode::TooLong)
        );
    }

    #[test]
    fn server_frames_use_the_contract_field_names() {
        let m = ChatMessage {
            message_id: "m".into(),
            offset: 3,
            user_id: "u".into(),
            user_name: "U".into(),
            message: "hi :smile".into(),
            emotes: vec![EmoteRange {
                id: "smile".into(),
                start: 3,
                end: 8,
            }],
            sent_at: "2026-11-24T00:00:00.000Z".into(),
            badges: vec![],
        };
        let v: serde_json::Value =
            serde_json::from_str(&ServerFrame::Message(&m).to_text()).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["messageID"], "m");
        assert_eq!(v["userID"], "u");
        assert_eq!(v["userName"], "U");
        assert_eq!(v["sentAt"], "2026-11-24T00:00:00.000Z");
        assert_eq!(v["emotes"][0]["id"], "smile");
        let ack = ServerFrame::Ack {
            client_msg_id: Some("c"),
            status: AckStatus::Delivered,
            message_id: "m",
            offset: 3,
        };
        let v: serde_json::Value = serde_json::from_str(&ack.to_text()).unwrap();
        assert_eq!(v["status"], "delivered");
        assert_eq!(v["clientMsgId"], "c");
        let n = Notice::new(NoticeCode::TimedOut, "wait").retry_after(5);
        let v: serde_json::Value = serde_json::from_str(&ServerFrame::from(&n).to_text()).unwrap();
        assert_eq!(v["code"], "timed_out");
        assert_eq!(v["retryAfter"], 5);
        let b = ServerFrame::Ban {
            user_id: "x",
            duration_seconds: None,
        };
        let v: serde_json::Value = serde_json::from_str(&b.to_text()).unwrap();
        assert_eq!(v["durationSeconds"], serde_json::Value::Null);
    }
}
