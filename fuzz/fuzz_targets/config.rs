//! Any text as `herald.toml`: every pass of validation must report errors, never panic.
#![no_main]

use std::path::Path;

use herald::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Err(errors) = Config::parse(Path::new("fuzz.toml"), text) {
        // Rendering the errors (with line and column) must not panic either.
        let _ = errors.to_string();
    }
});
