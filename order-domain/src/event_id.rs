//! The ids of a command's events: new on every append, the same in what matters when the same
//! command is applied again.
//!
//! After a restore of the log to an earlier point, callers send again the commands whose
//! answers came later (with their command ids), and the worker redoes the steps it had
//! recorded since. The providers it calls are outside the restored database and remember
//! their idempotency keys, which the worker derives from the event that triggered each step.
//! So a command applied again must give events the worker recognises: their ids carry a part
//! derived from the command id and the event's place in the command ([`event_identity`]),
//! and the worker derives its keys from that part alone. The rest of the id is the time of
//! the append, as in a UUID v7, so that the log's unique index on event ids grows at its right
//! edge whatever ids callers choose for their commands, and so that an event appended again
//! is a new message for SQS (whose deduplication ids are event ids).

use uuid::Uuid;

/// The namespace of the hashed part of a command's event ids (UUID v5).
pub const COMMAND_EVENT_NAMESPACE: Uuid =
    Uuid::from_u128(0x6f72_6465_722d_6576_656e_742d_6964_7321);

/// The id of the `index`-th event (from 0) that command `command_id` appends at
/// `unix_millis`: a UUID of version 8 (RFC 9562) whose first 48 bits are that time in Unix
/// milliseconds (as in a version 7) and whose other 74 bits are those of the UUID v5 of the
/// command id and the index.
pub fn command_event_id(command_id: Uuid, index: u32, unix_millis: u64) -> Uuid {
    let mut name = [0u8; 20];
    name[..16].copy_from_slice(command_id.as_bytes());
    name[16..].copy_from_slice(&index.to_be_bytes());
    let mut bytes = *Uuid::new_v5(&COMMAND_EVENT_NAMESPACE, &name).as_bytes();
    bytes[..6].copy_from_slice(&unix_millis.min((1 << 48) - 1).to_be_bytes()[2..]);
    bytes[6] = 0x80 | (bytes[6] & 0x0f); // version 8
    bytes[8] = 0x80 | (bytes[8] & 0x3f); // variant RFC 9562
    Uuid::from_bytes(bytes)
}

/// What an event id keeps when its command is applied again: for an id of
/// [`command_event_id`] (version 8, so any version-8 id is taken for one), the id with its time
/// set to zero; any other id (the version 7 ids of appends before these, an imported event's)
/// is its own identity. Two ids of one identity are the event at one place of one command,
/// appended twice (before and after a restore), not necessarily with the same content: a
/// command decided on another state gives other events. The identities of the two kinds never
/// meet, as only the first starts with 48 zero bits.
pub fn event_identity(event_id: Uuid) -> Uuid {
    if event_id.get_version_num() == 8 {
        let mut bytes = *event_id.as_bytes();
        bytes[..6].fill(0);
        Uuid::from_bytes(bytes)
    } else {
        event_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_applied_again_gives_events_of_the_same_identity_and_new_ids() {
        let command = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
        let first = command_event_id(command, 0, 1_764_990_000_000);
        let again = command_event_id(command, 0, 1_764_990_600_000);
        assert_ne!(first, again, "a new id on every append (a new SQS message)");
        assert_eq!(event_identity(first), event_identity(again));
        assert_eq!(first.get_version_num(), 8);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        // The time leads, so ids grow with time whatever the command id.
        assert!(again > first);
        assert_eq!(
            &first.as_bytes()[..6],
            &1_764_990_000_000u64.to_be_bytes()[2..]
        );
    }

    #[test]
    fn other_events_and_other_commands_have_other_identities() {
        let command = Uuid::from_u128(7);
        let at = 1_764_990_000_000;
        let identities = [
            event_identity(command_event_id(command, 0, at)),
            event_identity(command_event_id(command, 1, at)),
            event_identity(command_event_id(Uuid::from_u128(8), 0, at)),
        ];
        assert_ne!(identities[0], identities[1]);
        assert_ne!(identities[0], identities[2]);
        assert_ne!(identities[1], identities[2]);
    }

    #[test]
    fn ids_of_other_kinds_are_their_own_identity() {
        // A version 7 id (every append before these) and a version 5 id (imported, earlier).
        let v7 = Uuid::from_u128(0x0193_8a4b_1c2d_7e3f_8a1b_2c3d_4e5f_6a7b);
        let v5 = Uuid::new_v5(&Uuid::NAMESPACE_OID, b"legacy");
        assert_eq!(event_identity(v7), v7);
        assert_eq!(event_identity(v5), v5);
    }
}
