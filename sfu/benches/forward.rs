//! The forwarding hot path beside its physical floor (DESIGN.md §5: forwarding cost <= 1.5x the
//! cost of SRTP-protect + send of the same packets alone).
//!
//! * `forward/viewers/N`: N viewer `Rtc`s built by the SFU's own [`RtcFactory`] (ICE-lite, RTP
//!   mode, H.264/96 + RTX/97 + Opus/111, BWE on), each connected over ICE + DTLS to an in-memory
//!   str0m client. One iteration is one published H.264 packet (1200-byte payload, 1.5 Mbit/s,
//!   5 packets a frame, about 31 frames a second) fanned out to all N viewers: per viewer
//!   `VideoForwarder::on_packet` + `write_rtp` + `poll_output` until `Output::Timeout` (feeding
//!   `Input::Timeout` while str0m asks for it now, as the shard's timer heap would), each
//!   `Output::Transmit` sent with `send_to` on a real UDP socket to the viewer's real UDP socket
//!   on 127.0.0.1. Criterion reports time per published packet; the summary divides by N. The
//!   shard's own bookkeeping around a viewer (peer lookup, timer heap, `catch_unwind`) is not
//!   included.
//!
//!   Untimed, after every published packet: each client reads its socket, decrypts, and answers
//!   as a browser would (STUN consent checks, receiver reports, TWCC feedback), so str0m's
//!   estimator and pacer run as they do in production rather than starved of feedback. The
//!   server's handling of that feedback is timed separately and shown in the summary.
//!
//! * `floor/aes128gcm`, `floor/aes256gcm`: per packet, a 12-byte RTP header plus the same
//!   1200-byte payload sealed with SRTP AEAD_AES_{128,256}_GCM (RFC 7714 IV, header as AAD,
//!   16-byte tag) with aws-lc-rs, the crypto str0m uses here, then `send_to` to the same kind of
//!   socket. str0m negotiates AES-256-GCM between str0m peers and with browsers that offer it
//!   (its DTLS server prefers 256 over 128), so `aes256gcm` is the like-for-like floor.
//!
//! Run: `cargo bench -p onair-sfu --bench forward` (about 45 s). The summary at the end prints
//! ns per packet per viewer, the floors and the ratios: from criterion's samples, and from a
//! paired run that alternates forwarding and floor blocks so that load from other processes
//! skews both alike (prefer it on a busy machine); then packet counts and a per-stage breakdown.
//! `cargo test --benches` runs one viewer once, as a smoke test.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, Algorithm, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use onair_sfu::forward::VideoForwarder;
use onair_sfu::payload::VideoCodec;
use onair_sfu::rtc::{INITIAL_VIEWER_ESTIMATE, RtcFactory};
use onair_sfu::track::{Kind, SourcePacket, TrackInfo, VideoTrack};
use onair_sfu::{MediaPlan, PayloadChoice};
use str0m::bwe::{Bitrate, BweKind};
use str0m::format::{Codec, CodecSpec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// RTP payload bytes of every published packet.
const PAYLOAD: usize = 1200;
/// The published stream's bitrate (DESIGN.md §5's fan-out target stream).
const STREAM_BPS: u64 = 1_500_000;
/// Packets per video frame; the last one carries the marker bit.
const FRAME_PACKETS: u64 = 5;
/// Time between published packets: 1200 B * 8 / 1.5 Mbit/s.
const PACKET_INTERVAL: Duration =
    Duration::from_nanos(PAYLOAD as u64 * 8 * 1_000_000_000 / STREAM_BPS);
/// How often the shard's tick re-tells the estimator the desired bitrate.
const TICK: Duration = Duration::from_millis(200);
/// Media packets published before measuring (connection ramp-up: probes, first estimates).
const WARMUP_PACKETS: usize = 600;
/// Guard against a peer that keeps asking for an immediate timeout.
const MAX_ROUNDS: usize = 64;
/// Viewer counts measured.
const VIEWERS: [usize; 3] = [1, 10, 100];

fn h264_spec() -> CodecSpec {
    CodecSpec {
        codec: Codec::H264,
        clock_rate: Frequency::NINETY_KHZ,
        channels: None,
        format: FormatParams::parse_line(
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
        ),
    }
}

fn opus_spec() -> CodecSpec {
    CodecSpec {
        codec: Codec::Opus,
        clock_rate: Frequency::FORTY_EIGHT_KHZ,
        channels: Some(2),
        format: FormatParams::parse_line("minptime=10;useinbandfec=1"),
    }
}

/// Random-looking payloads so nothing downstream sees all-zero data.
fn payloads() -> Vec<Arc<[u8]>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..16)
        .map(|_| {
            let v: Vec<u8> = (0..PAYLOAD)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            Arc::from(v)
        })
        .collect()
}

/// A nonblocking UDP socket on loopback.
fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Reads and discards everything queued on `s`.
fn drain(s: &UdpSocket, buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        match s.recv_from(buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

/// What the server side sent, to check the run was what it claims to be.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    written: u64,
    media_out: u64,
    other_out: u64,
    other_bytes: u64,
    send_errors: u64,
    capped: u64,
    timeouts_fed: u64,
    polls: u64,
    /// Datagrams from the client handled (feedback phase only).
    received: u64,
}

/// Time spent per stage when instrumented.
#[derive(Debug, Default, Clone, Copy)]
struct Breakdown {
    on_packet: Duration,
    write_rtp: Duration,
    poll: Duration,
    timeout_input: Duration,
    send: Duration,
    packets: u64,
}

/// The IO side of the server: its one UDP socket, as in the shard.
struct ServerIo<'a> {
    sock: &'a UdpSocket,
    counters: &'a mut Counters,
    breakdown: Option<&'a mut Breakdown>,
}

impl ServerIo<'_> {
    fn transmit(&mut self, t: &str0m::net::Transmit) {
        if t.contents.len() >= PAYLOAD {
            self.counters.media_out += 1;
        } else {
            self.counters.other_out += 1;
            self.counters.other_bytes += t.contents.len() as u64;
        }
        let t0 = self.breakdown.as_ref().map(|_| Instant::now());
        if self.sock.send_to(&t.contents, t.destination).is_err() {
            self.counters.send_errors += 1;
        }
        if let (Some(b), Some(t0)) = (self.breakdown.as_deref_mut(), t0) {
            b.send += t0.elapsed();
        }
    }
}

/// One viewer: the SFU's `Rtc` and forwarder, and the in-memory client at the other end.
struct Viewer {
    server: Rtc,
    fwd: VideoForwarder,
    ssrc: Ssrc,
    pt: Pt,
    client: Rtc,
    client_sock: UdpSocket,
    client_addr: SocketAddr,
    client_next: Instant,
}

impl Viewer {
    /// `poll_output` until a timeout in the future, feeding `Input::Timeout(now)` whenever str0m
    /// asks for one now (the shard's timer heap fires those at once).
    fn poll_server(&mut self, now: Instant, io: &mut ServerIo) {
        for _ in 0..MAX_ROUNDS {
            let next = loop {
                io.counters.polls += 1;
                match self.server.poll_output().expect("server poll") {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => io.transmit(&t),
                    Output::Event(Event::EgressBitrateEstimate(BweKind::Twcc {
                        estimate, ..
                    })) => self.fwd.set_estimate(estimate.as_u64()),
                    Output::Event(_) => {}
                }
            };
            if next > now {
                return;
            }
            io.counters.timeouts_fed += 1;
            let t0 = io.breakdown.as_ref().map(|_| Instant::now());
            self.server
                .handle_input(Input::Timeout(now))
                .expect("server timeout");
            if let (Some(b), Some(t0)) = (io.breakdown.as_deref_mut(), t0) {
                b.timeout_input += t0.elapsed();
            }
        }
        io.counters.capped += 1;
    }

    /// The hot path for one published packet.
    fn forward(&mut self, now: Instant, sp: &SourcePacket, io: &mut ServerIo) {
        let t0 = io.breakdown.as_ref().map(|_| Instant::now());
        let d = self.fwd.on_packet(now, sp);
        let t1 = io.breakdown.as_ref().map(|_| Instant::now());
        if let Some(o) = d.out
            && let Some(tx) = self.server.direct_api().stream_tx(&self.ssrc)
        {
            tx.write_rtp(
                RtpWrite::new(self.pt, o.seq.into(), o.ts, sp.received, sp.payload.clone())
                    .marker(sp.marker)
                    .nackable(true),
            );
            io.counters.written += 1;
        }
        let t2 = io.breakdown.as_ref().map(|_| Instant::now());
        self.poll_server(now, io);
        if let (Some(b), Some(t0), Some(t1), Some(t2)) = (io.breakdown.as_deref_mut(), t0, t1, t2) {
            b.on_packet += t1 - t0;
            b.write_rtp += t2 - t1;
            // Sends are timed inside the poll; keep them out of the poll's share.
            b.poll += t2.elapsed();
            b.packets += 1;
        }
    }

    /// The client's turn: read what arrived, run its timers, collect what it sends back.
    fn client_turn(&mut self, now: Instant, buf: &mut [u8], out: &mut Vec<Vec<u8>>) {
        loop {
            let (n, source) = match self.client_sock.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("client recv: {e}"),
            };
            let rx = Receive::new(Protocol::Udp, source, self.client_addr, &buf[..n])
                .expect("parse datagram");
            self.client
                .handle_input(Input::Receive(now, rx))
                .expect("client receive");
            self.poll_client(out);
        }
        if now >= self.client_next {
            self.client
                .handle_input(Input::Timeout(now))
                .expect("client timeout");
            self.poll_client(out);
        }
    }

    fn poll_client(&mut self, out: &mut Vec<Vec<u8>>) {
        loop {
            match self.client.poll_output().expect("client poll") {
                Output::Timeout(t) => {
                    self.client_next = t;
                    return;
                }
                Output::Transmit(t) => out.push(t.contents.to_vec()),
                Output::Event(_) => {}
            }
        }
    }
}

/// N connected viewers of one published H.264 stream, and the stream's state.
struct Fanout {
    sock: UdpSocket,
    addr: SocketAddr,
    viewers: Vec<Viewer>,
    track: Arc<TrackInfo>,
    payloads: Vec<Arc<[u8]>>,
    seq: u64,
    now: Instant,
    next_tick: Instant,
    counters: Counters,
    fb_counters: Counters,
    buf: Vec<u8>,
    replies: Vec<Vec<u8>>,
}

impl Fanout {
    fn new(n: usize) -> Self {
        let sock = socket();
        let addr = sock.local_addr().expect("local addr");
        let factory = RtcFactory::new(&[addr]).expect("factory");
        let start = Instant::now();
        let mut now = start;
        let viewers: Vec<Viewer> = (0..n)
            .map(|i| {
                let (v, connected_at) = connect(&factory, addr, start, i);
                now = now.max(connected_at);
                v
            })
            .collect();
        let track = Arc::new(TrackInfo {
            channel: Arc::from("bench"),
            publisher: 1,
            shard: 0,
            video: Some(VideoTrack {
                spec: h264_spec(),
                codec: VideoCodec::H264,
                layers: vec![None],
                rates: vec![AtomicU64::new(STREAM_BPS)],
            }),
            audio: Some(opus_spec()),
        });
        let mut f = Self {
            sock,
            addr,
            viewers,
            track,
            payloads: payloads(),
            seq: 1_000,
            now,
            next_tick: now,
            counters: Counters::default(),
            fb_counters: Counters::default(),
            buf: vec![0; 2048],
            replies: Vec::new(),
        };
        let mut t = Duration::ZERO;
        let mut fb = Duration::ZERO;
        for _ in 0..WARMUP_PACKETS {
            f.step(&mut t, &mut fb, None);
        }
        f.counters = Counters::default();
        f.fb_counters = Counters::default();
        f
    }

    /// Publishes one packet: the timed fan-out, then the clients' untimed turn, then the
    /// server's (separately timed) handling of what the clients sent.
    fn step(&mut self, timed: &mut Duration, feedback: &mut Duration, bd: Option<&mut Breakdown>) {
        self.now += PACKET_INTERVAL;
        let now = self.now;
        if now >= self.next_tick {
            // The shard's tick: let the estimator probe up to the stream's rate plus headroom.
            self.next_tick = now + TICK;
            let desired = Bitrate::bps(STREAM_BPS + STREAM_BPS / 4 + 64_000);
            for v in &mut self.viewers {
                v.server.bwe().set_bitrate(Bitrate::ZERO, desired);
            }
        }
        let i = self.seq - 1_000;
        let sp = SourcePacket {
            track: self.track.clone(),
            kind: Kind::Video,
            layer: 0,
            seq: self.seq,
            ts: (i / FRAME_PACKETS * 3_000) as u32,
            marker: i % FRAME_PACKETS == FRAME_PACKETS - 1,
            keyframe_start: i == 0,
            sr: None,
            received: now,
            payload: self.payloads[(i % 16) as usize].clone(),
            dd: None,
        };
        self.seq += 1;

        let mut io = ServerIo {
            sock: &self.sock,
            counters: &mut self.counters,
            breakdown: bd,
        };
        let t0 = Instant::now();
        for v in &mut self.viewers {
            v.forward(now, &sp, &mut io);
        }
        *timed += t0.elapsed();

        let mut io = ServerIo {
            sock: &self.sock,
            counters: &mut self.fb_counters,
            breakdown: None,
        };
        for v in &mut self.viewers {
            self.replies.clear();
            v.client_turn(now, &mut self.buf, &mut self.replies);
            if self.replies.is_empty() {
                continue;
            }
            let t0 = Instant::now();
            for d in &self.replies {
                let rx = Receive::new(Protocol::Udp, v.client_addr, self.addr, d)
                    .expect("parse client datagram");
                io.counters.received += 1;
                v.server
                    .handle_input(Input::Receive(now, rx))
                    .expect("server receive");
                v.poll_server(now, &mut io);
            }
            *feedback += t0.elapsed();
        }
    }
}

/// Builds viewer `i` like `Sfu::play` does and connects it to a fresh in-memory client.
fn connect(
    factory: &RtcFactory,
    server_addr: SocketAddr,
    start: Instant,
    i: usize,
) -> (Viewer, Instant) {
    let client_sock = socket();
    let client_addr = client_sock.local_addr().expect("client addr");
    let mut cfg = Rtc::builder().set_rtp_mode(true).clear_codecs();
    let (h264, opus) = (h264_spec(), opus_spec());
    cfg.codec_config().add_config(
        Pt::from(96),
        Some(Pt::from(97)),
        h264.codec,
        h264.clock_rate,
        h264.channels,
        h264.format,
    );
    cfg.codec_config().add_config(
        Pt::from(111),
        None,
        opus.codec,
        opus.clock_rate,
        opus.channels,
        opus.format,
    );
    let mut client = cfg.build(start);
    client
        .add_local_candidate(Candidate::host(client_addr, "udp").expect("candidate"))
        .expect("client candidate");
    let mut api = client.sdp_api();
    let audio_mid = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let video_mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().expect("offer");

    let plan = MediaPlan {
        audio: Some(PayloadChoice {
            pt: 111,
            rtx: None,
            spec: opus,
        }),
        video: Some(PayloadChoice {
            pt: 96,
            rtx: Some(97),
            spec: h264,
        }),
        audio_mid: Some(audio_mid.to_string()),
        video_mid: Some(video_mid.to_string()),
        rids: Vec::new(),
        fir_only: false,
    };
    let (mut server, _creds) =
        factory.build(&plan, Some(onair_sfu::rtc::INITIAL_VIEWER_ESTIMATE), start);
    let answer = server.sdp_api().accept_offer(offer).expect("accept offer");
    client
        .sdp_api()
        .accept_answer(pending, answer)
        .expect("accept answer");

    // Shuttle datagrams in memory until both ends report Connected.
    let (mut s_conn, mut c_conn) = (false, false);
    let mut to_server: Vec<Vec<u8>> = Vec::new();
    let mut to_client: Vec<Vec<u8>> = Vec::new();
    let mut now = start;
    for _ in 0..10_000 {
        if s_conn && c_conn {
            break;
        }
        now += Duration::from_millis(1);
        let inbox = std::mem::take(&mut to_server);
        s_conn |= handshake_turn(
            &mut server,
            inbox,
            client_addr,
            server_addr,
            now,
            &mut to_client,
        );
        let inbox = std::mem::take(&mut to_client);
        c_conn |= handshake_turn(
            &mut client,
            inbox,
            server_addr,
            client_addr,
            now,
            &mut to_server,
        );
    }
    assert!(s_conn && c_conn, "viewer {i} did not connect");

    let mid = Mid::from(video_mid.to_string().as_str());
    let ssrc = server
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .map(|s| s.ssrc())
        .expect("video send stream");
    let v = Viewer {
        server,
        fwd: VideoForwarder::new(90_000, 1_000 + i as u16, INITIAL_VIEWER_ESTIMATE.as_u64()),
        ssrc,
        pt: Pt::from(96),
        client,
        client_sock,
        client_addr,
        client_next: now,
    };
    (v, now)
}

/// Feeds `inbox` and the time to one end of a handshake; collects what it sends. True once it
/// reports `Event::Connected`.
fn handshake_turn(
    rtc: &mut Rtc,
    inbox: Vec<Vec<u8>>,
    source: SocketAddr,
    destination: SocketAddr,
    now: Instant,
    outbox: &mut Vec<Vec<u8>>,
) -> bool {
    for d in inbox {
        let rx = Receive::new(Protocol::Udp, source, destination, &d).expect("parse");
        rtc.handle_input(Input::Receive(now, rx)).expect("receive");
    }
    rtc.handle_input(Input::Timeout(now)).expect("timeout");
    let mut connected = false;
    loop {
        match rtc.poll_output().expect("poll") {
            Output::Timeout(_) => return connected,
            Output::Transmit(t) => outbox.push(t.contents.to_vec()),
            Output::Event(Event::Connected) => connected = true,
            Output::Event(_) => {}
        }
    }
}

/// SRTP-protect + send and nothing else.
struct Floor {
    key: LessSafeKey,
    salt: [u8; 12],
    ssrc: u32,
    seq: u64,
    ts: u32,
    payloads: Vec<Arc<[u8]>>,
    pkt: Vec<u8>,
    sock: UdpSocket,
    sink: UdpSocket,
    dest: SocketAddr,
    rbuf: Vec<u8>,
}

impl Floor {
    fn new(alg: &'static Algorithm) -> Self {
        let key_bytes: Vec<u8> = (0..alg.key_len() as u8)
            .map(|b| b.wrapping_mul(37))
            .collect();
        let key = LessSafeKey::new(UnboundKey::new(alg, &key_bytes).expect("key"));
        let sock = socket();
        let sink = socket();
        let dest = sink.local_addr().expect("sink addr");
        Self {
            key,
            salt: [0x5a; 12],
            ssrc: 0x1234_5678,
            seq: 1_000,
            ts: 0,
            payloads: payloads(),
            pkt: Vec::with_capacity(1500),
            sock,
            sink,
            dest,
            rbuf: vec![0; 2048],
        }
    }

    /// One packet: RTP header, payload copy, AES-GCM seal with the header as AAD, tag, send.
    fn protect_and_send(&mut self) {
        let i = self.seq - 1_000;
        let marker = i % FRAME_PACKETS == FRAME_PACKETS - 1;
        let seq16 = self.seq as u16;
        let roc = (self.seq >> 16) as u32;
        self.pkt.clear();
        self.pkt.push(0x80);
        self.pkt.push(96 | if marker { 0x80 } else { 0 });
        self.pkt.extend_from_slice(&seq16.to_be_bytes());
        self.pkt.extend_from_slice(&self.ts.to_be_bytes());
        self.pkt.extend_from_slice(&self.ssrc.to_be_bytes());
        self.pkt
            .extend_from_slice(&self.payloads[(i % 16) as usize]);
        // RFC 7714 §8.1: IV = (00 00 || SSRC || ROC || SEQ) XOR salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&self.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&seq16.to_be_bytes());
        for (b, s) in iv.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        let (hdr, body) = self.pkt.split_at_mut(12);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&*hdr), body)
            .expect("seal");
        self.pkt.extend_from_slice(tag.as_ref());
        let _ = self.sock.send_to(&self.pkt, self.dest);
        self.seq += 1;
        if marker {
            self.ts = self.ts.wrapping_add(3_000);
        }
    }

    fn step(&mut self, timed: &mut Duration) {
        let t0 = Instant::now();
        self.protect_and_send();
        *timed += t0.elapsed();
        drain(&self.sink, &mut self.rbuf);
    }
}

/// Every `iter_custom` call of a benchmark: (iterations, measured time).
type Samples = Mutex<HashMap<String, Vec<(u64, Duration)>>>;

fn record(samples: &Samples, id: &str, iters: u64, d: Duration) {
    samples
        .lock()
        .expect("samples")
        .entry(id.to_string())
        .or_default()
        .push((iters, d));
}

/// Median ns per iteration over the measurement samples (with flat sampling they all share one
/// iteration count, which tells them from the warm-up calls).
fn median_ns(samples: &[(u64, Duration)]) -> Option<f64> {
    let mut freq: HashMap<u64, usize> = HashMap::new();
    for (i, _) in samples {
        *freq.entry(*i).or_default() += 1;
    }
    let (&mode, _) = freq.iter().max_by_key(|(i, c)| (**c, **i))?;
    let mut v: Vec<f64> = samples
        .iter()
        .filter(|(i, _)| *i == mode)
        .map(|(i, d)| d.as_nanos() as f64 / *i as f64)
        .collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Forwarding and floor measured in alternating blocks, so that load from other processes hits
/// both alike: medians over the rounds.
#[derive(Debug, Clone, Copy)]
struct Paired {
    forward_ns: f64,
    floor256_ns: f64,
    floor128_ns: f64,
    ratio256: f64,
    ratio128: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

const PAIRED_ROUNDS: usize = 15;

fn paired(f: &mut Fanout, fl256: &mut Floor, fl128: &mut Floor) -> Paired {
    let n = f.viewers.len();
    let k = (10_000 / n).max(50);
    let kf = 5_000;
    let mut rows = Vec::new();
    for _ in 0..PAIRED_ROUNDS {
        let floor = |fl: &mut Floor| {
            let mut t = Duration::ZERO;
            for _ in 0..kf {
                fl.step(&mut t);
            }
            t.as_nanos() as f64 / kf as f64
        };
        let a = floor(fl256);
        let b = floor(fl128);
        let (mut t, mut fb) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..k {
            f.step(&mut t, &mut fb, None);
        }
        let v = t.as_nanos() as f64 / (k * n) as f64;
        rows.push((v, a, b));
    }
    let col = |g: fn(&(f64, f64, f64)) -> f64| median(rows.iter().map(g).collect());
    Paired {
        forward_ns: col(|r| r.0),
        floor256_ns: col(|r| r.1),
        floor128_ns: col(|r| r.2),
        ratio256: col(|r| r.0 / r.1),
        ratio128: col(|r| r.0 / r.2),
    }
}

struct Extra {
    paired: Option<Paired>,
    feedback_ns: f64,
    counters: Counters,
    fb_counters: Counters,
    breakdown: Option<Breakdown>,
}

fn bench(c: &mut Criterion, samples: &Samples, extras: &mut HashMap<usize, Extra>, quick: bool) {
    let viewers: &[usize] = if quick { &VIEWERS[..1] } else { &VIEWERS };
    let (mut fl256, mut fl128) = (Floor::new(&AES_256_GCM), Floor::new(&AES_128_GCM));
    let mut g = c.benchmark_group("forward");
    g.sampling_mode(SamplingMode::Flat);
    for &n in viewers {
        let mut f = Fanout::new(n);
        let mut fb_total = Duration::ZERO;
        let mut fb_packets = 0u64;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("viewers", n), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                let mut fb = Duration::ZERO;
                for _ in 0..iters {
                    f.step(&mut t, &mut fb, None);
                }
                fb_total += fb;
                fb_packets += iters;
                record(samples, &format!("forward/{n}"), iters, t);
                t
            })
        });
        let (counters, fb_counters) = (f.counters, f.fb_counters);
        // Where the time goes: a short instrumented run (timer overhead inflates the total).
        let breakdown = (!quick).then(|| {
            let mut bd = Breakdown::default();
            let (mut t, mut fb) = (Duration::ZERO, Duration::ZERO);
            for _ in 0..(20_000 / n).max(200) {
                f.step(&mut t, &mut fb, Some(&mut bd));
            }
            bd
        });
        let paired = (!quick).then(|| paired(&mut f, &mut fl256, &mut fl128));
        extras.insert(
            n,
            Extra {
                paired,
                feedback_ns: fb_total.as_nanos() as f64 / fb_packets.max(1) as f64 / n as f64,
                counters,
                fb_counters,
                breakdown,
            },
        );
    }
    g.finish();

    let mut g = c.benchmark_group("floor");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1));
    for (name, alg) in [("aes128gcm", &AES_128_GCM), ("aes256gcm", &AES_256_GCM)] {
        let mut fl = Floor::new(alg);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    fl.step(&mut t);
                }
                record(samples, &format!("floor/{name}"), iters, t);
                t
            })
        });
    }
    g.finish();
}

fn summary(samples: &Samples, extras: &HashMap<usize, Extra>) {
    let s = samples.lock().expect("samples");
    let get = |id: &str| s.get(id).and_then(|v| median_ns(v));
    let f128 = get("floor/aes128gcm");
    let f256 = get("floor/aes256gcm");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    println!();
    println!("== forwarding vs SRTP floor ({cpu}; DESIGN.md §5 target: ratio <= 1.5) ==");
    println!(
        "stream: H.264 {} kbit/s, {PAYLOAD}-byte payloads, {FRAME_PACKETS} packets a frame; medians of criterion samples",
        STREAM_BPS / 1000
    );
    for (name, v) in [("AES-128-GCM", f128), ("AES-256-GCM", f256)] {
        if let Some(v) = v {
            println!("floor {name}: protect + send_to {v:>8.0} ns/packet");
        }
    }
    println!(
        "{:>8} {:>16} {:>12} {:>12} {:>18}",
        "viewers", "ns/pkt/viewer", "x floor256", "x floor128", "feedback ns/pkt/v"
    );
    let mut ns: Vec<usize> = extras.keys().copied().collect();
    ns.sort_unstable();
    for n in &ns {
        let Some(per_packet) = get(&format!("forward/{n}")) else {
            continue;
        };
        let per_viewer = per_packet / *n as f64;
        let ratio =
            |f: Option<f64>| f.map_or("-".to_string(), |f| format!("{:.2}", per_viewer / f));
        println!(
            "{n:>8} {per_viewer:>16.0} {:>12} {:>12} {:>18.0}",
            ratio(f256),
            ratio(f128),
            extras[n].feedback_ns
        );
    }
    println!();
    println!(
        "paired (forwarding and floors in alternating blocks, medians of {PAIRED_ROUNDS} rounds; steadier under load):"
    );
    println!(
        "{:>8} {:>16} {:>14} {:>14} {:>12} {:>12}",
        "viewers", "ns/pkt/viewer", "floor256 ns", "floor128 ns", "x floor256", "x floor128"
    );
    for n in &ns {
        if let Some(p) = extras[n].paired {
            println!(
                "{n:>8} {:>16.0} {:>14.0} {:>14.0} {:>12.2} {:>12.2}",
                p.forward_ns, p.floor256_ns, p.floor128_ns, p.ratio256, p.ratio128
            );
        }
    }
    println!();
    for n in &ns {
        let e = &extras[n];
        let (c, f) = (e.counters, e.fb_counters);
        let per_write = |x: u64| x as f64 / c.written.max(1) as f64;
        println!(
            "N={n}: {} RTP written, {:.3} media datagrams per write, {:.4} other datagrams per write ({} B total: RTCP, STUN, padding/probes), {:.2} poll_output and {:.2} Input::Timeout per write, {} send errors, {} poll loops capped",
            c.written,
            per_write(c.media_out),
            per_write(c.other_out),
            c.other_bytes,
            per_write(c.polls),
            per_write(c.timeouts_fed),
            c.send_errors + f.send_errors,
            c.capped + f.capped
        );
        println!(
            "      feedback: {:.3} client datagrams (TWCC, RR, STUN) per write, answered with {} datagrams ({} media)",
            per_write(f.received),
            f.media_out + f.other_out,
            f.media_out
        );
        if let Some(b) = e.breakdown {
            let per = |d: Duration| d.as_nanos() as f64 / b.packets.max(1) as f64;
            let (o, w, p, ti, sd) = (
                per(b.on_packet),
                per(b.write_rtp),
                per(b.poll),
                per(b.timeout_input),
                per(b.send),
            );
            println!(
                "      breakdown per packet per viewer (instrumented): on_packet {o:.0} ns, write_rtp {w:.0} ns, poll_output {:.0} ns, handle_input(Timeout) {ti:.0} ns, send_to {sd:.0} ns (sum {:.0})",
                p - sd - ti,
                o + w + p
            );
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only check it runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();
    let samples = Samples::default();
    let mut extras = HashMap::new();
    bench(&mut c, &samples, &mut extras, quick);
    c.final_summary();
    if !quick {
        summary(&samples, &extras);
    }
}
