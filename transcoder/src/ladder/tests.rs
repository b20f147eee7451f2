//! The ladder state machine with real codecs (openh264 both ways, rav1e and dav1d for the AV1
//! rung) and a synthetic clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::config::{EncoderSpeed, LadderConfig};

const FRAME: u64 = TIMESCALE / 30;

/// A moving gradient, so the encoders have motion to code.
fn source_picture(w: u32, h: u32, i: u32) -> Picture {
    let mut p = Picture::default();
    p.reset(w, h);
    for y in 0..h {
        for x in 0..w {
            p.planes[0][(y * w + x) as usize] = ((x + 3 * i) ^ (y + i)) as u8;
        }
    }
    p.planes[1].fill(100 + (i % 50) as u8);
    p.planes[2].fill(150);
    p
}

/// `n` frames of a `w` x `h` 30 fps H.264 source with an IDR every `gop` frames.
fn source(w: u32, h: u32, n: u32, gop: u32) -> Vec<(u64, bool, Vec<u8>)> {
    let mut enc = H264Encoder::new(600_000, 30.0, EncoderSpeed::Fast).expect("encoder");
    (0..n)
        .map(|i| {
            let dts = 10 * TIMESCALE + u64::from(i) * FRAME;
            let e = enc
                .encode(&source_picture(w, h, i), dts / 90, i % gop == 0)
                .expect("encode")
                .expect("a frame");
            assert_eq!(e.idr, i % gop == 0, "frame {i}");
            (dts, e.idr, e.data)
        })
        .collect()
}

/// A clock that advances `step` on every reading.
fn stepping_clock(step: Duration) -> (Box<dyn FnMut() -> Duration + Send>, Arc<AtomicU64>) {
    let micros = Arc::new(AtomicU64::new(step.as_micros() as u64));
    let now = Arc::new(AtomicU64::new(0));
    let m = micros.clone();
    let clock = Box::new(move || {
        let t = now.fetch_add(m.load(Ordering::Relaxed), Ordering::Relaxed);
        Duration::from_micros(t)
    });
    (clock, micros)
}

fn ladder(heights: &[u32], step: Duration) -> (Ladder, Arc<AtomicU64>) {
    ladder_with_av1(heights, None, step)
}

fn ladder_with_av1(
    heights: &[u32],
    av1_height: Option<u32>,
    step: Duration,
) -> (Ladder, Arc<AtomicU64>) {
    let cfg = LadderConfig {
        heights: heights.to_vec(),
        av1_height,
        speed: EncoderSpeed::Fast,
        segment: Duration::from_secs(1),
    };
    let (clock, step) = stepping_clock(step);
    let decoder = Box::new(H264Decoder::new().expect("decoder"));
    (Ladder::with_clock(cfg, decoder, clock), step)
}

fn push(l: &mut Ladder, f: &(u64, bool, Vec<u8>)) -> LadderOutput {
    l.push(&SourceFrame {
        dts: f.0,
        keyframe: f.1,
        data: &f.2,
    })
}

#[test]
fn aligner_marks_the_first_frame_then_one_per_segment() {
    let mut a = KeyframeAligner::new(Duration::from_secs(1));
    let marks: Vec<u64> = (0..100u64)
        .map(|i| 5_000 + i * FRAME)
        .filter(|&dts| a.is_boundary(dts))
        .collect();
    assert_eq!(
        marks,
        vec![
            5_000,
            5_000 + 30 * FRAME,
            5_000 + 60 * FRAME,
            5_000 + 90 * FRAME
        ]
    );
    // Jittery 29.97 fps-ish deltas: a boundary is never less than one segment after the last.
    let mut a = KeyframeAligner::new(Duration::from_secs(1));
    let mut dts = 0;
    let mut last = None;
    for i in 0..300u64 {
        dts += 3003 + (i % 3) * 7;
        if a.is_boundary(dts) {
            if let Some(l) = last {
                assert!(
                    dts - l >= TIMESCALE && dts - l < TIMESCALE + 3030,
                    "{}",
                    dts - l
                );
            }
            last = Some(dts);
        }
    }
}

#[test]
fn rungs_below_the_source_only_even_sizes_scaled_bitrates() {
    let r = plan_rungs(&[360, 720, 480, 480], 1280, 720, 30.0);
    let names: Vec<_> = r
        .iter()
        .map(|r| (r.name.as_str(), r.width, r.height))
        .collect();
    assert_eq!(names, vec![("480p", 854, 480), ("360p", 640, 360)]);
    assert!(
        (1_100_000..1_300_000).contains(&r[0].bitrate_bps),
        "{}",
        r[0].bitrate_bps
    );
    assert!(
        (650_000..750_000).contains(&r[1].bitrate_bps),
        "{}",
        r[1].bitrate_bps
    );
    assert_eq!(rung_bitrate(1280, 720, 30.0), 2_500_000);
    assert!(rung_bitrate(1280, 720, 60.0) > 2_500_000 && rung_bitrate(1280, 720, 60.0) < 5_000_000);
    assert!(plan_rungs(&[], 1280, 720, 30.0).is_empty());
    assert!(plan_rungs(&[720, 1080], 1280, 720, 30.0).is_empty());
}

#[test]
fn every_rung_gets_its_idr_on_the_same_source_frame_each_segment() {
    // Source keyframes every 2 s; the ladder's IDRs every 1 s regardless.
    let frames = source(320, 180, 98, 60);
    let (mut l, _) = ladder(&[180, 120, 90], Duration::from_micros(100));
    let mut idrs: Vec<Vec<u64>> = vec![Vec::new(); 2];
    let mut counts = [0usize; 2];
    let mut decoded_sizes = Vec::new();
    for f in &frames {
        let out = push(&mut l, f);
        assert!(out.shed.is_none() && out.failed.is_empty() && !out.need_keyframe);
        for rf in out.frames {
            assert_eq!(rf.dts, f.0);
            counts[rf.rung] += 1;
            if rf.keyframe {
                assert!(rf.picture.sps.is_some() && rf.picture.pps.is_some());
                idrs[rf.rung].push(rf.dts);
            }
            if rf.picture.idr {
                assert!(rf.keyframe, "an IDR the ladder did not ask for");
            }
            if counts[rf.rung] == 1 {
                let sps = rf.picture.sps.expect("first frame is an IDR");
                let info = crate::depacketize::parse_h264_sps(&sps).expect("sps");
                decoded_sizes.push((info.width, info.height));
            }
        }
    }
    // 180 is not below a 180-line source; 120 and 90 are.
    let specs: Vec<_> = l.rungs().iter().map(|r| r.name.clone()).collect();
    assert_eq!(specs, vec!["120p", "90p"]);
    assert_eq!(decoded_sizes, vec![(214, 120), (160, 90)]);
    // Every frame after the first 7 (which measure the frame rate) comes out of both rungs.
    let skip = PLAN_AFTER_PICTURES as usize - 1;
    assert_eq!(counts, [98 - skip, 98 - skip]);
    let start = frames[skip].0;
    let expected: Vec<u64> = (0..4).map(|k| start + k * 30 * FRAME).collect();
    assert_eq!(idrs[0], expected);
    assert_eq!(idrs[1], expected);
    assert!((l.fps() - 30.0).abs() < 0.01);
}

#[test]
fn a_ladder_that_falls_behind_sheds_its_most_expensive_rung_once() {
    let frames = source(320, 180, 200, 30);
    // 15 ms per clock reading: decode + 2 rungs = 45 ms of work per 33 ms frame.
    let (mut l, _) = ladder(&[120, 90], Duration::from_millis(15));
    let mut shed = Vec::new();
    let mut reports = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let shed_before = !shed.is_empty();
        let out = push(&mut l, f);
        if shed_before {
            assert!(out.frames.iter().all(|rf| rf.rung == 1), "frame {i}");
        }
        if let Some(s) = out.shed {
            shed.push((i, s));
        }
        if let Some(r) = out.report {
            reports.push(r);
        }
    }
    // The first window (3 s of media: 91 frames after the 7 that measure the frame rate) runs
    // at 33.3/45 = 0.74x real time: the larger rung goes. Then 30 ms per frame keeps up (1.11x)
    // and nothing else is shed.
    assert_eq!(shed, vec![(97, 0)]);
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(
        (reports[0].realtime_factor - 0.75).abs() < 0.03,
        "{reports:?}"
    );
    assert!(reports[1].realtime_factor > 1.05, "{reports:?}");
    assert!(!l.is_active(0) && l.is_active(1) && !l.is_idle());
}

#[test]
fn a_fast_ladder_reports_its_realtime_factor_and_sheds_nothing() {
    let frames = source(320, 180, 100, 30);
    let (mut l, _) = ladder(&[120], Duration::from_millis(2));
    let mut report = None;
    for f in &frames {
        let out = push(&mut l, f);
        assert!(out.shed.is_none());
        report = out.report.or(report);
    }
    let report = report.expect("a window closed");
    // Decode and the rung take one 2 ms step each: 4 ms of work per 33.3 ms frame.
    assert!((report.realtime_factor - 8.33).abs() < 0.1, "{report:?}");
    assert_eq!(report.rungs.len(), 1);
    assert!((report.rungs[0].1 - 16.67).abs() < 0.1, "{report:?}");
}

#[test]
fn corrupt_frames_never_panic_and_wait_for_the_next_keyframe() {
    let frames = source(320, 180, 40, 30);
    let (mut l, _) = ladder(&[120], Duration::from_micros(100));
    for f in &frames[..10] {
        push(&mut l, f);
    }
    // Malformed length prefixes never reach the decoder (flagged as keyframes so each one is
    // tried rather than skipped while waiting for a keyframe).
    for garbage in [vec![], vec![0, 0, 0, 9, 1, 2], vec![0xff; 64]] {
        let out = push(&mut l, &(frames[9].0 + 1, true, garbage.clone()));
        assert!(out.frames.is_empty() && out.need_keyframe, "{garbage:?}");
    }
    // While waiting for a keyframe, other frames are dropped without decoding.
    let out = push(&mut l, &(frames[9].0 + 1, false, frames[9].2.clone()));
    assert!(out.dropped && out.decode_time.is_none());
    // Well-framed nonsense goes to openh264, which must not bring the process down either.
    for garbage in [
        vec![0, 0, 0, 3, 0x65, 0xff, 0xff],
        vec![0, 0, 0, 2, 0x41, 0x9a],
    ] {
        push(&mut l, &(frames[9].0 + 2, true, garbage));
    }
    // Whatever the decoder made of the garbage, a later keyframe brings the rung back.
    let mut produced_after_key = false;
    for f in &frames[10..] {
        let out = push(&mut l, f);
        if f.1 {
            produced_after_key = !out.frames.is_empty();
        }
    }
    assert!(produced_after_key);
}

#[test]
fn no_heights_means_no_work() {
    let frames = source(320, 180, 5, 30);
    let (mut l, _) = ladder(&[], Duration::from_millis(1));
    assert!(l.is_idle());
    for f in &frames {
        let out = push(&mut l, f);
        assert!(out.frames.is_empty() && out.decode_time.is_none());
    }
}

#[test]
fn the_av1_rung_comes_last_at_most_at_the_source_height_with_less_bitrate() {
    let r = plan_av1_rung(240, 1280, 720, 30.0);
    assert_eq!(
        (r.name.as_str(), r.codec, r.width, r.height),
        ("av1-240p", RungCodec::Av1, 426, 240)
    );
    let h264 = f64::from(rung_bitrate(426, 240, 30.0));
    assert!((f64::from(r.bitrate_bps) - 0.7 * h264).abs() < 2.0, "{r:?}");
    // Never above the source: a 720p AV1 rung of a 360p source is encoded at 360p.
    let r = plan_av1_rung(720, 640, 360, 30.0);
    assert_eq!((r.name.as_str(), r.width, r.height), ("av1-360p", 640, 360));
    assert!(plan_rungs(&[360], 1280, 720, 30.0)[0].codec == RungCodec::H264);
}

#[test]
fn the_av1_rung_keys_exactly_at_the_aligned_boundaries_and_decodes_with_dav1d() {
    // Source keyframes every 2 s; the ladder's keyframes every 1 s in both rungs.
    let frames = source(320, 180, 98, 60);
    let (mut l, _) = ladder_with_av1(&[120], Some(90), Duration::from_micros(100));
    let mut h264_keys = Vec::new();
    let mut av1 = Vec::new();
    for f in &frames {
        let out = push(&mut l, f);
        assert!(out.shed.is_none() && out.failed.is_empty(), "{out:?}");
        for rf in out.frames {
            match rf.rung {
                0 if rf.keyframe => h264_keys.push(rf.dts),
                0 => {}
                _ => av1.push(rf),
            }
        }
    }
    let specs: Vec<_> = l
        .rungs()
        .iter()
        .map(|r| (r.name.clone(), r.codec, r.width, r.height))
        .collect();
    assert_eq!(
        specs,
        vec![
            ("120p".to_string(), RungCodec::H264, 214, 120),
            ("av1-90p".to_string(), RungCodec::Av1, 160, 90)
        ]
    );
    // Every encoded source frame comes out, in order, with its own decode time: rav1e holds a
    // few back for its lookahead, never more than that.
    let skip = PLAN_AFTER_PICTURES as usize - 1;
    let dts: Vec<u64> = av1.iter().map(|f| f.dts).collect();
    let held = 98 - skip - dts.len();
    assert!((1..=6).contains(&held), "{held} frames held back");
    let expected: Vec<u64> = frames[skip..skip + dts.len()].iter().map(|f| f.0).collect();
    assert_eq!(dts, expected);
    // Key frames exactly where the H.264 rung has its IDRs, and nowhere else.
    let av1_keys: Vec<u64> = av1.iter().filter(|f| f.keyframe).map(|f| f.dts).collect();
    let start = frames[skip].0;
    let boundaries: Vec<u64> = (0..3).map(|k| start + k * 30 * FRAME).collect();
    assert_eq!(av1_keys, boundaries);
    assert_eq!(h264_keys[..3], boundaries[..]);
    for f in &av1 {
        assert_eq!(f.picture.idr, f.keyframe, "unasked key frame at {}", f.dts);
        assert_eq!(f.picture.sequence_header.is_some(), f.keyframe);
        assert!(f.picture.sps.is_none() && f.picture.pps.is_none());
    }
    // The sequence header describes the rung; its codec string has a real level (2.0).
    let seq = av1[0]
        .picture
        .sequence_header
        .as_deref()
        .expect("sequence header");
    let info = crate::depacketize::parse_av1_sequence_header(seq).expect("parses");
    assert_eq!((info.max_frame_width, info.max_frame_height), (160, 90));
    assert_eq!(info.codec_string(), "av01.0.00M.08");

    // dav1d decodes every sample as the fMP4 writer stores it, from each key frame on alone.
    assert!(av1[30].keyframe);
    for from in [0, 30] {
        let mut dec = Av1Decoder::new().expect("dav1d");
        let mut out = Picture::default();
        let mut decoded = 0;
        for f in &av1[from..] {
            let frame = SourceFrame {
                dts: f.dts,
                keyframe: f.keyframe,
                data: &f.picture.data,
            };
            if dec.decode(&frame, &mut out).expect("decodes") {
                decoded += 1;
                assert_eq!((out.width, out.height), (160, 90));
            }
        }
        assert_eq!(decoded, av1.len() - from);
    }
    // No temporal delimiters: every sample starts with a sequence header or a frame OBU.
    for f in &av1 {
        let obu_type = (f.picture.data[0] >> 3) & 0x0f;
        assert!(matches!(obu_type, 1 | 6), "OBU type {obu_type} first");
    }
}

#[test]
fn an_av1_only_ladder_sheds_its_rung_like_any_other() {
    let frames = source(320, 180, 140, 30);
    // Decode + the AV1 rung take 20 ms each per 33 ms frame: 0.83x real time.
    let (mut l, _) = ladder_with_av1(&[], Some(90), Duration::from_millis(20));
    assert!(!l.is_idle());
    let mut shed = None;
    for f in &frames {
        let out = push(&mut l, f);
        if let Some(report) = &out.report {
            assert_eq!(report.rungs.len(), 1, "{report:?}");
        }
        shed = shed.or(out.shed);
    }
    assert_eq!(shed, Some(0));
    assert!(l.is_idle());
}
