//! Media playlist text of one rendition: the live LL-HLS playlist, its delta update
//! (`_HLS_skip`), the ended form, and the VOD form of a finished stream.

use std::fmt::Write;

use super::naming::MediaUri;
use super::timeline::{PartInfo, PlaylistTiming, RenditionTimeline, SegmentRecord};
use super::{Millis, ProgramDateTime, Secs, clean};

/// `EXT-X-RENDITION-REPORT` of another rendition of the same ladder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// That rendition's media playlist, relative to this one (e.g. `../360p/index.m3u8`).
    pub uri: String,
    /// `LAST-MSN`: parent segment of its newest part (or its newest segment).
    pub last_msn: u64,
    /// `LAST-PART`: index of its newest part, when it has parts.
    pub last_part: Option<u64>,
}

/// How to render one media playlist response.
#[derive(Clone, Copy, Debug, Default)]
pub struct MediaPlaylistParams<'a> {
    /// The request carried `_HLS_skip=YES` or `v2`: answer with a delta update.
    pub delta: bool,
    /// Appended to every URI, including rendition reports (e.g. `?token=…` of a signed URL).
    pub uri_suffix: &'a str,
    /// Reports of the *other* renditions; see [`RenditionTimeline::rendition_report`].
    pub rendition_reports: &'a [RenditionReport],
    /// Ladder-wide timing (the max over all renditions); this rendition's own is used if larger.
    pub ladder_timing: Option<PlaylistTiming>,
}

/// `EXT-X-MAP` and `EXT-X-PART` both need at least version 6 (§4.4.4.5, §8).
const VERSION_FMP4: u32 = 6;
/// `EXT-X-SKIP` needs version 9 (§8); only delta updates carry it.
const VERSION_SKIP: u32 = 9;

impl RenditionTimeline {
    /// This rendition's `EXT-X-RENDITION-REPORT` as seen from another rendition's playlist, or
    /// `None` before its first part.
    pub fn rendition_report(&self, uri: impl Into<String>) -> Option<RenditionReport> {
        let uri = uri.into();
        if let Some(last) = self.last_part() {
            return Some(RenditionReport {
                uri,
                last_msn: last.msn,
                last_part: Some(last.index),
            });
        }
        self.last_complete_msn().map(|last_msn| RenditionReport {
            uri,
            last_msn,
            last_part: None,
        })
    }

    /// The live media playlist (or its delta update, or its ended form), or `None` while there
    /// is no complete segment yet.
    ///
    /// Once ended, `_HLS_skip` is ignored (§6.2.5.1) and the preload hint disappears
    /// (§4.4.5.3), but the header tags stay: a live playlist may only grow, lose old segments
    /// and parts, or gain `EXT-X-ENDLIST` (§6.2.1).
    pub fn render_media_playlist(&self, params: &MediaPlaylistParams<'_>) -> Option<String> {
        if !self.has_content() {
            return None;
        }
        let timing = self.effective_timing(params.ladder_timing);
        let ts = self.cfg.timescale;
        let suffix = clean(params.uri_suffix);
        let records: Vec<&SegmentRecord> = self.live_records().collect();
        let skipped = if params.delta && !self.ended {
            skip_count(&records, timing, ts)
        } else {
            0
        };
        let parts_from = records.len().saturating_sub(self.cfg.part_window_segments);

        let mut out = String::with_capacity(512 + records.len() * 256);
        let version = if skipped > 0 {
            VERSION_SKIP
        } else {
            VERSION_FMP4
        };
        line(&mut out, format_args!("#EXTM3U"));
        line(&mut out, format_args!("#EXT-X-VERSION:{version}"));
        line(&mut out, format_args!("#EXT-X-INDEPENDENT-SEGMENTS"));
        line(
            &mut out,
            format_args!("#EXT-X-TARGETDURATION:{}", timing.target_duration_secs),
        );
        line(
            &mut out,
            format_args!(
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}",
                Millis(3 * timing.part_target_ms),
                Secs {
                    ticks: 6 * timing.target_duration_secs,
                    timescale: 1
                }
            ),
        );
        line(
            &mut out,
            format_args!(
                "#EXT-X-PART-INF:PART-TARGET={}",
                Millis(timing.part_target_ms)
            ),
        );
        line(
            &mut out,
            format_args!("#EXT-X-MEDIA-SEQUENCE:{}", self.media_sequence()),
        );
        if skipped > 0 {
            line(
                &mut out,
                format_args!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}"),
            );
        }
        // Kept in delta updates too: the map applies to the segments that remain (§6.2.5.1).
        line(
            &mut out,
            format_args!("#EXT-X-MAP:URI=\"{}{suffix}\"", MediaUri::Init),
        );

        for (i, rec) in records.iter().enumerate().skip(skipped) {
            line(
                &mut out,
                format_args!(
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    ProgramDateTime(rec.info.program_date_time)
                ),
            );
            if i >= parts_from {
                write_parts(&mut out, &rec.parts, ts, &suffix);
            }
            write_extinf(&mut out, rec, ts, &suffix);
        }

        if let Some(open) = &self.open
            && !open.parts.is_empty()
        {
            // The parent segment's PDT must come before its first EXT-X-PART (§4.4.4.9).
            line(
                &mut out,
                format_args!(
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    ProgramDateTime(open.program_date_time)
                ),
            );
            write_parts(&mut out, &open.parts, ts, &suffix);
        }
        // Always hinted while live: without a preload hint hls.js reloads in a loop.
        if let Some(next) = self.next_part() {
            let uri = MediaUri::Part {
                msn: next.msn,
                index: next.index,
            };
            line(
                &mut out,
                format_args!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}{suffix}\""),
            );
        }
        for report in params.rendition_reports {
            write_report(&mut out, report, &suffix);
        }
        if self.ended {
            line(&mut out, format_args!("#EXT-X-ENDLIST"));
        }
        Some(out)
    }

    /// The whole finished stream as a VOD playlist (every retained segment, no parts), or
    /// `None` while live. Keep every segment with [`keep_history`] to get the full recording.
    ///
    /// [`keep_history`]: super::TimelineConfig::keep_history
    pub fn render_vod_playlist(
        &self,
        uri_suffix: &str,
        ladder_timing: Option<PlaylistTiming>,
    ) -> Option<String> {
        if !self.ended {
            return None;
        }
        let timing = self.effective_timing(ladder_timing);
        let ts = self.cfg.timescale;
        let suffix = clean(uri_suffix);
        let first_msn = self
            .segments
            .front()
            .map_or(self.media_sequence(), |s| s.info.msn);
        let mut out = String::with_capacity(256 + self.segments.len() * 96);
        line(&mut out, format_args!("#EXTM3U"));
        line(&mut out, format_args!("#EXT-X-VERSION:{VERSION_FMP4}"));
        line(&mut out, format_args!("#EXT-X-INDEPENDENT-SEGMENTS"));
        line(
            &mut out,
            format_args!("#EXT-X-TARGETDURATION:{}", timing.target_duration_secs),
        );
        line(&mut out, format_args!("#EXT-X-MEDIA-SEQUENCE:{first_msn}"));
        line(&mut out, format_args!("#EXT-X-PLAYLIST-TYPE:VOD"));
        line(
            &mut out,
            format_args!("#EXT-X-MAP:URI=\"{}{suffix}\"", MediaUri::Init),
        );
        for rec in &self.segments {
            line(
                &mut out,
                format_args!(
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    ProgramDateTime(rec.info.program_date_time)
                ),
            );
            write_extinf(&mut out, rec, ts, &suffix);
        }
        line(&mut out, format_args!("#EXT-X-ENDLIST"));
        Some(out)
    }

    fn effective_timing(&self, ladder: Option<PlaylistTiming>) -> PlaylistTiming {
        ladder.map_or(self.timing(), |t| t.max(self.timing()))
    }
}

/// How many of the oldest listed segments a delta update replaces with `EXT-X-SKIP`: those
/// starting further than the Skip Boundary (`CAN-SKIP-UNTIL`, 6 target durations) from the end
/// of the last segment. A segment straddling the boundary stays, so the client's previous
/// playlist always overlaps the update.
fn skip_count(records: &[&SegmentRecord], timing: PlaylistTiming, timescale: u32) -> usize {
    let Some(last) = records.last() else {
        return 0;
    };
    let end = last.info.start_dts + last.info.duration;
    let boundary = 6 * timing.target_duration_secs * u64::from(timescale);
    records
        .iter()
        .take_while(|r| end - r.info.start_dts > boundary)
        .count()
}

fn line(out: &mut String, args: std::fmt::Arguments<'_>) {
    out.write_fmt(args)
        .expect("writing to a String cannot fail");
    out.push('\n');
}

fn write_parts(out: &mut String, parts: &[PartInfo], timescale: u32, suffix: &str) {
    for p in parts {
        let independent = if p.independent {
            ",INDEPENDENT=YES"
        } else {
            ""
        };
        line(
            out,
            format_args!(
                "#EXT-X-PART:DURATION={},URI=\"{}{suffix}\"{independent}",
                Secs {
                    ticks: p.duration,
                    timescale
                },
                p.uri()
            ),
        );
    }
}

fn write_extinf(out: &mut String, rec: &SegmentRecord, timescale: u32, suffix: &str) {
    line(
        out,
        format_args!(
            "#EXTINF:{},",
            Secs {
                ticks: rec.info.duration,
                timescale
            }
        ),
    );
    line(out, format_args!("{}{suffix}", rec.info.uri()));
}

fn write_report(out: &mut String, report: &RenditionReport, suffix: &str) {
    let uri = clean(&report.uri);
    match report.last_part {
        Some(part) => line(
            out,
            format_args!(
                "#EXT-X-RENDITION-REPORT:URI=\"{uri}{suffix}\",LAST-MSN={},LAST-PART={part}",
                report.last_msn
            ),
        ),
        None => line(
            out,
            format_args!(
                "#EXT-X-RENDITION-REPORT:URI=\"{uri}{suffix}\",LAST-MSN={}",
                report.last_msn
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playlist::test_support::{Feed, video_config};

    /// Compares line by line so a failure names the first differing line.
    #[track_caller]
    fn assert_lines(actual: &str, expected: &[&str]) {
        let lines: Vec<&str> = actual.lines().collect();
        for (i, (a, e)) in lines.iter().zip(expected).enumerate() {
            assert_eq!(a, e, "line {} differs in:\n{actual}", i + 1);
        }
        assert_eq!(
            lines.len(),
            expected.len(),
            "line count differs in:\n{actual}"
        );
        assert!(actual.ends_with('\n'));
    }

    fn render(feed: &Feed) -> String {
        feed.timeline
            .render_media_playlist(&MediaPlaylistParams::default())
            .expect("content")
    }

    fn render_delta(feed: &Feed) -> String {
        let params = MediaPlaylistParams {
            delta: true,
            ..Default::default()
        };
        feed.timeline
            .render_media_playlist(&params)
            .expect("content")
    }

    const HEADER: [&str; 8] = [
        "#EXTM3U",
        "#EXT-X-VERSION:6",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.80100,CAN-SKIP-UNTIL=6.00000",
        "#EXT-X-PART-INF:PART-TARGET=0.26700",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-MAP:URI=\"init.mp4\"",
    ];

    #[test]
    fn playlist_media_exact_live_text() {
        let mut feed = Feed::new(video_config());
        // Two complete segments, then segment 2 with parts 0 and 1 closed.
        feed.frames(2 * 30 + 17);
        let mut expected = HEADER.to_vec();
        expected.extend([
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.1.m4s\"",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.2.m4s\"",
            "#EXT-X-PART:DURATION=0.20000,URI=\"part0.3.m4s\"",
            "#EXTINF:1.00000,",
            "seg0.m4s",
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.1.m4s\"",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.2.m4s\"",
            "#EXT-X-PART:DURATION=0.20000,URI=\"part1.3.m4s\"",
            "#EXTINF:1.00000,",
            "seg1.m4s",
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part2.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part2.1.m4s\"",
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.2.m4s\"",
        ]);
        assert_lines(&render(&feed), &expected);
    }

    #[test]
    fn playlist_media_none_before_first_segment() {
        let mut feed = Feed::new(video_config());
        assert_eq!(
            feed.timeline
                .render_media_playlist(&MediaPlaylistParams::default()),
            None
        );
        // Frames 0..=29: segment 0 is still open.
        feed.frames(30);
        assert_eq!(
            feed.timeline
                .render_media_playlist(&MediaPlaylistParams::default()),
            None
        );
        // Frame 30, the next keyframe, closes it.
        feed.frames(1);
        assert!(
            feed.timeline
                .render_media_playlist(&MediaPlaylistParams::default())
                .is_some()
        );
    }

    #[test]
    fn playlist_media_window_slides_and_parts_only_on_recent_segments() {
        let mut feed = Feed::new(video_config());
        feed.frames(12 * 30 + 9);
        let text = render(&feed);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"#EXT-X-MEDIA-SEQUENCE:5"));
        let uris: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert_eq!(
            uris,
            (5..=11).map(|m| format!("seg{m}.m4s")).collect::<Vec<_>>()
        );
        // Parts of the last 3 complete segments (9, 10, 11) plus the open segment 12.
        let part_parents: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
            .map(|l| {
                let uri = l.split("URI=\"part").nth(1).unwrap();
                uri.split('.').next().unwrap()
            })
            .collect();
        let mut parents = part_parents.clone();
        parents.dedup();
        assert_eq!(parents, vec!["9", "10", "11", "12"]);
        assert_eq!(part_parents.len(), 3 * 4 + 1);
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("#EXT-X-PROGRAM-DATE-TIME:"))
                .count(),
            7 + 1
        );
        assert_eq!(
            *lines.last().unwrap(),
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part12.1.m4s\""
        );
    }

    #[test]
    fn playlist_media_msn_increments_with_each_new_segment() {
        let mut feed = Feed::new(video_config());
        feed.frames(8 * 30 + 1);
        for expected in 1..=4u64 {
            let text = render(&feed);
            assert!(
                text.contains(&format!("#EXT-X-MEDIA-SEQUENCE:{expected}\n")),
                "{text}"
            );
            feed.frames(30);
        }
    }

    #[test]
    fn playlist_media_preload_hint_names_next_part() {
        let mut feed = Feed::new(video_config());
        feed.frames(30 + 1);
        assert!(render(&feed).ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.0.m4s\"\n"));
        // The hinted part is exactly the next one to be listed.
        feed.until_part_closes();
        let text = render(&feed);
        assert!(
            text.contains("#EXT-X-PART:DURATION=0.26667,URI=\"part1.0.m4s\",INDEPENDENT=YES\n")
        );
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part1.1.m4s\"\n"));
        // Across the segment boundary the hint moves to part 0 of the next segment.
        // Frames 39..=60; frame 60 is the keyframe that closes segment 1.
        feed.frames(22);
        let text = render(&feed);
        assert!(text.contains("#EXT-X-PART:DURATION=0.20000,URI=\"part1.3.m4s\"\n"));
        assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.0.m4s\"\n"));
        assert_eq!(
            feed.timeline.next_part(),
            Some(crate::playlist::PartRef { msn: 2, index: 0 })
        );
    }

    #[test]
    fn playlist_media_rendition_reports() {
        let mut this = Feed::new(video_config());
        this.frames(2 * 30 + 17);
        let mut other = Feed::new(video_config());
        other.frames(2 * 30 + 9);
        let mut empty = Feed::new(video_config());
        assert_eq!(empty.timeline.rendition_report("x"), None);
        empty.frames(3);
        assert_eq!(empty.timeline.rendition_report("x"), None);

        let reports = [
            other
                .timeline
                .rendition_report("../360p/index.m3u8")
                .unwrap(),
            RenditionReport {
                uri: "../audio/index.m3u8".into(),
                last_msn: 2,
                last_part: None,
            },
        ];
        assert_eq!(reports[0].last_msn, 2);
        assert_eq!(reports[0].last_part, Some(0));
        let params = MediaPlaylistParams {
            rendition_reports: &reports,
            uri_suffix: "?token=abc",
            ..Default::default()
        };
        let text = this.timeline.render_media_playlist(&params).unwrap();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        assert_eq!(
            tail,
            vec![
                "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8?token=abc\",LAST-MSN=2",
                "#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8?token=abc\",LAST-MSN=2,LAST-PART=0",
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part2.2.m4s?token=abc\"",
            ]
        );

        // A rendition between segments reports the last part of its last complete segment.
        let mut boundary = Feed::new(video_config());
        boundary.frames(30 + 1);
        let report = boundary.timeline.rendition_report("r").unwrap();
        assert_eq!((report.last_msn, report.last_part), (0, Some(3)));
    }

    #[test]
    fn playlist_media_uri_suffix_on_every_uri() {
        let mut feed = Feed::new(video_config());
        feed.frames(3 * 30 + 9);
        let params = MediaPlaylistParams {
            uri_suffix: "?token=t0k\"\n#EVIL",
            ..Default::default()
        };
        let text = feed.timeline.render_media_playlist(&params).unwrap();
        let mut uris = 0;
        for l in text.lines() {
            if !l.starts_with('#') {
                assert!(l.ends_with("?token=t0k#EVIL"), "{l}");
                uris += 1;
            } else if let Some((_, rest)) = l.split_once("URI=\"") {
                assert!(rest.contains("?token=t0k#EVIL\""), "{l}");
                uris += 1;
            }
        }
        // init + 3 segments + 12 + 1 parts + hint; the sanitized suffix cannot inject a tag.
        assert_eq!(uris, 1 + 3 + 13 + 1);
        assert!(!text.contains("\n#EVIL"));
    }

    #[test]
    fn playlist_media_delta_update_skips_old_segments() {
        let mut cfg = video_config();
        cfg.window_segments = 10;
        let mut feed = Feed::new(cfg);
        feed.frames(15 * 30 + 9);
        let full = render(&feed);
        assert!(full.contains("#EXT-X-MEDIA-SEQUENCE:5\n"));
        assert_eq!(full.matches("#EXTINF:").count(), 10);

        let delta = render_delta(&feed);
        let lines: Vec<&str> = delta.lines().collect();
        // Segments 5..=14 span 5 s..15 s; those starting more than 6 s before 15 s go.
        assert_eq!(
            lines[..10],
            [
                "#EXTM3U",
                "#EXT-X-VERSION:9",
                "#EXT-X-INDEPENDENT-SEGMENTS",
                "#EXT-X-TARGETDURATION:1",
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.80100,CAN-SKIP-UNTIL=6.00000",
                "#EXT-X-PART-INF:PART-TARGET=0.26700",
                "#EXT-X-MEDIA-SEQUENCE:5",
                "#EXT-X-SKIP:SKIPPED-SEGMENTS=4",
                "#EXT-X-MAP:URI=\"init.mp4\"",
                "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:29.000Z",
            ]
        );
        assert_eq!(lines[10], "#EXTINF:1.00000,");
        assert_eq!(lines[11], "seg9.m4s");
        for skipped in 5..=8 {
            assert!(!delta.contains(&format!("seg{skipped}.m4s")), "{delta}");
            assert!(!delta.contains(&format!("part{skipped}.")), "{delta}");
        }
        assert_eq!(delta.matches("#EXTINF:").count(), 6);
        // Everything after the skipped part is identical to the full playlist.
        let full_tail = full.split_once("seg9.m4s\n").unwrap().1;
        let delta_tail = delta.split_once("seg9.m4s\n").unwrap().1;
        assert_eq!(full_tail, delta_tail);
    }

    #[test]
    fn playlist_media_delta_with_the_default_window_skips_half_of_it() {
        // The ladder's timing: 2 s target, so CAN-SKIP-UNTIL is 12 s; 24 one-second segments.
        let mut feed = Feed::new(crate::playlist::timeline::TimelineConfig::new(90_000));
        feed.frames(40 * 30 + 1);
        let params = MediaPlaylistParams {
            delta: true,
            ladder_timing: Some(PlaylistTiming {
                target_duration_secs: 2,
                part_target_ms: 250,
            }),
            ..Default::default()
        };
        let delta = feed
            .timeline
            .render_media_playlist(&params)
            .expect("content");
        assert!(delta.contains("CAN-SKIP-UNTIL=12.00000"), "{delta}");
        // Segments 16..=39 are listed in full; those older than 12 s from the end are skipped.
        assert!(
            delta.contains("#EXT-X-MEDIA-SEQUENCE:16\n#EXT-X-SKIP:SKIPPED-SEGMENTS=12\n"),
            "{delta}"
        );
        assert!(
            !delta.contains("seg27.m4s") && delta.contains("seg28.m4s"),
            "{delta}"
        );
    }

    #[test]
    fn playlist_media_delta_with_a_window_of_seven_skips_one() {
        let mut feed = Feed::new(video_config());
        feed.frames(15 * 30 + 1);
        let delta = render_delta(&feed);
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:8\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n"));
        assert!(!delta.contains("seg8.m4s"));
        assert!(delta.contains("seg9.m4s"));
    }

    #[test]
    fn playlist_media_delta_with_nothing_to_skip_is_the_full_playlist() {
        let mut feed = Feed::new(video_config());
        feed.frames(4 * 30 + 1);
        assert_eq!(render_delta(&feed), render(&feed));
    }

    #[test]
    fn playlist_media_target_duration_never_decreases() {
        let mut feed = Feed::new(video_config());
        feed.keyframe_every = 75;
        feed.frames(76);
        assert!(render(&feed).contains("#EXT-X-TARGETDURATION:3\n"));
        feed.keyframe_every = 30;
        feed.align_keyframes_from_now();
        for _ in 0..12 {
            feed.frames(30);
            let text = render(&feed);
            assert!(text.contains("#EXT-X-TARGETDURATION:3\n"), "{text}");
            assert!(text.contains("CAN-SKIP-UNTIL=18.00000\n"), "{text}");
        }
        assert!(!render(&feed).contains("#EXTINF:2.50000,"));
    }

    #[test]
    fn playlist_media_ladder_timing_is_a_floor() {
        let mut feed = Feed::new(video_config());
        feed.frames(30 + 1);
        let params = MediaPlaylistParams {
            ladder_timing: Some(PlaylistTiming {
                target_duration_secs: 2,
                part_target_ms: 250,
            }),
            ..Default::default()
        };
        let text = feed.timeline.render_media_playlist(&params).unwrap();
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.80100,CAN-SKIP-UNTIL=12.00000\n"
        ));
        assert!(text.contains("#EXT-X-PART-INF:PART-TARGET=0.26700\n"));
    }

    #[test]
    fn playlist_media_ended_form() {
        let mut feed = Feed::new(video_config());
        feed.frames(2 * 30 + 17);
        feed.timeline.finish(Some(77 * 3000));
        let reports = [RenditionReport {
            uri: "../360p/index.m3u8".into(),
            last_msn: 2,
            last_part: Some(2),
        }];
        let params = MediaPlaylistParams {
            delta: true,
            rendition_reports: &reports,
            ..Default::default()
        };
        let text = feed.timeline.render_media_playlist(&params).unwrap();
        let mut expected = HEADER.to_vec();
        expected.extend([
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.1.m4s\"",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part0.2.m4s\"",
            "#EXT-X-PART:DURATION=0.20000,URI=\"part0.3.m4s\"",
            "#EXTINF:1.00000,",
            "seg0.m4s",
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.1.m4s\"",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part1.2.m4s\"",
            "#EXT-X-PART:DURATION=0.20000,URI=\"part1.3.m4s\"",
            "#EXTINF:1.00000,",
            "seg1.m4s",
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.000Z",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part2.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.26667,URI=\"part2.1.m4s\"",
            "#EXT-X-PART:DURATION=0.03333,URI=\"part2.2.m4s\"",
            "#EXTINF:0.56667,",
            "seg2.m4s",
            "#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=2,LAST-PART=2",
            "#EXT-X-ENDLIST",
        ]);
        assert_lines(&text, &expected);
        assert!(!text.contains("PRELOAD-HINT"));
        assert!(!text.contains("EXT-X-SKIP"));
    }

    #[test]
    fn playlist_media_vod_lists_every_segment() {
        let mut cfg = video_config();
        cfg.keep_history = true;
        let mut feed = Feed::new(cfg);
        let actions = feed.frames(12 * 30 + 1);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, crate::playlist::Action::Evict { .. }))
        );
        assert_eq!(feed.timeline.render_vod_playlist("", None), None);
        feed.timeline.finish(Some(12 * 90_000 + 3000));

        let text = feed.timeline.render_vod_playlist("?t=1", None).unwrap();
        let mut expected = vec![
            "#EXTM3U".to_string(),
            "#EXT-X-VERSION:6".into(),
            "#EXT-X-INDEPENDENT-SEGMENTS".into(),
            "#EXT-X-TARGETDURATION:1".into(),
            "#EXT-X-MEDIA-SEQUENCE:0".into(),
            "#EXT-X-PLAYLIST-TYPE:VOD".into(),
            "#EXT-X-MAP:URI=\"init.mp4?t=1\"".into(),
        ];
        for msn in 0..12u64 {
            expected.push(format!(
                "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:{}.000Z",
                20 + msn
            ));
            expected.push("#EXTINF:1.00000,".into());
            expected.push(format!("seg{msn}.m4s?t=1"));
        }
        expected.extend([
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.000Z".into(),
            "#EXTINF:0.03333,".into(),
            "seg12.m4s?t=1".into(),
            "#EXT-X-ENDLIST".into(),
        ]);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_lines(&text, &expected);
        // The live form still shows only the window.
        let live = render(&feed);
        assert!(live.contains("#EXT-X-MEDIA-SEQUENCE:6\n"));
        assert!(live.ends_with("#EXT-X-ENDLIST\n"));
    }
}
