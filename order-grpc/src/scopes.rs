//! Permissions per caller: each bearer token carries scopes, each method needs one of a few.
//!
//! | scope | methods |
//! |---|---|
//! | `orders.read` | GetOrder, ListOrders, GetOrderEvents, SubscribeEvents |
//! | `orders.place` | PlaceOrder |
//! | `orders.saga` | the fulfilment steps the worker sends: ReserveInventory, RejectInventory, AuthorizePayment, FailPayment, ConfirmOrder, StartFulfillment, ShipOrder, DeliverOrder, CompleteOrder, ReleaseInventory, RefundPayment |
//! | `orders.admin` | what operators do by hand: CancelOrder, RefundPayment |
//!
//! RefundPayment is in two scopes: the worker refunds a cancelled order's capture (a saga
//! step), an operator refunds a delivered one; neither needs the other's rights. Reflection
//! is open to every authenticated caller (it describes the API, which is not secret); health
//! checks need no token at all. A method of ours that is missing from the table would be
//! refused to everyone: a test walks the proto's descriptor so that a new method cannot ship
//! without its scope.

use std::collections::BTreeSet;
use std::fmt;

/// What a caller may do (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `orders.read`: every query.
    Read,
    /// `orders.place`: PlaceOrder.
    Place,
    /// `orders.saga`: the worker's fulfilment steps.
    Saga,
    /// `orders.admin`: cancellation and refunds by operators.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Place, Scope::Saga, Scope::Admin];

    /// The scope's name in settings, errors and status details.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "orders.read",
            Scope::Place => "orders.place",
            Scope::Saga => "orders.saga",
            Scope::Admin => "orders.admin",
        }
    }

    /// The scope of a name, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes.
pub type Scopes = BTreeSet<Scope>;

pub(crate) const COMMANDS: &str = "/orders.v1.OrderService/";
const QUERIES: &str = "/orders.v1.OrderQueryService/";

/// What a call to `path` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any authenticated caller (reflection, and paths no service serves: those are
    /// UNIMPLEMENTED for everyone, whatever the caller's scopes).
    Authenticated,
    /// One of these scopes.
    AnyOf(&'static [Scope]),
}

/// The methods of the contract, `/package.Service/Method`, from the compiled descriptors.
fn contract() -> &'static std::collections::HashSet<String> {
    use prost::Message;
    static METHODS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    METHODS.get_or_init(|| {
        let Ok(set) = prost_types::FileDescriptorSet::decode(order_proto::FILE_DESCRIPTOR_SET)
        else {
            return Default::default();
        };
        set.file
            .iter()
            .flat_map(|file| {
                file.service.iter().flat_map(move |service| {
                    service.method.iter().map(move |method| {
                        format!("/{}.{}/{}", file.package(), service.name(), method.name())
                    })
                })
            })
            .collect()
    })
}

/// What a call to the gRPC method at `path` (`/package.Service/Method`) needs.
pub fn needs(path: &str) -> Needs {
    use Scope::*;
    let contract = contract();
    // No such method: UNIMPLEMENTED for every caller, whatever its scopes. (Were the compiled
    // contract ever empty, the table below would decide: closed, never open.)
    if (path.starts_with(COMMANDS) || path.starts_with(QUERIES))
        && !contract.is_empty()
        && !contract.contains(path)
    {
        return Needs::Authenticated;
    }
    if let Some(method) = path.strip_prefix(COMMANDS) {
        return Needs::AnyOf(match method {
            "PlaceOrder" => &[Place],
            "ReserveInventory" | "RejectInventory" | "AuthorizePayment" | "FailPayment"
            | "ConfirmOrder" | "StartFulfillment" | "ShipOrder" | "DeliverOrder"
            | "CompleteOrder" | "ReleaseInventory" => &[Saga],
            "RefundPayment" => &[Saga, Admin],
            "CancelOrder" => &[Admin],
            // a method of the contract that the table does not know: nobody
            _ => &[],
        });
    }
    if path.starts_with(QUERIES) {
        return Needs::AnyOf(&[Read]);
    }
    Needs::Authenticated
}

/// Parse `--auth-scopes`: `name=scope+scope` entries separated by commas or newlines (scopes
/// separated by `+` or spaces), e.g. `worker=orders.read+orders.saga,ops=orders.read+orders.admin`.
/// Errors name the entry and list the valid scopes.
pub fn parse_assignments(text: &str) -> Result<Vec<(String, Scopes)>, String> {
    let mut assignments: Vec<(String, Scopes)> = Vec::new();
    for entry in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
    {
        let Some((name, list)) = entry.split_once('=') else {
            return Err(format!(
                "--auth-scopes entry `{entry}` is not name=scope+scope (e.g. worker=orders.read+orders.saga)"
            ));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("--auth-scopes entry `{entry}` has no token name"));
        }
        if assignments.iter().any(|(n, _)| n == name) {
            return Err(format!("--auth-scopes names {name} twice"));
        }
        let mut scopes = Scopes::new();
        for word in list.split(['+', ' ']).filter(|w| !w.is_empty()) {
            let scope = Scope::from_name(word).ok_or_else(|| {
                format!(
                    "--auth-scopes: unknown scope `{word}` for {name} (known: {})",
                    Scope::ALL.map(Scope::name).join(", ")
                )
            })?;
            scopes.insert(scope);
        }
        if scopes.is_empty() {
            return Err(format!("--auth-scopes gives {name} no scope"));
        }
        assignments.push((name.to_owned(), scopes));
    }
    Ok(assignments)
}

/// Names of a list of scopes for messages: `orders.saga or orders.admin`.
pub fn describe(scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        return "a scope no caller has (the method is missing from the permission table)"
            .to_owned();
    }
    scopes
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_contract_needs_a_scope_someone_can_have() {
        let mut methods = 0;
        for path in contract() {
            match needs(path) {
                Needs::AnyOf(scopes) => assert!(
                    !scopes.is_empty(),
                    "{path} is missing from the permission table"
                ),
                Needs::Authenticated => panic!("{path} needs no scope"),
            }
            methods += 1;
        }
        assert_eq!(methods, 17, "the contract's methods, all checked");
    }

    #[test]
    fn a_method_the_contract_does_not_have_needs_no_scope_and_is_unimplemented() {
        for path in [
            "/orders.v1.OrderService/Nope",
            "/orders.v1.OrderQueryService/Nope",
            "/orders.v1.OrderService/PlaceOrder/extra",
        ] {
            assert_eq!(needs(path), Needs::Authenticated, "{path}");
        }
    }

    #[test]
    fn scopes_parse_and_bad_entries_are_named() {
        let parsed = parse_assignments(
            "worker=orders.read+orders.saga, ops = orders.admin orders.read\n# c\n",
        )
        .expect("valid");
        assert_eq!(
            parsed,
            vec![
                (
                    "worker".to_owned(),
                    Scopes::from([Scope::Read, Scope::Saga])
                ),
                ("ops".to_owned(), Scopes::from([Scope::Read, Scope::Admin])),
            ]
        );
        let unknown = parse_assignments("worker=orders.write").unwrap_err();
        assert!(
            unknown.contains("orders.write") && unknown.contains("orders.read"),
            "{unknown}"
        );
        assert!(
            parse_assignments("worker")
                .unwrap_err()
                .contains("name=scope")
        );
        assert!(
            parse_assignments("=orders.read")
                .unwrap_err()
                .contains("no token name")
        );
        assert!(parse_assignments("w=").unwrap_err().contains("no scope"));
        assert!(
            parse_assignments("w=orders.read,w=orders.place")
                .unwrap_err()
                .contains("twice")
        );
    }

    #[test]
    fn refunds_are_open_to_the_saga_and_to_operators_cancellation_only_to_operators() {
        assert_eq!(
            needs("/orders.v1.OrderService/RefundPayment"),
            Needs::AnyOf(&[Scope::Saga, Scope::Admin])
        );
        assert_eq!(
            needs("/orders.v1.OrderService/CancelOrder"),
            Needs::AnyOf(&[Scope::Admin])
        );
        assert_eq!(
            needs("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Needs::Authenticated
        );
        assert_eq!(
            needs("/orders.v1.OrderService/NotAMethod"),
            Needs::Authenticated,
            "a method the contract does not have is UNIMPLEMENTED for everyone, as without tokens"
        );
    }
}
