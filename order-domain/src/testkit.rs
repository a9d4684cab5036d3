//! A given/when/then kit for testing any [`Aggregate`]:
//!
//! ```
//! # use order_domain::testkit::Given;
//! # use order_domain::{Order, OrderCommand, OrderError};
//! Given::<Order>::no_history()
//!     .when(&OrderCommand::ConfirmOrder)
//!     .then_error(&OrderError::NotFound);
//! ```
//!
//! The kit asserts (panics with a readable message) because it exists for tests only.

use std::fmt;

use crate::es::Aggregate;

/// The history an aggregate is built from.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
}

impl<A: Aggregate> fmt::Debug for Given<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("history", &self.history)
            .finish()
    }
}

impl<A: Aggregate> Given<A> {
    /// A stream with no events yet.
    pub fn no_history() -> Self {
        Self {
            history: Vec::new(),
        }
    }

    /// A stream holding `events`, oldest first.
    pub fn events(events: impl IntoIterator<Item = A::Event>) -> Self {
        Self {
            history: events.into_iter().collect(),
        }
    }

    /// The state folded from the history.
    pub fn state(&self) -> A {
        A::fold(&self.history)
    }

    /// Decide `command` against the history.
    pub fn when(self, command: &A::Command) -> Then<A> {
        let state = self.state();
        let result = state.decide(command);
        Then {
            history: self.history,
            state,
            result,
        }
    }
}

/// The outcome of one decision, to assert on.
pub struct Then<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> fmt::Debug for Then<A>
where
    A::Error: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("history", &self.history)
            .field("result", &self.result)
            .finish()
    }
}

impl<A: Aggregate> Then<A>
where
    A::Error: fmt::Debug,
{
    /// The raw decision.
    pub fn result(&self) -> &Result<Vec<A::Event>, A::Error> {
        &self.result
    }

    /// Assert the command produced exactly `expected`; returns the state after applying them.
    pub fn then_events(self, expected: &[A::Event]) -> A
    where
        A::Event: PartialEq,
    {
        match &self.result {
            Ok(events) => assert_eq!(
                events.as_slice(),
                expected,
                "unexpected events after history {:?}",
                self.history
            ),
            Err(error) => panic!(
                "expected events {expected:?}, got error {error:?} after history {:?}",
                self.history
            ),
        }
        self.state_after()
    }

    /// Assert the command was refused with `expected`.
    pub fn then_error(self, expected: &A::Error)
    where
        A::Error: PartialEq,
    {
        match &self.result {
            Ok(events) => panic!(
                "expected error {expected:?}, got events {events:?} after history {:?}",
                self.history
            ),
            Err(error) => assert_eq!(error, expected, "after history {:?}", self.history),
        }
    }

    /// The state after applying the produced events (the unchanged state on an error).
    pub fn state_after(&self) -> A {
        let mut state = self.state.clone();
        if let Ok(events) = &self.result {
            for event in events {
                state.evolve(event);
            }
        }
        state
    }
}
