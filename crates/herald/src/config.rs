//! The one typed configuration: file < `HERALD_*` environment < flags, validated
//! once here. Nothing below the binary reads files or the environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use herald_classroom::ClassroomOptions;
use herald_node::{Limits, NamespaceOptions, NodeConfig};
use herald_server::ServerOptions;
use serde::Deserialize;

/// The validated configuration of `herald serve` (and of the CLI verbs that open
/// the store).
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded database, the admin key and the embedded broker's
    /// history journal live.
    pub data_dir: PathBuf,
    /// The broker: [`EMBEDDED`] (one node, history kept in the data dir across
    /// restarts), [`MEMORY`] (one node, history in memory only), or Redis URLs.
    pub broker: String,
    /// Database URL: `sqlite` (a file in the data dir), `sqlite:/path/to/file.db`,
    /// or a PostgreSQL URL (`postgres://` or `postgresql://`) for a cluster.
    pub database: String,
    /// Create the `demo` app on first start.
    pub demo_app: bool,
    /// The node's configuration.
    pub node: NodeConfig,
    /// The HTTP face's options.
    pub server: ServerOptions,
    /// The live classroom's options.
    pub classroom: ClassroomOptions,
}

impl Config {
    /// Defaults for everything, with the given data dir (tests use this).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            broker: EMBEDDED.into(),
            database: "sqlite".into(),
            demo_app: true,
            node: NodeConfig::default(),
            server: ServerOptions::default(),
            classroom: ClassroomOptions::default(),
        }
    }
}

/// The default broker: one node, its history journaled in `DATA_DIR/history`.
pub const EMBEDDED: &str = "embedded";

/// One node, history in memory only (a restart starts every channel anew).
pub const MEMORY: &str = "memory";

/// Whether `broker` names the embedded engine (with or without its journal).
pub fn is_embedded(broker: &str) -> bool {
    broker == EMBEDDED || broker == MEMORY
}

/// The config file (`herald.toml`). Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    broker: Option<String>,
    database: Option<String>,
    admin_key: Option<String>,
    demo_app: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    transport: FileTransport,
    #[serde(default)]
    defaults: FileNamespace,
    #[serde(default)]
    namespaces: HashMap<String, FileNamespace>,
    #[serde(default)]
    classroom: FileClassroom,
    idempotency_window: Option<String>,
    cors_origins: Option<Vec<String>>,
    presence_ttl: Option<String>,
    token_leeway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_message_size: Option<usize>,
    max_channels_per_connection: Option<usize>,
    max_channels_per_publish: Option<usize>,
    max_connections_per_app: Option<usize>,
    queue_len: Option<usize>,
    max_history_page: Option<usize>,
    hub_backlog: Option<usize>,
    hub_lag: Option<String>,
    publish_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTransport {
    sse_heartbeat: Option<String>,
    sse_retry: Option<String>,
    ws_ping: Option<String>,
    ws_idle_timeout: Option<String>,
    longpoll_max_timeout: Option<String>,
    shutdown_deadline: Option<String>,
    request_head_timeout: Option<String>,
    request_body_timeout: Option<String>,
    request_body_min_rate: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileClassroom {
    secure_cookies: Option<bool>,
    client_ip_header: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNamespace {
    history_size: Option<usize>,
    history_ttl: Option<String>,
    presence: Option<bool>,
    join_leave: Option<bool>,
    client_publish: Option<bool>,
    anonymous_subscribe: Option<bool>,
}

/// Values given on the command line or in `HERALD_*` variables (clap merges those
/// two); `None` falls back to the file, then to the default.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen` / `HERALD_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `HERALD_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--broker` / `HERALD_BROKER`.
    pub broker: Option<String>,
    /// `--database` / `HERALD_DATABASE`.
    pub database: Option<String>,
    /// `--admin-key` / `HERALD_ADMIN_KEY`.
    pub admin_key: Option<String>,
    /// `--classroom-secure-cookies` / `HERALD_CLASSROOM_SECURE_COOKIES`.
    pub classroom_secure_cookies: Option<bool>,
}

/// The longest duration any setting takes. Timeouts and TTLs are added to
/// `Instant::now()` and turned into signed milliseconds; a duration of
/// billions of years (which `humantime` reads) overflowed both: a panic in
/// every connection's task (`request_head_timeout`), or idempotency keys that
/// expired at once (`idempotency_window`). Found by fuzz/fuzz_targets/config.rs.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn duration(field: &str, raw: &Option<String>, default: Duration) -> anyhow::Result<Duration> {
    match raw {
        None => Ok(default),
        Some(s) => {
            let d = humantime::parse_duration(s).with_context(|| {
                format!("{field} = {s:?} is not a duration (examples: \"500ms\", \"25s\", \"10m\", \"1h\")")
            })?;
            if d > MAX_DURATION {
                bail!("{field} = {s:?} is too long: at most 10 years (\"3650d\")");
            }
            Ok(d)
        }
    }
}

fn namespace(name: &str, f: &FileNamespace, base: &NamespaceOptions) -> anyhow::Result<NamespaceOptions> {
    let field = |k: &str| {
        if name.is_empty() {
            format!("defaults.{k}")
        } else {
            format!("namespaces.{name}.{k}")
        }
    };
    Ok(NamespaceOptions {
        history_size: f.history_size.unwrap_or(base.history_size),
        history_ttl: duration(&field("history_ttl"), &f.history_ttl, base.history_ttl)?,
        presence: f.presence.unwrap_or(base.presence),
        join_leave: f.join_leave.unwrap_or(base.join_leave),
        client_publish: f.client_publish.unwrap_or(base.client_publish),
        anonymous_subscribe: f.anonymous_subscribe.unwrap_or(base.anonymous_subscribe),
    })
}

/// True when `database` names a PostgreSQL database (`postgres://` or
/// `postgresql://` URL), shared by the nodes of a cluster.
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// `url` with the password of its `user:password@` part, if any, replaced by
/// `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |i| &rest[..i]);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end], &authority[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// The Redis URLs of a broker setting (`redis://a,redis://b`), trimmed, non-empty.
pub fn redis_urls(broker: &str) -> Vec<&str> {
    broker
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// Reads the config file, if any.
///
/// # Errors
/// The file cannot be read or is not valid TOML of the expected shape.
pub fn read_file(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("the config file {} is not valid", path.display()))
}

/// Builds the validated configuration.
///
/// # Errors
/// Any value that does not parse or is out of range, with a sentence naming it.
pub fn build(file: FileConfig, over: Overrides) -> anyhow::Result<Config> {
    let listen_raw = over
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_raw
        .parse()
        .with_context(|| format!("listen address {listen_raw:?} is not IP:PORT (example: 127.0.0.1:8080)"))?;
    let data_dir = over
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./herald-data"));
    let broker = over.broker.or(file.broker).unwrap_or_else(|| EMBEDDED.into());
    if !is_embedded(&broker) {
        for url in redis_urls(&broker) {
            if url.starts_with("rediss://") {
                bail!("broker {}: TLS to Redis (rediss://) is not supported yet; use redis:// on a private network", redact_url(url));
            }
            if !url.starts_with("redis://") {
                bail!(
                    "broker {:?} is not supported; use \"embedded\" (one node, history kept in the data dir), \"memory\" (one node, history lost on restart) or Redis URLs like \"redis://127.0.0.1:6379\" (comma-separated to shard)",
                    redact_url(url)
                );
            }
        }
    }
    let database = over.database.or(file.database).unwrap_or_else(|| "sqlite".into());
    if database != "sqlite" && !database.starts_with("sqlite:") && !is_postgres(&database) {
        bail!(
            "database {:?} is not supported; use \"sqlite\" (a file in the data dir), \"sqlite:/path/to/file.db\", or a PostgreSQL URL like \"postgres://user:password@host:5432/herald\"",
            redact_url(&database)
        );
    }
    let d = NodeConfig::default();
    let default_ns = namespace("", &file.defaults, &d.default_namespace)?;
    let mut namespaces = HashMap::new();
    for (name, ns) in &file.namespaces {
        if name.is_empty()
            || !name.bytes().all(herald_protocol::channel::is_channel_byte)
            || name.contains(':')
        {
            bail!("namespace {name:?} is not a valid namespace name (channel characters, no ':')");
        }
        namespaces.insert(name.clone(), namespace(name, ns, &default_ns)?);
    }
    let dl = Limits::default();
    let l = &file.limits;
    let limits = Limits {
        max_message_size: l.max_message_size.unwrap_or(dl.max_message_size),
        max_channels_per_connection: l
            .max_channels_per_connection
            .unwrap_or(dl.max_channels_per_connection),
        max_channels_per_publish: l.max_channels_per_publish.unwrap_or(dl.max_channels_per_publish),
        max_connections_per_app: l.max_connections_per_app.unwrap_or(dl.max_connections_per_app),
        queue_len: l.queue_len.unwrap_or(dl.queue_len),
        max_history_page: l.max_history_page.unwrap_or(dl.max_history_page),
        hub_backlog: l.hub_backlog.unwrap_or(dl.hub_backlog),
        hub_lag: duration("limits.hub_lag", &l.hub_lag, dl.hub_lag)?,
        publish_wait: duration("limits.publish_wait", &l.publish_wait, dl.publish_wait)?,
    };
    for (name, v) in [
        ("limits.max_message_size", limits.max_message_size),
        (
            "limits.max_channels_per_connection",
            limits.max_channels_per_connection,
        ),
        ("limits.max_channels_per_publish", limits.max_channels_per_publish),
        ("limits.max_connections_per_app", limits.max_connections_per_app),
        ("limits.queue_len", limits.queue_len),
        ("limits.max_history_page", limits.max_history_page),
        ("limits.hub_backlog", limits.hub_backlog),
    ] {
        if v == 0 {
            bail!("{name} must be at least 1");
        }
    }
    if limits.max_message_size > 16 * 1024 * 1024 {
        bail!("limits.max_message_size must be at most 16 MiB");
    }
    if limits.publish_wait > Duration::from_secs(60) {
        bail!("limits.publish_wait must be at most 60s (publishers' HTTP clients give up sooner)");
    }
    let admin_key = over.admin_key.or(file.admin_key).filter(|k| !k.is_empty());
    if let Some(k) = &admin_key {
        if k.len() < 16 {
            bail!("the admin key must be at least 16 characters long");
        }
    }
    let node = NodeConfig {
        default_namespace: default_ns,
        namespaces,
        limits,
        idempotency_window: duration(
            "idempotency_window",
            &file.idempotency_window,
            d.idempotency_window,
        )?,
        presence_ttl: duration("presence_ttl", &file.presence_ttl, d.presence_ttl)?,
        token_leeway: duration("token_leeway", &file.token_leeway, d.token_leeway)?,
        app_cache_ttl: d.app_cache_ttl,
        admin_key,
        usage_flush_interval: d.usage_flush_interval,
    };
    if node.idempotency_window < Duration::from_secs(300) {
        bail!("idempotency_window must be at least 5m");
    }
    let ds = ServerOptions::default();
    let t = &file.transport;
    let mut server = ServerOptions {
        sse_heartbeat: duration("transport.sse_heartbeat", &t.sse_heartbeat, ds.sse_heartbeat)?,
        sse_retry: duration("transport.sse_retry", &t.sse_retry, ds.sse_retry)?,
        ws_ping: duration("transport.ws_ping", &t.ws_ping, ds.ws_ping)?,
        ws_idle_timeout: duration(
            "transport.ws_idle_timeout",
            &t.ws_idle_timeout,
            ds.ws_idle_timeout,
        )?,
        longpoll_max_timeout: duration(
            "transport.longpoll_max_timeout",
            &t.longpoll_max_timeout,
            ds.longpoll_max_timeout,
        )?,
        shutdown_deadline: duration(
            "transport.shutdown_deadline",
            &t.shutdown_deadline,
            ds.shutdown_deadline,
        )?,
        cors_origins: ds.cors_origins.clone(),
        request_head_timeout: duration(
            "transport.request_head_timeout",
            &t.request_head_timeout,
            ds.request_head_timeout,
        )?,
        request_body_timeout: duration(
            "transport.request_body_timeout",
            &t.request_body_timeout,
            ds.request_body_timeout,
        )?,
        request_body_min_rate: t.request_body_min_rate.unwrap_or(ds.request_body_min_rate),
    };
    if let Some(origins) = file.cors_origins {
        for o in &origins {
            let ok = o == "*"
                || ((o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| b.is_ascii_graphic()));
            if !ok {
                bail!("cors_origins: {o:?} is not an origin like \"https://app.example.com\" (no path, no trailing slash) or \"*\"");
            }
        }
        server.cors_origins = origins;
    }
    if server.sse_heartbeat > Duration::from_secs(25) || server.sse_heartbeat.is_zero() {
        bail!("transport.sse_heartbeat must be between 1ms and 25s (proxies close quieter streams)");
    }
    if server.ws_ping.is_zero() || server.ws_idle_timeout <= server.ws_ping {
        bail!("transport.ws_idle_timeout must be longer than transport.ws_ping, and ws_ping above zero");
    }
    let client_ip_header = match &file.classroom.client_ip_header {
        None => None,
        Some(h) => Some(
            axum::http::HeaderName::from_bytes(h.trim().as_bytes()).map_err(|_| {
                anyhow!("classroom.client_ip_header {h:?} is not a header name (e.g. x-forwarded-for)")
            })?,
        ),
    };
    let classroom = ClassroomOptions {
        secure_cookies: over
            .classroom_secure_cookies
            .or(file.classroom.secure_cookies)
            .unwrap_or(false),
        client_ip_header,
        ..ClassroomOptions::default()
    };
    Ok(Config {
        listen,
        data_dir,
        broker,
        database,
        demo_app: file.demo_app.unwrap_or(true),
        node,
        server,
        classroom,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn namespaces_inherit_defaults() {
        let file: FileConfig = toml::from_str(
            r#"
            [defaults]
            history_size = 50
            [namespaces.chat]
            join_leave = true
            "#,
        )
        .unwrap();
        let c = build(file, Overrides::default()).unwrap();
        assert_eq!(c.node.namespace("chat").history_size, 50);
        assert!(c.node.namespace("chat").join_leave);
        assert!(!c.node.namespace("other").join_leave);
    }

    #[test]
    fn backpressure_settings_from_the_file() {
        let file: FileConfig = toml::from_str(
            r#"
            [limits]
            hub_backlog = 100
            hub_lag = "20ms"
            publish_wait = "0s"
            "#,
        )
        .unwrap();
        let c = build(file, Overrides::default()).unwrap();
        assert_eq!(c.node.limits.hub_backlog, 100);
        assert_eq!(c.node.limits.hub_lag, Duration::from_millis(20));
        assert_eq!(c.node.limits.publish_wait, Duration::ZERO);
        let d = build(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(d.node.limits.hub_lag, Duration::from_millis(50));
        assert_eq!(d.node.limits.publish_wait, Duration::from_secs(1));
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let bad = |toml_text: &str| {
            let file: FileConfig = toml::from_str(toml_text).unwrap();
            build(file, Overrides::default()).unwrap_err().to_string()
        };
        assert!(bad("listen = \"nope\"").contains("IP:PORT"));
        assert!(bad("[defaults]\nhistory_ttl = \"ten\"").contains("defaults.history_ttl"));
        assert!(bad("[transport]\nsse_heartbeat = \"60s\"").contains("25s"));
        assert!(bad("broker = \"kafka://x\"").contains("not supported"));
        assert!(bad("[limits]\npublish_wait = \"soon\"").contains("limits.publish_wait"));
        assert!(bad("[limits]\npublish_wait = \"2m\"").contains("at most 60s"));
        assert!(bad("[limits]\nhub_lag = \"x\"").contains("limits.hub_lag"));
        assert!(bad("[limits]\nhub_backlog = 0").contains("limits.hub_backlog"));
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }

    /// Found by the `config` fuzz target: durations past what a deadline or a
    /// millisecond count can hold were accepted.
    #[test]
    fn durations_too_long_for_a_deadline_are_refused() {
        let bad = |toml_text: &str| {
            let file: FileConfig = toml::from_str(toml_text).unwrap();
            build(file, Overrides::default()).unwrap_err().to_string()
        };
        let e = bad("[transport]\nrequest_head_timeout = \"300000000000y\"");
        assert!(
            e.contains("transport.request_head_timeout") && e.contains("at most 10 years"),
            "{e}"
        );
        assert!(bad("idempotency_window = \"500000000y\"").contains("idempotency_window"));
        assert!(bad("[namespaces.chat]\nhistory_ttl = \"11y\"").contains("namespaces.chat.history_ttl"));
        let file: FileConfig = toml::from_str("[defaults]\nhistory_ttl = \"3650d\"").unwrap();
        let c = build(file, Overrides::default()).unwrap();
        assert_eq!(c.node.default_namespace.history_ttl, MAX_DURATION);
        assert!(std::time::Instant::now().checked_add(MAX_DURATION).is_some());
    }

    #[test]
    fn postgres_urls_are_accepted() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/test",
            "postgresql://herald:secret@db.internal/herald?sslmode=require",
        ] {
            let file: FileConfig = toml::from_str(&format!("database = {url:?}")).unwrap();
            assert_eq!(build(file, Overrides::default()).unwrap().database, url);
            let over = Overrides {
                database: Some(url.into()),
                ..Default::default()
            };
            assert_eq!(build(FileConfig::default(), over).unwrap().database, url);
            assert!(is_postgres(url));
        }
        assert!(!is_postgres("sqlite"));
        assert!(!is_postgres("sqlite:/tmp/x.db"));
    }

    #[test]
    fn other_databases_are_refused_without_their_password() {
        let over = Overrides {
            database: Some("mysql://herald:s3cret@db/herald".into()),
            ..Default::default()
        };
        let e = build(FileConfig::default(), over).unwrap_err().to_string();
        assert!(e.contains("not supported") && e.contains("postgres://"), "{e}");
        assert!(e.contains("mysql://herald:***@db/herald"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn redaction() {
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u:p:q@h:1/db?x=1"),
            "postgres://u:***@h:1/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/a@b"), "postgres://h/a@b");
        assert_eq!(redact_url("sqlite"), "sqlite");
    }

    #[test]
    fn classroom_client_ip_header_is_a_header_name() {
        let parse = |t: &str| build(toml::from_str::<FileConfig>(t).unwrap(), Overrides::default());
        assert_eq!(parse("").unwrap().classroom.client_ip_header, None);
        let c = parse("[classroom]\nclient_ip_header = \"X-Forwarded-For\"").unwrap();
        assert_eq!(c.classroom.client_ip_header.unwrap(), "x-forwarded-for");
        let e = parse("[classroom]\nclient_ip_header = \"not a header\"").unwrap_err();
        assert!(e.to_string().contains("client_ip_header"), "{e}");
    }

    #[test]
    fn classroom_secure_cookies_file_then_flag() {
        assert!(
            !build(FileConfig::default(), Overrides::default())
                .unwrap()
                .classroom
                .secure_cookies
        );
        let file = || toml::from_str::<FileConfig>("[classroom]\nsecure_cookies = true").unwrap();
        assert!(
            build(file(), Overrides::default())
                .unwrap()
                .classroom
                .secure_cookies
        );
        let over = Overrides {
            classroom_secure_cookies: Some(false),
            ..Default::default()
        };
        assert!(!build(file(), over).unwrap().classroom.secure_cookies);
        assert!(toml::from_str::<FileConfig>("[classroom]\nsecure = true").is_err());
    }

    #[test]
    fn flags_beat_the_file() {
        let file: FileConfig = toml::from_str("listen = \"127.0.0.1:1\"").unwrap();
        let over = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        assert_eq!(build(file, over).unwrap().listen.port(), 2);
    }
}
