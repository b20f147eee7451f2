//! HLS ladder benchmark: 720p30 H.264 -> 480p + 360p on one core, against ffmpeg + libx264
//! (`-preset veryfast`, one thread) producing the same ladder from the same clip.
//!
//! ```text
//! cargo build --release -p onair-transcoder --example ladder_bench
//! taskset -c 0 target/release/examples/ladder_bench [seconds=20] [--av1]
//! ```
//!
//! `--av1` adds the opt-in AV1 rung (rav1e, `--hls-encoder-speed fast`) at 360p and 240p from the
//! same decoded 720p pictures: encode frames per second on one core, and the bitrate it hit.
//!
//! The clip is generated at run time (ffmpeg testsrc2, libx264 baseline, 2 s GOP) in a
//! temporary directory. Needs `ffmpeg` on PATH.

use std::process::Command;
use std::time::{Duration, Instant};

use onair_transcoder::ladder::{
    Av1Encoder, H264Decoder, Ladder, Picture, Scaler, SourceFrame, TIMESCALE, VideoDecoder,
    plan_av1_rung,
};
use onair_transcoder::{EncoderSpeed, LadderConfig};

const FPS: u64 = 30;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .skip(1)
        .find_map(|s| s.parse().ok())
        .unwrap_or(20);
    let av1 = std::env::args().any(|a| a == "--av1");
    let dir = tempfile::tempdir()?;
    let clip = dir.path().join("clip.h264");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1280x720:rate={FPS}"))
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "veryfast",
        ])
        .args([
            "-b:v", "2500k", "-g", "60", "-bf", "0", "-pix_fmt", "yuv420p",
        ])
        .args(["-x264-params", "slices=1", "-f", "h264"])
        .arg(&clip)
        .status()?;
    if !status.success() {
        return Err("ffmpeg could not generate the clip".into());
    }
    let annexb = std::fs::read(&clip)?;
    let frames = access_units(&annexb);
    let media = Duration::from_secs_f64(frames.len() as f64 / FPS as f64);
    println!(
        "clip: {} frames of 1280x720 @ {FPS} fps ({:.1} s), {} KiB",
        frames.len(),
        media.as_secs_f64(),
        annexb.len() / 1024
    );

    // onair: decode once, scale and encode two rungs.
    let cfg = LadderConfig {
        heights: vec![720, 480, 360],
        av1_height: None,
        speed: EncoderSpeed::Fast,
        segment: Duration::from_secs(1),
    };
    let mut ladder = Ladder::new(cfg, Box::new(H264Decoder::new()?));
    let (mut decode, mut encode) = (Duration::ZERO, [Duration::ZERO; 2]);
    let mut bytes = [0usize; 2];
    let mut keyframes = [0usize; 2];
    let mut shed = Vec::new();
    let start = Instant::now();
    for (i, (key, au)) in frames.iter().enumerate() {
        let out = ladder.push(&SourceFrame {
            dts: i as u64 * TIMESCALE / FPS,
            keyframe: *key,
            data: au,
        });
        decode += out.decode_time.unwrap_or_default();
        for (r, d) in out.encode_times {
            encode[r.min(1)] += d;
        }
        for f in out.frames {
            bytes[f.rung.min(1)] += f.picture.data.len();
            keyframes[f.rung.min(1)] += usize::from(f.keyframe);
        }
        if let Some(s) = out.shed {
            shed.push(s);
        }
    }
    let ours = start.elapsed();
    let names: Vec<String> = ladder
        .rungs()
        .iter()
        .map(|r| {
            format!(
                "{} {}x{} @ {} kbit/s",
                r.name,
                r.width,
                r.height,
                r.bitrate_bps / 1000
            )
        })
        .collect();
    println!("onair ladder: {}", names.join(", "));
    println!(
        "onair: {:.2} s wall for {:.1} s of media = {:.2}x real time (decode {:.2} s, {} {:.2} s, {} {:.2} s)",
        ours.as_secs_f64(),
        media.as_secs_f64(),
        media.as_secs_f64() / ours.as_secs_f64(),
        decode.as_secs_f64(),
        ladder.rungs().first().map_or("-", |r| r.name.as_str()),
        encode[0].as_secs_f64(),
        ladder.rungs().get(1).map_or("-", |r| r.name.as_str()),
        encode[1].as_secs_f64(),
    );
    for r in 0..2 {
        println!(
            "  rung {r}: {:.0} kbit/s actual, {} aligned IDRs",
            bytes[r] as f64 * 8.0 / media.as_secs_f64() / 1000.0,
            keyframes[r]
        );
    }
    if !shed.is_empty() {
        println!("  shed rungs: {shed:?} (the ladder fell behind real time)");
    }

    // The scaler alone, on one decoded 720p picture, for the split of the rung times.
    let mut decoder = H264Decoder::new()?;
    let mut picture = Picture::default();
    for (key, au) in frames.iter().take(1) {
        let frame = SourceFrame {
            dts: 0,
            keyframe: *key,
            data: au,
        };
        decoder.decode(&frame, &mut picture)?;
    }
    let mut scalers = [
        Scaler::new((1280, 720), (854, 480)),
        Scaler::new((1280, 720), (640, 360)),
    ];
    let mut out = Picture::default();
    let start = Instant::now();
    for _ in 0..frames.len() {
        for s in &mut scalers {
            s.scale(&picture, &mut out);
        }
    }
    let scale = start.elapsed();
    println!(
        "  scaling alone (480p + 360p, {} frames): {:.2} s = {:.2} ms per source frame",
        frames.len(),
        scale.as_secs_f64(),
        scale.as_secs_f64() * 1000.0 / frames.len() as f64
    );

    if av1 {
        av1_rungs(&frames)?;
    }

    // ffmpeg + libx264 veryfast, one thread everywhere, same ladder, discarding the output.
    let start = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-threads", "1", "-filter_threads", "1"])
        .args(["-filter_complex_threads", "1", "-i"])
        .arg(&clip)
        .args([
            "-filter_complex",
            "[0:v]split=2[a][b];[a]scale=854:480:flags=area[a1];[b]scale=640:360:flags=area[b1]",
        ])
        .args([
            "-map", "[a1]", "-c:v", "libx264", "-preset", "veryfast", "-threads", "1",
        ])
        .args(["-b:v", "1200k", "-g", "30", "-f", "null", "-"])
        .args([
            "-map", "[b1]", "-c:v", "libx264", "-preset", "veryfast", "-threads", "1",
        ])
        .args(["-b:v", "700k", "-g", "30", "-f", "null", "-"])
        .status()?;
    let theirs = start.elapsed();
    if !status.success() {
        return Err("ffmpeg ladder failed".into());
    }
    println!(
        "ffmpeg -threads 1 libx264 veryfast: {:.2} s wall = {:.2}x real time",
        theirs.as_secs_f64(),
        media.as_secs_f64() / theirs.as_secs_f64()
    );
    Ok(())
}

/// The AV1 rung alone at 360p and 240p: scale each decoded 720p picture (not timed), encode it
/// with rav1e as the ladder configures it, a forced key frame every second.
fn av1_rungs(frames: &[(bool, Vec<u8>)]) -> Result<(), Box<dyn std::error::Error>> {
    let mut decoder = H264Decoder::new()?;
    let mut pictures = Vec::with_capacity(frames.len());
    for (i, (key, au)) in frames.iter().enumerate() {
        let mut picture = Picture::default();
        let frame = SourceFrame {
            dts: i as u64 * TIMESCALE / FPS,
            keyframe: *key,
            data: au,
        };
        if decoder.decode(&frame, &mut picture)? {
            pictures.push(picture);
        }
    }
    for height in [360, 240] {
        let spec = plan_av1_rung(height, 1280, 720, FPS as f64);
        let mut scaler = Scaler::new((1280, 720), (spec.width, spec.height));
        let mut encoder = Av1Encoder::new(
            spec.width,
            spec.height,
            spec.bitrate_bps,
            spec.fps,
            EncoderSpeed::Fast,
        )?;
        let mut scaled = Picture::default();
        let (mut encode, mut bytes, mut out, mut keys) = (Duration::ZERO, 0usize, 0usize, 0usize);
        for (i, picture) in pictures.iter().enumerate() {
            scaler.scale(picture, &mut scaled);
            let start = Instant::now();
            let frames = encoder.encode(
                &scaled,
                i as u64 * TIMESCALE / FPS,
                (i as u64).is_multiple_of(FPS),
            )?;
            encode += start.elapsed();
            for f in frames {
                out += 1;
                bytes += f.picture.data.len();
                keys += usize::from(f.forced_key);
            }
        }
        let media = out as f64 / FPS as f64;
        println!(
            "onair AV1 {} {}x{} @ {} kbit/s target: {} frames in {:.2} s = {:.0} fps ({:.2}x real time), {:.0} kbit/s actual, {keys} key frames",
            spec.name,
            spec.width,
            spec.height,
            spec.bitrate_bps / 1000,
            pictures.len(),
            encode.as_secs_f64(),
            pictures.len() as f64 / encode.as_secs_f64(),
            pictures.len() as f64 / FPS as f64 / encode.as_secs_f64(),
            bytes as f64 * 8.0 / media.max(1e-9) / 1000.0,
        );
    }
    Ok(())
}

/// Splits a single-slice-per-picture Annex B stream into AVCC access units (parameter sets
/// travel with the IDR they precede; AUD and SEI are dropped).
fn access_units(annexb: &[u8]) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut au = Vec::new();
    let mut key = false;
    for nal in nal_units(annexb) {
        let Some(&h) = nal.first() else { continue };
        let kind = h & 0x1f;
        if kind == 6 || kind == 9 {
            continue;
        }
        au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        au.extend_from_slice(nal);
        key |= kind == 5;
        if kind == 1 || kind == 5 {
            out.push((key, std::mem::take(&mut au)));
            key = false;
        }
    }
    out
}

fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        out.push(&data[s..end]);
    }
    out
}
