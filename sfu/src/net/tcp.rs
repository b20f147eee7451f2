//! ICE-TCP (RFC 6544, passive candidates) with RFC 4571 framing: a 16-bit length before each
//! STUN/DTLS/RTP packet. For viewers behind networks that block UDP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use str0m::net::Protocol;

use super::stun;
use crate::registry::Shared;
use crate::shard::{Datagram, ShardMsg};

/// Frames queued toward one TCP peer before we drop (like a full UDP buffer would).
const WRITE_QUEUE: usize = 1024;

/// Accepts connections until the process ends.
pub(super) fn run(listener: TcpListener, local: SocketAddr, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("onair-tcp-conn".into())
            .spawn(move || connection(stream, local, shared));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start an ICE-TCP connection thread");
        }
    }
}

fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    buf.resize(u16::from_be_bytes(len) as usize, 0);
    s.read_exact(buf)
}

fn connection(mut stream: TcpStream, local: SocketAddr, shared: Arc<Shared>) {
    let Ok(remote) = stream.peer_addr() else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = Vec::with_capacity(2048);
    // The first frame must be a STUN binding request naming one of our peers.
    if read_frame(&mut stream, &mut buf).is_err() || !stun::is_stun(&buf) {
        return;
    }
    let Some(route) = stun::server_ufrag(&buf).and_then(|u| shared.ufrags.lock().get(u).copied())
    else {
        return;
    };
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(WRITE_QUEUE);
    shared.tcp.lock().insert(remote, tx);
    let closed = Arc::new(AtomicBool::new(false));
    let reader_closed = closed.clone();
    // Shards cache the sender, so the writer cannot wait for every sender to drop: it stops
    // when the reader side has ended.
    let spawned = std::thread::Builder::new()
        .name("onair-tcp-write".into())
        .spawn(move || {
            while !closed.load(Ordering::Acquire) {
                let Ok(frame) = rx.recv_timeout(Duration::from_millis(500)) else {
                    continue;
                };
                let Ok(len) = u16::try_from(frame.len()) else {
                    continue;
                };
                if writer
                    .write_all(&len.to_be_bytes())
                    .and_then(|_| writer.write_all(&frame))
                    .is_err()
                {
                    break;
                }
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
        });
    if spawned.is_err() {
        shared.tcp.lock().remove(&remote);
        return;
    }
    loop {
        let msg = ShardMsg::Datagram(Datagram {
            peer: route.peer,
            proto: Protocol::Tcp,
            source: remote,
            destination: local,
            data: std::mem::take(&mut buf),
            at: Instant::now(),
        });
        if shared.shards[route.shard].send(msg).is_err()
            || read_frame(&mut stream, &mut buf).is_err()
        {
            break;
        }
    }
    shared.tcp.lock().remove(&remote);
    reader_closed.store(true, Ordering::Release);
}
