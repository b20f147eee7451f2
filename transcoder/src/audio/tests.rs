//! Unit tests with the real codecs: libopus makes the input, FDK's decoder checks the output.

use audiopus::coder::Encoder as OpusEncoder;
use audiopus::{Application, Channels, SampleRate};

use super::*;

const PACKET: u64 = 960;
const BASE: u64 = 1_000_000;
const SILENCE_PACKET: [u8; 3] = [0xf8, 0xff, 0xfe];

/// Interleaved PCM of `frames` samples per channel from `f(t)`.
fn signal(frames: usize, channels: usize, f: impl Fn(usize) -> f64) -> Vec<i16> {
    (0..frames)
        .flat_map(|t| std::iter::repeat_n(f(t) as i16, channels))
        .collect()
}

fn sine(t: usize) -> f64 {
    10_000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t as f64 / 48_000.0).sin()
}

/// Deterministic white noise, for a correlation peak that a periodic tone would not give.
fn noise(t: usize) -> f64 {
    let x = (t as u64 ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let x = (x ^ (x >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((x >> 40) as f64 / (1u64 << 24) as f64 - 0.5) * 16_000.0
}

/// 20 ms Opus packets of `pcm` (interleaved, `channels` wide).
fn opus_packets(pcm: &[i16], channels: usize) -> Vec<Vec<u8>> {
    let layout = if channels == 1 {
        Channels::Mono
    } else {
        Channels::Stereo
    };
    let enc = OpusEncoder::new(SampleRate::Hz48000, layout, Application::Audio).unwrap();
    pcm.chunks_exact(PACKET as usize * channels)
        .map(|chunk| {
            let mut buf = [0u8; 1500];
            let n = enc.encode(chunk, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn transcoder() -> OpusToAac {
    OpusToAac::new(OpusToAacConfig::default()).unwrap()
}

/// Pushes `(timestamp, packet)` pairs and flushes.
fn run(t: &mut OpusToAac, packets: &[(u64, &[u8])]) -> Vec<AacFrame> {
    let mut frames: Vec<AacFrame> = packets.iter().flat_map(|&(ts, p)| t.push(ts, p)).collect();
    frames.extend(t.flush());
    frames
}

fn assert_contiguous(frames: &[AacFrame]) {
    for w in frames.windows(2) {
        assert_eq!(w[1].dts, w[0].dts + 1024, "frames not contiguous");
        assert!(!w[1].discontinuity);
    }
}

/// `end` (of the last frame) is just past `last_input`: the flush emits the frame that holds
/// the last input sample and no padding frame after it.
fn assert_ends_with(end: u64, last_input: u64) {
    assert!(
        (last_input..last_input + 1024).contains(&end),
        "ends at {end}"
    );
}

/// Decodes frames with FDK's decoder into interleaved stereo PCM that starts at the first
/// frame's dts.
fn decode_aac(codec: &Codec, frames: &[AacFrame]) -> Vec<i16> {
    let Codec::Aac { config, .. } = codec else {
        panic!("not AAC")
    };
    let mut dec = fdk_aac::dec::Decoder::new(fdk_aac::dec::Transport::Raw);
    dec.config_raw(config).unwrap();
    let mut pcm = Vec::new();
    let mut buf = vec![0i16; 2048 * 8];
    for f in frames {
        dec.fill(&f.data).unwrap();
        dec.decode_frame(&mut buf).unwrap();
        assert_eq!(dec.stream_info().numChannels, 2);
        pcm.extend_from_slice(&buf[..dec.decoded_frame_size()]);
    }
    // FDK's decoder adds its own delay (its limiter's lookahead); players' decoders do not.
    let extra = dec.stream_info().outputDelay as usize * 2;
    pcm.drain(..extra.min(pcm.len()));
    pcm
}

/// Root mean square of the left channel.
fn rms(pcm: &[i16]) -> f64 {
    let n = pcm.len() / 2;
    (pcm.iter()
        .step_by(2)
        .map(|&s| f64::from(s).powi(2))
        .sum::<f64>()
        / n.max(1) as f64)
        .sqrt()
}

#[test]
fn transcoder_is_send() {
    fn send<T: Send>() {}
    send::<OpusToAac>();
}

#[test]
fn codec_delay_and_config() {
    let t = transcoder();
    assert_eq!(t.encoder_delay(), 2048);
    assert_eq!(
        t.codec(),
        Codec::Aac {
            config: aac_lc_config(48000, 2).unwrap(),
            channels: 2,
            sample_rate: 48000,
        }
    );
    let track = t.track(2);
    assert_eq!((track.id, track.timescale), (2, 48000));
    assert_eq!(track.codec.rfc6381(), "mp4a.40.2");
    assert!(
        OpusToAac::new(OpusToAacConfig {
            bitrate: 1,
            ..OpusToAacConfig::default()
        })
        .is_err()
    );
}

#[test]
fn timestamps_cover_the_input_shifted_by_the_encoder_delay() {
    let pcm = signal(100 * PACKET as usize, 2, sine);
    let packets = opus_packets(&pcm, 2);
    let mut t = transcoder();
    let input: Vec<_> = (0..100)
        .map(|i| (BASE + i * PACKET, &packets[i as usize][..]))
        .collect();
    let frames = run(&mut t, &input);
    assert_contiguous(&frames);
    let delay = u64::from(t.encoder_delay());
    assert_eq!(frames[0].dts, BASE - delay);
    assert!(!frames[0].discontinuity);
    // The flush ends with the unit that holds the last input sample, no further.
    let end = frames.last().unwrap().dts + 1024;
    assert_ends_with(end, BASE + 100 * PACKET);
    let s = t.stats();
    assert_eq!((s.packets, s.frames), (100, frames.len() as u64));
    assert_eq!(
        (s.concealed_samples, s.silence_samples, s.resets),
        (0, 0, 0)
    );
}

/// The decoded AAC, placed at its dts, lines up with the decoded Opus at its timestamps.
#[test]
fn decoded_aac_is_in_sync_with_the_opus_timeline() {
    let n = 50;
    let pcm = signal(n * PACKET as usize, 2, noise);
    let packets = opus_packets(&pcm, 2);
    let mut reference = Vec::new();
    let mut dec = OpusDecoder::new().unwrap();
    for p in &packets {
        reference.extend_from_slice(dec.decode(p).unwrap());
    }
    let mut t = transcoder();
    let input: Vec<_> = (0..n as u64)
        .map(|i| (BASE + i * PACKET, &packets[i as usize][..]))
        .collect();
    let frames = run(&mut t, &input);
    let aac = decode_aac(&t.codec(), &frames);
    // aac[k] plays at frames[0].dts + k; reference[k] at BASE + k.
    let offset = (BASE - frames[0].dts) as i64;
    let corr = |lag: i64| -> f64 {
        (4800..30_000i64)
            .map(|k| {
                let a = aac[((k + offset + lag) * 2) as usize];
                f64::from(reference[(k * 2) as usize]) * f64::from(a)
            })
            .sum()
    };
    let best = (-600..=600).max_by(|&a, &b| corr(a).total_cmp(&corr(b)));
    assert_eq!(best, Some(0), "AAC lags the Opus timeline");
}

#[test]
fn loss_is_concealed_and_the_timeline_stays_continuous() {
    let n = 150u64;
    let pcm = signal(n as usize * PACKET as usize, 2, sine);
    let packets = opus_packets(&pcm, 2);
    // Lost: one packet, five in a row (100 ms: concealment), 20 in a row (400 ms: silence).
    let lost = |i: u64| i == 10 || (30..35).contains(&i) || (60..80).contains(&i);
    let input: Vec<_> = (0..n)
        .filter(|&i| !lost(i))
        .map(|i| (BASE + i * PACKET, &packets[i as usize][..]))
        .collect();
    let mut t = transcoder();
    let frames = run(&mut t, &input);
    assert_contiguous(&frames);
    let s = t.stats();
    assert_eq!(s.concealed_samples, 6 * PACKET + 4800);
    assert_eq!(s.silence_samples, 20 * PACKET - 4800);
    assert_eq!(s.resets, 0);
    let end = frames.last().unwrap().dts + 1024;
    assert_ends_with(end, BASE + n * PACKET);

    // The tone is back right after each hole, and the long one is silent in the middle.
    let aac = decode_aac(&t.codec(), &frames);
    let at = |ts: u64, len: u64| {
        let from = (ts - frames[0].dts) as usize * 2;
        &aac[from..from + len as usize * 2]
    };
    let tone = rms(at(BASE + 2 * PACKET, 5 * PACKET));
    assert!(
        (tone - 10_000.0 / 2f64.sqrt()).abs() < 1000.0,
        "tone rms {tone}"
    );
    assert!(rms(at(BASE + 36 * PACKET, 20 * PACKET)) > tone * 0.8);
    assert!(rms(at(BASE + 70 * PACKET, 8 * PACKET)) < 50.0);
    assert!(rms(at(BASE + 82 * PACKET, 20 * PACKET)) > tone * 0.8);
}

#[test]
fn silence_packets_and_mono_opus() {
    let mono = signal(40 * PACKET as usize, 1, sine);
    let packets = opus_packets(&mono, 1);
    let mut input: Vec<(u64, &[u8])> = (0..20u64)
        .map(|i| (BASE + i * PACKET, &SILENCE_PACKET[..]))
        .collect();
    input.extend((0..40u64).map(|i| (BASE + (20 + i) * PACKET, &packets[i as usize][..])));
    let mut t = transcoder();
    let frames = run(&mut t, &input);
    assert_contiguous(&frames);
    assert_eq!(t.stats().dropped_invalid, 0);
    let aac = decode_aac(&t.codec(), &frames);
    let from = (BASE - frames[0].dts) as usize;
    assert!(rms(&aac[from * 2..(from + 15 * PACKET as usize) * 2]) < 10.0);
    let tone = &aac[(from + 25 * PACKET as usize) * 2..(from + 55 * PACKET as usize) * 2];
    assert!(rms(tone) > 5000.0, "rms {}", rms(tone));
    // Mono in, both channels out, the same.
    assert!(tone.chunks_exact(2).all(|s| (s[0] - s[1]).abs() < 200));
}

#[test]
fn late_duplicate_and_overlapping_packets() {
    let pcm = signal(20 * PACKET as usize, 2, sine);
    let p = opus_packets(&pcm, 2);
    let mut t = transcoder();
    let input: Vec<(u64, &[u8])> = vec![
        (BASE, &p[0]),
        (BASE + PACKET, &p[1]),
        (BASE + PACKET, &p[1]), // duplicate
        (BASE, &p[0]),          // late
        (BASE + 2 * PACKET, &p[2]),
        (BASE + 3 * PACKET - 480, &p[3]), // overlaps its predecessor by half
        (BASE + 4 * PACKET - 480, &p[4]),
    ];
    let frames = run(&mut t, &input);
    assert_contiguous(&frames);
    assert_eq!(t.stats().dropped_late, 2);
    let end = frames.last().unwrap().dts + 1024;
    assert_ends_with(end, BASE + 5 * PACKET - 480);
}

#[test]
fn a_long_jump_starts_a_new_run_and_a_lone_outlier_is_dropped() {
    let pcm = signal(40 * PACKET as usize, 2, sine);
    let p = opus_packets(&pcm, 2);
    let mut t = transcoder();
    let jump = 60 * 48_000;
    let mut frames = Vec::new();
    for i in 0..10u64 {
        frames.extend(t.push(BASE + i * PACKET, &p[i as usize]));
    }
    // One wild timestamp, then the stream goes on: nothing changes but a dropped packet.
    frames.extend(t.push(BASE + 1_000_000_000, &p[10]));
    for i in 11..20u64 {
        frames.extend(t.push(BASE + i * PACKET, &p[i as usize]));
    }
    assert_contiguous(&frames);
    assert_eq!(t.stats().dropped_invalid, 1);
    let before = frames.len();
    // A real jump: confirmed by the packet after it.
    for i in 20..40u64 {
        frames.extend(t.push(BASE + jump + i * PACKET, &p[i as usize]));
    }
    frames.extend(t.flush());
    let reset = frames
        .iter()
        .position(|f| f.discontinuity)
        .expect("discontinuity");
    assert!(reset >= before);
    assert_contiguous(&frames[..reset]);
    assert_contiguous(&frames[reset..]);
    let old_end = frames[reset - 1].dts + 1024;
    assert_ends_with(old_end, BASE + 20 * PACKET);
    assert_eq!(
        frames[reset].dts,
        BASE + jump + 20 * PACKET - u64::from(t.encoder_delay())
    );
    assert_eq!(t.stats().resets, 1);
}

#[test]
fn priming_before_time_zero_is_dropped() {
    let pcm = signal(10 * PACKET as usize, 2, sine);
    let p = opus_packets(&pcm, 2);
    let mut t = transcoder();
    let input: Vec<(u64, &[u8])> = (0..10u64)
        .map(|i| (i * PACKET, &p[i as usize][..]))
        .collect();
    let frames = run(&mut t, &input);
    assert_contiguous(&frames);
    // Time 0 falls on a frame boundary because the delay is whole frames.
    assert_eq!(frames[0].dts, 0);
}

#[test]
fn fill_to_keeps_pace_without_packets() {
    let pcm = signal(10 * PACKET as usize, 2, sine);
    let p = opus_packets(&pcm, 2);
    let mut t = transcoder();
    assert!(
        t.fill_to(BASE).is_empty(),
        "no timeline before the first packet"
    );
    let mut frames = t.push(BASE, &p[0]);
    frames.extend(t.fill_to(BASE + 48_000));
    assert!(frames.last().unwrap().dts + 1024 > BASE + 48_000 - 2048 - 1024);
    // A packet for time already filled is late; the next one continues.
    frames.extend(t.push(BASE + PACKET, &p[1]));
    frames.extend(t.push(BASE + 48_000, &p[2]));
    frames.extend(t.flush());
    assert_contiguous(&frames);
    assert_eq!(t.stats().dropped_late, 1);
}

#[test]
fn garbage_never_panics_and_keeps_timestamps_monotonic() {
    let pcm = signal(200 * PACKET as usize, 2, sine);
    let p = opus_packets(&pcm, 2);
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut t = transcoder();
    let mut frames = Vec::new();
    for i in 0..200u64 {
        let ts = BASE + i * PACKET;
        frames.extend(t.push(ts, &p[i as usize]));
        let garbage: Vec<u8> = (0..next() % 64).map(|_| next() as u8).collect();
        let wild = match next() % 4 {
            0 => ts,
            1 => ts + next() % 10_000,
            2 => next(),
            _ => ts.saturating_sub(next() % 10_000),
        };
        frames.extend(t.push(wild, &garbage));
        frames.extend(t.push(ts, &[]));
        frames.extend(t.push(u64::MAX - next() % 100, &p[0]));
    }
    frames.extend(t.flush());
    assert!(frames.windows(2).all(|w| w[1].dts > w[0].dts));
    let s = t.stats();
    assert_eq!(s.encoder_errors, 0);
    assert!(s.dropped_invalid > 200);
    // The real stream still got through: most frames decode to the tone.
    let aac = decode_aac(&t.codec(), &frames);
    assert!(rms(&aac) > 3000.0, "rms {}", rms(&aac));
}
