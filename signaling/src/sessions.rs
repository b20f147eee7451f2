//! WHIP and WHEP session resources: the unguessable URL, its ETag, and what it maps to.

use std::collections::HashMap;
use std::sync::Arc;

use onair_api::{Claims, StreamId};
use onair_sfu::PeerId;
use parking_lot::Mutex;
use rand::RngCore;
use tokio::sync::mpsc;

/// Ingest or egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WHIP publisher.
    Whip,
    /// WHEP viewer.
    Whep,
}

/// One server-sent-event stream of a WHEP session.
pub struct EventStream {
    /// Event types the client asked for.
    pub events: Vec<String>,
    /// Where formatted events go; taken by the GET that opens the stream.
    pub tx: mpsc::Sender<SseEvent>,
    /// The receiving end, until a GET claims it.
    pub rx: Option<mpsc::Receiver<SseEvent>>,
}

/// One event for an SSE stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Event type (`active`, `layers`...).
    pub kind: &'static str,
    /// JSON payload.
    pub data: serde_json::Value,
}

/// A session resource.
pub struct Session {
    /// Public id (the last path segment).
    pub id: String,
    /// WHIP or WHEP.
    pub kind: Kind,
    /// Channel it belongs to.
    pub channel: String,
    /// The media-plane peer.
    pub peer: PeerId,
    /// Current strong entity tag (changes on ICE restart).
    pub etag: String,
    /// The client's current ICE ufrag, to tell trickle from restart.
    pub remote_ufrag: String,
    /// Authenticated viewer, if a token came with the WHEP POST.
    pub user: Option<Claims>,
    /// The Livestream row a publisher opened.
    pub stream: Option<StreamId>,
    /// Waiting for a legacy client's SDP answer.
    pub awaiting_answer: bool,
    /// SSE streams by id.
    pub sse: HashMap<String, EventStream>,
}

/// A random URL-safe id with 128 bits of entropy.
pub fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// A new strong entity tag, quoted.
pub fn new_etag() -> String {
    format!("\"{}\"", random_id())
}

/// All sessions of this node.
#[derive(Default, Clone)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
}

impl Sessions {
    /// Stores a session.
    pub fn insert(&self, s: Session) {
        self.inner.lock().insert(s.id.clone(), s);
    }

    /// Runs `f` on a session of the given kind and channel, if it exists.
    pub fn with<R>(
        &self,
        kind: Kind,
        channel: &str,
        id: &str,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut g = self.inner.lock();
        let s = g
            .get_mut(id)
            .filter(|s| s.kind == kind && s.channel == channel)?;
        Some(f(s))
    }

    /// Removes a session of the given kind and channel, under one lock.
    pub fn take(&self, kind: Kind, channel: &str, id: &str) -> Option<Session> {
        let mut g = self.inner.lock();
        if g.get(id)
            .is_some_and(|s| s.kind == kind && s.channel == channel)
        {
            g.remove(id)
        } else {
            None
        }
    }

    /// Removes a session by id.
    pub fn remove(&self, id: &str) -> Option<Session> {
        self.inner.lock().remove(id)
    }

    /// Removes the session of a peer.
    pub fn remove_peer(&self, peer: PeerId) -> Option<Session> {
        let mut g = self.inner.lock();
        let id = g.values().find(|s| s.peer == peer).map(|s| s.id.clone())?;
        g.remove(&id)
    }

    /// Kind, channel and viewer of a peer's session.
    pub fn by_peer(&self, peer: PeerId) -> Option<(Kind, String, Option<Claims>)> {
        self.inner
            .lock()
            .values()
            .find(|s| s.peer == peer)
            .map(|s| (s.kind, s.channel.clone(), s.user.clone()))
    }

    /// Peers of a channel's sessions of one kind.
    pub fn peers(&self, kind: Kind, channel: &str) -> Vec<PeerId> {
        self.inner
            .lock()
            .values()
            .filter(|s| s.kind == kind && s.channel == channel)
            .map(|s| s.peer)
            .collect()
    }

    /// All sessions' ids.
    pub fn ids(&self) -> Vec<String> {
        self.inner.lock().keys().cloned().collect()
    }

    /// Delivers an event to every SSE stream of a channel's WHEP sessions that asked for it.
    pub fn broadcast(&self, channel: &str, ev: SseEvent) {
        let g = self.inner.lock();
        for s in g
            .values()
            .filter(|s| s.kind == Kind::Whep && s.channel == channel)
        {
            for st in s.sse.values() {
                if st.events.iter().any(|e| e == ev.kind) {
                    // A stream that cannot keep up misses events rather than stalling us.
                    let _ = st.tx.try_send(ev.clone());
                }
            }
        }
    }
}
