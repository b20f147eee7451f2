//! A UDP proxy on 127.0.0.1 that limits the upstream -> client bandwidth, for simulating a
//! viewer behind a slow link.
//!
//! The client sends to [`Shaper::local_addr`]; the shaper relays to `upstream` from its own
//! socket, so the server sees the shaper as the client (a peer-reflexive ICE candidate). The
//! way back passes a bottleneck: packets leave at the configured rate, wait in a queue holding
//! at most [`QUEUE_DELAY`] worth of data (so delay grows like a real bottleneck buffer), and
//! are dropped when the queue is full.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Longest a packet may wait in the bottleneck queue; more than this is dropped.
pub const QUEUE_DELAY: Duration = Duration::from_millis(100);

/// Counters of a [`Shaper`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Packets relayed client -> upstream.
    pub up_packets: u64,
    /// Packets delivered upstream -> client.
    pub down_packets: u64,
    /// Bytes delivered upstream -> client.
    pub down_bytes: u64,
    /// Packets dropped on the way down (queue full, or client not known yet).
    pub down_dropped: u64,
}

/// A running shaping proxy; stops when dropped.
pub struct Shaper {
    local_addr: SocketAddr,
    rate: watch::Sender<Option<u64>>,
    stats: Arc<Mutex<ShaperStats>>,
    task: JoinHandle<()>,
}

impl Shaper {
    /// Binds 127.0.0.1:0 and starts relaying to `upstream`, initially unlimited.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Shaper> {
        let client_side = UdpSocket::bind("127.0.0.1:0").await?;
        let upstream_side = UdpSocket::bind("127.0.0.1:0").await?;
        upstream_side.connect(upstream).await?;
        let local_addr = client_side.local_addr()?;
        let (rate, rate_rx) = watch::channel(None);
        let stats = Arc::new(Mutex::new(ShaperStats::default()));
        let task = tokio::spawn(relay(client_side, upstream_side, rate_rx, stats.clone()));
        Ok(Shaper {
            local_addr,
            rate,
            stats,
            task,
        })
    }

    /// The address the client should send to (put it in the answer's candidate).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Limits upstream -> client to `bps` bits per second; `None` removes the limit.
    pub fn set_rate_bps(&self, bps: Option<u64>) {
        self.rate.send_replace(bps.filter(|&b| b > 0));
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ShaperStats {
        *self.stats.lock()
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A packet waiting in the bottleneck, with the time it finishes "transmitting".
struct Queued {
    departure: Instant,
    data: Vec<u8>,
}

async fn relay(
    client_side: UdpSocket,
    upstream_side: UdpSocket,
    mut rate: watch::Receiver<Option<u64>>,
    stats: Arc<Mutex<ShaperStats>>,
) {
    let mut client: Option<SocketAddr> = None;
    let mut queue: VecDeque<Queued> = VecDeque::new();
    // When the link finishes sending the last queued byte (virtual clock of the bottleneck).
    let mut link_free_at = Instant::now();
    let mut from_client = vec![0u8; 65536];
    let mut from_upstream = vec![0u8; 65536];
    loop {
        let next_departure = queue.front().map(|q| q.departure);
        tokio::select! {
            res = client_side.recv_from(&mut from_client) => {
                let Ok((n, addr)) = res else { continue };
                // Learn (and follow) the client address from what it sends.
                client = Some(addr);
                if upstream_side.send(&from_client[..n]).await.is_ok() {
                    stats.lock().up_packets += 1;
                }
            }
            res = upstream_side.recv(&mut from_upstream) => {
                let Ok(n) = res else { continue };
                let Some(client) = client else {
                    stats.lock().down_dropped += 1;
                    continue;
                };
                let limit = *rate.borrow();
                match limit {
                    None if queue.is_empty() => {
                        if client_side.send_to(&from_upstream[..n], client).await.is_ok() {
                            let mut s = stats.lock();
                            s.down_packets += 1;
                            s.down_bytes += n as u64;
                        }
                    }
                    None => {
                        // Limit just lifted: keep order behind what is still queued.
                        queue.push_back(Queued { departure: Instant::now(), data: from_upstream[..n].to_vec() });
                    }
                    Some(bps) => {
                        let now = Instant::now();
                        let start = link_free_at.max(now);
                        let departure = start + Duration::from_secs_f64(n as f64 * 8.0 / bps as f64);
                        if departure.saturating_duration_since(now) > QUEUE_DELAY {
                            stats.lock().down_dropped += 1;
                        } else {
                            link_free_at = departure;
                            queue.push_back(Queued { departure, data: from_upstream[..n].to_vec() });
                        }
                    }
                }
            }
            _ = sleep_until_opt(next_departure) => {
                let now = Instant::now();
                while queue.front().is_some_and(|q| q.departure <= now) {
                    let Some(q) = queue.pop_front() else { break };
                    if let Some(client) = client
                        && client_side.send_to(&q.data, client).await.is_ok()
                    {
                        let mut s = stats.lock();
                        s.down_packets += 1;
                        s.down_bytes += q.data.len() as u64;
                    }
                }
            }
            changed = rate.changed() => {
                if changed.is_err() {
                    return;
                }
                if rate.borrow().is_none() {
                    // Unlimited again: flush the queue now.
                    for q in &mut queue {
                        q.departure = Instant::now();
                    }
                    link_free_at = Instant::now();
                }
            }
        }
    }
}

/// The address and port of every UDP candidate in an SDP (to find what to proxy).
pub fn udp_candidate_addrs(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|line| line.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            if !f.get(2)?.eq_ignore_ascii_case("udp") {
                return None;
            }
            let ip: std::net::IpAddr = f.get(4)?.parse().ok()?;
            let port: u16 = f.get(5)?.parse().ok()?;
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// Rewrites every UDP candidate whose address is `upstream` to point at `proxy` instead, for
/// use as a viewer's `answer_rewrite`.
pub fn route_candidates_via(sdp: &str, upstream: SocketAddr, proxy: SocketAddr) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end();
        let eol = &line[body.len()..];
        if let Some(c) = body.strip_prefix("a=candidate:") {
            let mut f: Vec<String> = c.split_whitespace().map(str::to_owned).collect();
            let matches = f.len() > 5
                && f[2].eq_ignore_ascii_case("udp")
                && f[4].parse::<std::net::IpAddr>().ok() == Some(upstream.ip())
                && f[5].parse::<u16>().ok() == Some(upstream.port());
            if matches {
                f[4] = proxy.ip().to_string();
                f[5] = proxy.port().to_string();
                out.push_str("a=candidate:");
                out.push_str(&f.join(" "));
                out.push_str(eol);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn setup() -> (Shaper, UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind server");
        let shaper = Shaper::start(server.local_addr().expect("addr"))
            .await
            .expect("start shaper");
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        client
            .connect(shaper.local_addr())
            .await
            .expect("connect client");
        (shaper, server, client)
    }

    /// The client says hello; returns the address the server must answer to (the shaper).
    async fn hello(client: &UdpSocket, server: &UdpSocket) -> SocketAddr {
        client.send(b"hello").await.expect("send hello");
        let mut buf = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(2), server.recv_from(&mut buf))
            .await
            .expect("hello reaches the server")
            .expect("recv");
        assert_eq!(&buf[..n], b"hello");
        from
    }

    /// Sends `count` packets of `size` bytes every `gap`, counting what the client gets until
    /// `listen` has passed after the start.
    async fn blast(
        server: &UdpSocket,
        to: SocketAddr,
        client: &UdpSocket,
        count: usize,
        size: usize,
        gap: Duration,
        listen: Duration,
    ) -> (usize, Duration) {
        let start = Instant::now();
        let payload = vec![0x55u8; size];
        let sender = async {
            let mut tick = tokio::time::interval(gap);
            for _ in 0..count {
                tick.tick().await;
                let _ = server.send_to(&payload, to).await;
            }
        };
        let receiver = async {
            let mut got = 0usize;
            let mut last = Duration::ZERO;
            let mut buf = vec![0u8; 2048];
            let deadline = start + listen;
            while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, client.recv(&mut buf)).await {
                got += 1;
                last = start.elapsed();
            }
            (got, last)
        };
        let ((), result) = tokio::join!(sender, receiver);
        result
    }

    #[test]
    fn rewrites_only_the_upstream_candidate() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 127.0.0.1 6000 typ host\r\n\
                   a=candidate:3 1 tcp 1694498815 127.0.0.1 5000 typ host tcptype passive\r\n";
        let upstream: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert_eq!(udp_candidate_addrs(sdp)[0], upstream);
        let out = route_candidates_via(sdp, upstream, "127.0.0.1:7000".parse().expect("addr"));
        assert!(out.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7000 typ host\r\n"));
        assert!(out.contains("127.0.0.1 6000 typ host"));
        assert!(out.contains("tcp 1694498815 127.0.0.1 5000"));
    }

    #[tokio::test]
    async fn unlimited_relays_both_ways() {
        let (shaper, server, client) = setup().await;
        let shaper_up = hello(&client, &server).await;
        let (got, _) = blast(
            &server,
            shaper_up,
            &client,
            50,
            1000,
            Duration::from_millis(1),
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(got, 50);
        let s = shaper.stats();
        assert_eq!(s.up_packets, 1);
        assert_eq!(s.down_packets, 50);
        assert_eq!(s.down_dropped, 0);
    }

    #[tokio::test]
    async fn rate_limit_caps_throughput_and_drops_excess() {
        let (shaper, server, client) = setup().await;
        let shaper_up = hello(&client, &server).await;
        // 1000-byte packets every 4 ms = 2 Mbit/s for 1 s through a 1 Mbit/s bottleneck.
        shaper.set_rate_bps(Some(1_000_000));
        let (got, last) = blast(
            &server,
            shaper_up,
            &client,
            250,
            1000,
            Duration::from_millis(4),
            Duration::from_millis(1500),
        )
        .await;
        // 1 Mbit/s for ~1 s is 125 packets, plus what the 100 ms queue held at the end.
        assert!((100..=150).contains(&got), "delivered {got} packets");
        assert!(
            last >= Duration::from_millis(900),
            "last packet at {last:?}"
        );
        let s = shaper.stats();
        assert_eq!(s.down_packets as usize, got);
        assert!(s.down_dropped >= 90, "dropped {}", s.down_dropped);

        // Lifting the limit lets everything through again.
        shaper.set_rate_bps(None);
        let (got, _) = blast(
            &server,
            shaper_up,
            &client,
            100,
            1000,
            Duration::from_millis(1),
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(got, 100);
    }

    #[tokio::test]
    async fn queue_delay_stays_bounded() {
        let (shaper, server, client) = setup().await;
        let shaper_up = hello(&client, &server).await;
        // 500 kbit/s: a 100 ms queue holds 6250 bytes, i.e. 6 packets of 1000 bytes.
        shaper.set_rate_bps(Some(500_000));
        let payload = vec![1u8; 1000];
        let start = Instant::now();
        for _ in 0..40 {
            let _ = server.send_to(&payload, shaper_up).await;
        }
        let mut buf = vec![0u8; 2048];
        let mut got = 0;
        let mut last = Duration::ZERO;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(300), client.recv(&mut buf)).await
        {
            got += 1;
            last = start.elapsed();
        }
        assert!((6..=8).contains(&got), "burst of 40 delivered {got}");
        assert!(
            last <= Duration::from_millis(250),
            "queue drained at {last:?}"
        );
        assert!(last >= Duration::from_millis(80), "paced, last at {last:?}");
    }
}
