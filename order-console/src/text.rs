//! Text shown to people as it is stored, without letting it change how the page reads.

use std::borrow::Cow;

/// Whether `c` changes the direction of the text around it: the bidi embeddings, overrides,
/// isolates and marks.
fn reorders(c: char) -> bool {
    matches!(
        c,
        '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
    )
}

/// JSON text (or a message body) with every character that reorders text written as JSON's
/// escape (`\u202e`), so that a right-to-left override inside a string cannot make the JSON
/// around it look different from what is stored. Inside a JSON string the escape stands for
/// the same character, so the JSON means what it meant.
pub fn escape_bidi(text: &str) -> Cow<'_, str> {
    if !text.chars().any(reorders) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if reorders(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_become_escapes_that_mean_the_same_string() {
        let json = serde_json::to_string(&serde_json::json!({"k": "\u{202e}abc\u{2066}d\u{200f}"}))
            .unwrap_or_default();
        let shown = escape_bidi(&json);
        assert_eq!(shown, r#"{"k":"\u202eabc\u2066d\u200f"}"#);
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap_or_default();
        assert_eq!(back["k"], "\u{202e}abc\u{2066}d\u{200f}");
        assert!(matches!(escape_bidi("plain \u{05d0}"), Cow::Borrowed(_)));
    }
}
