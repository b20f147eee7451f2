//! The `chat` data channel as text in / text out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::data_channel::{DataChannel, DataChannelEvent};

/// Label of the chat data channel (DESIGN.md §3): opened by the client before its offer.
pub const CHAT_LABEL: &str = "chat";

/// A data channel carrying UTF-8 text messages.
pub struct ChatChannel {
    dc: Arc<dyn DataChannel>,
    open: watch::Receiver<bool>,
    incoming: Mutex<mpsc::UnboundedReceiver<String>>,
    task: JoinHandle<()>,
}

/// Sends on an optional chat channel (an error when the client was built without one).
pub(crate) async fn send_on(chat: Option<&ChatChannel>, text: &str) -> anyhow::Result<()> {
    chat.ok_or_else(|| anyhow::anyhow!("no data channel configured"))?
        .send(text)
        .await
}

impl ChatChannel {
    pub(crate) fn spawn(dc: Arc<dyn DataChannel>) -> Self {
        let (open_tx, open) = watch::channel(false);
        let (msg_tx, incoming) = mpsc::unbounded_channel();
        let reader = dc.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = reader.poll().await {
                match event {
                    DataChannelEvent::OnOpen => {
                        open_tx.send_replace(true);
                    }
                    DataChannelEvent::OnMessage(msg) => {
                        if !msg.is_string {
                            tracing::debug!("ignoring binary chat message");
                            continue;
                        }
                        let text = String::from_utf8_lossy(&msg.data).into_owned();
                        if msg_tx.send(text).is_err() {
                            break;
                        }
                    }
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
            open_tx.send_replace(false);
        });
        Self {
            dc,
            open,
            incoming: Mutex::new(incoming),
            task,
        }
    }

    /// Whether the channel has opened (and not closed since).
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Waits until the channel is open.
    pub async fn wait_open(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut open = self.open.clone();
        tokio::time::timeout(timeout, open.wait_for(|o| *o))
            .await
            .map_err(|_| anyhow::anyhow!("chat data channel not open after {timeout:?}"))?
            .map_err(|_| anyhow::anyhow!("chat data channel closed"))?;
        Ok(())
    }

    /// Sends one text message, waiting up to 10 s for the channel to open first.
    pub async fn send(&self, text: &str) -> anyhow::Result<()> {
        self.wait_open(Duration::from_secs(10)).await?;
        self.dc
            .send_text(text)
            .await
            .map_err(|e| anyhow::anyhow!("data channel send: {e}"))
    }

    /// The next received text message; `None` once the channel has closed.
    pub async fn recv(&self) -> Option<String> {
        self.incoming.lock().await.recv().await
    }

    /// The next received text message, or `None` after `timeout`.
    pub async fn recv_timeout(&self, timeout: Duration) -> Option<String> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for ChatChannel {
    fn drop(&mut self) {
        self.task.abort();
    }
}
