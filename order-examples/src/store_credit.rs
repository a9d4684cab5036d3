//! A second aggregate beside orders: a customer's store credit (granted by customer service,
//! spent on orders). Pure, like the Order aggregate: no I/O, no clock.
//!
//! Its streams are of category [`StoreCredit::CATEGORY`] (`store_credit`); the stream id is the
//! customer's id, so each customer has one account. The same [`order_store::CommandHandler`]
//! that runs orders runs it (idempotent command ids, optimistic concurrency, group commit),
//! and every event is recorded with its category, so the order read model and the SQS
//! publisher never see these events while projections of store credit see only them.
//!
//! ```
//! use order_domain::{Aggregate, Currency, Money};
//! use order_examples::store_credit::{StoreCredit, StoreCreditCommand, StoreCreditError};
//!
//! let eur = |minor| Money::new(Currency::parse("EUR").unwrap(), minor).unwrap();
//! let mut account = StoreCredit::default();
//! let granted = account
//!     .decide(&StoreCreditCommand::grant(eur(2_000), "late delivery").unwrap())
//!     .unwrap();
//! granted.iter().for_each(|e| account.evolve(e));
//! assert_eq!(account.balance(), Some(eur(2_000)));
//! let order = uuid::Uuid::new_v4();
//! assert!(matches!(
//!     account.decide(&StoreCreditCommand::spend(eur(2_500), order).unwrap()),
//!     Err(StoreCreditError::Insufficient { .. })
//! ));
//! ```

use order_domain::upcast::{DecodeError, EncodeError};
use order_domain::values::Reason;
use order_domain::{Aggregate, EventSchema, Money, ValidationError, Violation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A customer's store credit: nothing until the first grant, then a balance in the currency
/// of that grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCredit {
    balance: Option<Money>,
}

impl StoreCredit {
    /// The balance, once credit was granted.
    pub fn balance(&self) -> Option<Money> {
        self.balance
    }
}

/// What customer service or the checkout asks of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum StoreCreditCommand {
    /// Add credit (a goodwill gesture, a return paid out as credit).
    Grant {
        /// How much; positive.
        amount: Money,
        /// Why, for the customer's statement.
        reason: Reason,
    },
    /// Pay (part of) an order with credit.
    Spend {
        /// How much; positive, at most the balance.
        amount: Money,
        /// The order paid with it.
        order_id: Uuid,
    },
}

impl StoreCreditCommand {
    /// A grant of a positive `amount` for `reason` (1-500 characters).
    pub fn grant(amount: Money, reason: &str) -> Result<Self, ValidationError> {
        if amount.amount_minor() <= 0 {
            return Err(ValidationError::new(
                "amount.amount_minor",
                Violation::OutOfRange {
                    min: 1,
                    max: order_domain::MAX_AMOUNT_MINOR,
                },
            ));
        }
        let reason = Reason::parse(reason).map_err(|v| ValidationError::new("reason", v))?;
        Ok(Self::Grant { amount, reason })
    }

    /// Spending a positive `amount` on `order_id`.
    pub fn spend(amount: Money, order_id: Uuid) -> Result<Self, ValidationError> {
        if amount.amount_minor() <= 0 {
            return Err(ValidationError::new(
                "amount.amount_minor",
                Violation::OutOfRange {
                    min: 1,
                    max: order_domain::MAX_AMOUNT_MINOR,
                },
            ));
        }
        if order_id.is_nil() {
            return Err(ValidationError::new("order_id", Violation::Missing));
        }
        Ok(Self::Spend { amount, order_id })
    }
}

/// What happened to an account.
/// Stored as the inner event's JSON under the type name ([`EventSchema::event_type`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StoreCreditEvent {
    /// Credit was added.
    CreditGranted(CreditGranted),
    /// Credit paid for an order.
    CreditSpent(CreditSpent),
}

/// Credit was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditGranted {
    /// How much.
    pub amount: Money,
    /// Why.
    pub reason: Reason,
}

/// Credit paid for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditSpent {
    /// How much.
    pub amount: Money,
    /// The order it paid for.
    pub order_id: Uuid,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreCreditError {
    /// Spending from an account that was never granted anything.
    #[error("the customer has no store credit")]
    NoCredit,
    /// The amount is in another currency than the account.
    #[error("the account is in {account}, the amount in {requested}")]
    Currency {
        /// The account's currency.
        account: String,
        /// The command's.
        requested: String,
    },
    /// Spending more than the balance.
    #[error("the balance {balance} does not cover {requested}")]
    Insufficient {
        /// What the account holds.
        balance: Money,
        /// What was asked for.
        requested: Money,
    },
    /// The balance would exceed the largest amount.
    #[error("the balance would exceed the largest amount")]
    TooLarge,
}

impl Aggregate for StoreCredit {
    type Command = StoreCreditCommand;
    type Event = StoreCreditEvent;
    type Error = StoreCreditError;

    const CATEGORY: &'static str = "store_credit";

    fn decide(&self, command: &StoreCreditCommand) -> Result<Vec<StoreCreditEvent>, Self::Error> {
        let same_currency = |balance: Money, amount: Money| {
            if balance.currency() == amount.currency() {
                Ok(())
            } else {
                Err(StoreCreditError::Currency {
                    account: balance.currency().code().to_owned(),
                    requested: amount.currency().code().to_owned(),
                })
            }
        };
        match command {
            StoreCreditCommand::Grant { amount, reason } => {
                if let Some(balance) = self.balance {
                    same_currency(balance, *amount)?;
                    balance
                        .checked_add(*amount)
                        .ok_or(StoreCreditError::TooLarge)?;
                }
                Ok(vec![StoreCreditEvent::CreditGranted(CreditGranted {
                    amount: *amount,
                    reason: reason.clone(),
                })])
            }
            StoreCreditCommand::Spend { amount, order_id } => {
                let balance = self.balance.ok_or(StoreCreditError::NoCredit)?;
                same_currency(balance, *amount)?;
                if amount.amount_minor() > balance.amount_minor() {
                    return Err(StoreCreditError::Insufficient {
                        balance,
                        requested: *amount,
                    });
                }
                Ok(vec![StoreCreditEvent::CreditSpent(CreditSpent {
                    amount: *amount,
                    order_id: *order_id,
                })])
            }
        }
    }

    fn evolve(&mut self, event: &StoreCreditEvent) {
        // Only assigns: decide checked currency and bounds.
        self.balance = match (self.balance, event) {
            (None, StoreCreditEvent::CreditGranted(e)) => Some(e.amount),
            (Some(b), StoreCreditEvent::CreditGranted(e)) => b.checked_add(e.amount).or(Some(b)),
            (Some(b), StoreCreditEvent::CreditSpent(e)) => b.checked_sub(e.amount).or(Some(b)),
            (None, StoreCreditEvent::CreditSpent(_)) => None,
        };
    }

    fn status_label(&self) -> &'static str {
        match self.balance {
            Some(b) if !b.is_zero() => "Credit",
            Some(_) => "Empty",
            None => "None",
        }
    }
}

impl EventSchema for StoreCreditEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::CreditGranted(_) => "CreditGranted",
            Self::CreditSpent(_) => "CreditSpent",
        }
    }

    fn schema_version(&self) -> u16 {
        1
    }

    fn encode(&self) -> Result<serde_json::Value, EncodeError> {
        serde_json::to_value(self).map_err(|e| EncodeError {
            event_type: self.event_type(),
            reason: e.to_string(),
        })
    }

    fn decode(
        event_type: &str,
        schema_version: u16,
        payload: serde_json::Value,
    ) -> Result<Self, DecodeError> {
        if schema_version != 1 {
            return Err(DecodeError::UnsupportedVersion {
                event_type: event_type.to_owned(),
                version: schema_version,
                current: 1,
            });
        }
        let payload_error = |e: serde_json::Error| DecodeError::Payload {
            event_type: event_type.to_owned(),
            reason: e.to_string(),
        };
        match event_type {
            "CreditGranted" => serde_json::from_value(payload)
                .map(Self::CreditGranted)
                .map_err(payload_error),
            "CreditSpent" => serde_json::from_value(payload)
                .map(Self::CreditSpent)
                .map_err(payload_error),
            _ => Err(DecodeError::UnknownType {
                event_type: event_type.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use order_domain::Currency;
    use order_domain::testkit::Given;

    use super::*;

    fn eur(minor: i64) -> Money {
        Money::new(Currency::parse("EUR").unwrap(), minor).unwrap()
    }

    fn granted(minor: i64) -> StoreCreditEvent {
        StoreCreditEvent::CreditGranted(CreditGranted {
            amount: eur(minor),
            reason: Reason::parse("goodwill").unwrap(),
        })
    }

    #[test]
    fn credit_can_be_spent_up_to_the_balance_and_not_beyond() {
        let order = Uuid::new_v4();
        let spent = Given::<StoreCredit>::events([granted(1_000), granted(500)])
            .when(&StoreCreditCommand::spend(eur(1_500), order).unwrap())
            .then_events(&[StoreCreditEvent::CreditSpent(CreditSpent {
                amount: eur(1_500),
                order_id: order,
            })]);
        assert_eq!(spent.balance(), Some(eur(0)));
        Given::<StoreCredit>::events([granted(1_000)])
            .when(&StoreCreditCommand::spend(eur(1_001), order).unwrap())
            .then_error(&StoreCreditError::Insufficient {
                balance: eur(1_000),
                requested: eur(1_001),
            });
        Given::<StoreCredit>::no_history()
            .when(&StoreCreditCommand::spend(eur(1), order).unwrap())
            .then_error(&StoreCreditError::NoCredit);
    }

    #[test]
    fn an_account_keeps_the_currency_of_its_first_grant() {
        let usd = Money::new(Currency::parse("USD").unwrap(), 100).unwrap();
        let error = StoreCredit::fold(&[granted(100)])
            .decide(&StoreCreditCommand::grant(usd, "x").unwrap())
            .unwrap_err();
        assert!(
            matches!(error, StoreCreditError::Currency { .. }),
            "{error}"
        );
    }

    #[test]
    fn bad_commands_are_refused_before_any_decision() {
        assert_eq!(
            StoreCreditCommand::grant(eur(0), "x").unwrap_err().field,
            "amount.amount_minor"
        );
        assert_eq!(
            StoreCreditCommand::grant(eur(1), " ").unwrap_err().field,
            "reason"
        );
        assert_eq!(
            StoreCreditCommand::spend(eur(1), Uuid::nil())
                .unwrap_err()
                .field,
            "order_id"
        );
    }

    #[test]
    fn events_round_trip_through_their_stored_form() {
        for event in [
            granted(250),
            StoreCreditEvent::CreditSpent(CreditSpent {
                amount: eur(100),
                order_id: Uuid::new_v4(),
            }),
        ] {
            let decoded = StoreCreditEvent::decode(
                event.event_type(),
                event.schema_version(),
                event.encode().unwrap(),
            )
            .unwrap();
            assert_eq!(decoded, event);
        }
        assert!(matches!(
            StoreCreditEvent::decode("CreditGranted", 2, serde_json::json!({})),
            Err(DecodeError::UnsupportedVersion { .. })
        ));
        assert!(matches!(
            StoreCreditEvent::decode("OrderPlaced", 1, serde_json::json!({})),
            Err(DecodeError::UnknownType { .. })
        ));
    }
}
