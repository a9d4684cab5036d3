//! Command lines: parse with clap, but report a bad setting on one line and exit non-zero.

use clap::Parser;
use clap::error::ErrorKind;

/// Parse the command line (with environment fallbacks). `--help` and `--version` print and
/// exit 0; anything invalid prints `<binary>: error: <what>` on one line and exits 2.
pub fn parse<T: Parser>(binary: &str) -> T {
    parse_from(binary, std::env::args_os())
}

/// Like [`parse`], but a command line that names no subcommand (nothing, or flags only) runs
/// `default`: `order-worker --concurrency 4` is `order-worker run --concurrency 4`.
pub fn parse_or_default<T: Parser>(binary: &str, default: &str) -> T {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let command = T::command();
    let names_one = args.get(1).and_then(|a| a.to_str()).is_some_and(|a| {
        command.get_subcommands().any(|s| s.get_name() == a)
            || matches!(a, "help" | "-h" | "--help" | "-V" | "--version")
    });
    if !names_one {
        args.insert(1.min(args.len()), default.into());
    }
    parse_from(binary, args)
}

/// A multi-threaded Tokio runtime, or `<binary>: error: ...` and exit 2.
pub fn runtime(binary: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new()
        .unwrap_or_else(|e| fail(binary, &format!("cannot start the runtime: {e}")))
}

fn parse_from<T: Parser>(
    binary: &str,
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> T {
    match T::try_parse_from(args) {
        Ok(parsed) => parsed,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => error.exit(),
            _ => fail(binary, &first_line(&error.render().to_string())),
        },
    }
}

/// Print `<binary>: error: <message>` (one line) and exit with status 2.
pub fn fail(binary: &str, message: &str) -> ! {
    let message = message.trim().trim_start_matches("error: ");
    eprintln!("{binary}: error: {}", first_line(message));
    std::process::exit(2)
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid configuration")
        .to_owned()
}
