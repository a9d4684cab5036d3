//! Command lines: parse with clap, but report a bad setting on one line and exit non-zero.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Command, FromArgMatches, Parser};

/// What every binary also reads from its environment, beyond its own settings (shown at the
/// end of every `--help`).
pub const ENVIRONMENT_HELP: &str = "\
Also read from the environment:
  RUST_LOG                     log filter (default info), e.g. info,order_store=debug
  OTEL_EXPORTER_OTLP_ENDPOINT  export traces by OTLP when set (or ..._TRACES_ENDPOINT);
                               OTEL_SERVICE_NAME, OTEL_SDK_DISABLED and the other standard
                               OTEL_* settings apply
  AWS_REGION, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...
                               the AWS SDK's own settings (binaries that use SQS or S3)
";

/// What a binary without traces or AWS (a tool) reads from its environment beyond its own
/// settings: [`parse_with_footer`]'s usual footer.
pub const LOG_ENVIRONMENT_HELP: &str = "\
Also read from the environment:
  RUST_LOG                     log filter (default info), e.g. info,order_store=debug
";

/// The binary's command with `footer` at the end of its help and of every subcommand's.
fn command<T: Parser>(footer: &'static str) -> Command {
    with_footer(T::command(), footer)
}

/// `command` with `footer` (e.g. [`ENVIRONMENT_HELP`]) at the end of its help and of every
/// subcommand's.
pub fn with_footer(command: Command, footer: &'static str) -> Command {
    let mut command = command.after_help(footer);
    let names: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, |s| s.after_help(footer));
    }
    command
}

/// Parse the command line (with environment fallbacks). `--help` and `--version` print and
/// exit 0; anything invalid prints `<binary>: error: <what>` on one line and exits 2.
pub fn parse<T: Parser>(binary: &str) -> T {
    parse_with_footer(binary, ENVIRONMENT_HELP)
}

/// Like [`parse`], with `footer` (what else is read from the environment) at the end of every
/// help text instead of [`ENVIRONMENT_HELP`]; for tools that export no traces and call no AWS
/// service ([`LOG_ENVIRONMENT_HELP`]).
pub fn parse_with_footer<T: Parser>(binary: &str, footer: &'static str) -> T {
    parse_from(binary, command::<T>(footer), std::env::args_os(), 2)
}

/// [`parse_with_footer`] for a binary whose exit status 2 means something else (order-import:
/// "finished with rejects"): a bad setting exits with `code` instead.
pub fn parse_with_footer_exiting<T: Parser>(binary: &str, footer: &'static str, code: i32) -> T {
    parse_from(binary, command::<T>(footer), std::env::args_os(), code)
}

/// Like [`parse`], but a command line that names no subcommand (nothing, or flags only) runs
/// `default`: `order-worker --concurrency 4` is `order-worker run --concurrency 4`.
///
/// `--help` without a subcommand lists the subcommands and then every setting of `default`
/// with its environment variable.
pub fn parse_or_default<T: Parser>(binary: &str, default: &str) -> T {
    parse_or_default_command(binary, command::<T>(ENVIRONMENT_HELP), default)
}

/// [`parse_or_default`] with a command built at run time (a library's binary whose name and
/// defaults its user sets), parsed into `T`.
pub fn parse_or_default_command<T: FromArgMatches>(
    binary: &str,
    command: Command,
    default: &str,
) -> T {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let first = args.get(1).and_then(|a| a.to_str());
    if args.len() == 2 && matches!(first, Some("-h" | "--help" | "help")) {
        use std::io::Write;
        let mut help = command
            .clone()
            .after_help("")
            .render_long_help()
            .to_string();
        if let Some(sub) = command.find_subcommand(default) {
            let mut sub = sub.clone().bin_name(format!("{binary} {default}"));
            help.push_str(&format!(
                "\nThe settings of `{default}`, which runs when no subcommand is named:\n\n{}\n",
                sub.render_long_help().to_string().trim_end()
            ));
        }
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::stdout().lock().write_all(help.as_bytes());
        std::process::exit(0);
    }
    let names_one = first.is_some_and(|a| {
        command.get_subcommands().any(|s| s.get_name() == a)
            || matches!(a, "help" | "-h" | "--help" | "-V" | "--version")
    });
    if !names_one {
        args.insert(1.min(args.len()), default.into());
    }
    parse_from(binary, command, args, 2)
}

/// A multi-threaded Tokio runtime, or `<binary>: error: ...` and exit 2.
pub fn runtime(binary: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new()
        .unwrap_or_else(|e| fail(binary, &format!("cannot start the runtime: {e}")))
}

fn parse_from<T: FromArgMatches>(
    binary: &str,
    mut command: Command,
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    code: i32,
) -> T {
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(parsed) => parsed,
        Err(error) => match error.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
            // Help on stderr for a command line that names no subcommand: a usage error, with
            // the binary's code for one.
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = error.print();
                std::process::exit(code)
            }
            ErrorKind::MissingRequiredArgument => {
                fail_with(binary, &missing(&command, &error), code)
            }
            _ => fail_with(binary, &first_line(&error.render().to_string()), code),
        },
    }
}

/// Print `<binary>: error: <message>` (one line) and exit with status 2.
pub fn fail(binary: &str, message: &str) -> ! {
    fail_with(binary, message, 2)
}

fn fail_with(binary: &str, message: &str, code: i32) -> ! {
    let message = message.trim().trim_start_matches("error: ");
    eprintln!("{binary}: error: {}", first_line(message));
    std::process::exit(code)
}

/// "missing setting: --database-url <DATABASE_URL> (or DATABASE_URL in the environment)",
/// for each setting clap found missing.
fn missing(command: &Command, error: &clap::Error) -> String {
    let names = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(names)) => names.clone(),
        Some(ContextValue::String(name)) => vec![name.clone()],
        _ => return first_line(&error.render().to_string()),
    };
    let described: Vec<String> = names
        .iter()
        .map(|name| {
            let long = name
                .split_whitespace()
                .next()
                .unwrap_or(name)
                .trim_start_matches('-');
            match env_of(command, long) {
                Some(env) => format!("{name} (or {env} in the environment)"),
                None => name.clone(),
            }
        })
        .collect();
    format!("missing setting: {}", described.join(", "))
}

/// The environment variable of the argument `--long`, in `command` or any subcommand.
fn env_of(command: &Command, long: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, long)))
}

/// The settings (options, help and version excepted) of `command` and of its subcommands
/// for which `refused` says true, as `"<subcommand path> --<long>"`.
fn settings_where(command: &Command, refused: &dyn Fn(&clap::Arg) -> bool) -> Vec<String> {
    fn walk(
        command: &Command,
        path: &str,
        refused: &dyn Fn(&clap::Arg) -> bool,
        out: &mut Vec<String>,
    ) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if arg.is_positional() || id == "help" || id == "version" || !refused(arg) {
                continue;
            }
            out.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
        }
        for sub in command.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), refused, out);
        }
    }
    let mut out = Vec::new();
    walk(command, command.get_name(), refused, &mut out);
    out
}

/// Every option of `command` and of its subcommands that has no environment variable, as
/// `"<subcommand path> --<long>"` (help and version excepted). The contract is that `--help`
/// lists every setting with its environment variable; each binary's tests assert this is empty.
pub fn settings_without_environment(command: &Command) -> Vec<String> {
    settings_where(command, &|arg| arg.get_env().is_none())
}

/// Every option of `command` and of its subcommands that `--help` shows without a description,
/// as `"<subcommand path> --<long>"` (help and version excepted). Each binary's tests assert
/// this is empty, beside [`settings_without_environment`].
pub fn settings_without_help(command: &Command) -> Vec<String> {
    settings_where(command, &|arg| {
        arg.get_help()
            .is_none_or(|help| help.to_string().trim().is_empty())
            && arg.get_long_help().is_none()
    })
}

/// Every boolean setting of `command` and its subcommands that does not take the forms the
/// README promises for all of them: `--flag`, `--flag=true|false` and its variable as `true`/
/// `false`, `1`/`0`, `yes`/`no` (`num_args = 0..=1`, `require_equals`,
/// `default_missing_value = "true"`, `BoolishValueParser`; the default missing value is not
/// visible to this check). For a test of each binary.
pub fn booleans_not_boolish(command: &Command) -> Vec<String> {
    settings_where(command, &|arg| {
        let flag = matches!(
            arg.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::SetFalse
        );
        let boolean = arg.get_value_parser().type_id() == std::any::TypeId::of::<bool>();
        let boolish = !flag
            && arg.get_num_args() == Some((0..=1).into())
            && arg.is_require_equals_set()
            // clap's plain bool parser takes `true` and `false`; the boolish one `yes`, `no`,
            // `1`, `0` too.
            && arg
                .get_value_parser()
                .possible_values()
                .is_some_and(|mut values| values.any(|value| value.matches("yes", true)));
        (flag || boolean) && !boolish
    })
}

/// Warn (on stderr, before anything is done) that a one-off command's argument came from the
/// environment rather than the command line: a variable left in a task definition must not
/// steer a run silently. `what` says what it does, e.g. "a dry run: nothing is applied".
/// For switches: a variable set to a false value (`false`, `0`, `no`, ...) steers nothing.
pub fn note_from_environment(binary: &str, variables: &[&str], what: &str) {
    note(
        binary,
        &steering(variables, |v| std::env::var(v).ok(), true),
        what,
    );
}

/// As [`note_from_environment`], for settings that take a value, such as a position: any
/// value but an empty one steers the run (`0` too).
pub fn note_values_from_environment(binary: &str, variables: &[&str], what: &str) {
    note(
        binary,
        &steering(variables, |v| std::env::var(v).ok(), false),
        what,
    );
}

/// The variables among `variables` whose value steers a run.
fn steering<'a>(
    variables: &[&'a str],
    value_of: impl Fn(&str) -> Option<String>,
    switches: bool,
) -> Vec<&'a str> {
    variables
        .iter()
        .copied()
        .filter(|v| {
            value_of(v).is_some_and(|value| {
                let value = value.trim().to_ascii_lowercase();
                let off = matches!(value.as_str(), "false" | "0" | "no" | "n" | "off" | "f");
                !value.is_empty() && (!switches || !off)
            })
        })
        .collect()
}

fn note(binary: &str, set: &[&str], what: &str) {
    if !set.is_empty() {
        eprintln!(
            "{binary}: note: {} set in the environment: {what}",
            set.join(", ")
        );
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid configuration")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::steering;

    #[test]
    fn a_position_of_zero_steers_a_run_a_switch_set_false_does_not() {
        let env = |v: &str| match v {
            "FROM" => Some("0".to_owned()),
            "TO" => Some(" ".to_owned()),
            "DRY_RUN" => Some("no".to_owned()),
            "ON" => Some("yes".to_owned()),
            _ => None,
        };
        let all = ["FROM", "TO", "DRY_RUN", "ON", "UNSET"];
        assert_eq!(steering(&all, env, false), ["FROM", "DRY_RUN", "ON"]);
        assert_eq!(steering(&all, env, true), ["ON"]);
    }
}
