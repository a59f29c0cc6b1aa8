//! Properties that must hold for every input, checked on many generated ones: the decoder and the
//! config parser never panic and always say why they reject; safe text never lets markup or
//! invisible characters through.

use proptest::prelude::*;

use herald::message::{self, DEFAULT_MAX_PAYLOAD};
use herald::present::text;

fn hidden(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}' | '\u{FEFF}' | '\u{061C}')
}

/// Strings rich in the characters that cause trouble.
fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            Just('<'),
            Just('>'),
            Just('&'),
            Just('\u{202E}'),
            Just('\u{2067}'),
            Just('\u{200B}'),
            Just('\u{FEFF}'),
            Just('\n'),
            Just('é'),
        ],
        0..2000,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn safe_text_never_lets_markup_or_invisible_characters_through(s in nasty()) {
        let body = text::escape_markup(&text::body(&s));
        prop_assert!(!body.contains('<') && !body.contains('>'));
        prop_assert!(!body.chars().any(hidden));
        prop_assert!(text::body(&s).len() <= text::MAX_BODY_BYTES);
        let title = text::title(&s);
        prop_assert!(title.chars().count() <= text::MAX_TITLE_CHARS);
        prop_assert!(!title.chars().any(hidden) && !title.contains('\n'));
    }

    #[test]
    fn the_decoder_never_panics_and_always_says_why(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match message::decode(&bytes, DEFAULT_MAX_PAYLOAD, || "x".into()) {
            Ok(n) => prop_assert!(!n.id.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn near_valid_notifications_decode_or_fail_cleanly(
        title in nasty(), kind in "[A-Za-z]{0,9}", priority in "[a-z]{0,9}", extra in any::<i64>()
    ) {
        let json = serde_json::json!({"title": title, "message": "m", "type": kind, "priority": priority, "n": extra});
        let _ = message::decode(json.to_string().as_bytes(), usize::MAX, || "x".into());
    }

    #[test]
    fn the_config_parser_never_panics(src in "(\\[[a-z\\[\\]]{0,12}\\]\\n|[a-z_]{1,12} = (\"[^\"\\n]{0,12}\"|[0-9]{1,5}|true|\\[\\])\\n){0,12}") {
        let result = herald::config::Config::parse(std::path::Path::new("fuzz.toml"), &src);
        if let Err(errors) = result {
            prop_assert!(!errors.0.is_empty());
        }
    }
}
