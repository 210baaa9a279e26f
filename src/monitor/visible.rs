//! Server-chosen text made safe for a terminal.
//!
//! A terminal obeys the bytes it is given. ESC starts a control sequence
//! (`\x1b]0;…\x07` retitles the window, `\x1b[2K\x1b[1A` erases a line and
//! moves up), backspace and carriage return overwrite what was printed,
//! a newline starts a line that looks like ours, and the Unicode bidi
//! controls reorder what follows so that the screen shows something other
//! than what was sent ("Trojan Source"). Nicknames, chat and gift names
//! come from strangers, so every one of them goes through [`visible`]
//! before it reaches text output:
//!
//! | what | becomes | why |
//! |---|---|---|
//! | tab, newline, carriage return, U+2028, U+2029 | a space | text stays readable, and no byte can start a line |
//! | other C0 controls (U+0000–U+001F) | its control picture, `␛` for ESC (U+2400 + code) | visible, one column wide, inert |
//! | DEL (U+007F) | `␡` | the same |
//! | C1 controls (U+0080–U+009F) | `\u{9b}` | some terminals obey them in UTF-8 too |
//! | bidi embeddings, overrides, isolates and marks | `\u{202e}` | they reorder the rest of the line |
//!
//! JSON output needs none of this: its escaping already keeps every
//! character, losslessly, inside the string.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every character that could steer a terminal made visible
/// and harmless (see the module documentation). Borrows when nothing needs
/// changing, which is nearly always.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_care) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' | '\n' | '\r' | '\u{2028}' | '\u{2029}' => safe.push(' '),
            '\u{0}'..='\u{1f}' => safe.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{7f}' => safe.push('\u{2421}'),
            c if needs_care(c) => {
                let _ = write!(safe, "\\u{{{:x}}}", c as u32);
            }
            c => safe.push(c),
        }
    }
    Cow::Owned(safe)
}

/// Whether `c` is a control or bidi character that [`visible`] replaces.
fn needs_care(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Arabic letter mark, left-to-right and right-to-left marks.
        | '\u{61c}' | '\u{200e}' | '\u{200f}'
        | '\u{2028}' | '\u{2029}'
        // Embeddings and overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI).
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["小老弟233", "注意保暖 \"quoted\" a/b\\c", "emoji 🎉 and accents é", ""] {
            assert!(matches!(visible(text), Cow::Borrowed(t) if t == text), "{text:?}");
        }
    }

    #[test]
    fn escape_sequences_lose_their_escape() {
        assert_eq!(visible("\x1b]0;pwned\x07"), "␛]0;pwned␇");
        assert_eq!(visible("\x1b[2K\x1b[1Aforged"), "␛[2K␛[1Aforged");
        assert_eq!(visible("abc\x08\x08\x08xyz"), "abc␈␈␈xyz");
        assert_eq!(visible("nul\0del\x7f"), "nul␀del␡");
    }

    #[test]
    fn no_character_can_start_a_new_line() {
        let forged = visible("a\n[9500] admin: forged\r\u{2028}\u{2029}\x0b\x0c\u{85}");
        assert!(!forged.contains(['\n', '\r', '\u{2028}', '\u{2029}', '\x0b', '\x0c', '\u{85}']), "{forged}");
        assert_eq!(forged, "a [9500] admin: forged   ␋␌\\u{85}");
    }

    #[test]
    fn c1_controls_and_bidi_controls_are_spelled_out() {
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m", "CSI as one C1 character");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed", "right-to-left override");
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            let shown = visible(&c.to_string()).into_owned();
            assert_eq!(shown, format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(visible("\u{200f}\u{200e}\u{61c}"), "\\u{200f}\\u{200e}\\u{61c}");
    }

    #[test]
    fn every_character_that_needs_care_is_gone_from_the_result() {
        for code in (0..0x3000).chain(0xfff0..0x10000) {
            let Some(c) = char::from_u32(code) else { continue };
            let shown = visible(&c.to_string()).into_owned();
            assert!(!shown.chars().any(needs_care), "U+{code:04X} came out as {shown:?}");
        }
    }
}
