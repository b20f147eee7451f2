//! Sans-IO LL-HLS core of one rendition (draft-pantos-hls-rfc8216bis, Apple "Enabling Low-Latency
//! HLS"): where parts and segments end, the live window, media and multivariant playlist text,
//! blocking-reload and preload-hint decisions. No sockets and no clocks: media timestamps and
//! wall-clock times come in as arguments, and the caller owns every byte of media.
//!
//! Layout:
//! - [`naming`]: the one place that names `init.mp4`, `seg{msn}.m4s` and `part{msn}.{index}.m4s`;
//! - [`timeline`]: [`RenditionTimeline`] cuts parts and segments and keeps the window;
//! - [`media`]: media playlist text (live, delta update, ended, VOD);
//! - [`blocking`]: `_HLS_msn` / `_HLS_part` / `_HLS_skip` and preload-hint GET decisions;
//! - [`multivariant`]: the multivariant playlist of a ladder.
//!
//! Typical flow for a rendition: feed every sample to [`RenditionTimeline::push`], carry out the
//! returned [`Action`]s (write the part, write the segment, drop evicted files) *before* writing
//! the sample itself, then wake blocked requests so they re-ask
//! [`RenditionTimeline::reload_decision`] or [`RenditionTimeline::availability`].

pub mod blocking;
pub mod media;
pub mod multivariant;
pub mod naming;
pub mod timeline;

#[cfg(test)]
mod test_support;

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

pub use blocking::{
    Availability, DeliveryDirectives, DirectiveError, ReloadDecision, SkipDirective,
    passthrough_query_suffix, with_uri_suffix,
};
pub use media::{MediaPlaylistParams, RenditionReport};
pub use multivariant::{AudioRendition, MultivariantError, MultivariantPlaylist, VideoVariant};
pub use naming::MediaUri;
pub use timeline::{
    Action, PartInfo, PartRef, PlaylistTiming, Pushed, RenditionTimeline, SampleInfo, SegmentInfo,
    TimelineConfig, TimelineError,
};

/// A duration in media ticks shown as seconds with 5 decimals, rounded to nearest.
///
/// Integer arithmetic keeps the text identical on every platform, which exact-text tests and
/// cache keys rely on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Secs {
    pub(crate) ticks: u64,
    pub(crate) timescale: u32,
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ts = u128::from(self.timescale.max(1));
        let hundred_thousandths = (u128::from(self.ticks) * 100_000 + ts / 2) / ts;
        write!(
            f,
            "{}.{:05}",
            hundred_thousandths / 100_000,
            hundred_thousandths % 100_000
        )
    }
}

/// Whole milliseconds shown as seconds with 5 decimals (`267` → `0.26700`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Millis(pub(crate) u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}00", self.0 / 1000, self.0 % 1000)
    }
}

/// `EXT-X-PROGRAM-DATE-TIME` value: ISO 8601 UTC with milliseconds, e.g.
/// `2026-05-01T12:00:00.000Z`. Times before 1970 are clamped to the epoch.
pub(crate) struct ProgramDateTime(pub(crate) SystemTime);

impl fmt::Display for ProgramDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self
            .0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let millis = i64::try_from(millis).unwrap_or(i64::MAX);
        let secs = millis.div_euclid(1000);
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60,
            millis.rem_euclid(1000)
        )
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`),
/// so PDT formatting needs no date crate.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Drops the characters that would end a quoted-string or a playlist line early.
///
/// Names and suffixes may come from configuration or users; a stray `"` or newline would let
/// them inject tags into the playlist.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if s.contains(['"', '\r', '\n']) {
        Cow::Owned(
            s.chars()
                .filter(|c| !matches!(c, '"' | '\r' | '\n'))
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn playlist_secs_round_to_five_decimals() {
        assert_eq!(
            Secs {
                ticks: 24_000,
                timescale: 90_000
            }
            .to_string(),
            "0.26667"
        );
        assert_eq!(
            Secs {
                ticks: 90_000,
                timescale: 90_000
            }
            .to_string(),
            "1.00000"
        );
        assert_eq!(
            Secs {
                ticks: 1024,
                timescale: 48_000
            }
            .to_string(),
            "0.02133"
        );
        assert_eq!(
            Secs {
                ticks: 0,
                timescale: 90_000
            }
            .to_string(),
            "0.00000"
        );
        assert_eq!(Millis(267).to_string(), "0.26700");
        assert_eq!(Millis(1500).to_string(), "1.50000");
    }

    #[test]
    fn playlist_program_date_time_is_iso8601_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(ProgramDateTime(t).to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            ProgramDateTime(UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00.000Z"
        );
        // 2024-02-29 exercises the leap-day branch.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_208_000);
        assert_eq!(
            ProgramDateTime(leap).to_string(),
            "2024-02-29T12:00:00.000Z"
        );
    }

    #[test]
    fn playlist_clean_strips_line_and_quote_breakers() {
        assert_eq!(clean("?token=abc"), "?token=abc");
        assert_eq!(clean("a\"b\nc\rd"), "abcd");
    }
}
