//! Command lines: parse with clap, but report a bad setting on one line and exit non-zero.

use clap::Parser;
use clap::error::ErrorKind;

/// Parse the command line (with environment fallbacks). `--help` and `--version` print and
/// exit 0; anything invalid prints `<binary>: error: <what>` on one line and exits 2.
pub fn parse<T: Parser>(binary: &str) -> T {
    match T::try_parse() {
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
