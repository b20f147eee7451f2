//! The data-channel transport: a WHEP viewer's (or WHIP publisher's) `chat` data channel,
//! bridged from media-plane events to chat connections.

use std::collections::HashMap;
use std::sync::Arc;

use onair_api::Claims;
use onair_sfu::{PeerId, Sfu, SfuEvent};
use tokio::sync::mpsc;

use crate::Chat;
use crate::conn::{self, Incoming, Transport};

/// The data-channel label chat uses.
pub const LABEL: &str = "chat";
/// Frames a data-channel client may have in flight to the server.
const INBOUND_FRAMES: usize = 64;

/// What signaling knows of a peer.
#[derive(Debug, Clone)]
pub struct PeerSession {
    /// Its channel.
    pub channel: String,
    /// The viewer's verified token, if the WHEP POST carried one.
    pub claims: Option<Claims>,
    /// A WHIP publisher (speaks as the channel owner).
    pub publisher: bool,
}

/// Looks a peer up in signaling's sessions.
pub type Resolver = Arc<dyn Fn(PeerId) -> Option<PeerSession> + Send + Sync>;

/// Runs the bridge until the media plane stops.
pub fn spawn_bridge(chat: Chat, sfu: Sfu, resolve: Resolver) -> tokio::task::JoinHandle<()> {
    let mut events = sfu.subscribe();
    tokio::spawn(async move {
        let mut conns: HashMap<PeerId, mpsc::Sender<Incoming>> = HashMap::new();
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "chat bridge lagged behind media-plane events");
                    continue;
                }
                Err(_) => return,
            };
            match e {
                SfuEvent::DataOpen { peer, label } if label == LABEL => {
                    let Some(session) = resolve(peer) else {
                        tracing::debug!(peer, "chat data channel of an unknown session");
                        continue;
                    };
                    let (tx, rx) = mpsc::channel(INBOUND_FRAMES);
                    conns.insert(peer, tx);
                    tokio::spawn(run(chat.clone(), sfu.clone(), peer, session, rx));
                }
                SfuEvent::DataText { peer, label, text } if label == LABEL => {
                    if let Some(tx) = conns.get(&peer)
                        && tx.try_send(Incoming::Text(text)).is_err()
                    {
                        tracing::debug!(peer, "chat data channel flooding; frame dropped");
                    }
                }
                SfuEvent::DataClose { peer, label } if label == LABEL => {
                    conns.remove(&peer);
                }
                SfuEvent::PeerClosed { peer, .. } => {
                    conns.remove(&peer);
                }
                _ => {}
            }
        }
    })
}

async fn run(
    chat: Chat,
    sfu: Sfu,
    peer: PeerId,
    session: PeerSession,
    rx: mpsc::Receiver<Incoming>,
) {
    let identity = if session.publisher {
        chat.owner_identity(&session.channel).await
    } else {
        match &session.claims {
            Some(c) => Some(chat.identity(&session.channel, c).await),
            None => None,
        }
    };
    let (conn, io) = match chat
        .connect(&session.channel, identity, Transport::DataChannel)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(peer, error = %e, "chat over data channel unavailable");
            return;
        }
    };
    let incoming =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    conn::serve(conn, io, Box::pin(incoming), DcSink { sfu, peer }).await;
}

struct DcSink {
    sfu: Sfu,
    peer: PeerId,
}

impl conn::Sink for DcSink {
    async fn send(&mut self, frames: &[Arc<str>]) -> Result<(), ()> {
        for f in frames {
            self.sfu
                .send_text(self.peer, LABEL, f.clone())
                .map_err(|_| ())?;
        }
        Ok(())
    }

    async fn close(&mut self, reason: &'static str) {
        tracing::debug!(peer = self.peer, reason, "closing a chat data channel");
        let _ = self.sfu.close_data_channel(self.peer, LABEL);
    }
}
