//! Where the test services are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::START_COMMAND;

/// Connection settings for the test services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A superuser URL for the `postgres` database.
    pub pg_admin_url: String,
    vars: HashMap<String, String>,
}

impl Settings {
    /// Any setting by its environment variable name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A setting that must exist, or a panic naming the command that writes it.
    pub fn require(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| {
            panic!("{name} is not set and not in .dev/env: run `{START_COMMAND}` first")
        })
    }

    /// Every setting, for passing to a child process.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The workspace root (the folder holding `.dev/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

const KNOWN: &[&str] = &[
    "ORDER_PG_ADMIN_URL",
    "DATABASE_URL",
    "ORDER_BENCH_DATABASE_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "ORDERS_QUEUE_URL",
    "ORDERS_DLQ_URL",
    "ORDER_CHROME",
    "ORDER_CHROMEDRIVER",
];

/// Parse the `export NAME='value'` lines that `scripts/dev` writes.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|assignment| assignment.split_once('='))
        .map(|(name, value)| {
            let value = value.trim();
            let value = value
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(value);
            (name.trim().to_owned(), value.to_owned())
        })
        .collect()
}

fn load() -> Result<Settings, String> {
    let file = workspace_root().join(".dev/env");
    let mut vars = match std::fs::read_to_string(&file) {
        Ok(text) => parse_env_file(&text),
        Err(_) => HashMap::new(),
    };
    for name in KNOWN {
        if let Ok(value) = std::env::var(name) {
            vars.insert((*name).to_owned(), value);
        }
    }
    let pg_admin_url = vars.get("ORDER_PG_ADMIN_URL").cloned().ok_or_else(|| {
        format!(
            "the tests need PostgreSQL and the SQS emulator, but ORDER_PG_ADMIN_URL is not set \
             and {} does not exist: run `{START_COMMAND}` (or `scripts/check` for everything)",
            file.display()
        )
    })?;
    Ok(Settings { pg_admin_url, vars })
}

/// The settings, loaded once per test process. Panics with the command to run when there
/// are none.
pub fn settings() -> &'static Settings {
    static SETTINGS: OnceLock<Result<Settings, String>> = OnceLock::new();
    match SETTINGS.get_or_init(load) {
        Ok(settings) => settings,
        Err(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_are_parsed_like_the_shell_would() {
        let vars = parse_env_file(
            "# comment\nexport A='x y'\nexport B=plain\nnot an export\nexport C='a=b'\n",
        );
        assert_eq!(vars.get("A").map(String::as_str), Some("x y"));
        assert_eq!(vars.get("B").map(String::as_str), Some("plain"));
        assert_eq!(vars.get("C").map(String::as_str), Some("a=b"));
        assert_eq!(vars.len(), 3);
    }
}
