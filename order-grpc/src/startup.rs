//! Building and running the service: `App::build` binds everything (port 0 picks free ports),
//! `App::run_until` serves until a shutdown signal and drains in-flight calls.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use order_domain::Order;
use order_proto::v1::order_query_service_server::OrderQueryServiceServer;
use order_proto::v1::order_service_server::OrderServiceServer;
use order_runtime::{AdminServer, Readiness};
use order_store::{CommandHandler, EventListener, EventStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use crate::commands::Commands;
use crate::config::ServeArgs;
use crate::gateway::GatewayLayer;
use crate::queries::Queries;

/// The gRPC service names whose health is reported (plus "" for the server as a whole).
const SERVICES: [&str; 3] = ["", "orders.v1.OrderService", "orders.v1.OrderQueryService"];

/// A bound, not yet serving, order-grpc.
pub struct App {
    args: ServeArgs,
    listener: TcpListener,
    grpc_addr: SocketAddr,
    admin: AdminServer,
    store: EventStore,
    /// The read replica's store, when one is configured.
    read_store: Option<EventStore>,
    events: EventListener,
    health: HealthReporter,
    health_service: HealthServer<crate::health::Health>,
    readiness: watch::Sender<Readiness>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("grpc_addr", &self.grpc_addr)
            .field("admin_addr", &self.admin.addr())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Validate the settings, connect lazily to the database, bind both ports.
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        let mut config = args.database.store_config("order-grpc");
        config.command_event_ids = args.command_event_ids;
        let store = EventStore::new(config)?;
        let read_store = match args.read_store_config() {
            Some(config) => Some(
                EventStore::new(config)
                    .map_err(|e| anyhow::anyhow!("ORDER_GRPC_READ_DATABASE_URL: {e}"))?,
            ),
            None => None,
        };
        let events = EventListener::start(store.config().clone());
        let listener = crate::serve::bind(args.grpc_addr)?;
        let grpc_addr = listener.local_addr()?;
        let (readiness, readiness_rx) = watch::channel(Readiness::NotReady("starting".to_owned()));
        let admin = AdminServer::start(args.admin_addr, readiness_rx).await?;
        let health = HealthReporter::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let health_service = HealthServer::new(crate::health::Health::new(
            HealthService::from_health_reporter(health.clone()),
            shutdown_rx,
        ));
        for service in SERVICES {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        Ok(Self {
            args,
            listener,
            grpc_addr,
            admin,
            store,
            read_store,
            events,
            health,
            health_service,
            readiness,
            shutdown,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.addr()
    }

    /// Serve until `signal` resolves, then stop accepting, report NOT_SERVING, end event
    /// subscriptions, and give in-flight calls the grace period to finish.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let args = self.args;
        let tokens = args.tokens().map_err(anyhow::Error::msg)?;
        if tokens.is_empty() {
            tracing::warn!(
                "no ORDER_GRPC_AUTH_TOKENS, ORDER_GRPC_AUTH_TOKENS_FILE or ORDER_GRPC_AUTH_TOKEN_<NAME>: calls are not authenticated"
            );
        } else if args.auth_scopes.is_none() {
            tracing::warn!(
                tokens = ?tokens.names(),
                "no --auth-scopes: every token may call every method"
            );
        }
        let handler = CommandHandler::<Order>::new(self.store.clone(), args.command_max_attempts);
        let max_message = args.max_message_bytes as usize;
        let commands = OrderServiceServer::new(Commands::new(handler))
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let mut queries = Queries::new(
            self.store.clone(),
            self.events.clone(),
            crate::queries::SubscriptionLimits {
                total: args.max_subscriptions as usize,
                per_client: args.max_subscriptions_per_client as usize,
                buffer: args.subscription_buffer as usize,
            },
            self.shutdown.subscribe(),
            args.default_deadline(),
        )
        .with_max_message_bytes(max_message)
        .with_max_waiting_reads(args.max_waiting_reads as usize);
        if let Some(read_store) = self.read_store.clone() {
            tracing::info!(wait = ?args.read_replica_wait(), "reads go to the read replica");
            queries = queries.with_replica(read_store, args.read_replica_wait());
        }
        let queries = OrderQueryServiceServer::new(queries)
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message);
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(order_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let checker = tokio::spawn(watch_readiness(
            self.store.config().clone(),
            self.health.clone(),
            self.readiness.clone(),
            self.shutdown.subscribe(),
        ));

        let (stop_accepting, stop_accepting_rx) = tokio::sync::oneshot::channel::<()>();
        let tls = args.tls().map_err(anyhow::Error::msg)?;
        let routes = tonic::service::Routes::new(self.health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(commands)
            .add_service(queries)
            .prepare();
        let service = tower::ServiceBuilder::new()
            // outermost: the ALB's health check needs no token and is never shed
            .layer(crate::alb_health::AlbHealthLayer::new(
                self.readiness.subscribe(),
            ))
            // the only timer for a call's deadline (see crate::serve)
            .layer(GatewayLayer::new(
                tokens,
                args.max_concurrent_requests as usize,
                args.default_deadline(),
            ))
            // a call's body holds one message: a second fails it before any handler runs
            .layer(crate::one_message::OneMessageLayer)
            .service(routes);
        let settings = args.connection_settings();
        let server = crate::serve::serve(self.listener, tls, settings, service, async {
            let _ = stop_accepting_rx.await;
        });
        tokio::pin!(server);
        tracing::info!(grpc = %self.grpc_addr, admin = %self.admin.addr(), "order-grpc serving");

        tokio::select! {
            () = &mut server => {
                checker.abort();
                return Ok(());
            }
            () = signal => {}
        }
        tracing::info!(grace = ?args.shutdown_grace(), "shutting down: no new calls, draining in-flight ones");
        let _ = self.shutdown.send(true);
        for service in SERVICES {
            self.health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        let _ = self
            .readiness
            .send(Readiness::NotReady("shutting down".to_owned()));
        let _ = stop_accepting.send(());
        let drained = tokio::time::timeout(args.shutdown_grace(), &mut server).await;
        checker.abort();
        match drained {
            Ok(()) => {
                tracing::info!("order-grpc stopped");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("grace period over; abandoning the calls still running");
                Ok(())
            }
        }
    }
}

/// Report SERVING while the database answers and has every migration, NOT_SERVING
/// otherwise; uses its own connection so that a busy pool does not look like an outage.
async fn watch_readiness(
    config: order_store::StoreConfig,
    health: HealthReporter,
    readiness: watch::Sender<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut probe = order_store::ReadinessProbe::new(config);
    // What the health service says: set only when it changes, so that a Watch stream hears of
    // changes only, as the health-checking protocol says (NOT_SERVING was set at build).
    let mut reported = ServingStatus::NotServing;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let state = match probe.check().await {
            Ok(()) => Readiness::Ready,
            Err(why) => Readiness::NotReady(why),
        };
        let status = if state.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if *readiness.borrow() != state {
            match &state {
                Readiness::Ready => tracing::info!("ready: database reachable and migrated"),
                Readiness::NotReady(why) => tracing::warn!(reason = %why, "not ready"),
            }
        }
        if *shutdown.borrow() {
            // Shutdown reported NOT_SERVING meanwhile: leave it so.
            return;
        }
        if status != reported {
            for service in SERVICES {
                health.set_service_status(service, status).await;
            }
            reported = status;
        }
        let _ = readiness.send(state);
        let pause = if status == ServingStatus::Serving {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(500)
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}
