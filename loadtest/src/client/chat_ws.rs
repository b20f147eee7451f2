//! A chat WebSocket client (DESIGN §3): JSON text frames over
//! `GET /api/channels/{channel}/live-stream`, for tests and the chat load benchmark.
//!
//! [`ChatWs::next`] parses every frame into a [`serde_json::Value`]; load clients that only
//! need a field or two can read the raw text with [`ChatWs::next_text`] instead.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The text of a received frame, shared with the socket's read buffer (derefs to `str`).
pub use tokio_tungstenite::tungstenite::Utf8Bytes;

/// How long the TCP connect and WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server has to send `welcome` after the upgrade.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per connection: chat frames are small, and load tests open thousands.
const READ_BUFFER: usize = 16 * 1024;

/// A connected chat WebSocket that has received its `welcome` frame.
pub struct ChatWs {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    welcome: Value,
    seen: Vec<Value>,
}

/// The error of a read on a socket the server closed: the close code and reason, when sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// WebSocket close code (`4008`: the client was too slow); `None` without a close frame.
    pub code: Option<u16>,
    /// Close reason.
    pub reason: String,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(
                f,
                "the server closed the chat socket: code {code}, reason {:?}",
                self.reason
            ),
            None => write!(f, "the chat socket closed without a close code"),
        }
    }
}

impl std::error::Error for Closed {}

impl ChatWs {
    /// Connects to `{http_base}/api/channels/{channel}/live-stream` (http -> ws), with `?token=` when given, and waits for the welcome frame.
    pub async fn connect(
        http_base: &str,
        channel: &str,
        token: Option<&str>,
    ) -> anyhow::Result<ChatWs> {
        let url = ws_url(http_base, channel, token)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let (ws, _response) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {} timed out", redact(&url)))?
        .map_err(|e| connect_error(e, &url))?;
        let mut chat = ChatWs {
            ws,
            welcome: Value::Null,
            seen: Vec::new(),
        };
        chat.welcome = chat
            .wait_for(WELCOME_TIMEOUT, |f| f["type"] == "welcome")
            .await
            .with_context(|| format!("waiting for the welcome frame of {}", redact(&url)))?;
        Ok(chat)
    }

    /// The `welcome` frame the server sent first.
    pub fn welcome(&self) -> &Value {
        &self.welcome
    }

    /// Sends one JSON text frame.
    pub async fn send_json(&mut self, v: &Value) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .context("writing to the chat socket")
    }

    /// Sends a `send` frame: post `message` under the client id `client_msg_id`.
    pub async fn send_text(&mut self, client_msg_id: &str, message: &str) -> anyhow::Result<()> {
        self.send_json(&serde_json::json!({
            "type": "send",
            "clientMsgId": client_msg_id,
            "message": message,
        }))
        .await
    }

    /// Next server frame (JSON), or None on timeout; Err when the socket closed (error includes the close code and reason).
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<Value>> {
        let Some(text) = self.next_text(timeout).await? else {
            return Ok(None);
        };
        let v = serde_json::from_str(&text).with_context(|| {
            format!(
                "the server sent a text frame that is not JSON: {:?}",
                truncate(&text, 200)
            )
        })?;
        Ok(Some(v))
    }

    /// Next server text frame unparsed, or None on timeout; Err (a [`Closed`] when the server closed) like [`ChatWs::next`].
    pub async fn next_text(&mut self, timeout: Duration) -> anyhow::Result<Option<Utf8Bytes>> {
        let deadline = Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(None) => {
                    return Err(Closed {
                        code: None,
                        reason: String::new(),
                    }
                    .into());
                }
                Ok(Some(Err(e))) => return Err(read_error(e)),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(text) => return Ok(Some(text)),
                Message::Close(frame) => {
                    return Err(Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    }
                    .into());
                }
                // Pings are answered by tungstenite; the protocol has no binary frames.
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    /// Reads frames until `pred` matches one (returned), failing after `timeout`; frames read on the way are kept in a buffer readable with `take_seen()`.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let before = self.seen.len();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Some(v) if pred(&v) => return Ok(v),
                Some(v) => self.seen.push(v),
                None => anyhow::bail!(
                    "no matching chat frame within {timeout:?} ({} other frames read)",
                    self.seen.len() - before
                ),
            }
        }
    }

    /// Takes the frames [`ChatWs::wait_for`] read past without matching, oldest first.
    pub fn take_seen(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.seen)
    }

    /// Sends a close frame and waits briefly for the server's.
    pub async fn close(mut self) {
        if self.ws.close(None).await.is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, self.ws.next()).await {}
    }
}

/// The claims the server reads (see `onair_api::Claims`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    exp: u64,
    iat: u64,
}

/// Mints an HS256 user token (sub, name, exp = now + ttl) like the server's.
pub fn mint_token(
    secret: &str,
    user_id: &str,
    name: &str,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let claims = Claims {
        sub: user_id.to_string(),
        name: name.to_string(),
        exp: now.saturating_add(ttl.as_secs()),
        iat: now,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .with_context(|| format!("signing a token for {user_id}"))
}

/// `http://host/base` -> `ws://host/base/api/channels/{channel}/live-stream[?token=...]`.
fn ws_url(http_base: &str, channel: &str, token: Option<&str>) -> anyhow::Result<String> {
    let base = http_base.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if base.starts_with("ws://") || base.starts_with("wss://") {
        base.to_string()
    } else {
        anyhow::bail!("{http_base} is not an http:// or https:// URL");
    };
    let mut url = format!(
        "{rest}/api/channels/{}/live-stream",
        percent_encode(channel)
    );
    if let Some(t) = token {
        url.push_str("?token=");
        url.push_str(&percent_encode(t));
    }
    Ok(url)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL without its token, for error messages.
fn redact(url: &str) -> &str {
    url.split_once("?token=").map_or(url, |(u, _)| u)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn connect_error(e: tungstenite::Error, url: &str) -> anyhow::Error {
    match e {
        tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            anyhow::anyhow!(
                "the server refused the chat WebSocket {}: HTTP {}: {}",
                redact(url),
                resp.status(),
                truncate(&body, 300)
            )
        }
        e => anyhow::Error::new(e).context(format!("connecting to {}", redact(url))),
    }
}

fn read_error(e: tungstenite::Error) -> anyhow::Error {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Closed {
            code: None,
            reason: String::new(),
        }
        .into(),
        e => anyhow::Error::new(e).context("reading the chat socket"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::ws::{CloseFrame, Message as AxMessage, WebSocket, WebSocketUpgrade};
    use axum::response::IntoResponse;

    #[test]
    fn mint_token_decodes_with_the_secret() {
        let token = mint_token("s3cret", "alice_1", "Alice", Duration::from_secs(3600)).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap();
        assert_eq!(data.header.alg, jsonwebtoken::Algorithm::HS256);
        assert_eq!(data.claims.sub, "alice_1");
        assert_eq!(data.claims.name, "Alice");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(data.claims.exp >= now + 3590 && data.claims.exp <= now + 3610);
        assert!(
            jsonwebtoken::decode::<Claims>(
                &token,
                &jsonwebtoken::DecodingKey::from_secret(b"other"),
                &validation,
            )
            .is_err()
        );
    }

    #[test]
    fn urls_switch_scheme_and_encode_the_token() {
        assert_eq!(
            ws_url("http://127.0.0.1:8080/", "demo", None).unwrap(),
            "ws://127.0.0.1:8080/api/channels/demo/live-stream"
        );
        assert_eq!(
            ws_url("https://x.example", "demo", Some("a.b_c+/=")).unwrap(),
            "wss://x.example/api/channels/demo/live-stream?token=a.b_c%2B%2F%3D"
        );
        assert!(ws_url("ftp://x", "demo", None).is_err());
    }

    /// A stand-in chat server: welcome, echo of the first frame, a notice, then close 4008.
    async fn fake_chat(ws: WebSocketUpgrade) -> impl IntoResponse {
        ws.on_upgrade(|mut socket: WebSocket| async move {
            let welcome = r#"{"type":"welcome","epoch":"e1","offset":0,"userID":null,"slowModeSeconds":0}"#;
            let _ = socket.send(AxMessage::Text(welcome.into())).await;
            if let Some(Ok(AxMessage::Text(t))) = socket.recv().await {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let notice = serde_json::json!({"type":"notice","code":"rate_limited","message":"slow down"});
                let _ = socket.send(AxMessage::Text(notice.to_string().into())).await;
                let ack = serde_json::json!({
                    "type": "ack", "clientMsgId": v["clientMsgId"], "status": "delivered",
                    "messageID": "m1", "offset": 1,
                });
                let _ = socket.send(AxMessage::Text(ack.to_string().into())).await;
            }
            let _ = socket
                .send(AxMessage::Close(Some(CloseFrame {
                    code: 4008,
                    reason: "too slow".into(),
                })))
                .await;
        })
    }

    #[tokio::test]
    async fn talks_to_a_chat_socket_and_reports_the_close_code() {
        let app = axum::Router::new().route(
            "/api/channels/{channel}/live-stream",
            axum::routing::get(fake_chat),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let mut chat = ChatWs::connect(&format!("http://{addr}"), "demo", Some("t"))
            .await
            .unwrap();
        assert_eq!(chat.welcome()["epoch"], "e1");
        chat.send_text("c1", "hello").await.unwrap();
        let ack = chat
            .wait_for(Duration::from_secs(5), |f| f["type"] == "ack")
            .await
            .unwrap();
        assert_eq!(ack["clientMsgId"], "c1");
        let seen = chat.take_seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["code"], "rate_limited");
        assert!(chat.take_seen().is_empty());
        let err = chat.next(Duration::from_secs(5)).await.unwrap_err();
        let closed = err.downcast_ref::<Closed>().unwrap();
        assert_eq!(closed.code, Some(4008));
        assert_eq!(closed.reason, "too slow");
        assert!(err.to_string().contains("4008"));
    }

    #[tokio::test]
    async fn times_out_without_a_frame() {
        let app = axum::Router::new().route(
            "/api/channels/{channel}/live-stream",
            axum::routing::get(|ws: WebSocketUpgrade| async move {
                ws.on_upgrade(|mut socket: WebSocket| async move {
                    let welcome = r#"{"type":"welcome","epoch":"e","offset":0,"userID":null,"slowModeSeconds":0}"#;
                    let _ = socket.send(AxMessage::Text(welcome.into())).await;
                    while let Some(Ok(_)) = socket.recv().await {}
                })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut chat = ChatWs::connect(&format!("http://{addr}/"), "demo", None)
            .await
            .unwrap();
        assert!(
            chat.next(Duration::from_millis(50))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            chat.wait_for(Duration::from_millis(50), |_| true)
                .await
                .is_err()
        );
        chat.close().await;
    }

    #[tokio::test]
    async fn a_refused_upgrade_reports_the_http_status() {
        let app = axum::Router::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let err = ChatWs::connect(&format!("http://{addr}"), "demo", Some("secret-token"))
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("404"), "{err}");
        assert!(!err.contains("secret-token"), "{err}");
    }
}
