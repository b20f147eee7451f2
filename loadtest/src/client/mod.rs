//! WebRTC test clients on webrtc-rs: a WHIP publisher that sends a self-describing test
//! pattern and a WHEP viewer that decodes it and measures what arrived.
//!
//! Both sides go through [`SdpExchange`], so tests can connect them to an in-process answerer
//! instead of the HTTP server.

pub mod av1_dd;
pub mod chat;
pub mod chat_ws;
pub mod clip;
pub mod h264;
pub mod pattern;
mod peer;
pub mod publisher;
pub mod signaling;
pub mod viewer;

#[cfg(test)]
mod loopback;

use std::sync::Arc;

pub use chat::{CHAT_LABEL, ChatChannel};
pub use clip::{ClipCodec, EncodedClip};
pub use pattern::FrameStamp;
pub use peer::ClientOptions;
pub use publisher::{
    LayerSpec, LayerStats, Publisher, PublisherConfig, PublisherStats, VideoSource, publish,
    publish_with,
};
pub use signaling::{HttpExchange, HttpStatusError, LastResponse, Negotiated, SdpExchange};
pub use viewer::{
    AnswerRewrite, VideoRtp, Viewer, ViewerCodec, ViewerConfig, ViewerStats, play, play_with,
};
pub use webrtc::peer_connection::RTCPeerConnectionState as ConnectionState;

use webrtc::peer_connection::PeerConnection;

/// What `stop()` reports: the DELETE status and the final counters.
#[derive(Debug, Clone)]
pub struct StopReport<S> {
    /// HTTP status of the DELETE (`None` when the exchange was not HTTP).
    pub delete_status: Option<u16>,
    /// Counters at the moment media stopped.
    pub stats: S,
}

/// Best-effort teardown for a client dropped without `stop()`: DELETE and close in the
/// background if a runtime is still there.
fn spawn_terminate(exchange: Arc<dyn SdpExchange>, pc: Arc<dyn PeerConnection>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(async move {
            let _ = exchange.terminate().await;
            let _ = pc.close().await;
        });
    }
}
