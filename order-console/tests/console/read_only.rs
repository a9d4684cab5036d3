//! The console connects only as a role that cannot write.

use order_console::{Console, StartError};
use order_testkit::pg::TestDatabase;

use crate::support::*;

#[tokio::test]
async fn a_role_that_may_write_is_refused_at_start() {
    let db = TestDatabase::migrated().await;
    ensure_users(&db).await;
    for (url, expected) in [
        (db.url().to_owned(), "is a superuser"),
        (url_as(db.url(), WRITER), "may write orders."),
    ] {
        let error = Console::build_with_sqs(settings(&url, &[]), None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{expected}: the console started"));
        assert!(matches!(error, StartError::Database(_)), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("orders_readonly"), "{message}");
        assert!(!message.contains("console-test-password"), "{message}");
    }
}

#[tokio::test]
async fn a_database_that_cannot_answer_yet_does_not_stop_the_console() {
    // Nothing listens on port 1: the console starts, says what is wrong and is not ready.
    let console = start_with(
        settings(
            "postgres://order_console:x@127.0.0.1:1/orders?connect_timeout=1",
            &["--db-connect-timeout-ms", "500"],
        ),
        None,
    )
    .await;
    let ready = get(console.addr, "/readyz").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.starts_with("not ready: database unavailable"),
        "{}",
        ready.body
    );
    assert_eq!(get(console.addr, "/healthz").await.status, 200);
    let page = get(console.addr, "/subscriptions").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("database unavailable"), "{}", page.body);
    assert!(
        !page.body.contains(":x@"),
        "the password is shown: {}",
        page.body
    );
}
