//! A fresh PostgreSQL database per test, cloned from a migrated template.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use crate::{START_COMMAND, settings};

/// The URL of `database` on the server of `admin_url` (which names some other database).
pub fn url_for_database(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A PostgreSQL error with the server's own message (tokio-postgres prints only "db error").
pub fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// Connect to `url`, or explain which command starts the server.
pub async fn try_connect(url: &str) -> Result<Client, String> {
    let connect = tokio_postgres::connect(url, NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| unreachable_message("the connection attempt timed out"))?
        .map_err(|e| unreachable_message(&describe(&e)))?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; errors then are not interesting.
        let _ = connection.await;
    });
    Ok(client)
}

fn unreachable_message(cause: &str) -> String {
    format!(
        "PostgreSQL is not reachable for the tests ({cause}): start it with `{START_COMMAND}` \
         (or run every check with `scripts/check`)"
    )
}

/// A superuser connection to the `postgres` database.
pub async fn admin() -> Client {
    match try_connect(&settings().pg_admin_url).await {
        Ok(client) => client,
        Err(message) => panic!("{message}"),
    }
}

/// A database that exists for one test and is dropped with it (kept when the test fails, so
/// that it can be inspected; its name is printed).
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// An empty database.
    pub async fn empty() -> Self {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        create_database(&admin().await, &name, None).await;
        Self::named(name)
    }

    /// A database cloned from the template `key`, which `init` builds (once per key, across
    /// every test process) from an empty database. Put a hash of whatever `init` depends on
    /// (e.g. the migrations) into `key`, so that a change builds a new template.
    pub async fn from_template<F, Fut, E>(key: &str, init: F) -> Self
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let template = format!("tmpl_{key}");
        assert!(template.len() <= 63, "template key too long: {key}");
        let admin = admin().await;
        ensure_template(&admin, &template, init).await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        create_database(&admin, &name, Some(&template)).await;
        Self::named(name)
    }

    /// A database with every migration of order-store applied (cloned from a template keyed
    /// by the migrations' fingerprint).
    #[cfg(feature = "store")]
    pub async fn migrated() -> Self {
        let key = format!("store_{}", order_store::migrate::fingerprint());
        Self::from_template(&key, |url| async move {
            order_store::migrate(&order_store::StoreConfig::new(url))
                .await
                .map(|_| ())
        })
        .await
    }

    fn named(name: String) -> Self {
        let url = url_for_database(&settings().pg_admin_url, &name);
        Self { name, url }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A superuser URL for this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A superuser connection to this database.
    pub async fn connect(&self) -> Client {
        match try_connect(&self.url).await {
            Ok(client) => client,
            Err(message) => panic!("{message}"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the database of the failed test: {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop may run inside or outside a runtime; a thread with its own runtime works in both.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let admin = try_connect(&settings().pg_admin_url).await?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| describe(&e))
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

async fn create_database(admin: &Client, name: &str, template: Option<&str>) {
    let statement = match template {
        Some(template) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""),
        None => format!("CREATE DATABASE \"{name}\""),
    };
    // A template that another session touches at this instant makes CREATE DATABASE fail
    // with "being accessed by other users"; that passes within moments.
    let mut attempt = 0;
    loop {
        match admin.batch_execute(&statement).await {
            Ok(()) => return,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{statement}: {}", describe(&e)),
        }
    }
}

async fn ensure_template<F, Fut, E>(admin: &Client, template: &str, init: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    if template_exists(admin, template).await.unwrap_or(false) {
        return;
    }
    // One builder across all test processes; the others wait and then find the template.
    admin
        .batch_execute("SELECT pg_advisory_lock(7403202611210001)")
        .await
        .unwrap_or_else(|e| panic!("taking the template lock: {}", describe(&e)));
    let result: Result<(), String> = async {
        if template_exists(admin, template).await.map_err(|e| describe(&e))? {
            return Ok(());
        }
        let building = format!("{template}_building");
        // Separate statements: DROP/CREATE DATABASE refuse to run inside a transaction block.
        for statement in [
            format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
            format!("CREATE DATABASE \"{building}\""),
        ] {
            admin.batch_execute(&statement).await.map_err(|e| describe(&e))?;
        }
        init(url_for_database(&settings().pg_admin_url, &building))
            .await
            .map_err(|e| format!("building template {template}: {e}"))?;
        for statement in [
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{building}'"
            ),
            format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\""),
        ] {
            admin.batch_execute(&statement).await.map_err(|e| describe(&e))?;
        }
        Ok(())
    }
    .await;
    let _ = admin
        .batch_execute("SELECT pg_advisory_unlock(7403202611210001)")
        .await;
    if let Err(message) = result {
        panic!("{message}");
    }
}

async fn template_exists(admin: &Client, template: &str) -> Result<bool, tokio_postgres::Error> {
    let row = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            url_for_database("postgres://u:p@127.0.0.1:5432/postgres", "x"),
            "postgres://u:p@127.0.0.1:5432/x"
        );
        assert_eq!(
            url_for_database("postgres://u:p@h/postgres?sslmode=require", "x"),
            "postgres://u:p@h/x?sslmode=require"
        );
    }

    #[tokio::test]
    async fn an_absent_server_fails_with_the_command_that_starts_it() {
        // Port 1 on loopback: nothing listens there.
        let error = try_connect("postgres://postgres:x@127.0.0.1:1/postgres")
            .await
            .err()
            .unwrap_or_default();
        assert!(error.contains("PostgreSQL is not reachable"), "{error}");
        assert!(error.contains(START_COMMAND), "{error}");
    }
}
