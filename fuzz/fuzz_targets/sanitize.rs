//! Any text as a title or body: what reaches the screen keeps its bounds and carries no markup,
//! control, bidi or zero-width characters.
#![no_main]

use herald::present::text;
use libfuzzer_sys::fuzz_target;

fn hidden(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}' | '\u{FEFF}' | '\u{061C}')
}

fuzz_target!(|s: &str| {
    let title = text::title(s);
    assert!(title.chars().count() <= text::MAX_TITLE_CHARS);
    assert!(!title.chars().any(|c| hidden(c) || c == '\n'));
    let body = text::body(s);
    assert!(body.len() <= text::MAX_BODY_BYTES);
    assert!(!body.chars().any(hidden));
    let markup = text::escape_markup(&body);
    assert!(!markup.contains('<') && !markup.contains('>'));
});
