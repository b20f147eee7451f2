//! Input rules shared by the domain and the CLI.

/// A channel id or username: `[a-z0-9_]{3,25}`.
pub fn is_slug(s: &str) -> bool {
    (3..=25).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A user id from a token: 1..=64 printable characters without whitespace.
///
/// Tokens minted by `onair token` may carry ids of another identity system, so this is looser
/// than [`is_slug`].
pub fn is_user_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= 64
        && s.chars().all(|c| !c.is_control() && !c.is_whitespace())
}

/// Free text limited in characters, without control characters other than newlines and tabs.
pub fn is_text(s: &str, max_chars: usize) -> bool {
    s.chars().count() <= max_chars
        && s.chars()
            .all(|c| !c.is_control() || c == '\n' || c == '\t' || c == '\r')
}

/// One line of text limited in characters: no control characters at all (Unicode `Cc`).
pub fn is_line(s: &str, max_chars: usize) -> bool {
    s.chars().count() <= max_chars && s.chars().all(|c| !c.is_control())
}

/// Max characters of a channel name.
pub const NAME_MAX: usize = 100;
/// Max characters of a channel description.
pub const DESCRIPTION_MAX: usize = 2000;
/// Max characters of a stream title.
pub const TITLE_MAX: usize = 140;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(is_slug("abc"));
        assert!(is_slug("a_b_9"));
        assert!(!is_slug("ab"));
        assert!(!is_slug("Abc"));
        assert!(!is_slug("a-bc"));
        assert!(!is_slug(&"a".repeat(26)));
        assert!(is_slug(&"a".repeat(25)));
        assert!(!is_slug("abc\u{e9}"));
    }

    #[test]
    fn user_ids() {
        assert!(is_user_id("alice"));
        assert!(is_user_id("auth0|123"));
        assert!(!is_user_id(""));
        assert!(!is_user_id("a b"));
        assert!(!is_user_id(&"x".repeat(65)));
    }
}
