//! The one rule for every text a person types that others will see: names
//! (people, guests, groups), titles (courses, sessions, decks), questions,
//! answers, polls (question, options, open answers, words), broadcasts and
//! Markdown decks.
//!
//! A right-to-left override (U+202E) in a name turns the text after it around
//! on everyone else's screen ("Eve\u{202E}gnp.exe" shows as "Eveexe.png"); a
//! name of zero-width characters shows as nothing; a control character (NUL,
//! escape) has no business on a page. All three are refused with
//! `invalid_characters`. Every script is welcome, right-to-left ones included:
//! the browser orders them by itself, and joiners and marks inside visible
//! text (an emoji sequence, a Persian name, a left-to-right mark) stay allowed.
//! The pages add their own guard (each text isolated, `unicode-bidi: isolate`),
//! for texts stored before this rule.

use herald_protocol::ErrorCode;
use herald_server::error::ApiError;

/// How a text may be laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A name, a title, an option, a word: one line, no control character.
    Line,
    /// A question, an answer, a broadcast: line breaks and tabs allowed.
    Lines,
}

/// Bidirectional embeddings, overrides and isolates: U+202A to U+202E and
/// U+2066 to U+2069.
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that show nothing by themselves: white space, format characters
/// (zero-width spaces and joiners, marks, the byte-order mark, word joiners,
/// invisible operators, tags), variation selectors, and the fillers that
/// render blank (Hangul fillers, the Braille blank, the Mongolian and Khmer
/// invisible vowels).
fn invisible(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// A control character that `shape` does not allow.
fn control(c: char, shape: Shape) -> bool {
    c.is_control() && !(shape == Shape::Lines && matches!(c, '\n' | '\r' | '\t'))
}

/// `raw` trimmed, checked as a text others will see: 1 to `max` characters
/// (`what` names it in the messages).
///
/// # Errors
/// `length` (the caller's own code) when it is empty after trimming or longer
/// than `max`; `invalid_characters` when it holds a control character that
/// `shape` does not allow, a character that reorders the text around it, or
/// nothing visible.
pub(crate) fn shown<'a>(
    raw: &'a str,
    max: usize,
    what: &str,
    shape: Shape,
    length: ErrorCode,
) -> Result<&'a str, ApiError> {
    let text = raw.trim();
    if text.is_empty() || text.chars().count() > max {
        return Err(ApiError::new(
            length,
            format!("{what} must be 1 to {max} characters"),
        ));
    }
    if text.chars().any(|c| control(c, shape)) {
        let allowed = match shape {
            Shape::Line => "no control characters or line breaks",
            Shape::Lines => "no control characters besides line breaks and tabs",
        };
        return Err(ApiError::new(
            ErrorCode::InvalidCharacters,
            format!("{what}: {allowed}"),
        ));
    }
    keeps_direction(text, what)?;
    if text.chars().all(invisible) {
        return Err(ApiError::new(
            ErrorCode::InvalidCharacters,
            format!("{what} must have at least one visible character"),
        ));
    }
    Ok(text)
}

/// Checks that `text` has no character that changes the direction of the
/// text around it (a Markdown deck, checked whole).
///
/// # Errors
/// `invalid_characters`, naming `what`.
pub(crate) fn keeps_direction(text: &str, what: &str) -> Result<(), ApiError> {
    if text.chars().any(reorders) {
        return Err(ApiError::new(
            ErrorCode::InvalidCharacters,
            format!(
                "{what}: no characters that change the direction of the text around them \
                 (U+202A to U+202E, U+2066 to U+2069)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str, shape: Shape) -> Option<ErrorCode> {
        shown(text, 10, "a name", shape, ErrorCode::InvalidName)
            .err()
            .map(|e| e.0.code)
    }

    #[test]
    fn reordering_invisible_and_control_texts_are_refused() {
        for bad in [
            "a\u{202E}b",
            "\u{2066}a",
            "\u{2069}",
            "\u{200B}",
            "\u{3164}\u{FEFF}",
            "\u{E0041}",
            "a\u{0}b",
            "a\u{1B}[31m",
        ] {
            assert_eq!(
                code(bad, Shape::Lines),
                Some(ErrorCode::InvalidCharacters),
                "{bad:?}"
            );
        }
        assert_eq!(code("a\nb", Shape::Line), Some(ErrorCode::InvalidCharacters));
        for long in ["", "   ", "abcdefghijk"] {
            assert_eq!(code(long, Shape::Line), Some(ErrorCode::InvalidName));
        }
        for good in [
            "Ada",
            "عائشة",
            "👩\u{200D}🏫",
            "Zo\u{00EB}",
            "a\u{200B}b",
            "\u{200F}שלום",
        ] {
            assert_eq!(code(good, Shape::Line), None, "{good:?}");
        }
        assert_eq!(code("a\n\tb", Shape::Lines), None);
        assert_eq!(
            shown("  Ada ", 10, "", Shape::Line, ErrorCode::InvalidName).ok(),
            Some("Ada")
        );
    }
}
