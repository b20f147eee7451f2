//! The IO shell: UDP sockets and ICE-TCP listeners on the media port, and the threads that read
//! them and hand datagrams to the shard that owns the peer.

pub mod stun;
mod tcp;
mod udp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;

use crate::SfuConfig;
use crate::metrics::Metrics;
use crate::registry::Shared;
use crate::rtc::RtcFactory;
use crate::shard::Shard;

/// Addresses to bind and advertise for a configuration.
pub fn media_addresses(cfg: &SfuConfig) -> Vec<IpAddr> {
    if !cfg.advertise.is_empty() {
        return cfg.advertise.clone();
    }
    if !cfg.bind.ip().is_unspecified() {
        return vec![cfg.bind.ip()];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
                .collect()
        })
        .unwrap_or_default();
    // Loopback last: lets a browser on the same machine connect, harmless elsewhere.
    ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    ips.dedup();
    ips
}

/// Socket buffer size the media socket asks for; the kernel grants at most
/// `net.core.rmem_max`/`wmem_max` (docs/OPERATIONS.md).
const SOCKET_BUFFER: usize = 8 << 20;

/// Binds a media UDP socket with large buffers: one socket carries every peer's traffic on its
/// address, and a keyframe fanned out to many viewers is a burst.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let udp = UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&udp);
    if let Err(e) = sock
        .set_recv_buffer_size(SOCKET_BUFFER)
        .and_then(|()| sock.set_send_buffer_size(SOCKET_BUFFER))
    {
        tracing::warn!(error = %e, "cannot size the media socket buffers");
    }
    tracing::debug!(
        recv = ?sock.recv_buffer_size(),
        send = ?sock.send_buffer_size(),
        "media socket buffers (the kernel caps them at rmem_max/wmem_max)"
    );
    Ok(udp)
}

/// Whether this host has `ip` on one of its interfaces.
fn is_local(ip: IpAddr) -> bool {
    if_addrs::get_if_addrs().is_ok_and(|ifs| ifs.iter().any(|i| i.ip() == ip))
}

/// Binds every socket, starts the shards and the readers, and returns the shared state.
pub(crate) fn start(
    cfg: SfuConfig,
    registry: &prometheus::Registry,
) -> std::io::Result<Arc<Shared>> {
    let ips = media_addresses(&cfg);
    let mut port = cfg.bind.port();
    let mut sockets = Vec::new();
    let mut listeners = Vec::new();
    // Behind NAT (a cloud VM's public address is not on any interface) the advertised address
    // cannot be bound: bind the unspecified address once and attribute every datagram to the
    // first advertised address, which is where clients were told to send.
    let behind_nat = cfg.bind.ip().is_unspecified()
        && !cfg.advertise.is_empty()
        && cfg.advertise.iter().any(|ip| !is_local(*ip));
    if behind_nat {
        let udp = bind_udp(cfg.bind)?;
        port = udp.local_addr()?.port();
        let tcp = TcpListener::bind(SocketAddr::new(cfg.bind.ip(), port))?;
        let first = SocketAddr::new(ips[0], port);
        sockets.push((first, Arc::new(udp)));
        listeners.push((first, tcp));
    }
    for ip in ips.iter().filter(|_| !behind_nat) {
        // With an unspecified bind we advertise individual addresses and bind each one, so the
        // destination of every datagram is known (str0m pairs candidates by it).
        let bind_ip = if cfg.bind.ip().is_unspecified() || cfg.advertise.is_empty() {
            *ip
        } else {
            cfg.bind.ip()
        };
        let udp = bind_udp(SocketAddr::new(bind_ip, port))?;
        port = udp.local_addr()?.port();
        let tcp = TcpListener::bind(SocketAddr::new(bind_ip, port))?;
        let advertised = SocketAddr::new(*ip, port);
        sockets.push((advertised, Arc::new(udp)));
        listeners.push((advertised, tcp));
        if !cfg.advertise.is_empty() && !cfg.bind.ip().is_unspecified() {
            break;
        }
    }
    let advertised: Vec<SocketAddr> = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
    let factory = RtcFactory::new(&advertised).map_err(std::io::Error::other)?;
    let metrics = Metrics::new(registry).map_err(std::io::Error::other)?;

    let n = if cfg.shards == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.shards
    };
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| crossbeam_channel::unbounded()).unzip();
    let local_addr = sockets.first().map(|s| s.0).unwrap_or(cfg.bind);
    let shared = Arc::new(Shared::new(factory, local_addr, txs, metrics));
    let socks: Arc<[(SocketAddr, Arc<UdpSocket>)]> = sockets.clone().into();

    let mut threads = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let shard = Shard::new(i, rx, shared.clone(), socks.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("onair-shard-{i}"))
                .spawn(move || shard.run())?,
        );
    }
    for (addr, sock) in sockets {
        let shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("onair-udp-{addr}"))
                .spawn(move || udp::run(sock, addr, shared))?,
        );
    }
    for (addr, listener) in listeners {
        let shared = shared.clone();
        // The accept loop blocks in accept(); it is not joined at shutdown.
        std::thread::Builder::new()
            .name(format!("onair-tcp-{addr}"))
            .spawn(move || tcp::run(listener, addr, shared))?;
    }
    tracing::info!(addrs = ?advertised, shards = n, "media plane listening (UDP and ICE-TCP)");
    shared.threads.lock().extend(threads);
    Ok(shared)
}
