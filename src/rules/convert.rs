//! What rules add to a notification's vocabulary: `msg.route`, and how JSON values become Lua values.
//!
//! The message table itself is built and read back by the driver (`driver.rs`): `id`, `channel` and
//! `signed_by` are read-only there, and what a rule writes is checked as strictly as a publisher's
//! payload (a rule cannot produce a notification a publisher could not send).

/// Where a rule wants a message shown (`msg.route`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Toast,
    Dialog,
    Console,
    /// Shown nowhere; a question gets no answer from the user.
    Silent,
}

impl Route {
    pub fn parse(s: &str) -> Option<Route> {
        Some(match s {
            "toast" => Route::Toast,
            "dialog" => Route::Dialog,
            "console" => Route::Console,
            "silent" => Route::Silent,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Toast => "toast",
            Route::Dialog => "dialog",
            Route::Console => "console",
            Route::Silent => "silent",
        }
    }
}

/// Options that keep JSON `null` out of Lua (it would become a light userdata, not `nil`).
pub fn ser_options() -> mlua::serde::SerializeOptions {
    mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
}
