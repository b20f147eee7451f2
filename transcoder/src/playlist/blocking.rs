//! Delivery directives (rfc8216bis §6.2.5) and the sans-IO decisions behind blocking playlist
//! reloads and blocking preload-hint GETs. The caller owns the waiting: on
//! [`ReloadDecision::Wait`] or [`Availability::Pending`] it parks the request, re-asks after every
//! timeline change, and answers 503 once [`RenditionTimeline::blocking_timeout`] has passed.

use std::time::Duration;

use super::naming::MediaUri;
use super::timeline::RenditionTimeline;

/// The `_HLS_skip` directive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SkipDirective {
    /// Absent (or an unknown value): a full playlist.
    #[default]
    No,
    /// `YES`: skip old segments.
    Yes,
    /// `v2`: skip old segments and old date ranges (we have none, so the same as `YES`).
    V2,
}

/// The `_HLS_*` query parameters of a media playlist request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryDirectives {
    /// `_HLS_msn`: block until this media sequence number is available.
    pub msn: Option<u64>,
    /// `_HLS_part`: block until this part of `msn` is available.
    pub part: Option<u64>,
    /// `_HLS_skip`: the client wants a delta update.
    pub skip: SkipDirective,
}

/// A delivery directive that cannot be understood; answer 400.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DirectiveError {
    /// `_HLS_msn` or `_HLS_part` is not a decimal integer.
    #[error("{0} is not a decimal integer")]
    NotANumber(&'static str),
    /// The same directive appears twice.
    #[error("{0} appears more than once")]
    Repeated(&'static str),
}

impl DeliveryDirectives {
    /// Reads the directives from a raw query string (without the leading `?`). Other parameters,
    /// such as a signed-URL token, are ignored.
    pub fn parse(query: &str) -> Result<Self, DirectiveError> {
        let mut out = DeliveryDirectives::default();
        let mut seen_skip = false;
        for (key, value) in query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
        {
            match key {
                "_HLS_msn" => set_number(&mut out.msn, "_HLS_msn", value)?,
                "_HLS_part" => set_number(&mut out.part, "_HLS_part", value)?,
                "_HLS_skip" => {
                    if std::mem::replace(&mut seen_skip, true) {
                        return Err(DirectiveError::Repeated("_HLS_skip"));
                    }
                    out.skip = match value {
                        "YES" => SkipDirective::Yes,
                        "v2" => SkipDirective::V2,
                        _ => SkipDirective::No,
                    };
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// Whether the response should be a delta update (when the playlist is still live).
    pub fn wants_delta(&self) -> bool {
        self.skip != SkipDirective::No
    }
}

fn set_number(
    slot: &mut Option<u64>,
    name: &'static str,
    value: &str,
) -> Result<(), DirectiveError> {
    if slot.is_some() {
        return Err(DirectiveError::Repeated(name));
    }
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DirectiveError::NotANumber(name));
    }
    *slot = Some(
        value
            .parse()
            .map_err(|_| DirectiveError::NotANumber(name))?,
    );
    Ok(())
}

/// The query string minus the `_HLS_*` directives, as a URI suffix (`""` or `"?…"`).
///
/// Directives are per request and must not leak into the URIs of the playlist, while other
/// parameters (a signed-URL token) must follow every URI so the client sends them back.
pub fn passthrough_query_suffix(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("_HLS_"))
        .collect();
    if kept.is_empty() {
        String::new()
    } else {
        format!("?{}", kept.join("&"))
    }
}

/// A stored playlist with `suffix` (from [`passthrough_query_suffix`]) appended to every URI:
/// URI lines and `URI="…"` attributes. Recorded playlists are written without tokens; a signed
/// request gets its token carried into the URIs it reads.
pub fn with_uri_suffix(playlist: &str, suffix: &str) -> String {
    if suffix.is_empty() {
        return playlist.to_string();
    }
    let mut out = String::with_capacity(playlist.len() + 64 * suffix.len());
    for line in playlist.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push_str(line);
            out.push_str(suffix);
        } else {
            let mut rest = line;
            while let Some(at) = rest.find("URI=\"") {
                let start = at + 5;
                out.push_str(&rest[..start]);
                rest = &rest[start..];
                let Some(end) = rest.find('"') else { break };
                out.push_str(&rest[..end]);
                out.push_str(suffix);
                rest = &rest[end..];
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// What to do with a media playlist request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadDecision {
    /// Render and send the playlist now.
    Ready,
    /// Not available yet: park the request, re-ask after each timeline change, and answer 503
    /// once `timeout` has passed since the request arrived (§6.2.5.2).
    Wait {
        /// How long the request may block in total.
        timeout: Duration,
    },
    /// Answer 400: the directives ask for something too far ahead or are inconsistent.
    BadRequest,
}

/// Whether a media resource GET can be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Serve it now.
    Available,
    /// The preload-hinted part being built: block until it is closed, then serve it whole
    /// (§6.2.6 forbids sending any byte of an incomplete part).
    Pending,
    /// Unknown, evicted or not hinted: answer 404 (§6.2.6).
    NotFound,
}

impl RenditionTimeline {
    /// How long a blocked request may wait before the server answers 503: three target
    /// durations (§6.2.5.2).
    pub fn blocking_timeout(&self) -> Duration {
        Duration::from_secs(3 * self.timing().target_duration_secs)
    }

    /// The Advance Part Limit of §6.2.5.2: how many parts past the newest one a request may ask
    /// for before it is refused.
    pub fn advance_part_limit(&self) -> u64 {
        let part_target_ms = self.timing().part_target_ms.max(1);
        if part_target_ms < 1000 {
            3000 / part_target_ms
        } else {
            3
        }
    }

    /// Decides a media playlist request from its delivery directives (§6.2.5.2).
    ///
    /// Once the playlist carries `EXT-X-ENDLIST` every directive is ignored (MUST) and the
    /// ended playlist is served, even for an MSN beyond the end: the client then sees the end.
    pub fn reload_decision(&self, directives: &DeliveryDirectives) -> ReloadDecision {
        if self.ended {
            return ReloadDecision::Ready;
        }
        let wait = ReloadDecision::Wait {
            timeout: self.blocking_timeout(),
        };
        let Some(msn) = directives.msn else {
            if directives.part.is_some() {
                return ReloadDecision::BadRequest;
            }
            return if self.has_content() {
                ReloadDecision::Ready
            } else {
                wait
            };
        };
        // "More than the last Media Segment plus two": the open segment is last + 1.
        let open_msn = self.open_msn();
        if msn > open_msn + 1 {
            return ReloadDecision::BadRequest;
        }
        let Some(part) = directives.part else {
            let has_segment = self.last_complete_msn().is_some_and(|last| last >= msn);
            return if has_segment {
                ReloadDecision::Ready
            } else {
                wait
            };
        };

        let (msn, part) = self.roll_over(msn, part);
        let open_parts = self.open.as_ref().map_or(0, |o| o.parts.len() as u64);
        if msn < open_msn || (msn == open_msn && part < open_parts) {
            return if self.has_content() {
                ReloadDecision::Ready
            } else {
                wait
            };
        }
        // Lower bound of how many parts past the newest listed one the request is.
        let ahead = if msn == open_msn {
            part + 1 - open_parts
        } else {
            part + 1
        };
        if ahead > self.advance_part_limit() {
            ReloadDecision::BadRequest
        } else {
            wait
        }
    }

    /// A part index past the last part of a complete segment means part 0 of the next
    /// segment (§6.2.5.2 MUST).
    fn roll_over(&self, mut msn: u64, mut part: u64) -> (u64, u64) {
        while let Some(rec) = self.record(msn) {
            if part < rec.parts.len() as u64 {
                break;
            }
            msn += 1;
            part = 0;
        }
        (msn, part)
    }

    /// Whether a GET of a media resource can be served now, must block (the hinted part) or is
    /// a 404.
    pub fn availability(&self, uri: MediaUri) -> Availability {
        match uri {
            MediaUri::Init if self.is_started() => Availability::Available,
            MediaUri::Init => Availability::NotFound,
            MediaUri::Segment { msn } if self.record(msn).is_some() => Availability::Available,
            MediaUri::Segment { .. } => Availability::NotFound,
            MediaUri::Part { msn, index } => {
                if let Some(rec) = self.record(msn) {
                    return if index < rec.parts.len() as u64 {
                        Availability::Available
                    } else {
                        Availability::NotFound
                    };
                }
                match &self.open {
                    Some(open) if open.msn == msn => {
                        let closed = open.parts.len() as u64;
                        if index < closed {
                            Availability::Available
                        } else if index == closed {
                            Availability::Pending
                        } else {
                            Availability::NotFound
                        }
                    }
                    _ => Availability::NotFound,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_suffix_follows_every_uri_of_a_stored_playlist() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:1.0,\nseg1.m4s\n\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",NAME=\"a\"\n#EXT-X-ENDLIST\n";
        assert_eq!(
            super::with_uri_suffix(text, "?token=1.x"),
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4?token=1.x\"\n#EXTINF:1.0,\nseg1.m4s?token=1.x\n#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8?token=1.x\",NAME=\"a\"\n#EXT-X-ENDLIST\n"
        );
        assert_eq!(super::with_uri_suffix(text, ""), text);
    }

    use super::*;
    use crate::playlist::test_support::{Feed, video_config};

    fn msn(m: u64) -> DeliveryDirectives {
        DeliveryDirectives {
            msn: Some(m),
            ..Default::default()
        }
    }

    fn msn_part(m: u64, p: u64) -> DeliveryDirectives {
        DeliveryDirectives {
            msn: Some(m),
            part: Some(p),
            ..Default::default()
        }
    }

    const WAIT_3S: ReloadDecision = ReloadDecision::Wait {
        timeout: Duration::from_secs(3),
    };

    #[test]
    fn playlist_directives_parse() {
        assert_eq!(
            DeliveryDirectives::parse("token=abc&_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"),
            Ok(DeliveryDirectives {
                msn: Some(12),
                part: Some(3),
                skip: SkipDirective::Yes
            })
        );
        assert_eq!(
            DeliveryDirectives::parse("_HLS_skip=v2").unwrap().skip,
            SkipDirective::V2
        );
        assert!(
            DeliveryDirectives::parse("_HLS_skip=v2")
                .unwrap()
                .wants_delta()
        );
        assert_eq!(
            DeliveryDirectives::parse(""),
            Ok(DeliveryDirectives::default())
        );
        assert_eq!(
            DeliveryDirectives::parse("_HLS_skip=maybe").unwrap().skip,
            SkipDirective::No
        );
        for (bad, err) in [
            ("_HLS_msn=abc", DirectiveError::NotANumber("_HLS_msn")),
            ("_HLS_msn=", DirectiveError::NotANumber("_HLS_msn")),
            ("_HLS_msn=-1", DirectiveError::NotANumber("_HLS_msn")),
            (
                "_HLS_part=+1&_HLS_msn=1",
                DirectiveError::NotANumber("_HLS_part"),
            ),
            (
                "_HLS_msn=99999999999999999999999",
                DirectiveError::NotANumber("_HLS_msn"),
            ),
            (
                "_HLS_msn=1&_HLS_msn=2",
                DirectiveError::Repeated("_HLS_msn"),
            ),
            (
                "_HLS_skip=YES&_HLS_skip=YES",
                DirectiveError::Repeated("_HLS_skip"),
            ),
        ] {
            assert_eq!(DeliveryDirectives::parse(bad), Err(err), "{bad}");
        }
    }

    #[test]
    fn playlist_passthrough_query_suffix_drops_directives() {
        assert_eq!(passthrough_query_suffix(""), "");
        assert_eq!(passthrough_query_suffix("_HLS_msn=3&_HLS_part=1"), "");
        assert_eq!(
            passthrough_query_suffix("_HLS_msn=3&token=abc&_HLS_skip=YES&exp=9"),
            "?token=abc&exp=9"
        );
    }

    #[test]
    fn playlist_blocking_before_content() {
        let mut feed = Feed::new(video_config());
        let t = &feed.timeline;
        assert_eq!(t.reload_decision(&DeliveryDirectives::default()), WAIT_3S);
        assert_eq!(t.reload_decision(&msn(0)), WAIT_3S);
        assert_eq!(t.reload_decision(&msn(1)), WAIT_3S);
        assert_eq!(t.reload_decision(&msn(2)), ReloadDecision::BadRequest);
        feed.frames(9);
        // Part 0 of segment 0 exists, but a playlist needs a complete segment first.
        assert_eq!(feed.timeline.reload_decision(&msn_part(0, 0)), WAIT_3S);
        feed.frames(22);
        assert_eq!(
            feed.timeline.reload_decision(&msn_part(0, 0)),
            ReloadDecision::Ready
        );
    }

    #[test]
    fn playlist_blocking_ready_wait_and_bad_request() {
        let mut feed = Feed::new(video_config());
        // Segments 0..=4 complete; segment 5 has parts 0 and 1; part 5.2 is being built.
        feed.frames(5 * 30 + 17);
        let t = &feed.timeline;
        assert_eq!(t.open_msn(), 5);
        let cases = [
            (DeliveryDirectives::default(), ReloadDecision::Ready),
            (msn(4), ReloadDecision::Ready),
            (msn(0), ReloadDecision::Ready),
            (msn(5), WAIT_3S),
            (msn(6), WAIT_3S),
            (msn(7), ReloadDecision::BadRequest),
            (msn_part(5, 0), ReloadDecision::Ready),
            (msn_part(5, 1), ReloadDecision::Ready),
            (msn_part(5, 2), WAIT_3S),
            // Segment 4 has 4 parts: part 4 of it is part 0 of segment 5, which exists.
            (msn_part(4, 4), ReloadDecision::Ready),
            (msn_part(4, 9), ReloadDecision::Ready),
            (msn_part(6, 0), WAIT_3S),
            // Advance Part Limit at PART-TARGET 0.267 s: 3 / 0.267 → 11 parts.
            (msn_part(5, 12), WAIT_3S),
            (msn_part(5, 13), ReloadDecision::BadRequest),
            (msn_part(6, 10), WAIT_3S),
            (msn_part(6, 11), ReloadDecision::BadRequest),
            (msn_part(7, 0), ReloadDecision::BadRequest),
            (
                DeliveryDirectives {
                    part: Some(0),
                    ..Default::default()
                },
                ReloadDecision::BadRequest,
            ),
        ];
        assert_eq!(t.advance_part_limit(), 11);
        for (directives, expected) in cases {
            assert_eq!(t.reload_decision(&directives), expected, "{directives:?}");
        }
    }

    #[test]
    fn playlist_blocking_wait_becomes_ready_as_media_arrives() {
        let mut feed = Feed::new(video_config());
        feed.frames(5 * 30 + 17);
        let req = msn_part(5, 2);
        assert_eq!(feed.timeline.reload_decision(&req), WAIT_3S);
        feed.until_part_closes();
        assert_eq!(feed.timeline.reload_decision(&req), ReloadDecision::Ready);

        // The hinted part of the next segment: ready right when the segment boundary passes
        // and its first part closes.
        let req = msn_part(6, 0);
        // Frames 175..=180; frame 180 is the keyframe that closes segment 5.
        feed.frames(6);
        assert_eq!(feed.timeline.open_msn(), 6);
        assert_eq!(feed.timeline.reload_decision(&req), WAIT_3S);
        assert_eq!(
            feed.timeline.reload_decision(&msn(5)),
            ReloadDecision::Ready
        );
        feed.until_part_closes();
        assert_eq!(feed.timeline.reload_decision(&req), ReloadDecision::Ready);
    }

    #[test]
    fn playlist_blocking_after_end_ignores_directives() {
        let mut feed = Feed::new(video_config());
        feed.frames(2 * 30 + 5);
        feed.timeline.finish(None);
        for d in [msn(2), msn(3), msn(100), msn_part(3, 50)] {
            assert_eq!(feed.timeline.reload_decision(&d), ReloadDecision::Ready);
        }
    }

    #[test]
    fn playlist_blocking_timeout_follows_target_duration() {
        let mut cfg = video_config();
        cfg.min_target_duration_secs = 2;
        let feed = Feed::new(cfg);
        assert_eq!(feed.timeline.blocking_timeout(), Duration::from_secs(6));
    }

    #[test]
    fn playlist_availability_of_parts_segments_and_init() {
        let mut feed = Feed::new(video_config());
        assert_eq!(
            feed.timeline.availability(MediaUri::Init),
            Availability::NotFound
        );
        feed.frames(12 * 30 + 9);
        let t = &feed.timeline;
        let part = |msn, index| t.availability(MediaUri::Part { msn, index });
        let seg = |msn| t.availability(MediaUri::Segment { msn });
        assert_eq!(t.availability(MediaUri::Init), Availability::Available);
        // Segment 12 has part 0 closed and part 1 hinted.
        assert_eq!(part(12, 0), Availability::Available);
        assert_eq!(part(12, 1), Availability::Pending);
        assert_eq!(part(12, 2), Availability::NotFound);
        assert_eq!(part(13, 0), Availability::NotFound);
        assert_eq!(seg(12), Availability::NotFound);
        assert_eq!(seg(11), Availability::Available);
        assert_eq!(part(11, 3), Availability::Available);
        assert_eq!(part(11, 4), Availability::NotFound);
        // Out of the window (MSN 5) but not yet evicted: still downloadable.
        assert_eq!(seg(2), Availability::Available);
        assert_eq!(part(2, 0), Availability::Available);
        assert_eq!(seg(1), Availability::NotFound);
        assert_eq!(part(1, 0), Availability::NotFound);

        feed.timeline.finish(None);
        let t = &feed.timeline;
        assert_eq!(
            t.availability(MediaUri::Part { msn: 12, index: 1 }),
            Availability::Available
        );
        assert_eq!(
            t.availability(MediaUri::Part { msn: 12, index: 2 }),
            Availability::NotFound
        );
        assert_eq!(
            t.availability(MediaUri::Segment { msn: 12 }),
            Availability::Available
        );
    }
}
