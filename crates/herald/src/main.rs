//! `herald`: parse the command line, then serve or run one CLI verb.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use herald::config::{self, Config, Overrides};
use herald_node::Claims;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Real-time messaging for the web: SSE, WebSocket and long-poll, with loss-free resume."
)]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Config file (TOML).
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded database, the admin key and the history journal live.
    #[arg(long, global = true, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database: "sqlite" (a file in the data dir) or postgres://user:pass@host/db (cluster).
    #[arg(long, global = true, env = "HERALD_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// The admin key (default: generated into DATA_DIR/admin.key).
    #[arg(long, global = true, env = "HERALD_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Mark the classroom's cookies Secure (HTTPS only): on behind TLS. Default false.
    #[arg(
        long,
        global = true,
        env = "HERALD_CLASSROOM_SECURE_COOKIES",
        num_args = 0..=1,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    classroom_secure_cookies: Option<bool>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (no flags needed: 127.0.0.1:8080, ./herald-data, embedded broker).
    Serve {
        /// Address to listen on, IP:PORT.
        #[arg(long, env = "HERALD_LISTEN")]
        listen: Option<String>,
        /// Broker: "embedded" (one node, history kept in the data dir; the default), "memory" (one node, history lost on restart) or redis://host:port[,redis://...] (cluster; several URLs shard channels).
        #[arg(long, env = "HERALD_BROKER", hide_env_values = true)]
        broker: Option<String>,
        /// Log as JSON lines instead of text.
        #[arg(long, env = "HERALD_LOG_JSON")]
        log_json: bool,
    },
    /// Manage apps (tenants).
    App {
        #[command(subcommand)]
        verb: AppVerb,
    },
    /// Print a signed client token for an app.
    Token(TokenArgs),
    /// Publish a message through a running server.
    Publish(PublishArgs),
}

#[derive(Subcommand)]
enum AppVerb {
    /// Create an app and print its key and token secret.
    Create {
        /// App name: 1 to 63 of a-z 0-9 -.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List apps.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new key and token secret for an app.
    Rotate {
        /// App name.
        name: String,
        /// How long the old credentials keep working (e.g. 1h). Default: stop at once.
        #[arg(long, default_value = "0s")]
        grace: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct TokenArgs {
    /// The app.
    #[arg(long)]
    app: String,
    /// User id (omit for an anonymous token).
    #[arg(long)]
    sub: Option<String>,
    /// Channel pattern the holder may subscribe to (repeatable; `*` for all).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// Channel pattern the holder may publish to (repeatable).
    #[arg(long = "publish")]
    publish: Vec<String>,
    /// Presence info as JSON, e.g. '{"name":"Alice"}'.
    #[arg(long)]
    info: Option<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
}

#[derive(Args)]
struct PublishArgs {
    /// The app.
    #[arg(long)]
    app: String,
    /// Channel (repeatable).
    #[arg(long = "channel", required = true)]
    channels: Vec<String>,
    /// Message data as JSON.
    #[arg(long)]
    data: String,
    /// Event name (default: message).
    #[arg(long)]
    event: Option<String>,
    /// Idempotency key: a retried publish with it appends nothing twice.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// The server's base URL (default: from the config's listen address).
    #[arg(long, env = "HERALD_URL")]
    url: Option<String>,
    /// The app's secret key (default: the admin key).
    #[arg(long, env = "HERALD_APP_KEY", hide_env_values = true)]
    key: Option<String>,
}

fn load(common: &Common, listen: Option<String>, broker: Option<String>) -> anyhow::Result<Config> {
    let file = config::read_file(common.config.as_deref())?;
    config::build(
        file,
        Overrides {
            listen,
            data_dir: common.data_dir.clone(),
            broker,
            database: common.database.clone(),
            admin_key: common.admin_key.clone(),
            classroom_secure_cookies: common.classroom_secure_cookies,
        },
    )
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            broker,
            log_json,
        } => serve(&cli.common, listen, broker, log_json).await,
        Command::App { verb } => app(&cli.common, verb).await,
        Command::Token(args) => token(&cli.common, args).await,
        Command::Publish(args) => publish(&cli.common, args).await,
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Listens on `addr` with a deep accept queue: a crowd that connects at once
/// (a lesson starting, a reconnect storm after a restart) must not wait for SYN
/// retries (tokio's default backlog is 1024, capped lower by some systems).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(8192)
}

async fn serve(
    common: &Common,
    listen: Option<String>,
    broker: Option<String>,
    log_json: bool,
) -> anyhow::Result<()> {
    init_logging(log_json);
    let config = load(common, listen, broker)?;
    let listener = bind(config.listen).with_context(|| {
        format!(
            "cannot listen on {} (is another server using that port? try --listen 127.0.0.1:8081)",
            config.listen
        )
    })?;
    let data_dir = config.data_dir.clone();
    herald::run(config, listener, shutdown_signal(), |s| {
        let url = format!("http://{}", s.addr);
        println!("Herald {} is running.", env!("CARGO_PKG_VERSION"));
        println!();
        println!("  Open:      {url}/");
        println!("  Data:      {}", data_dir.display());
        println!("  Admin key: in {}", herald::admin_key_path(&data_dir).display());
        match &s.demo {
            Some(demo) => {
                println!();
                println!(
                    "  Created the app \"demo\" (shown once; `herald app rotate demo` issues new ones):"
                );
                println!("    key:          {}", demo.key);
                println!("    token secret: {}", demo.token_secret);
            }
            None => println!("  App \"demo\" exists (its key was shown at first start)."),
        }
        println!();
        println!("  Try it:");
        println!("    TOKEN=$(herald token --app demo --sub alice --channel '*')");
        println!("    curl -N \"{url}/v1/apps/demo/events?channel=news&token=$TOKEN\"");
        println!("    herald publish --app demo --channel news --data '{{\"hello\":\"world\"}}'");
        println!();
    })
    .await
}

/// Refuses to create an empty database where the user expects one (a mistyped
/// --data-dir): only `serve` and `app create` may start a new data dir.
fn require_existing_data(config: &Config) -> anyhow::Result<()> {
    if config.database == "sqlite" && !config.data_dir.join("herald.db").exists() {
        bail!(
            "there is no Herald database in {} (run `herald serve` once, or pass the right --data-dir)",
            config.data_dir.display()
        );
    }
    Ok(())
}

async fn app(common: &Common, verb: AppVerb) -> anyhow::Result<()> {
    let config = load(common, None, None)?;
    if !matches!(verb, AppVerb::Create { .. }) {
        require_existing_data(&config)?;
    }
    let store = herald::open_store(&config).await?;
    match verb {
        AppVerb::Create { name, json } => {
            herald_protocol::AppName::parse(&name).map_err(|e| anyhow!("app name {name:?}: {e}"))?;
            let c = store.create_app(&name).await.map_err(|e| anyhow!("{e}"))?;
            print_credentials(&c, json, "Created");
        }
        AppVerb::List { json } => {
            let apps = store.list_apps().await.map_err(|e| anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&apps)?);
            } else if apps.is_empty() {
                println!("No apps. Create one with: herald app create NAME");
            } else {
                for a in apps {
                    println!("{}", a.name);
                }
            }
        }
        AppVerb::Rotate { name, grace, json } => {
            let grace = humantime::parse_duration(&grace)
                .with_context(|| format!("--grace {grace:?} is not a duration (e.g. 0s, 10m, 1h)"))?;
            let c = store.rotate_app(&name, grace).await.map_err(|e| anyhow!("{e}"))?;
            print_credentials(&c, json, "Rotated");
            if !json && !grace.is_zero() {
                println!(
                    "The previous key and token secret keep working for {}.",
                    humantime::format_duration(grace)
                );
            }
        }
    }
    Ok(())
}

fn print_credentials(c: &herald_store::NewCredentials, json: bool, verb: &str) {
    if json {
        println!(
            "{}",
            serde_json::json!({"app": c.app, "key": c.key, "token_secret": c.token_secret})
        );
    } else {
        println!(
            "{verb} app {:?}. Keep these secret; the key is not shown again.",
            c.app
        );
        println!("  key:          {}", c.key);
        println!("  token secret: {}", c.token_secret);
    }
}

async fn token(common: &Common, args: TokenArgs) -> anyhow::Result<()> {
    let config = load(common, None, None)?;
    let ttl = humantime::parse_duration(&args.ttl)
        .with_context(|| format!("--ttl {:?} is not a duration (e.g. 15m, 1h, 7d)", args.ttl))?;
    if ttl.is_zero() || ttl > Duration::from_secs(366 * 86_400) {
        bail!("--ttl must be between 1s and 366d");
    }
    for p in args.channels.iter().chain(&args.publish) {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| herald_protocol::channel::is_channel_byte(b) || b == b'*')
        {
            bail!("pattern {p:?} may contain only channel characters and '*'");
        }
    }
    let info = match &args.info {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<serde_json::Value>(s)
                .with_context(|| format!("--info {s:?} is not JSON"))?,
        ),
    };
    herald_protocol::AppName::parse(&args.app).map_err(|e| anyhow!("app name {:?}: {e}", args.app))?;
    require_existing_data(&config)?;
    let store = herald::open_store(&config).await?;
    let app = store
        .app(&args.app)
        .await
        .map_err(|e| anyhow!("{e}"))?
        .ok_or_else(|| {
            anyhow!(
                "there is no app named {:?} in {} (create it with: herald app create {})",
                args.app,
                config.data_dir.display(),
                args.app
            )
        })?;
    let secret = app.token_secrets.first().ok_or_else(|| {
        anyhow!(
            "app {:?} has no valid token secret; run: herald app rotate {}",
            args.app,
            args.app
        )
    })?;
    let now = herald_broker::now_millis() / 1000;
    let claims = Claims {
        sub: args.sub,
        exp: now + ttl.as_secs() as i64,
        nbf: None,
        iat: Some(now),
        app: Some(args.app.clone()),
        channels: args.channels,
        publish: args.publish,
        info,
    };
    println!(
        "{}",
        herald_node::sign_token(secret, &claims).map_err(|e| anyhow!("{}", e.message))?
    );
    Ok(())
}

async fn publish(common: &Common, args: PublishArgs) -> anyhow::Result<()> {
    let config = load(common, None, None)?;
    let data: serde_json::Value = serde_json::from_str(&args.data).with_context(|| {
        format!(
            "--data {:?} is not JSON (strings need quotes: '\"hi\"')",
            args.data
        )
    })?;
    let key = match args.key {
        Some(k) => k,
        None => herald::ensure_admin_key_read_only(&config)?,
    };
    let base = args.url.unwrap_or_else(|| format!("http://{}", config.listen));
    let mut body = serde_json::json!({"data": data});
    if args.channels.len() == 1 {
        body["channel"] = serde_json::json!(args.channels[0]);
    } else {
        body["channels"] = serde_json::json!(args.channels);
    }
    if let Some(e) = args.event {
        body["event"] = serde_json::json!(e);
    }
    if let Some(k) = args.idempotency_key {
        body["idempotency_key"] = serde_json::json!(k);
    }
    let url = format!("{}/v1/apps/{}/publish", base.trim_end_matches('/'), args.app);
    let res = reqwest::Client::new()
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .with_context(|| {
            format!("cannot reach the server at {base} (is `herald serve` running? set --url)")
        })?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<herald_protocol::ErrorBody>(&text)
            .map(|b| format!("{} ({})", b.error.message, b.error.code))
            .unwrap_or(text);
        bail!("publish refused with {status}: {msg}");
    }
    println!("{text}");
    Ok(())
}
