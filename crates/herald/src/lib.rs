//! The `herald` binary's library: configuration, wiring, and [`run`], which `main`
//! and the integration tests both call.

pub mod config;
mod web;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_broker::memory::MemoryBroker;
use herald_broker::{Broker, Presence};
use herald_node::Node;
use herald_server::AppState;
use herald_store::postgres::PgStore;
use herald_store::sqlite::SqliteStore;
use herald_store::{ClassroomStore, NewCredentials, Store};
use tokio::net::TcpListener;

pub use config::Config;

/// Opens the store the configuration names: PostgreSQL for a `postgres://` or
/// `postgresql://` URL (shared by the nodes of a cluster), else SQLite (a file in
/// the data dir, or the path of a `sqlite:` URL).
///
/// # Errors
/// The database cannot be opened, reached or migrated.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_stores(config).await?.0)
}

/// Like [`open_store`], and the same database as the classroom's store (both
/// engines implement both traits, on one connection pool).
///
/// # Errors
/// The database cannot be opened, reached or migrated.
pub async fn open_stores(config: &Config) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn ClassroomStore>)> {
    if config::is_postgres(&config.database) {
        // The store's own message names host, port and database; the URL (and
        // its password) stays out of it.
        let store = PgStore::connect(&config.database)
            .await
            .context("cannot open the PostgreSQL database (--database / HERALD_DATABASE)")?;
        return Ok((Arc::new(store.clone()), Arc::new(store)));
    }
    let path = match config.database.strip_prefix("sqlite:") {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p.trim_start_matches("//")),
        _ => config.data_dir.join("herald.db"),
    };
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("cannot open the database {}", path.display()))?;
    Ok((Arc::new(store.clone()), Arc::new(store)))
}

/// The file that holds the generated admin key.
pub fn admin_key_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin.key")
}

/// The admin key: the configured one, else the one in the data dir, else a new one
/// written there (readable by the owner only).
///
/// # Errors
/// The data dir cannot be written.
pub fn ensure_admin_key(config: &Config) -> anyhow::Result<String> {
    if let Some(k) = &config.node.admin_key {
        return Ok(k.clone());
    }
    let path = admin_key_path(&config.data_dir);
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_owned();
        if !k.is_empty() {
            return Ok(k);
        }
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create the data dir {}", config.data_dir.display()))?;
    let key = herald_store::credentials::generate_secret("ha_");
    std::fs::write(&path, format!("{key}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(key)
}

/// What `run` reports once it listens.
#[derive(Debug, Clone)]
pub struct Started {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// The demo app's credentials when it was created by this start.
    pub demo: Option<NewCredentials>,
    /// The admin key in force.
    pub admin_key: String,
}

/// Wraps an engine in something of the same trait ([`Hooks`]).
pub type Wrap<T> = Box<dyn FnOnce(Arc<T>) -> Arc<T> + Send>;

/// Sees a value once it is made ([`Hooks`]).
pub type Tap<T> = Box<dyn FnOnce(&T) + Send>;

/// What a test may put between the node and its engines (e.g. a broker that
/// delays or fails some calls); nothing by default.
#[derive(Default)]
pub struct Hooks {
    /// Wraps the broker the node uses.
    pub broker: Option<Wrap<dyn Broker>>,
    /// Wraps the presence engine the node uses.
    pub presence: Option<Wrap<dyn Presence>>,
    /// Sees the classroom's state once it is made (e.g. to compare a live
    /// session's state with its log replayed).
    pub classroom: Option<Tap<herald_classroom::ClassroomState>>,
}

impl Hooks {
    fn wire(
        &mut self,
        broker: Arc<dyn Broker>,
        presence: Arc<dyn Presence>,
    ) -> (Arc<dyn Broker>, Arc<dyn Presence>) {
        let broker = match self.broker.take() {
            Some(wrap) => wrap(broker),
            None => broker,
        };
        let presence = match self.presence.take() {
            Some(wrap) => wrap(presence),
            None => presence,
        };
        (broker, presence)
    }
}

/// Runs Herald on `listener` until `shutdown` resolves, then drains connections.
/// `on_start` is called once the server is ready, with what a user must be told.
///
/// # Errors
/// The store cannot be opened, or the listener fails.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(&Started),
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, on_start, Hooks::default()).await
}

/// [`run`] with the engines wrapped by `hooks` (for tests).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    mut config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(&Started),
    mut hooks: Hooks,
) -> anyhow::Result<()> {
    let admin_key = ensure_admin_key(&config)?;
    config.node.admin_key = Some(admin_key.clone());
    // The live sessions' channels, unless the configuration says otherwise.
    config
        .node
        .namespaces
        .entry(herald_classroom::live::NAMESPACE.to_owned())
        .or_insert_with(herald_classroom::live::namespace_options);
    // The embedded broker before the database: its lock tells whether another
    // process serves this data dir.
    let embedded = open_embedded(&config).await?;
    let (store, classroom_store) = open_stores(&config).await?;
    let demo = if config.demo_app && store.app("demo").await?.is_none() {
        match store.create_app("demo").await {
            Ok(c) => Some(c),
            Err(herald_store::StoreError::AppExists(_)) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    ensure_app(&*store, herald_classroom::live::APP).await?;
    let node = if let Some(memory) = &embedded {
        let (broker, presence) = hooks.wire(memory.clone(), memory.clone());
        let node = Node::new(config.node.clone(), broker, presence, store);
        spawn_eviction(&node, memory.clone());
        node
    } else {
        let urls: Vec<String> = config::redis_urls(&config.broker)
            .into_iter()
            .map(String::from)
            .collect();
        let broker =
            herald_broker::redis::RedisBroker::connect(&urls, herald_broker::redis::RedisOptions::default())
                .await
                .map_err(|e| anyhow::anyhow!("cannot use the Redis broker ({} shard(s)): {e}", urls.len()))?;
        let broker = Arc::new(broker);
        let (broker, presence) = hooks.wire(broker.clone(), broker);
        Node::new(config.node.clone(), broker, presence, store)
    };
    let state = AppState {
        node: node.clone(),
        options: Arc::new(config.server.clone()),
    };
    let mut classroom_options = config.classroom.clone();
    classroom_options.allowed_origins = config.server.cors_origins.clone();
    let classroom = herald_classroom::ClassroomState::new(classroom_store, classroom_options, node.clone())?;
    if let Some(tap) = hooks.classroom.take() {
        tap(&classroom);
    }
    let sweeper = tokio::spawn(herald_classroom::auth::sweep_sessions(classroom.clone()));
    let extra = web::routes(node.clone(), config.demo_app).merge(herald_classroom::routes(classroom));
    let router = herald_server::router(state.clone(), extra);
    let started = Started {
        addr: listener.local_addr()?,
        demo,
        admin_key,
    };
    on_start(&started);
    tracing::info!(addr = %started.addr, "herald listening");
    let served = herald_server::serve(listener, router, state, shutdown).await;
    sweeper.abort();
    // What closed connections and classroom changes left running (presence
    // leaves, broker unsubscribes, staged saves) ends before the process does.
    node.drain_io(herald_node::SHUTDOWN_IO_LIMIT).await;
    // Then the history journal is synced and marked clean: a restart loses nothing.
    if let Some(memory) = &embedded {
        if let Err(e) = memory.close().await {
            tracing::error!(error = %e, "the history journal was not closed cleanly");
        }
    }
    served?;
    Ok(())
}

/// Where the embedded broker keeps its history journal.
pub fn history_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("history")
}

/// The embedded broker the configuration names (`None` for Redis): with its
/// journal in the data dir, replayed now, or in memory only.
async fn open_embedded(config: &Config) -> anyhow::Result<Option<Arc<MemoryBroker>>> {
    match config.broker.as_str() {
        config::MEMORY => Ok(Some(Arc::new(MemoryBroker::new()))),
        config::EMBEDDED => {
            let dir = history_dir(&config.data_dir);
            let node = config.node.clone();
            let opened = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let policy_of =
                    |k: &herald_broker::ChannelKey| node.namespace(k.channel.namespace()).history();
                let broker = MemoryBroker::open(&dir, &policy_of, herald_broker::JournalOptions::default());
                (broker, dir, started.elapsed())
            })
            .await
            .context("the history journal's reader stopped")?;
            let (broker, dir, took) = opened;
            let broker =
                broker.with_context(|| format!("cannot open the history journal in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), channels = broker.channel_count(), ?took, "history kept across restarts");
            Ok(Some(Arc::new(broker)))
        }
        _ => Ok(None),
    }
}

/// Creates the internal app `name` unless it exists (another node may create it
/// at the same moment: that is fine too).
async fn ensure_app(store: &dyn Store, name: &str) -> anyhow::Result<()> {
    if store.app(name).await?.is_some() {
        return Ok(());
    }
    match store.create_app(name).await {
        Ok(_) => {
            tracing::info!(app = name, "internal app created");
            Ok(())
        }
        Err(herald_store::StoreError::AppExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// How long the memory broker remembers a quiet channel's epoch and offset.
const CHANNEL_IDLE: Duration = Duration::from_secs(3600);

fn spawn_eviction(node: &Node, broker: Arc<MemoryBroker>) {
    let stop = node.shutdown_token();
    let config = node.config().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => broker.evict_idle(|k| config.namespace(k.channel.namespace()).history(), CHANNEL_IDLE),
            }
        }
    });
}

/// The admin key for a CLI verb: configured, or read from the data dir (never
/// created here: only `serve` creates it).
///
/// # Errors
/// No admin key is configured and none is in the data dir.
pub fn ensure_admin_key_read_only(config: &Config) -> anyhow::Result<String> {
    if let Some(k) = &config.node.admin_key {
        return Ok(k.clone());
    }
    let path = admin_key_path(&config.data_dir);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => Ok(k.trim().to_owned()),
        _ => anyhow::bail!(
            "no key to publish with: pass --key (the app's key), set HERALD_ADMIN_KEY, or run `herald serve` once so that {} exists",
            path.display()
        ),
    }
}
