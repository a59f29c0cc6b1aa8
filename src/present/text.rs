//! Safe text for the screen. A notification's title and body come from whoever could publish to the
//! channel, so before they reach a desktop they lose what could mislead a reader — bidi overrides
//! that reverse `exe.txt` into `txt.exe`, zero-width characters, control characters — and are cut to a
//! sane length. Markup is escaped only for notification servers that would otherwise parse it.

/// Longest title shown, in characters.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest body shown, in bytes (UTF-8), before the ellipsis.
pub const MAX_BODY_BYTES: usize = 1024;

/// Characters removed from everything shown: bidi embeddings, overrides and isolates, directional
/// marks, zero-width characters, the BOM, and C0/C1 controls other than newline and tab.
fn is_hidden(c: char) -> bool {
    matches!(c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
        | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
        || (c.is_control() && c != '\n' && c != '\t')
}

/// Removes hidden characters.
pub fn strip(text: &str) -> String {
    text.chars().filter(|c| !is_hidden(*c)).collect()
}

/// A title: stripped, on one line, at most [`MAX_TITLE_CHARS`] characters.
pub fn title(text: &str) -> String {
    let one_line: String = strip(text)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= MAX_TITLE_CHARS {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(MAX_TITLE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A body: stripped, at most [`MAX_BODY_BYTES`] bytes.
pub fn body(text: &str) -> String {
    let stripped = strip(text);
    if stripped.len() <= MAX_BODY_BYTES {
        return stripped;
    }
    let ellipsis = '…';
    let mut end = MAX_BODY_BYTES - ellipsis.len_utf8();
    while !stripped.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = stripped[..end].to_owned();
    cut.push(ellipsis);
    cut
}

/// Escapes `&`, `<` and `>` for servers that parse body markup.
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_removed() {
        assert_eq!(strip("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(strip("pay\u{200B}pal\u{FEFF}"), "paypal");
        assert_eq!(strip("a\u{0007}b\nc\td"), "ab\nc\td");
        assert_eq!(strip("\u{2067}x\u{2069}"), "x");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<b>bold</b> & co"),
            "&lt;b&gt;bold&lt;/b&gt; &amp; co"
        );
    }

    #[test]
    fn titles_and_bodies_are_cut_with_an_ellipsis() {
        let t = title(&"é".repeat(200));
        assert_eq!(t.chars().count(), MAX_TITLE_CHARS);
        assert!(t.ends_with('…'));
        assert_eq!(title("two\nlines"), "two lines");
        let b = body(&"ü".repeat(1000));
        assert!(b.len() <= MAX_BODY_BYTES && b.ends_with('…'), "{}", b.len());
        assert_eq!(body("short"), "short");
    }
}
