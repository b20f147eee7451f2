//! Opus → AAC end to end with real codecs: a 1 kHz stereo sine (after 200 ms of silence) is
//! encoded by libopus into 20 ms packets, a few are dropped, `OpusToAac` transcodes the rest,
//! the fMP4 writer packages them as init + fragments, and ffprobe/ffmpeg must see AAC-LC 48 kHz
//! stereo starting at the right time, with a 1 kHz tone of the right level whose onset lands
//! where the Opus timeline puts it. Prints SKIPPED and returns when ffmpeg is not installed.
//!
//! `opus_to_aac_cpu_cost` (ignored) measures the transcoding cost of one stream:
//! `cargo test --release -p onair-transcoder --test aac_ffmpeg -- --ignored --nocapture`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use onair_transcoder::audio::{AacFrame, OpusToAac, OpusToAacConfig};
use onair_transcoder::fmp4::{STYP, Sample, TrackFragment, init_segment, write_fragment};

const PACKET: usize = 960;
/// First packet's timestamp: 10 s into the stream.
const BASE: u64 = 480_000;
const AMPLITUDE: f64 = 9830.0; // -10 dBFS
const LEAD_IN_PACKETS: usize = 10;

fn have_ffmpeg(test: &str) -> bool {
    let found = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !found {
        eprintln!("SKIPPED {test}: ffmpeg/ffprobe not found (apt-get install ffmpeg)");
    }
    found
}

/// Interleaved stereo: `LEAD_IN_PACKETS` of silence, then a 1 kHz sine (left and right equal).
fn test_signal(packets: usize) -> Vec<i16> {
    let lead_in = LEAD_IN_PACKETS * PACKET;
    (0..packets * PACKET)
        .flat_map(|t| {
            let v = if t < lead_in {
                0.0
            } else {
                AMPLITUDE * (2.0 * std::f64::consts::PI * 1000.0 * t as f64 / 48_000.0).sin()
            };
            [v as i16, v as i16]
        })
        .collect()
}

fn opus_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc =
        OpusEncoder::new(SampleRate::Hz48000, Channels::Stereo, Application::Audio).unwrap();
    enc.set_bitrate(Bitrate::BitsPerSecond(96_000)).unwrap();
    pcm.chunks_exact(PACKET * 2)
        .map(|chunk| {
            let mut buf = [0u8; 1500];
            let n = enc.encode(chunk, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

/// What the Opus rendition plays: every packet decoded in order, sample `k` at `BASE + k`.
fn opus_reference(packets: &[Vec<u8>]) -> Vec<i16> {
    let mut dec = OpusDecoder::new(SampleRate::Hz48000, Channels::Stereo).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0i16; 5760 * 2];
    for p in packets {
        let n = dec.decode(Some(&p[..]), &mut buf[..], false).unwrap();
        out.extend_from_slice(&buf[..n * 2]);
    }
    out
}

/// Init segment plus one `styp`+`moof`+`mdat` per ~1 s of frames, as the LL-HLS layer serves.
fn package(t: &OpusToAac, frames: &[AacFrame]) -> Vec<u8> {
    let mut out = init_segment(&[t.track(1)]);
    for (seq, chunk) in frames.chunks(47).enumerate() {
        let samples: Vec<Sample> = chunk.iter().map(AacFrame::to_sample).collect();
        out.extend_from_slice(&STYP);
        write_fragment(
            &mut out,
            seq as u32 + 1,
            &[TrackFragment {
                track_id: 1,
                base_decode_time: chunk[0].dts,
                samples: &samples,
            }],
        );
    }
    out
}

fn ffprobe(path: &std::path::Path) -> BTreeMap<String, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "flat",
            "-show_streams",
            "-count_packets",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffprobe: {stderr}"
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let k = k.trim_start_matches("streams.stream.0.");
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect()
}

/// Decodes the file with ffmpeg's own AAC decoder to interleaved stereo s16le.
fn ffmpeg_decode(path: &std::path::Path) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-f",
            "s16le",
            "-acodec",
            "pcm_s16le",
            "-ac",
            "2",
            "-ar",
            "48000",
            "-",
        ])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn rms(channel: impl Iterator<Item = i16>) -> f64 {
    let (sum, n) = channel.fold((0.0, 0usize), |(s, n), v| (s + f64::from(v).powi(2), n + 1));
    (sum / n.max(1) as f64).sqrt()
}

/// Frequency from the zero-crossing rate of one channel.
fn zero_crossing_hz(channel: &[i16]) -> f64 {
    let crossings = channel
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    crossings as f64 / 2.0 / (channel.len() as f64 / 48_000.0)
}

/// Index of the first stereo frame whose left sample exceeds `level`.
fn onset(pcm: &[i16], level: i16) -> usize {
    pcm.chunks_exact(2)
        .position(|s| s[0].abs() > level)
        .expect("no onset")
}

#[test]
fn aac_from_opus_decodes_with_ffmpeg_as_a_1khz_tone_in_sync() {
    let n = 150; // 3 s
    let pcm = test_signal(n);
    let packets = opus_packets(&pcm);
    let reference = opus_reference(&packets);
    let lost = [40usize, 41, 90, 120];
    let mut t = OpusToAac::new(OpusToAacConfig::default()).unwrap();
    let mut frames = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if !lost.contains(&i) {
            frames.extend(t.push(BASE + (i * PACKET) as u64, p));
        }
    }
    frames.extend(t.flush());
    assert!(frames.windows(2).all(|w| w[1].dts == w[0].dts + 1024));
    let first_dts = frames[0].dts;
    assert_eq!(first_dts, BASE - u64::from(t.encoder_delay()));
    let stats = t.stats();
    assert_eq!(stats.concealed_samples, (lost.len() * PACKET) as u64);
    assert_eq!((stats.dropped_invalid, stats.resets), (0, 0));
    if !have_ffmpeg("aac_from_opus_decodes_with_ffmpeg_as_a_1khz_tone_in_sync") {
        return;
    }

    let mut file = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile()
        .expect("temp file");
    file.write_all(&package(&t, &frames)).expect("write");

    let p = ffprobe(file.path());
    assert_eq!(p["codec_name"], "aac");
    assert_eq!(p["profile"], "LC");
    assert_eq!(p["sample_rate"], "48000");
    assert_eq!(p["channels"], "2");
    assert_eq!(p["nb_read_packets"], frames.len().to_string());
    let start: f64 = p["start_time"].parse().expect("start_time");
    assert!(
        (start - first_dts as f64 / 48_000.0).abs() < 1e-4,
        "start_time {start}"
    );
    // ffmpeg 5.1 gives a fragmented stream's duration from time 0, i.e. its end time.
    let duration: f64 = p["duration"].parse().expect("duration");
    let end = (first_dts + frames.len() as u64 * 1024) as f64 / 48_000.0;
    assert!(
        (duration - end).abs() < 1e-3,
        "duration {duration}, end {end}"
    );
    assert!(frames.len() * 1024 >= n * PACKET + 2048 && frames.len() * 1024 < n * PACKET + 3072);

    let decoded = ffmpeg_decode(file.path());
    // ffmpeg's decoder (like a TV's) adds no delay: sample k plays at first_dts + k.
    assert_eq!(decoded.len(), frames.len() * 1024 * 2);
    let offset = (BASE - first_dts) as usize;

    // The tone starts where the Opus rendition starts it (within 16 samples; it is exact here).
    let aac_onset = onset(&decoded, 1000) as i64 - offset as i64;
    let opus_onset = onset(&reference, 1000) as i64;
    assert!(
        (aac_onset - opus_onset).abs() <= 16,
        "AAC onset {aac_onset}, Opus onset {opus_onset}"
    );
    eprintln!("tone onset: AAC {aac_onset}, Opus {opus_onset} (samples after the first packet)");
    // Silence before it.
    let lead_in = &decoded[..(offset + LEAD_IN_PACKETS * PACKET - 600) * 2];
    assert!(rms(lead_in.iter().copied()) < 30.0);

    // A steady 1 kHz tone at -10 dBFS on both channels, through the concealed losses too.
    let tone = &decoded[(offset + 15 * PACKET) * 2..(offset + (n - 2) * PACKET) * 2];
    for ch in 0..2 {
        let samples: Vec<i16> = tone.iter().skip(ch).step_by(2).copied().collect();
        let level = rms(samples.iter().copied());
        let want = AMPLITUDE / 2f64.sqrt();
        assert!(
            (level - want).abs() < want * 0.1,
            "channel {ch} rms {level}, want {want}"
        );
        let hz = zero_crossing_hz(&samples);
        eprintln!("channel {ch}: rms {level:.0} (want {want:.0}), {hz:.1} Hz");
        assert!((hz - 1000.0).abs() < 10.0, "channel {ch} at {hz} Hz");
    }
    // Each concealed packet still carries the tone (PLC, not silence).
    for &i in &lost {
        let at = offset + i * PACKET;
        let level = rms(decoded[at * 2..(at + PACKET) * 2]
            .iter()
            .copied()
            .step_by(2));
        assert!(
            level > AMPLITUDE / 2f64.sqrt() * 0.3,
            "lost packet {i}: rms {level}"
        );
    }
}

/// CPU time of this thread, from /proc (Linux), in seconds.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn opus_to_aac_cpu_cost() {
    let seconds = 120;
    // Tone plus noise, so neither codec gets an easy signal.
    let mut seed = 1u32;
    let pcm: Vec<i16> = test_signal(seconds * 50)
        .into_iter()
        .map(|s| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            s.saturating_add((seed >> 20) as i16 - 2048)
        })
        .collect();
    let packets = opus_packets(&pcm);
    let mut t = OpusToAac::new(OpusToAacConfig::default()).unwrap();
    let cpu0 = thread_cpu_seconds();
    let wall0 = std::time::Instant::now();
    let mut bytes = 0;
    for (i, p) in packets.iter().enumerate() {
        bytes += t
            .push(BASE + (i * PACKET) as u64, p)
            .iter()
            .map(|f| f.data.len())
            .sum::<usize>();
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = thread_cpu_seconds()
        .zip(cpu0)
        .map_or(wall, |(end, start)| end - start);
    println!(
        "Opus→AAC 128 kbit/s stereo: {seconds} s of audio in {cpu:.2} CPU-s ({wall:.2} s wall): \
         {:.0} s of audio per CPU-second, {:.2}% of a core per stream; AAC {:.0} kbit/s",
        seconds as f64 / cpu,
        100.0 * cpu / seconds as f64,
        bytes as f64 * 8.0 / seconds as f64 / 1000.0
    );
}
