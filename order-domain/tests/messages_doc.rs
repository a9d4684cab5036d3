//! docs/messages.md tells a consuming team every order event type the SQS messages carry and
//! the schema version of its `data`. This keeps that table true: its rows are exactly the
//! domain's event types (`OrderEvent::CURRENT_VERSIONS`, the list the event enum's macro writes
//! next to the types themselves), each with the version this code writes, and the publisher
//! sends `data` at that version.

use std::collections::BTreeMap;
use std::path::PathBuf;

use order_domain::OrderEvent;

const SECTION: &str = "## Event types";

fn doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/messages.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first table of the section `## Event types`: `| \`Type\` | version | ... |` per row, in
/// the order written. A row of another form is an error, not skipped.
fn documented_versions(doc: &str) -> Result<Vec<(String, u16)>, String> {
    let mut lines = doc.lines().skip_while(|line| line.trim_end() != SECTION);
    if lines.next().is_none() {
        return Err(format!("no section {SECTION:?}"));
    }
    let table: Vec<&str> = lines
        .take_while(|line| !line.starts_with("## "))
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .collect();
    // The header and the separator.
    let Some(rows) = table.get(2..) else {
        return Err(format!("no table in {SECTION:?}"));
    };
    let mut versions = Vec::new();
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(name), Some(version)) = (cells.get(1), cells.get(2)) else {
            return Err(format!("a row without a type and a version: {row}"));
        };
        let name = name
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| format!("the type is not a `Name`: {row}"))?;
        let version = version
            .parse::<u16>()
            .map_err(|_| format!("the version is not a number: {row}"))?;
        versions.push((name.to_owned(), version));
    }
    Ok(versions)
}

/// What is wrong with the documented table against the domain's types and versions.
fn mismatches(documented: &[(String, u16)], domain: &[(&str, u16)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rows: BTreeMap<&str, u16> = BTreeMap::new();
    for (name, version) in documented {
        if rows.insert(name, *version).is_some() {
            problems.push(format!("{name} has two rows"));
        }
    }
    for (name, version) in domain {
        match rows.remove(name) {
            None => problems.push(format!("{name} (version {version}) has no row")),
            Some(written) if written != *version => problems.push(format!(
                "{name} is written at version {version}, the row says {written}"
            )),
            Some(_) => {}
        }
    }
    for name in rows.keys() {
        problems.push(format!("{name} is no order event type"));
    }
    problems
}

#[test]
fn the_event_type_table_names_every_type_at_its_current_version() {
    let documented =
        documented_versions(&doc()).unwrap_or_else(|e| panic!("docs/messages.md: {e}"));
    let problems = mismatches(&documented, OrderEvent::CURRENT_VERSIONS);
    assert!(
        problems.is_empty(),
        "docs/messages.md, \"Event types\", does not match the domain:\n{}",
        problems.join("\n")
    );
}

/// The check itself: a row removed, a version wrong, a type the domain lacks, a row twice and
/// a row of another form are all found.
#[test]
fn a_table_that_drifts_is_caught() {
    let doc = doc();
    let domain = OrderEvent::CURRENT_VERSIONS;
    let row = |name: &str| {
        doc.lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no row of {name}"))
            .to_owned()
    };
    let check = |text: &str| match documented_versions(text) {
        Ok(documented) => mismatches(&documented, domain),
        Err(e) => vec![e],
    };
    let placed = row("OrderPlaced");
    let removed = doc.replacen(&format!("{placed}\n"), "", 1);
    assert_eq!(check(&removed), ["OrderPlaced (version 3) has no row"]);
    let wrong = doc.replacen(&placed, &placed.replacen("| 3 |", "| 2 |", 1), 1);
    assert_eq!(
        check(&wrong),
        ["OrderPlaced is written at version 3, the row says 2"]
    );
    let extra = doc.replacen(
        &format!("{placed}\n"),
        &format!("{placed}\n| `OrderLost` | 1 | none | never |\n"),
        1,
    );
    assert_eq!(check(&extra), ["OrderLost is no order event type"]);
    let twice = doc.replacen(&format!("{placed}\n"), &format!("{placed}\n{placed}\n"), 1);
    assert_eq!(check(&twice), ["OrderPlaced has two rows"]);
    let malformed = doc.replacen(
        &placed,
        &placed.replacen("`OrderPlaced`", "OrderPlaced", 1),
        1,
    );
    assert_eq!(check(&malformed).len(), 1, "{:?}", check(&malformed));
}
