//! Reading exports that are not what they should be, without a database: every field of the
//! export reaches the log or a reject, never neither.

// Tests unwrap freely: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use order_import::source::{Format, Record, open};
use order_import::tell::{Ids, tell};

/// The records of an export: (order id, None) for an order read, (order id, Some(reason)) for
/// a reject.
fn records(path: &Path, format: Format) -> std::io::Result<Vec<(Option<String>, Option<String>)>> {
    let mut source = open(path, format, Default::default())?;
    let mut out = Vec::new();
    while let Some(record) = source.next_record() {
        out.push(match record? {
            Record::Order { order, .. } => (Some(order.order_id.clone()), None),
            Record::Unreadable { reject, .. } => (reject.order_id, Some(reject.reason)),
        });
    }
    Ok(out)
}

const ORDERS: &str = "order_id,customer_id,currency,shipping_method,recipient,line1,line2,city,region,postal_code,country";

/// A CSV export of `orders` rows (after the header) with one line and a placed status each.
fn csv_export(dir: &Path, orders_header: &str, orders: &[&str], history: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, header: &str, rows: &[&str]| {
        let mut text = format!("{header}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
    };
    write("orders", orders_header, orders);
    let ids: Vec<String> = orders
        .iter()
        .filter_map(|row| row.split(',').next())
        .filter(|id| id.starts_with('A'))
        .map(str::to_owned)
        .collect();
    let lines: Vec<String> = ids.iter().map(|id| format!("{id},SKU-1,1,1000")).collect();
    write(
        "order_lines",
        "order_id,sku,quantity,unit_price_minor",
        &lines.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    write("payments", "order_id,payment_id,currency,amount_minor", &[]);
    write("shipments", "order_id,carrier,tracking_number", &[]);
    write("refunds", "order_id,currency,amount_minor,refunded_at", &[]);
    write("status_history", "order_id,status,at,reason", history);
}

fn order_row(id: &str) -> String {
    format!("{id},C1,EUR,standard,Ada,1 Main St,,Porto,,4000-322,PT")
}

#[test]
fn a_csv_row_wider_than_its_header_is_rejected_not_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let (a1, a2) = (order_row("A1"), order_row("A2"));
    csv_export(
        dir.path(),
        ORDERS,
        &[&a1, &a2],
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A1,cancelled,2019-01-02T00:00:00Z,customer asked, refund to card 1234",
            "A2,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let records = records(dir.path(), Format::Csv).unwrap();
    let a1 = records
        .iter()
        .find(|(id, _)| id.as_deref() == Some("A1"))
        .unwrap();
    let reason = a1.1.as_deref().expect("A1 is rejected");
    assert!(
        reason.contains("5 fields where the header has 4"),
        "{reason}"
    );
    assert!(records.contains(&(Some("A2".into()), None)), "{records:?}");
}

#[test]
fn a_csv_column_the_import_does_not_read_stops_it_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let row = format!("{},extra", order_row("A1"));
    csv_export(
        dir.path(),
        &format!("{ORDERS},line3"),
        &[&row],
        &["A1,placed,2019-01-01T00:00:00Z,"],
    );
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(
        error.contains("\"line3\"") && error.contains("would be lost"),
        "{error}"
    );
    // A column twice, likewise.
    let dir = tempfile::tempdir().unwrap();
    let row = format!("{},PT", order_row("A1"));
    csv_export(
        dir.path(),
        &format!("{ORDERS},country"),
        &[&row],
        &["A1,placed,2019-01-01T00:00:00Z,"],
    );
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(error.contains("twice"), "{error}");
}

#[test]
fn an_unclosed_csv_quote_stops_the_import_before_anything_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = ["A1", "A3", "A4", "A5"]
        .iter()
        .map(|id| order_row(id))
        .collect();
    let broken = "A2,C1,EUR,standard,Ada,\"1 Main St,,Porto,,4000-322,PT".to_owned();
    let orders = [&rows[0], &broken, &rows[1], &rows[2], &rows[3]];
    let history: Vec<String> = ["A1", "A2", "A3", "A4", "A5"]
        .iter()
        .map(|id| format!("{id},placed,2019-01-01T00:00:00Z,"))
        .collect();
    csv_export(
        dir.path(),
        ORDERS,
        &orders.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        &history.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(
        error.contains("orders.csv line 3") && error.contains("quote"),
        "{error}"
    );
    // The quote left open in the last column (the row's width stays right): the reason of a
    // status swallows the rows after it.
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = ["A1", "A2", "A3"].iter().map(|id| order_row(id)).collect();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,\"customer changed their mind",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(
        error.contains("status_history.csv line 3") && error.contains("quote"),
        "{error}"
    );
    // A quoted field over several lines in a row of the right width is an address, not that.
    let dir = tempfile::tempdir().unwrap();
    let multi = "A1,C1,EUR,standard,Ada,\"1 Main St\nBack door\",,Porto,,4000-322,PT";
    csv_export(
        dir.path(),
        ORDERS,
        &[multi],
        &["A1,placed,2019-01-01T00:00:00Z,"],
    );
    assert_eq!(
        records(dir.path(), Format::Csv).unwrap(),
        [(Some("A1".into()), None)]
    );
}

const GOOD: &str = r#"{"order_id":"B1","customer_id":"C1","currency":"EUR","shipping_method":"standard","ship_to":{"recipient":"Ada","line1":"1 Main St","city":"Porto","postal_code":"4000-322","country":"PT"},"lines":[{"sku":"SKU-1","quantity":1,"unit_price_minor":1000}],"status_history":[{"status":"placed","at":"2019-01-01T00:00:00Z"}]}"#;

/// A quote left open early in a large table: the reader stops at the record size limit with
/// the line the row started on, instead of holding the rest of the file in memory.
#[test]
fn an_unclosed_quote_in_a_large_table_stops_at_the_record_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..40_000).map(|n| format!("A{n:07}")).collect();
    let mut rows: Vec<String> = ids.iter().map(|id| order_row(id)).collect();
    rows[1] = format!(
        "{},C1,EUR,standard,\"Ada,1 Main St,,Porto,,4000-322,PT",
        ids[1]
    );
    let history: Vec<String> = ids
        .iter()
        .map(|id| format!("{id},placed,2019-01-01T00:00:00Z,"))
        .collect();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &history.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let size = std::fs::metadata(dir.path().join("orders.csv"))
        .unwrap()
        .len();
    assert!(size > 2 << 20, "{size}");
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(
        error.contains("orders.csv line 3") && error.contains("longer than"),
        "{error}"
    );
}

#[test]
fn a_json_lines_export_may_start_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.jsonl");
    std::fs::write(&path, format!("\u{feff}{GOOD}\n")).unwrap();
    assert_eq!(
        records(&path, Format::Jsonl).unwrap(),
        [(Some("B1".into()), None)]
    );
}

#[test]
fn a_directory_is_not_a_json_lines_export() {
    let dir = tempfile::tempdir().unwrap();
    let error = records(dir.path(), Format::Jsonl).unwrap_err().to_string();
    assert!(error.contains("--format csv"), "{error}");
}

/// The domain refuses what the log could not hold: a payment or a shipment the history never
/// reaches, a reason on a status that records none.
#[test]
fn data_the_history_would_not_record_rejects_its_order() {
    let ids = Ids::new("legacy");
    let parse = |text: &str| serde_json::from_str(text).unwrap();
    let with = |extra: &str| {
        GOOD.replacen(
            r#""status_history""#,
            &format!("{extra},\"status_history\""),
            1,
        )
    };
    let payment = with(r#""payments":[{"payment_id":"P","currency":"EUR","amount_minor":1000}]"#);
    let reason = tell(&parse(&payment), &ids).unwrap_err();
    assert!(reason.starts_with("payments[0]"), "{reason}");
    let shipment = with(r#""shipments":[{"carrier":"DHL","tracking_number":"T1"}]"#);
    let reason = tell(&parse(&shipment), &ids).unwrap_err();
    assert!(reason.starts_with("shipments[0]"), "{reason}");
    let noted = GOOD.replace(
        r#"{"status":"placed","at":"2019-01-01T00:00:00Z"}"#,
        r#"{"status":"placed","at":"2019-01-01T00:00:00Z","reason":"phoned in"}"#,
    );
    let reason = tell(&parse(&noted), &ids).unwrap_err();
    assert!(
        reason.contains(".reason") && reason.contains("lost"),
        "{reason}"
    );
    // The record without them is an order.
    assert!(tell(&parse(GOOD), &ids).is_ok());
}

/// A CSV export of `orders` (ids) with one placed status each, and the given order_lines rows.
fn csv_export_with_lines(dir: &Path, orders: &[&str], lines: &[String]) {
    let rows: Vec<String> = orders.iter().map(|id| order_row(id)).collect();
    let history: Vec<String> = orders
        .iter()
        .map(|id| format!("{id},placed,2019-01-01T00:00:00Z,"))
        .collect();
    csv_export(
        dir,
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &history.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut text = "order_id,sku,quantity,unit_price_minor\n".to_owned();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(dir.join("order_lines.csv"), text).unwrap();
}

/// The rejects of an export: (file, line, order id, reason).
fn rejects(path: &Path) -> Vec<(String, u64, Option<String>, String)> {
    let mut source = open(path, Format::Csv, Default::default()).unwrap();
    let mut out = Vec::new();
    while let Some(record) = source.next_record() {
        if let Record::Unreadable { reject, .. } = record.unwrap() {
            out.push((reject.file, reject.line, reject.order_id, reject.reason));
        }
    }
    out
}

/// One order's rows of a table are held in memory together: past 10,000 rows (or 1 MiB) the
/// rest are read and dropped, and the order is rejected once, naming the table and the cap.
#[test]
fn an_order_with_more_rows_in_a_table_than_the_cap_is_rejected_once() {
    let cap = order_import::csv::MAX_ROWS_PER_ORDER;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["A1,SKU-1,1,1000".to_owned()];
    lines.extend((0..cap + 5).map(|n| format!("A2,SKU-{n},1,1000")));
    lines.push("A3,SKU-1,1,1000".to_owned());
    csv_export_with_lines(dir.path(), &["A1", "A2", "A3"], &lines);
    let records = records(dir.path(), Format::Csv).unwrap();
    assert_eq!(records.len(), 3, "{:?}", &records[..records.len().min(5)]);
    assert_eq!(records[0], (Some("A1".into()), None));
    assert_eq!(records[2], (Some("A3".into()), None));
    let reason = records[1].1.as_deref().unwrap_or_default();
    assert!(
        records[1].0.as_deref() == Some("A2")
            && reason.contains("order_lines.csv")
            && reason.contains(&format!("at most {cap} rows")),
        "{reason}"
    );
    // Its line: the first row past the cap (the header is line 1, A1's row line 2).
    let found = rejects(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].0.as_str(), found[0].1),
        ("order_lines.csv", cap as u64 + 3)
    );

    // Fewer rows, but more than 1 MiB of them.
    let dir = tempfile::tempdir().unwrap();
    let sku = "S".repeat(200);
    let mut lines: Vec<String> = (0..(1 << 20) / 200 + 10)
        .map(|n| format!("A2,{sku}{n},1,1000"))
        .collect();
    assert!(lines.len() < cap);
    lines.push("A3,SKU-1,1,1000".to_owned());
    csv_export_with_lines(dir.path(), &["A2", "A3"], &lines);
    let found = rejects(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].0 == "order_lines.csv" && found[0].3.contains("1 MiB"),
        "{found:?}"
    );
}

/// Rows without an order are handed out as they are found, not gathered first: the first
/// comes long before the reader has read them all.
#[test]
fn rows_without_an_order_are_handed_out_as_they_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..400_000)
        .map(|n| format!("A{n:07},SKU-1,1,1000"))
        .collect();
    csv_export_with_lines(dir.path(), &["B1"], &lines);
    let mut source = open(dir.path(), Format::Csv, Default::default()).unwrap();
    let progress = source.progress();
    let first = source.next_record().unwrap().unwrap();
    assert!(
        matches!(&first, Record::Unreadable { reject, order: false } if reject.line == 2),
        "{first:?}"
    );
    assert!(
        progress.read() < progress.total() / 4,
        "{} of {} bytes read for the first reject",
        progress.read(),
        progress.total()
    );
    let mut count = 1;
    while let Some(record) = source.next_record() {
        if let Record::Unreadable { order: false, .. } = record.unwrap() {
            count += 1;
        }
    }
    assert_eq!(count, 400_000);
}

/// A well-quoted row longer than a record may be rejects its order, as in JSON Lines; the
/// rows after it are read, at their lines.
#[test]
fn a_well_formed_csv_row_over_the_record_limit_rejects_its_order_only() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = ["A1", "A2", "A3", "A4"]
        .iter()
        .map(|id| order_row(id))
        .collect();
    let long = format!(
        "A2,cancelled,2019-01-02T00:00:00Z,\"{}\"\"quoted\"\", and, commas\"",
        "x".repeat(3 << 19)
    );
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,",
            &long,
            "",
            "A3,placed,2019-01-01T00:00:00Z,",
            "A4,placed,2019-01-01T00:00:00Z,,too wide",
        ],
    );
    let found = rejects(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2.as_deref()),
        ("status_history.csv", 4, Some("A2"))
    );
    assert!(found[0].3.contains("longer than"), "{found:?}");
    assert_eq!(
        (found[1].0.as_str(), found[1].1, found[1].2.as_deref()),
        ("status_history.csv", 7, Some("A4"))
    );
    let read = records(dir.path(), Format::Csv).unwrap();
    assert!(read.contains(&(Some("A1".into()), None)), "{read:?}");
    assert!(read.contains(&(Some("A3".into()), None)), "{read:?}");

    // In orders.csv, unquoted, likewise.
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "A2,C1,EUR,standard,Ada,{},,Porto,,4000-322,PT",
        "x".repeat(3 << 19)
    );
    let (a1, a3) = (order_row("A1"), order_row("A3"));
    csv_export(
        dir.path(),
        ORDERS,
        &[&a1, &long, &a3],
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let found = rejects(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2.as_deref()),
        ("orders.csv", 3, Some("A2"))
    );
    let read = records(dir.path(), Format::Csv).unwrap();
    assert!(read.contains(&(Some("A3".into()), None)), "{read:?}");

    // Over the limit and running over several lines: a quote that ran away.
    let dir = tempfile::tempdir().unwrap();
    let long = format!(
        "A2,cancelled,2019-01-02T00:00:00Z,\"{}\nA3,placed,2019-01-01T00:00:00Z,\"",
        "x".repeat(3 << 19)
    );
    csv_export(
        dir.path(),
        ORDERS,
        &[&a1, &order_row("A2"), &a3],
        &["A1,placed,2019-01-01T00:00:00Z,", &long],
    );
    let error = records(dir.path(), Format::Csv).unwrap_err().to_string();
    assert!(
        error.contains("status_history.csv line 3") && error.contains("several lines"),
        "{error}"
    );
}

/// A quoted field over several lines, closed on its row, is that row's field (its order is
/// judged as any other), whatever its lines hold; only a quote that runs away (a row of the
/// wrong width, or open at the end of the file) stops the import.
#[test]
fn a_closed_multiline_field_with_commas_is_a_field_not_a_runaway_quote() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = ["A1", "A2"].iter().map(|id| order_row(id)).collect();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A1,cancelled,2019-01-02T00:00:00Z,\"customer wrote:\nno, thanks, bye, really\"",
            "A2,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let records = records(dir.path(), Format::Csv).unwrap();
    assert_eq!(
        records,
        [(Some("A1".into()), None), (Some("A2".into()), None)]
    );
}

/// The rejects of an export, by order id: (file, line, reason) of each (one per order).
fn rejects_by_order(path: &Path) -> std::collections::BTreeMap<String, (String, u64, String)> {
    rejects(path)
        .into_iter()
        .map(|(file, line, id, reason)| (id.unwrap_or_default(), (file, line, reason)))
        .collect()
}

/// A quote left open in a row and closed by a stray quote rows later keeps the row the right
/// width: the rows between are that field's text. A field that cannot hold a line break (a
/// time, here) holding one says so: its order is rejected naming the quote, and so is every
/// order whose row it swallowed, so that no row is lost without a word (and a run of the
/// fixed export imports them all).
#[test]
fn rows_swallowed_by_a_stray_quote_reject_every_order_they_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = ["A1", "A2", "A3"].iter().map(|id| order_row(id)).collect();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    std::fs::write(
        dir.path().join("refunds.csv"),
        "order_id,currency,amount_minor,refunded_at\n\
         A1,EUR,58340,2019-01-04T19:27:25Z\n\
         A1,EUR,100,\"2019-01-05T00:00:00Z\n\
         A2,EUR,17864,2019-01-04T22:29:47Z\"\n\
         A3,EUR,100,2019-01-06T00:00:00Z\n",
    )
    .unwrap();
    let by_order = rejects_by_order(dir.path());
    assert_eq!(
        by_order.keys().collect::<Vec<_>>(),
        ["A1", "A2"],
        "{by_order:#?}"
    );
    let (file, line, reason) = &by_order["A1"];
    assert_eq!((file.as_str(), *line), ("refunds.csv", 3), "{reason}");
    assert!(
        reason.contains("refunded_at") && reason.contains("line 4") && reason.contains("quote"),
        "{reason}"
    );
    let (file, line, reason) = &by_order["A2"];
    assert_eq!((file.as_str(), *line), ("refunds.csv", 4), "{reason}");
    assert!(
        reason.contains("swallowed") && reason.contains("refunds.csv line 3"),
        "{reason}"
    );

    // A row swallowed by a quote in a column that can never hold a line break counts by its
    // width and order id alone: one with a bad value of its own (an amount that is no number)
    // still has its order rejected, not imported without the row.
    let dir = tempfile::tempdir().unwrap();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    std::fs::write(
        dir.path().join("refunds.csv"),
        "order_id,currency,amount_minor,refunded_at\n\
         A1,EUR,100,\"2019-01-05T00:00:00Z\n\
         A2,EUR,a lot,2019-01-04T22:29:47Z\"\n\
         A3,EUR,100,2019-01-06T00:00:00Z\n",
    )
    .unwrap();
    let by_order = rejects_by_order(dir.path());
    assert_eq!(
        by_order.keys().collect::<Vec<_>>(),
        ["A1", "A2"],
        "{by_order:#?}"
    );

    // In a free-text column (a status's reason, last here): its own order is rejected for the
    // line break (the domain's rule), and the orders of the rows it swallowed with it.
    let dir = tempfile::tempdir().unwrap();
    csv_export(
        dir.path(),
        ORDERS,
        &rows.iter().map(String::as_str).collect::<Vec<_>>(),
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A1,cancelled,2019-01-02T00:00:00Z,\"customer changed their mind",
            "A2,placed,2019-01-01T00:00:00Z,",
            "A2,cancelled,2019-01-02T00:00:00Z,out of stock\"",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let by_order = rejects_by_order(dir.path());
    assert_eq!(by_order.keys().collect::<Vec<_>>(), ["A2"], "{by_order:#?}");
    let (file, line, reason) = &by_order["A2"];
    assert_eq!(
        (file.as_str(), *line),
        ("status_history.csv", 4),
        "{reason}"
    );
    assert!(reason.contains("status_history.csv line 3"), "{reason}");
    // (A1 reads, and the domain refuses its reason's line break.)
    let records = records(dir.path(), Format::Csv).unwrap();
    assert!(records.contains(&(Some("A1".into()), None)), "{records:?}");
    assert!(records.contains(&(Some("A3".into()), None)), "{records:?}");

    // A row of orders.csv swallowed: the rows of that order in the other tables say why they
    // have no order.
    let dir = tempfile::tempdir().unwrap();
    let stray = "A1,C1,EUR,standard,Ada,1 Main St,,Porto,,4000-322,\"PT".to_owned();
    let swallowed = "A2,C1,EUR,standard,Ada,1 Main St,,Porto,,4000-322,PT\"".to_owned();
    csv_export(
        dir.path(),
        ORDERS,
        &[&stray, &swallowed, &rows[2]],
        &[
            "A1,placed,2019-01-01T00:00:00Z,",
            "A2,placed,2019-01-01T00:00:00Z,",
            "A3,placed,2019-01-01T00:00:00Z,",
        ],
    );
    let all = rejects(dir.path());
    let a1 = all.iter().find(|r| r.2.as_deref() == Some("A1")).unwrap();
    assert_eq!((a1.0.as_str(), a1.1), ("orders.csv", 2), "{all:#?}");
    assert!(a1.3.contains("country") && a1.3.contains("A2"), "{all:#?}");
    let a2: Vec<_> = all
        .iter()
        .filter(|r| r.2.as_deref() == Some("A2"))
        .collect();
    assert!(!a2.is_empty(), "{all:#?}");
    for row in a2 {
        assert!(row.3.contains("orders.csv line 2"), "{all:#?}");
    }
    assert!(
        !all.iter().any(|r| r.2.as_deref() == Some("A3")),
        "{all:#?}"
    );
}

/// A quoted field over several lines swallows only the lines that read as rows of its table:
/// the table's number of fields, every column as the reader takes it (a known status, an
/// RFC 3339 time, ...), and an order id after the row's own and not after the table's next
/// row's. A reason whose second line has the table's comma count, or a tracking number whose
/// second line is an order id, swallows nothing: the orders named there are imported.
#[test]
fn lines_of_a_quoted_field_that_do_not_read_as_rows_swallow_no_order() {
    use order_import::legacy::IdOrder;
    let all = |path: &Path, id_order: IdOrder| {
        let mut source = open(path, Format::Csv, id_order).unwrap();
        let mut out = Vec::new();
        while let Some(record) = source.next_record() {
            out.push(match record.unwrap() {
                Record::Order { order, .. } => (Some(order.order_id.clone()), None),
                Record::Unreadable { reject, .. } => (reject.order_id, Some(reject.reason)),
            });
        }
        out
    };
    let export = |dir: &Path, ids: &[&str], history: &[&str], shipments: &[&str]| {
        let write = |name: &str, header: &str, rows: Vec<String>| {
            let mut text = format!("{header}\n");
            for row in rows {
                text.push_str(&row);
                text.push('\n');
            }
            std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
        };
        write(
            "orders",
            ORDERS,
            ids.iter().map(|id| order_row(id)).collect(),
        );
        write(
            "order_lines",
            "order_id,sku,quantity,unit_price_minor",
            ids.iter().map(|id| format!("{id},SKU-1,1,1000")).collect(),
        );
        write(
            "payments",
            "order_id,payment_id,currency,amount_minor",
            vec![],
        );
        let shipments = shipments.iter().map(|s| s.to_string()).collect();
        write("shipments", "order_id,carrier,tracking_number", shipments);
        write(
            "refunds",
            "order_id,currency,amount_minor,refunded_at",
            vec![],
        );
        let history = history.iter().map(|s| s.to_string()).collect();
        write("status_history", "order_id,status,at,reason", history);
    };
    for id_order in [IdOrder::Text, IdOrder::Numeric] {
        // A reason (free text, the last column) over three lines: the second has the table's
        // comma count, the third reads as a whole row but of an order after the next row's.
        let dir = tempfile::tempdir().unwrap();
        let ids = ["1001", "1002", "1003", "1004", "1005", "1009"];
        let mut history: Vec<String> = ids
            .iter()
            .map(|id| format!("{id},placed,2019-01-01T00:00:00Z,"))
            .collect();
        history.insert(
            1,
            "1001,cancelled,2019-01-02T00:00:00Z,\"merged into\n1002, 1003, 1004, 1005\n\
             1009,cancelled,2019-01-02T00:00:00Z,see 1009\""
                .into(),
        );
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        export(dir.path(), &ids, &history, &[]);
        let records = all(dir.path(), id_order);
        let expected: Vec<(Option<String>, Option<String>)> =
            ids.iter().map(|id| (Some(id.to_string()), None)).collect();
        assert_eq!(records, expected, "{id_order:?}");

        // A tracking number (not free text) holding a line break: its own order is rejected,
        // naming the field, and the order id on its second line is not taken for a row.
        let dir = tempfile::tempdir().unwrap();
        let ids = ["122", "123", "124"];
        let history: Vec<String> = ids
            .iter()
            .map(|id| format!("{id},placed,2019-01-01T00:00:00Z,"))
            .collect();
        let history: Vec<&str> = history.iter().map(String::as_str).collect();
        export(dir.path(), &ids, &history, &["122,DHL,\"ABC\n123\""]);
        let records = all(dir.path(), id_order);
        assert_eq!(records.len(), 3, "{records:?}");
        let reason = records[0].1.as_deref().unwrap_or_default();
        assert_eq!(records[0].0.as_deref(), Some("122"), "{records:?}");
        assert!(
            reason.contains("tracking_number") && !reason.contains("swallowed"),
            "{reason}"
        );
        assert_eq!(records[1], (Some("123".into()), None), "{id_order:?}");
        assert_eq!(records[2], (Some("124".into()), None), "{id_order:?}");
    }
}

/// A JSON Lines export that is not one: a CSV table, a file in UTF-16 or UTF-32, or one with
/// NUL bytes stops the import when it is opened (before anything is written), with one line
/// that names the problem and what to pass instead, instead of a reject for every line.
#[test]
fn a_file_that_is_not_json_lines_stops_the_import_when_it_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let error = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        match open(&path, Format::Jsonl, Default::default()) {
            Ok(_) => panic!("{name} opened as JSON Lines"),
            Err(error) => error.to_string(),
        }
    };
    let csv = format!("{ORDERS}\n{}\n", order_row("A1"));
    let message = error("orders.csv", csv.as_bytes());
    assert!(
        message.contains("CSV") && message.contains("--format csv"),
        "{message}"
    );
    // With a UTF-8 byte order mark too.
    let message = error("orders-bom.csv", format!("\u{feff}{csv}").as_bytes());
    assert!(message.contains("CSV"), "{message}");
    let utf16: Vec<u8> = format!("\u{feff}{GOOD}\n")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let message = error("utf16.jsonl", &utf16);
    assert!(
        message.contains("UTF-16") && message.contains("UTF-8"),
        "{message}"
    );
    let utf16be: Vec<u8> = format!("\u{feff}{GOOD}\n")
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let message = error("utf16be.jsonl", &utf16be);
    assert!(message.contains("UTF-16"), "{message}");
    let utf32: Vec<u8> = format!("\u{feff}{GOOD}\n")
        .chars()
        .flat_map(|c| (c as u32).to_le_bytes())
        .collect();
    let message = error("utf32.jsonl", &utf32);
    assert!(message.contains("UTF-32"), "{message}");
    // UTF-16 without a byte order mark: NUL bytes.
    let message = error("nul.jsonl", &utf16[2..]);
    assert!(message.contains("NUL"), "{message}");
    let message = error("nul-end.jsonl", format!("{GOOD}\n\0").as_bytes());
    assert!(message.contains("NUL"), "{message}");
    // One JSON array, or pretty-printed JSON (a reject for every line, tens of millions for
    // a big export), and line ends of carriage returns only (the whole file one record).
    let value: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    let array = serde_json::to_string(&[&value, &value]).unwrap();
    let message = error("array.jsonl", format!("  \n{array}\n").as_bytes());
    assert!(
        message.contains("JSON array") && message.contains("jq -c '.[]'"),
        "{message}"
    );
    let pretty = serde_json::to_string_pretty(&value).unwrap();
    let message = error("pretty.jsonl", format!("{pretty}\n").as_bytes());
    assert!(
        message.contains("pretty-printed") && message.contains("jq -c"),
        "{message}"
    );
    let message = error("cr.jsonl", format!("{GOOD}\r{GOOD}\r").as_bytes());
    assert!(
        message.contains("carriage returns") && message.contains("tr"),
        "{message}"
    );
    // A JSON Lines export still opens, with any line end, or none after its last record.
    for (name, text) in [
        ("good.jsonl", format!("{GOOD}\n")),
        ("crlf.jsonl", format!("{GOOD}\r\n{GOOD}\r\n")),
        ("one-cr.jsonl", format!("{GOOD}\r")),
        ("no-end.jsonl", GOOD.to_owned()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        assert!(
            open(&path, Format::Jsonl, Default::default()).is_ok(),
            "{name}"
        );
    }
}

/// A CSV row of a test: its order id and its text.
type Row = (String, String);

/// Every row of every CSV table is reported at the line `grep -n` puts it on, whatever the
/// line endings (`\n`, `\r\n` as RFC 4180 and Excel write them, or a mix), after empty lines,
/// after a quoted field that holds line breaks, and after a row over the record limit: the
/// orders read (their row of orders.csv, and each list entry's row, as a reason naming it is
/// located) and every reject.
#[test]
fn csv_rows_are_reported_at_their_lines_with_any_line_endings() {
    // Each row: its table, its order id, a tag naming it, its text (`\n` inside a quoted field
    // is written as the file's line ending); `None` is an empty line.
    let placed = "placed,2019-01-01T00:00:00Z,";
    let long = format!(
        "A6,C6,EUR,standard,{},1 Main St,,Porto,,4000-322,PT",
        "x".repeat(3 << 19)
    );
    let tables: Vec<(&str, &str, Vec<Option<Row>>)> = vec![
        (
            "orders",
            ORDERS,
            vec![
                Some((
                    "A1".into(),
                    "A1,C1,EUR,standard,\"Ada\nLovelace\",1 Main St,,Porto,,4000-322,PT".into(),
                )),
                None,
                Some(("A2".into(), order_row("A2"))),
                Some(("A3".into(), order_row("A3"))),
                Some(("A4".into(), order_row("A4"))),
                Some(("A6".into(), long)),
                None,
                Some(("A7".into(), order_row("A7"))),
            ],
        ),
        (
            "order_lines",
            "order_id,sku,quantity,unit_price_minor",
            vec![
                Some(("A0".into(), "A0,SKU-1,1,1000".into())),
                Some(("A1".into(), "A1,SKU-1,1,1000".into())),
                Some(("A2".into(), "A2,SKU-1,two,1000".into())),
                None,
                Some(("A3".into(), "A3,SKU-1,1,1000".into())),
                Some(("A3".into(), "A3,SKU-2,2,1000".into())),
                Some(("A4".into(), "A4,SKU-1,1,1000".into())),
                Some(("A7".into(), "A7,SKU-1,1,1000".into())),
            ],
        ),
        (
            "payments",
            "order_id,payment_id,currency,amount_minor",
            vec![None, Some(("A3".into(), "A3,PAY-1,EUR,3000".into()))],
        ),
        (
            "shipments",
            "order_id,carrier,tracking_number",
            vec![
                Some(("A3".into(), "A3,DHL,TRK1".into())),
                Some(("A4".into(), "A4,DHL,\"TRK\n2\"".into())),
            ],
        ),
        (
            "refunds",
            "order_id,currency,amount_minor,refunded_at",
            vec![
                Some(("A3".into(), "A3,EUR,10,2019-01-04T00:00:00Z".into())),
                Some(("A3".into(), "A3,EUR,20,2019-01-05T00:00:00Z".into())),
            ],
        ),
        (
            "status_history",
            "order_id,status,at,reason",
            vec![
                Some(("A1".into(), format!("A1,{placed}"))),
                Some(("A2".into(), format!("A2,{placed}"))),
                Some(("A3".into(), format!("A3,{placed}"))),
                None,
                Some(("A3".into(), "A3,paid,2019-01-02T00:00:00Z,".into())),
                Some(("A3".into(), "A3,shipped,2019-01-03T00:00:00Z,".into())),
                Some((
                    "A3".into(),
                    "A3,cancelled,2019-01-03T00:00:00Z,\"a\nreason\"".into(),
                )),
                Some(("A4".into(), format!("A4,{placed}"))),
                Some(("A6".into(), format!("A6,{placed}"))),
                Some(("A7".into(), format!("A7,{placed}"))),
                Some(("A9".into(), format!("A9,{placed}"))),
            ],
        ),
    ];
    for (name, endings) in [
        ("\\n", ["\n", "\n"]),
        ("\\r\\n", ["\r\n", "\r\n"]),
        ("a mix", ["\r\n", "\n"]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        // (file, order id) -> the line of each of its rows, in file order.
        let mut want: std::collections::BTreeMap<(String, String), Vec<u64>> = Default::default();
        for (table, header, rows) in &tables {
            let file = format!("{table}.csv");
            let mut text = String::new();
            let mut ending = endings.iter().cycle();
            text.push_str(header);
            text.push_str(ending.next().unwrap());
            for row in rows {
                let end = ending.next().unwrap();
                if let Some((id, row)) = row {
                    let line = 1 + text.matches('\n').count() as u64;
                    want.entry((file.clone(), id.clone()))
                        .or_default()
                        .push(line);
                    text.push_str(&row.replace('\n', end));
                }
                text.push_str(end);
            }
            std::fs::write(dir.path().join(&file), text).unwrap();
        }
        let line_of = |file: &str, id: &str, index: usize| -> u64 {
            want[&(file.to_owned(), id.to_owned())][index]
        };
        let mut source = open(dir.path(), Format::Csv, Default::default()).unwrap();
        let mut seen = Vec::new();
        while let Some(record) = source.next_record() {
            match record.unwrap() {
                Record::Order {
                    order, line, rows, ..
                } => {
                    let id = order.order_id.as_str();
                    seen.push(id.to_owned());
                    assert_eq!(line, line_of("orders.csv", id, 0), "{name}: {id}'s row");
                    for (list, file, count) in [
                        ("lines", "order_lines.csv", order.lines.len()),
                        ("payments", "payments.csv", order.payments.len()),
                        ("shipments", "shipments.csv", order.shipments.len()),
                        ("refunds", "refunds.csv", order.refunds.len()),
                        (
                            "status_history",
                            "status_history.csv",
                            order.status_history.len(),
                        ),
                    ] {
                        for index in 0..count {
                            assert_eq!(
                                rows.locate(&format!("{list}[{index}]: bad")),
                                Some((file, line_of(file, id, index))),
                                "{name}: {id}'s {list}[{index}]"
                            );
                        }
                    }
                }
                Record::Unreadable { reject, .. } => {
                    let id = reject.order_id.clone().unwrap();
                    seen.push(format!("{id}: {}", reject.reason));
                    let index = usize::from(reject.file == "order_lines.csv" && id == "A3");
                    assert_eq!(
                        reject.line,
                        line_of(&reject.file, &id, index),
                        "{name}: {reject:?}"
                    );
                }
            }
        }
        // Every order and reject was looked at: A0 and A9 have no order, A2's quantity and
        // A4's tracking number do not read, A6's row is too long.
        assert_eq!(seen.len(), 8, "{name}: {seen:?}");
        for (id, why) in [
            ("A0", "no order A0"),
            ("A2", "quantity"),
            ("A4", "tracking_number"),
            ("A6", "longer than"),
            ("A9", "no order A9"),
        ] {
            assert!(
                seen.iter()
                    .any(|s| s.starts_with(&format!("{id}: ")) && s.contains(why)),
                "{name}: {id} {why}: {seen:?}"
            );
        }
        for id in ["A1", "A3", "A7"] {
            assert!(seen.iter().any(|s| s == id), "{name}: {id}: {seen:?}");
        }
    }
}

/// A record is a JSON object with named fields, and so is each object in it: a JSON array of
/// the values in field order (which serde's derived decoding would take, field by field) is
/// refused, at the top and in every nested object, with a reason that says so.
#[test]
fn a_record_or_a_nested_object_given_as_an_array_of_values_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::json!({
        "order_id": "L1", "customer_id": "C1", "currency": "EUR", "shipping_method": "standard",
        "ship_to": {"recipient": "Ada", "line1": "1 Main St", "city": "Porto",
                    "postal_code": "4000-322", "country": "PT"},
        "lines": [{"sku": "SKU-1", "quantity": 1, "unit_price_minor": 1000}],
        "payments": [{"payment_id": "P1", "currency": "EUR", "amount_minor": 1000}],
        "shipments": [{"carrier": "DHL", "tracking_number": "T1"}],
        "refunds": [{"currency": "EUR", "amount_minor": 10, "refunded_at": "2019-01-04T00:00:00Z"}],
        "status_history": [{"status": "placed", "at": "2019-01-01T00:00:00Z"},
                           {"status": "shipped", "at": "2019-01-02T00:00:00Z"}],
    });
    let mut lines = vec![good.to_string()];
    // The whole record in field order (as serde would read it), id L2.
    lines.push(
        serde_json::json!([
            "L2",
            "C1",
            "EUR",
            "standard",
            ["Ada", "1 Main St", null, "Porto", null, "4000-322", "PT"],
            [["SKU-1", 1, 1000]],
            [],
            [],
            [],
            [["placed", "2019-01-01T00:00:00Z", null]]
        ])
        .to_string(),
    );
    // Each nested object as an array, in an order of its own.
    let nested = [
        (
            "L3",
            "ship_to",
            serde_json::json!(["Ada", "1 Main St", null, "Porto", null, "4000-322", "PT"]),
        ),
        ("L4", "lines", serde_json::json!([["SKU-1", 1, 1000]])),
        ("L5", "payments", serde_json::json!([["P1", "EUR", 1000]])),
        ("L6", "shipments", serde_json::json!([["DHL", "T1"]])),
        (
            "L7",
            "refunds",
            serde_json::json!([["EUR", 10, "2019-01-04T00:00:00Z"]]),
        ),
        (
            "L8",
            "status_history",
            serde_json::json!([["placed", "2019-01-01T00:00:00Z", null]]),
        ),
    ];
    for (id, field, value) in &nested {
        let mut record = good.clone();
        record["order_id"] = serde_json::json!(id);
        record[field] = value.clone();
        lines.push(record.to_string());
    }
    let input = dir.path().join("export.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let read = records(&input, Format::Jsonl).unwrap();
    assert_eq!(read.len(), 8, "{read:?}");
    assert_eq!(read[0], (Some("L1".into()), None), "the good one is read");
    for (index, (id, reason)) in read.iter().enumerate().skip(1) {
        let reason = reason
            .as_deref()
            .unwrap_or_else(|| panic!("record {index} read: {id:?}"));
        assert!(
            reason.starts_with("not a legacy order record") && reason.contains("a JSON object"),
            "{index}: {reason}"
        );
        if index >= 2 {
            let (want, field, _) = &nested[index - 2];
            assert_eq!(id.as_deref(), Some(*want));
            assert!(reason.contains(field), "{index}: {reason}");
        }
    }
}

/// A generate stopped by a signal deletes what it wrote: a partial export whose expected
/// rejects are missing (or cut) is unusable, and must not be taken for a whole one.
#[test]
fn a_stopped_generate_leaves_no_files() {
    use std::sync::atomic::AtomicBool;

    use order_import::generate::{Plan, generate_until};

    for format in [Format::Jsonl, Format::Csv] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let expected = dir.path().join("expected.jsonl");
        let plan = Plan {
            orders: 100,
            bad_every: 10,
            seed: 1,
            format,
        };
        let error = generate_until(&plan, &out, &expected, &AtomicBool::new(true)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Interrupted, "{error}");
        assert!(error.to_string().contains("deleted"), "{error}");
        assert!(!expected.exists(), "{format:?}");
        let left: Vec<_> = match format {
            Format::Jsonl => out.exists().then_some(out.clone()).into_iter().collect(),
            Format::Csv => std::fs::read_dir(&out)
                .map(|entries| entries.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default(),
        };
        assert!(left.is_empty(), "{format:?}: {left:?}");
    }
}

/// Every subcommand's help lists the environment's settings, LOG_FORMAT among them.
#[test]
fn every_subcommands_help_lists_log_format() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["status", "--help"],
        &["generate", "--help"],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-import"))
            .args(args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}");
        assert!(
            help.contains("RUST_LOG") && help.contains("LOG_FORMAT"),
            "{args:?}: {help}"
        );
    }
}

/// A CSV row without an order, whose order id is 100 KiB: its reject (whose reason quotes the
/// id) is cut to its bounds when the source makes it, on a character boundary, saying so;
/// the orders around it are read.
#[test]
fn a_csv_row_without_an_order_and_a_huge_id_is_rejected_with_the_id_cut() {
    let dir = tempfile::tempdir().unwrap();
    // 102,401 bytes, of two-byte characters after the first.
    let huge = format!("A2{}", "\u{e9}".repeat(51_200)).replacen('\u{e9}', "", 1);
    assert_eq!(huge.len(), 102_400);
    let lines = vec![
        "A1,SKU-1,1,1000".to_owned(),
        format!("{huge},SKU-1,1,1000"),
        "A3,SKU-1,1,1000".to_owned(),
    ];
    csv_export_with_lines(dir.path(), &["A1", "A3"], &lines);
    let found = rejects(dir.path());
    assert_eq!(found.len(), 1, "{} rejects", found.len());
    let (file, line, id, reason) = &found[0];
    assert_eq!((file.as_str(), *line), ("order_lines.csv", 3));
    let id = id.as_deref().unwrap_or_default();
    assert!(
        id.len() <= 256
            && id.starts_with("A2\u{e9}")
            && id.contains('…')
            && id.contains("102400 bytes"),
        "an order id of {} bytes: {}",
        id.len(),
        id.chars().take(300).collect::<String>()
    );
    assert!(
        reason.len() <= 1024
            && reason.starts_with("no order A2\u{e9}")
            && reason.contains('…')
            && reason.ends_with("in orders.csv for this row"),
        "a reason of {} bytes: {}",
        reason.len(),
        reason.chars().take(300).collect::<String>()
    );
    let records = records(dir.path(), Format::Csv).unwrap();
    let orders: Vec<_> = records
        .iter()
        .filter(|(_, reason)| reason.is_none())
        .map(|(id, _)| id.clone().unwrap_or_default())
        .collect();
    assert_eq!(orders, ["A1", "A3"]);
}
