//! LL-HLS playlist conformance over HTTP on a live stream (RFC 8216bis): part durations against
//! PART-TARGET, hold-back rules, a blocking request for the next part answered as soon as the
//! part exists, 400 for an out-of-range `_HLS_msn`, and `_HLS_skip=YES` delta updates.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::hls::{get, publish_pattern, text_when_ok};

/// The number after `name=` in a tag line.
fn attr(line: &str, name: &str) -> Option<f64> {
    line.split(&format!("{name}="))
        .nth(1)?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn tag<'a>(playlist: &'a str, prefix: &str) -> &'a str {
    playlist
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} missing in\n{playlist}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_playlists_follow_the_ll_hls_rules() {
    let t = TestServer::start_with(|s| s.hls_ladder = "none".into()).await;
    let publisher = publish_pattern(&t).await;

    // Five complete segments, so delta updates have something to skip.
    let list = text_when_ok(&t, "/hls/chan/source/index.m3u8?_HLS_msn=6").await;
    let target: f64 = tag(&list, "#EXT-X-TARGETDURATION:")
        .trim_start_matches("#EXT-X-TARGETDURATION:")
        .parse()
        .expect("target duration");
    let part_target = tag(&list, "#EXT-X-PART-INF:")
        .trim_start_matches("#EXT-X-PART-INF:")
        .split('=')
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .expect("part target");
    let control = tag(&list, "#EXT-X-SERVER-CONTROL:");
    let part_hold_back = attr(control, "PART-HOLD-BACK").expect("PART-HOLD-BACK");
    let skip_until = attr(control, "CAN-SKIP-UNTIL").expect("CAN-SKIP-UNTIL");
    assert!(control.contains("CAN-BLOCK-RELOAD=YES"), "{control}");
    // §4.4.3.8: PART-HOLD-BACK at least twice PART-TARGET (three times recommended);
    // CAN-SKIP-UNTIL at least six target durations.
    assert!(part_hold_back >= 2.0 * part_target, "{control}");
    assert!(skip_until >= 6.0 * target, "{control}");
    assert!(
        (0.2..=0.34).contains(&part_target),
        "PART-TARGET {part_target}"
    );

    // §4.4.4.9: every part at most PART-TARGET; all but the last of a segment at least 85 % of
    // it.
    let lines: Vec<&str> = list.lines().collect();
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("#EXT-X-PART:") else {
            continue;
        };
        let d = attr(rest, "DURATION").expect("part duration");
        assert!(
            d <= part_target + 1e-6,
            "{l} over PART-TARGET {part_target}"
        );
        let last_of_segment = lines
            .get(i + 1)
            .is_some_and(|n| !n.starts_with("#EXT-X-PART:"));
        if !last_of_segment {
            assert!(d >= 0.85 * part_target, "{l} under 85 % of {part_target}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "too few parts checked in\n{list}");
    // Segments within the target duration.
    for l in &lines {
        if let Some(d) = l.strip_prefix("#EXTINF:") {
            let d: f64 = d.trim_end_matches(',').parse().expect("EXTINF");
            assert!(d.round() <= target, "{l} over TARGETDURATION {target}");
        }
    }

    // Blocking reload: ask for the part after the preload hint's; the answer comes as soon as
    // it exists (about a part duration or two), not after a timeout.
    let msn: u64 = tag(&list, "#EXT-X-MEDIA-SEQUENCE:")
        .trim_start_matches("#EXT-X-MEDIA-SEQUENCE:")
        .parse()
        .expect("msn");
    let segments = lines.iter().filter(|l| l.starts_with("#EXTINF:")).count() as u64;
    let hint = tag(&list, "#EXT-X-PRELOAD-HINT:");
    let (next_msn, next_part) = {
        let uri = hint.split("URI=\"").nth(1).expect("hint uri");
        let name = uri
            .trim_start_matches("part")
            .split(".m4s")
            .next()
            .expect("part name");
        let (m, p) = name.split_once('.').expect("msn.part");
        (
            m.parse::<u64>().expect("msn"),
            p.parse::<u64>().expect("part"),
        )
    };
    assert_eq!(next_msn, msn + segments, "{hint}");
    let asked = Instant::now();
    let blocked = get(
        &t,
        &format!("/hls/chan/source/index.m3u8?_HLS_msn={next_msn}&_HLS_part={next_part}"),
    )
    .await;
    let waited = asked.elapsed();
    assert_eq!(blocked.status(), 200);
    let blocked = blocked.text().await.expect("text");
    assert!(
        blocked.contains(&format!("URI=\"part{next_msn}.{next_part}.m4s")),
        "the answer lists the part it waited for:\n{blocked}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "blocking reload answered after {waited:?}"
    );
    // The hinted part itself downloads.
    let part = get(
        &t,
        &format!("/hls/chan/source/part{next_msn}.{next_part}.m4s"),
    )
    .await;
    assert_eq!(part.status(), 200);
    assert!(!part.bytes().await.expect("part").is_empty());

    // Out of range: far beyond the live edge, and a part without a sequence number.
    assert_eq!(
        get(
            &t,
            &format!("/hls/chan/source/index.m3u8?_HLS_msn={}", next_msn + 100)
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        get(&t, "/hls/chan/source/index.m3u8?_HLS_part=1")
            .await
            .status(),
        400
    );

    // Delta update (§6.2.5.1): segments more than CAN-SKIP-UNTIL before the end may be replaced
    // by EXT-X-SKIP; what stays listed must still cover CAN-SKIP-UNTIL.
    let delta = text_when_ok(&t, "/hls/chan/source/index.m3u8?_HLS_skip=YES").await;
    let kept: f64 = delta
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|d| d.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    let full: f64 = lines
        .iter()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|d| d.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    match delta.lines().find(|l| l.starts_with("#EXT-X-SKIP:")) {
        Some(skip) => {
            assert!(
                attr(skip, "SKIPPED-SEGMENTS").is_some_and(|n| n >= 1.0),
                "{skip}"
            );
            assert!(kept + target >= skip_until, "skipped too much:\n{delta}");
        }
        // Nothing old enough to skip: the window is shorter than CAN-SKIP-UNTIL.
        None => assert!(full < skip_until + 2.0 * target, "no skip in\n{delta}"),
    }
    assert!(delta.contains("#EXT-X-PRELOAD-HINT:TYPE=PART"), "{delta}");

    publisher.stop().await.expect("stop");
    t.stop().await;
}
