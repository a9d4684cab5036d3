//! End-to-end tests of the order ledger live in `tests/`; this crate's only code is what
//! several of them share.

/// Texts that must be stored, returned and shown as they are, never interpreted: the
/// hostile-string corpus of the end-to-end tests (the gRPC path in `tests/e2e/hostile.rs`,
/// the console in `tests/console`).
pub const HOSTILE: &[&str] = &[
    "Robert'); DROP TABLE orders.events;--",
    r#"" OR 1=1 -- \' \\ \x00 %s %n {0} ${HOME} $1 $$ :name ?"#,
    r#"{"injected": true}], "payload": [{"#,
    "<script>alert(1)</script> &amp; &#0;",
    "e\u{301}cole / \u{e9}cole", // decomposed and composed: no normalisation
    // Format characters inside visible text, not control (U+2028, a line break, is refused
    // since; recorded text holding it is shown by order-console/tests/console/pages.rs).
    "\u{202e}fdp.exe \u{200b}zero\u{feff}width\u{2060}joiner",
    "\u{1f469}\u{200d}\u{1f469}\u{200d}\u{1f467} \u{1d573}\u{1d58a} \u{4e2d}\u{6587} \u{645}\u{631}\u{62d}\u{628}\u{627}",
    "  leading and trailing spaces kept  ",
];
