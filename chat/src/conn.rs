//! One chat connection, whatever carries it: the checks a `send` goes through, and the loop
//! that moves frames between a transport and the room.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use futures::{Stream, StreamExt as _};
use tokio::sync::{mpsc, watch};

use crate::protocol::{ClientFrame, Notice, NoticeCode, parse_client_frame};
use crate::room::{ConnId, RoomInput, RoomShared, WriteJob, ban_notice, notice_text, push};
use crate::store::NewMessage;
use crate::{Chat, Outbox, emotes, rules};

/// Who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (the JWT subject).
    pub user_id: String,
    /// Display name.
    pub user_name: String,
    /// Badges shown with each message.
    pub badges: Vec<String>,
    /// The channel owner (higher rate limit, no slow mode).
    pub broadcaster: bool,
}

/// What carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /api/channels/{id}/live-stream`.
    WebSocket,
    /// The `chat` data channel of a WHEP or WHIP session.
    DataChannel,
}

impl Transport {
    /// Metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::DataChannel => "datachannel",
        }
    }
}

/// The receiving side of a connection: frames to write, and the server's order to close.
pub struct ConnIo {
    /// Serialized frames, in order.
    pub rx: mpsc::Receiver<Arc<str>>,
    /// Becomes `Some(reason)` when the server disconnects this client (too slow).
    pub kicked: watch::Receiver<Option<&'static str>>,
}

/// A client connected to a room.
pub struct Conn {
    chat: Chat,
    id: ConnId,
    room: Arc<RoomShared>,
    identity: Option<Identity>,
    out: Outbox,
    transport: Transport,
    last_seen: u64,
}

impl Conn {
    pub(crate) fn new(
        chat: Chat,
        id: ConnId,
        room: Arc<RoomShared>,
        identity: Option<Identity>,
        out: Outbox,
        transport: Transport,
    ) -> Self {
        Self {
            chat,
            id,
            room,
            identity,
            out,
            transport,
            last_seen: 0,
        }
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.room.channel
    }

    /// Who this is, if signed in.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    fn notice(&self, n: &Notice) {
        push(&self.out, &notice_text(n));
    }

    fn refuse(&self, mut n: Notice, client_msg_id: Option<String>) {
        self.chat
            .inner
            .metrics
            .rejected
            .with_label_values(&[n.code.as_str()])
            .inc();
        n.client_msg_id = client_msg_id;
        self.notice(&n);
    }

    /// Handles one text frame from the client.
    pub async fn handle_text(&mut self, text: &str) {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err(n) => return self.notice(&n),
        };
        match frame {
            ClientFrame::Send {
                client_msg_id,
                message,
            } => self.send(client_msg_id, &message).await,
            ClientFrame::Seen { offset } => {
                // Only progress counts; a client repeating itself costs nothing.
                if offset > self.last_seen {
                    self.last_seen = offset;
                    let reporter = match &self.identity {
                        Some(i) => i.user_id.clone(),
                        None => format!("anon:{}:{}", self.chat.inner.node, self.id),
                    };
                    self.room.send(RoomInput::Seen { reporter, offset });
                }
            }
            ClientFrame::Resume { epoch, offset } => self.room.send(RoomInput::Resume {
                id: self.id,
                epoch,
                offset,
            }),
            ClientFrame::Auth { token } => self.authenticate(&token).await,
        }
    }

    /// Signs the connection in with a user JWT (the WebSocket `auth` frame).
    pub async fn authenticate(&mut self, token: &str) {
        match self.chat.inner.api.verify_token(token) {
            Ok(claims) => {
                let identity = self.chat.identity(&self.room.channel, &claims).await;
                self.room.send(RoomInput::Identify {
                    id: self.id,
                    user: identity.user_id.clone(),
                });
                self.identity = Some(identity);
            }
            Err(_) => self.notice(&Notice::new(
                NoticeCode::InvalidToken,
                "the token is not valid or has expired; you can read but not send",
            )),
        }
    }

    async fn send(&mut self, client_msg_id: Option<String>, raw: &str) {
        let Some(who) = self.identity.clone() else {
            return self.refuse(
                Notice::new(NoticeCode::AuthRequired, "sign in to chat"),
                client_msg_id,
            );
        };
        if client_msg_id.as_ref().is_some_and(|c| c.len() > 64) {
            return self.refuse(
                Notice::new(
                    NoticeCode::BadFrame,
                    "clientMsgId is limited to 64 characters",
                ),
                client_msg_id.map(|c| c.chars().take(64).collect()),
            );
        }
        let limits = &self.chat.inner.limits;
        let message = match rules::clean_text(raw, limits.max_chars) {
            Ok(m) => m,
            Err(n) => return self.refuse(n, client_msg_id),
        };
        match self
            .chat
            .inner
            .api
            .is_banned(&self.room.channel, &who.user_id)
            .await
        {
            Ok(Some(ban)) => {
                let n = ban_notice(ban.remaining_secs(Utc::now()).map(|s| s.max(1)));
                return self.refuse(n, client_msg_id);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "chat: checking bans");
                return self.refuse(
                    Notice::new(
                        NoticeCode::Unavailable,
                        "chat could not check your message; send it again",
                    ),
                    client_msg_id,
                );
            }
        }
        let admitted = {
            let mut t = self.room.throttle.lock();
            let res = t.admit(
                limits,
                &who.user_id,
                who.broadcaster,
                self.room.slow_mode(),
                Instant::now(),
            );
            if t.tracked() > 50_000 {
                t.prune(limits, self.room.slow_mode(), Instant::now());
            }
            res
        };
        if let Err(n) = admitted {
            return self.refuse(n, client_msg_id);
        }
        let job = WriteJob {
            msg: NewMessage {
                message_id: uuid::Uuid::new_v4().to_string(),
                emotes: emotes::parse(&message),
                message,
                user_id: who.user_id,
                user_name: who.user_name,
                badges: who.badges,
                client_msg_id: client_msg_id.clone(),
                sent_at: Utc::now(),
            },
            conn: self.id,
            out: self.out.clone(),
        };
        if self.room.writer.try_send(job).is_err() {
            self.refuse(
                Notice::new(
                    NoticeCode::Unavailable,
                    "chat is overloaded; nothing was posted, send it again",
                ),
                client_msg_id,
            );
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.room.send(RoomInput::Disconnect(self.id));
        self.chat
            .inner
            .metrics
            .connections
            .with_label_values(&[self.transport.as_str()])
            .dec();
    }
}

/// What a transport receives.
#[derive(Debug)]
pub enum Incoming {
    /// A text frame.
    Text(String),
    /// Something that is not text (refused with a notice).
    Other,
}

/// The sending half of a transport.
pub trait Sink: Send {
    /// Writes frames in order; `Err` when the peer is gone.
    fn send(&mut self, frames: &[Arc<str>]) -> impl Future<Output = Result<(), ()>> + Send;
    /// Closes with a reason (the client was too slow).
    fn close(&mut self, reason: &'static str) -> impl Future<Output = ()> + Send;
}

/// Frames written per wake-up at most (one flush for a burst).
const WRITE_BURST: usize = 64;

/// Moves frames both ways until the client leaves or is disconnected.
pub async fn serve<I, S>(mut conn: Conn, mut io: ConnIo, mut incoming: I, mut sink: S)
where
    I: Stream<Item = Incoming> + Unpin,
    S: Sink,
{
    let mut burst: Vec<Arc<str>> = Vec::with_capacity(WRITE_BURST);
    loop {
        tokio::select! {
            biased;
            _ = io.kicked.changed() => {
                let reason = io.kicked.borrow().unwrap_or("closed");
                sink.close(reason).await;
                break;
            }
            frame = io.rx.recv() => {
                let Some(frame) = frame else { break };
                burst.push(frame);
                while burst.len() < WRITE_BURST {
                    match io.rx.try_recv() {
                        Ok(f) => burst.push(f),
                        Err(_) => break,
                    }
                }
                if sink.send(&burst).await.is_err() {
                    break;
                }
                burst.clear();
            }
            msg = incoming.next() => match msg {
                Some(Incoming::Text(t)) => conn.handle_text(&t).await,
                Some(Incoming::Other) => conn.notice(&Notice::new(
                    NoticeCode::BadFrame,
                    "chat frames are JSON text",
                )),
                None => break,
            },
        }
    }
}
