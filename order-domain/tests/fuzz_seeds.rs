//! The seeds of the `stored_event` fuzz target (fuzz/seeds/stored_event), replayed in the
//! normal test suite through the target's own check (fuzz/harness/stored_event.rs): none
//! panics, `<EventType>.v<N>` decodes to an event of that type (its first two bytes pick that
//! type and version), and `invalid-*` is refused. An input that `scripts/fuzz` finds crashing
//! becomes a seed here, named for the result it must have once fixed.

#[path = "../../fuzz/harness/stored_event.rs"]
mod harness;
#[path = "../../fuzz/harness/seeds.rs"]
mod seeds;

use order_domain::EventSchema;

#[test]
fn every_stored_event_seed_gives_its_documented_result() {
    let mut types_seen = Vec::new();
    for (name, data) in seeds::seeds("stored_event") {
        let outcome = harness::check(&data);
        if seeds::expects_refusal(&name) {
            assert!(outcome.is_none(), "{name} decoded: {outcome:?}");
            continue;
        }
        let Some((event_type, version)) = name.split_once(".v") else {
            panic!("{name}: a stored_event seed is named <EventType>.v<N> or invalid-*");
        };
        let picked = data
            .first()
            .map(|b| harness::TYPES[usize::from(*b) % harness::TYPES.len()]);
        assert_eq!(
            picked,
            Some(event_type),
            "{name}: the first byte picks the type"
        );
        let picked = data.get(1).map(|b| (b % 5).to_string());
        assert_eq!(
            picked.as_deref(),
            Some(version),
            "{name}: the second byte is the version"
        );
        let Some(event) = outcome else {
            panic!("{name} was refused");
        };
        assert_eq!(event.event_type(), event_type, "{name}");
        types_seen.push(event.event_type());
    }
    for event_type in harness::TYPES.iter().filter(|t| **t != "Unknown") {
        assert!(
            types_seen.contains(event_type),
            "no seed decodes to {event_type}: add fuzz/seeds/stored_event/{event_type}.v<N>"
        );
    }
}
