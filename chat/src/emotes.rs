//! The built-in emote set: 28×28 SVGs compiled into the binary, so a fresh install needs no
//! asset upload, and the tokenizer that finds `:id` words in a chat message.

/// One built-in emote.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Emote {
    /// Stable token id, typed after a colon (`:thumbsup`).
    pub id: &'static str,
    /// Human label for pickers and alt text.
    pub name: &'static str,
    /// The SVG document; skipped when serialized because clients fetch images by id, not inline.
    #[serde(skip)]
    pub svg: &'static str,
}

/// Where an emote token sits in a message: zero-based Unicode scalar (char) positions, `end` inclusive (Twitch's convention).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmoteRange {
    /// Id of the emote the token names.
    pub id: String,
    /// Char position of the token's leading colon.
    pub start: usize,
    /// Char position of the token's last char.
    pub end: usize,
}

macro_rules! emote {
    ($id:literal, $name:literal) => {
        Emote {
            id: $id,
            name: $name,
            svg: include_str!(concat!("../emotes/", $id, ".svg")),
        }
    };
}

// Kept sorted by id: `get` binary-searches, and the tests fail if an insertion breaks the order.
static EMOTES: [Emote; 24] = [
    emote!("angry", "Angry"),
    emote!("clap", "Clap"),
    emote!("cool", "Cool"),
    emote!("cry", "Cry"),
    emote!("fire", "Fire"),
    emote!("gg", "GG"),
    emote!("heart", "Heart"),
    emote!("hype", "Hype"),
    emote!("laugh", "Laugh"),
    emote!("lol", "LOL"),
    emote!("love", "Love"),
    emote!("party", "Party"),
    emote!("pog", "Pog"),
    emote!("popcorn", "Popcorn"),
    emote!("rip", "RIP"),
    emote!("sad", "Sad"),
    emote!("salute", "Salute"),
    emote!("sleepy", "Sleepy"),
    emote!("smile", "Smile"),
    emote!("think", "Thinking"),
    emote!("thumbsup", "Thumbs up"),
    emote!("wave", "Wave"),
    emote!("wink", "Wink"),
    emote!("wow", "Wow"),
];

/// Every built-in emote, sorted by id.
pub fn all() -> &'static [Emote] {
    &EMOTES
}

/// The built-in emote with this exact (case-sensitive) id.
#[must_use]
pub fn get(id: &str) -> Option<&'static Emote> {
    EMOTES
        .binary_search_by(|e| e.id.cmp(id))
        .ok()
        .and_then(|i| EMOTES.get(i))
}

/// Finds every whitespace-delimited `:id` word naming a built-in emote, in message order.
#[must_use]
pub fn parse(message: &str) -> Vec<EmoteRange> {
    let mut ranges = Vec::new();
    let mut pos = 0;
    // Splitting on a char predicate consumes exactly one char per separator, so adding 1 after
    // each word keeps `pos` in chars even across runs of whitespace (they yield empty words).
    for word in message.split(char::is_whitespace) {
        let len = word.chars().count();
        if let Some(emote) = word.strip_prefix(':').and_then(get) {
            ranges.push(EmoteRange {
                id: emote.id.to_owned(),
                start: pos,
                // A match has the colon plus a non-empty id, so `len >= 2`.
                end: pos + len - 1,
            });
        }
        pos += len + 1;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(id: &str, start: usize, end: usize) -> EmoteRange {
        EmoteRange {
            id: id.to_owned(),
            start,
            end,
        }
    }

    #[test]
    fn svgs_are_self_contained_documents() {
        for e in all() {
            let svg = e.svg.trim();
            assert!(svg.starts_with("<svg"), "{}", e.id);
            assert!(svg.ends_with("</svg>"), "{}", e.id);
            assert!(
                svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#),
                "{}",
                e.id
            );
            assert!(svg.contains(r#"viewBox="0 0 28 28""#), "{}", e.id);
            assert!(
                svg.contains(r#"width="28""#) && svg.contains(r#"height="28""#),
                "{}",
                e.id
            );
            assert!(
                svg.contains(&format!("<title>{}</title>", e.name)),
                "{}",
                e.id
            );
            assert!(!svg.contains("<script"), "{}", e.id);
            assert!(!svg.contains("foreignObject"), "{}", e.id);
            assert!(!svg.contains("href=\"http"), "{}", e.id);
            assert!(svg.len() < 2048, "{} is {} bytes", e.id, svg.len());
        }
    }

    #[test]
    fn ids_are_unique_sorted_and_simple() {
        assert!(all().len() >= 20);
        for pair in all().windows(2) {
            assert!(pair[0].id < pair[1].id, "{} !< {}", pair[0].id, pair[1].id);
        }
        for e in all() {
            assert!(!e.id.is_empty());
            assert!(
                e.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                e.id
            );
            assert!(!e.name.is_empty(), "{}", e.id);
        }
    }

    #[test]
    fn get_finds_every_emote_and_nothing_else() {
        for e in all() {
            assert_eq!(get(e.id).map(|f| f.id), Some(e.id));
        }
        assert!(get("").is_none());
        assert!(get("Smile").is_none());
        assert!(get("nope").is_none());
    }

    #[test]
    fn serializes_without_svg() {
        let json = serde_json::to_value(get("thumbsup")).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({ "id": "thumbsup", "name": "Thumbs up" })
        );
    }

    #[test]
    fn parse_positions() {
        assert_eq!(parse(":smile hi"), vec![range("smile", 0, 5)]);
        assert_eq!(parse("hi :fire there"), vec![range("fire", 3, 7)]);
        assert_eq!(parse("gg :gg"), vec![range("gg", 3, 5)]);
        assert_eq!(
            parse(":wave hello :heart"),
            vec![range("wave", 0, 4), range("heart", 12, 17)]
        );
        assert_eq!(
            parse(":pog :pog  :pog"),
            vec![range("pog", 0, 3), range("pog", 5, 8), range("pog", 11, 14)]
        );
    }

    #[test]
    fn parse_counts_chars_not_bytes() {
        let msg = "héllo 🎉 :smile";
        assert_eq!(parse(msg), vec![range("smile", 8, 13)]);
        let token: String = msg.chars().skip(8).take(6).collect();
        assert_eq!(token, ":smile");
        // Non-ASCII whitespace delimits words too.
        assert_eq!(parse("日本\u{3000}:cool"), vec![range("cool", 3, 7)]);
    }

    #[test]
    fn parse_leaves_non_tokens_as_text() {
        for msg in [
            ":unknown", ":Smile", "::smile", ":smile:", "a:smile", ":smile,", "(:smile)", "smile",
            ":", ": smile", "", "   ", "\t\n\r ",
        ] {
            assert_eq!(parse(msg), vec![], "{msg:?}");
        }
    }

    #[test]
    fn parse_survives_odd_input() {
        for msg in [
            "::::",
            ": : :",
            ":\u{0}",
            "e\u{301}:smile",
            "\u{200b}:smile",
            "🎉🎉🎉 :",
            "\u{feff}",
        ] {
            let _ = parse(msg);
        }
    }
}
