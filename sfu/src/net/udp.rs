//! The UDP reader: routes each datagram to the shard that owns its peer.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::Protocol;

use super::stun;
use crate::registry::{Route, Shared};
use crate::shard::{Datagram, ShardMsg};

/// Reads one socket until shutdown.
pub(super) fn run(sock: Arc<UdpSocket>, local: SocketAddr, shared: Arc<Shared>) {
    if let Err(e) = sock.set_read_timeout(Some(Duration::from_millis(100))) {
        tracing::error!(error = %e, "cannot set the UDP read timeout");
        return;
    }
    // Known remote addresses, owned by this thread: no lock per datagram.
    let mut addrs: HashMap<SocketAddr, Route> = HashMap::new();
    let mut next_prune = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 2048];
    loop {
        if shared.shutting_down.load(Ordering::Acquire) && shared.peer_count() == 0 {
            return;
        }
        let (n, source) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                // ICMP errors surface here on Linux (ECONNREFUSED); they are not fatal.
                tracing::trace!(error = %e, "UDP receive error");
                continue;
            }
        };
        let at = Instant::now();
        let data = &buf[..n];
        // STUN names its peer by ufrag: it wins over the address map, so a new session from a
        // reused address (a reconnecting encoder) reaches the new peer.
        let by_ufrag = if stun::is_stun(data) {
            stun::server_ufrag(data).and_then(|u| shared.ufrags.lock().get(u).copied())
        } else {
            None
        };
        let route = match by_ufrag {
            Some(r) => {
                addrs.insert(source, r);
                r
            }
            None => match addrs.get(&source) {
                Some(r) => *r,
                None => continue,
            },
        };
        let msg = ShardMsg::Datagram(Datagram {
            peer: route.peer,
            proto: Protocol::Udp,
            source,
            destination: local,
            data: data.to_vec(),
            at,
        });
        let _ = shared.shards[route.shard].send(msg);
        if at >= next_prune {
            let live = shared
                .ufrags
                .lock()
                .values()
                .map(|r| r.peer)
                .collect::<std::collections::HashSet<_>>();
            addrs.retain(|_, r| live.contains(&r.peer));
            next_prune = at + Duration::from_secs(10);
        }
    }
}
