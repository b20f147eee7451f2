//! The names of a rendition's media resources, relative to its media playlist. Every URI the
//! playlists print and every GET the server maps back comes through [`MediaUri`], so the two
//! cannot drift apart.

use std::fmt;

/// One media resource of a rendition: the init segment, a whole segment or a part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaUri {
    /// `init.mp4`, the fMP4 initialization segment named by `EXT-X-MAP`.
    Init,
    /// `seg{msn}.m4s`, a whole media segment.
    Segment {
        /// Media sequence number of the segment.
        msn: u64,
    },
    /// `part{msn}.{index}.m4s`, one partial segment.
    Part {
        /// Media sequence number of the parent segment.
        msn: u64,
        /// Part index inside the parent segment, from 0.
        index: u64,
    },
}

impl fmt::Display for MediaUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaUri::Init => f.write_str("init.mp4"),
            MediaUri::Segment { msn } => write!(f, "seg{msn}.m4s"),
            MediaUri::Part { msn, index } => write!(f, "part{msn}.{index}.m4s"),
        }
    }
}

impl MediaUri {
    /// Maps a request path (its last path component; any query is ignored) back to a resource.
    ///
    /// Only the canonical spelling is accepted (no leading zeros, no signs), so one resource has
    /// exactly one URI and caches never hold duplicates.
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        if name == "init.mp4" {
            return Some(MediaUri::Init);
        }
        if let Some(msn) = name
            .strip_prefix("seg")
            .and_then(|r| r.strip_suffix(".m4s"))
        {
            return Some(MediaUri::Segment {
                msn: canonical_number(msn)?,
            });
        }
        let (msn, index) = name
            .strip_prefix("part")
            .and_then(|r| r.strip_suffix(".m4s"))?
            .split_once('.')?;
        Some(MediaUri::Part {
            msn: canonical_number(msn)?,
            index: canonical_number(index)?,
        })
    }
}

fn canonical_number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_naming_round_trips() {
        for uri in [
            MediaUri::Init,
            MediaUri::Segment { msn: 0 },
            MediaUri::Segment { msn: 1234 },
            MediaUri::Part { msn: 7, index: 0 },
            MediaUri::Part { msn: 7, index: 11 },
        ] {
            assert_eq!(MediaUri::parse(&uri.to_string()), Some(uri));
        }
        assert_eq!(MediaUri::Segment { msn: 3 }.to_string(), "seg3.m4s");
        assert_eq!(
            MediaUri::Part { msn: 3, index: 2 }.to_string(),
            "part3.2.m4s"
        );
    }

    #[test]
    fn playlist_naming_parse_ignores_dirs_and_query() {
        assert_eq!(
            MediaUri::parse("/hls/live/720p/part12.3.m4s?token=x"),
            Some(MediaUri::Part { msn: 12, index: 3 })
        );
        assert_eq!(
            MediaUri::parse("720p/init.mp4?token=x"),
            Some(MediaUri::Init)
        );
    }

    #[test]
    fn playlist_naming_rejects_non_canonical() {
        for bad in [
            "seg.m4s",
            "seg01.m4s",
            "seg+1.m4s",
            "seg1.mp4",
            "part1.m4s",
            "part1.02.m4s",
            "part1.2.3.m4s",
            "part-1.2.m4s",
            "index.m3u8",
            "seg99999999999999999999999.m4s",
        ] {
            assert_eq!(MediaUri::parse(bad), None, "{bad}");
        }
    }
}
