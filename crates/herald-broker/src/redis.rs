//! The Redis engine: channels, history, fan-out between nodes and presence in one
//! or more Redis servers, so that several nodes serve the same channels.
//!
//! # Shards
//! Each URL given to [`RedisBroker::connect`] is one shard. A channel lives on one
//! shard, chosen by rendezvous hashing of `app/channel` over the shards' ids
//! (`host:port/db` of each URL): its offsets, history, presence and Pub/Sub topic
//! are all there, so every step on a channel is one Redis call on one server.
//! Adding a shard moves about 1/(n+1) of the channels (their history and epochs do
//! not move: those channels start a new epoch and their readers get a reset).
//! Every node must list the same shards with the same host names; the order of the
//! list does not matter.
//!
//! # Keys (with `P` the key prefix, `C` = `app/channel`)
//! | key | type | what |
//! | --- | --- | --- |
//! | `P:meta:C` | hash | `epoch`, `top` (newest offset); lives max(ttl, 1 h) after the last publish or history read, and while a node listens |
//! | `P:hist:C` | sorted set | score = offset, member = `<stored at, ms> <envelope JSON>`; at most `size`, none older than `ttl` |
//! | `P:pres:C` | hash | client -> `<user as hex> <seq> <info JSON>` |
//! | `P:pexp:C` | sorted set | client -> expiry (ms) |
//! | `P:pusr:C` | sorted set | `<user as hex>:<client>` (score 0, read by lex range: a user's connections) |
//! | `P:psweep` | sorted set | per shard: `C` -> earliest expiry of its presence entries (or earlier) |
//! | `P:pseq` | string | per shard: presence sequence (the newest entry's info wins) |
//! | `P:idem:app:key` | hash | idempotency record: state, fingerprint, owner, results, end of window |
//!
//! Pub/Sub topic of a channel: `P:topic:<db>:C` (Pub/Sub ignores databases, so the
//! database number keeps two deployments on one server apart).
//!
//! # Scripts (scripts.rs)
//! - **publish**: starts the epoch if the meta key is gone (the epoch candidate
//!   comes from the caller; a fresh one each call), increments `top`, builds the
//!   envelope JSON around the offset and epoch (the caller sends the parts of
//!   `Envelope::to_json` before and after them), appends it to the history,
//!   trims by size and age, refreshes the keys' expiry and `PUBLISH`es the
//!   envelope, all in one step: offsets have no hole, and Pub/Sub delivers in
//!   offset order because the publish is part of the step.
//! - **history**: the same epoch rule, trims, refreshes the expiry, returns
//!   epoch, top, oldest retained offset and up to `limit` messages after `since`
//!   (with `limit` 0 it reads nothing but the position).
//! - **presence** join/leave/members/sweep, and **idempotency** claim/finish: see
//!   below and the scripts' docs.
//!
//! # Pub/Sub payloads
//! One tag byte, then the body: `m` + envelope JSON (exactly `Envelope::to_json`),
//! or `c` + a control payload (presence join/leave, not stored). The topic names
//! the channel; the envelope's own channel must match it. A control payload goes
//! through the channel's topic, so it is ordered with the channel's messages.
//!
//! # Idempotency
//! A publish with a key first claims `P:idem:app:key` (on the shard the key hashes
//! to) as pending, with a lease; then appends to every channel (they may live on
//! several shards); then stores the results for the rest of the window. A retry
//! that finds the key done returns the stored results; pending, it polls until the
//! owner finishes (or its lease runs out, for an owner that died: the retry then
//! takes over); with another fingerprint it is a conflict. When some channels
//! failed, the record keeps what was appended and a retry appends only the rest.
//! Two cases can still append twice: a node that dies between appending and
//! recording (its retry takes over after the lease), and a record lost with its
//! Redis (restart, flush).
//!
//! # Presence
//! Entries are per connection with their own expiry. `join` reports a user who had
//! no unexpired entry; `leave` reports a user whose last unexpired entry it
//! removed; `sweep` removes expired entries of every channel on every shard (the
//! per-shard `psweep` index says which channels have some due) and reports users
//! left with none. Each is one script, so nodes sweeping at once report each
//! departure once. Users are stored as hex so that no byte of theirs can be taken
//! for a separator.
//!
//! # Failures
//! Every Redis call is bounded by [`RedisOptions::command_timeout`], and an
//! operation answers [`BrokerError::Unavailable`] as soon as one of its calls fails
//! (no answer in time, connection refused); nothing hangs, nothing panics. (An
//! idempotent publish that waits for a concurrent one with the same key waits at
//! most the idempotency lease plus the command timeout.) A publish answers success
//! only when the script returned, so never for a message that was not stored (a
//! timeout can still hide a publish that Redis did run: the caller sees an error
//! for a message that was stored; idempotency keys make the retry safe). A
//! `subscribe` that fails still counts: the caller undoes it with `unsubscribe`,
//! as the node does, and until then the engine establishes it as soon as Redis
//! answers.
//!
//! Command connections reconnect on the next call (and one that went silent is
//! replaced). Each shard's Pub/Sub connection is kept by a task that reconnects
//! with a bounded backoff, resubscribes every channel that still has local
//! subscribers and then calls [`BrokerHandler::on_disruption`]. When Redis loses a
//! channel's keys (restart, flush, eviction) the next publish or read starts a new
//! epoch, so old cursors get a reset, never a silent gap.
//!
//! Needs Redis 5 or later (scripts that call `TIME` and then write). Not for Redis
//! Cluster: shards are separate servers chosen by Herald, and the sweep script
//! touches keys it derives itself.

// Why redis-rs: see docs/decisions.md, "Cluster mode". In short: it is the maintained,
// has exactly the three pieces this engine is built on: a Tokio multiplexed
// connection that reconnects by itself (`ConnectionManager`), a split Pub/Sub
// connection whose SUBSCRIBE resolves on the server's confirmation, and `Script`
// (EVALSHA, reloaded by itself after a Redis restart). One multiplexed connection per
// shard carries every command, so the alternatives (fred's larger surface, a
// bb8/deadpool pool over redis-rs) would add weight without adding anything we use.

mod ring;
mod scripts;
mod subscriber;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::RedisResult;
use async_trait::async_trait;
use futures_util::future::join_all;
use herald_protocol::{AppName, ChannelName, Envelope};
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::broker::{
    Broker, BrokerError, BrokerHandler, ChannelKey, HistoryPolicy, HistoryRead, Idempotency, Publication,
    Published,
};
use crate::presence::{Member, Presence, PresenceEntry, PresenceEvent};
use crate::{new_epoch, now_millis};
use ring::Ring;
use subscriber::Subscriptions;

/// Settings of the Redis engine; every field has a default.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prefix of every key and Pub/Sub topic (default `herald`). Deployments that
    /// share a Redis use different prefixes.
    pub prefix: String,
    /// How long any call waits for Redis before answering
    /// [`BrokerError::Unavailable`] (default 2 s).
    pub command_timeout: Duration,
    /// The longest wait between two attempts to reconnect a Pub/Sub connection
    /// (default 2 s; after a connection that was up, the first attempt is immediate;
    /// the next ones wait 100 ms, 200 ms, ... up to this).
    pub reconnect_max_delay: Duration,
    /// How often each Pub/Sub connection is pinged, to notice a peer that went
    /// silent without closing it (default 5 s).
    pub ping_interval: Duration,
    /// The least time a channel's epoch and position outlive its last use
    /// (default 1 h; a channel keeps them max(history ttl, this) after the last
    /// publish or read, and as long as a node listens to it).
    pub min_channel_life: Duration,
    /// How often a node refreshes the keys of the channels it listens to (default
    /// 10 min; at most a third of `min_channel_life`).
    pub keepalive_interval: Duration,
    /// How long a pending idempotent publish blocks retries of the same key if its
    /// node dies before finishing (default 10 s); retries then take over.
    pub idempotency_lease: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            prefix: "herald".into(),
            command_timeout: Duration::from_secs(2),
            reconnect_max_delay: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            min_channel_life: Duration::from_secs(3600),
            keepalive_interval: Duration::from_secs(600),
            idempotency_lease: Duration::from_secs(10),
        }
    }
}

/// The options, checked, with the key prefix ready to use.
#[derive(Debug)]
pub(crate) struct Options {
    /// `<prefix>:`
    keys: String,
    pub(crate) command_timeout: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) min_channel_life: Duration,
    pub(crate) keepalive_interval: Duration,
    idempotency_lease: Duration,
}

impl Options {
    fn new(o: RedisOptions) -> Self {
        let at_least = |d: Duration, min: Duration| d.max(min);
        Self {
            keys: format!("{}:", o.prefix),
            command_timeout: at_least(o.command_timeout, Duration::from_millis(10)),
            reconnect_max_delay: at_least(o.reconnect_max_delay, Duration::from_millis(100)),
            ping_interval: at_least(o.ping_interval, Duration::from_millis(100)),
            min_channel_life: at_least(o.min_channel_life, Duration::from_millis(100)),
            // Several refreshes within a channel's life, so that one failed refresh
            // does not cost a listened channel its epoch.
            keepalive_interval: at_least(o.keepalive_interval, Duration::from_millis(20))
                .min(at_least(o.min_channel_life, Duration::from_millis(100)) / 3),
            idempotency_lease: at_least(o.idempotency_lease, Duration::from_millis(100)),
        }
    }

    fn key(&self, kind: &str, key: &ChannelKey) -> String {
        format!("{}{kind}:{}/{}", self.keys, key.app, key.channel.as_str())
    }

    pub(crate) fn meta_key(&self, key: &ChannelKey) -> String {
        self.key("meta", key)
    }
}

/// One Redis server (and database).
pub(crate) struct Shard {
    /// `host:port/db`: the shard's identity for hashing and in messages.
    pub(crate) id: String,
    db: i64,
    pub(crate) client: ::redis::Client,
    config: ConnectionManagerConfig,
    /// The command connection and its generation (bumped when it is replaced).
    conn: Mutex<(u64, ConnectionManager)>,
    pub(crate) subs: Subscriptions,
}

impl Shard {
    /// Runs one command (or script) on the shard's connection, bounded by `wait`.
    /// A connection that stops answering is replaced: the manager reconnects by
    /// itself after a refused or dropped connection, not after a silent one.
    pub(crate) async fn run<T, F, Fut>(&self, wait: Duration, f: F) -> Result<T, BrokerError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (generation, conn) = {
            let c = self.conn.lock();
            (c.0, c.1.clone())
        };
        match tokio::time::timeout(wait, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_timeout() {
                    self.replace_connection(generation);
                }
                Err(BrokerError::Unavailable(format!("Redis {}: {e}", self.id)))
            }
            Err(_) => {
                self.replace_connection(generation);
                Err(BrokerError::Unavailable(format!(
                    "Redis {} did not answer within {wait:?}",
                    self.id
                )))
            }
        }
    }

    fn replace_connection(&self, generation: u64) {
        let mut c = self.conn.lock();
        if c.0 != generation {
            return; // someone replaced it already
        }
        match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()) {
            Ok(fresh) => *c = (generation + 1, fresh),
            Err(e) => tracing::warn!(shard = %self.id, error = %e, "could not replace a Redis connection"),
        }
    }
}

struct Inner {
    opts: Arc<Options>,
    shards: Vec<Arc<Shard>>,
    ring: Ring,
    handler: Arc<OnceLock<Arc<dyn BrokerHandler>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The Redis [`Broker`] and [`Presence`] engine. See the module doc.
pub struct RedisBroker {
    inner: Inner,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.inner.shards.iter().map(|s| s.id.as_str()).collect();
        f.debug_struct("RedisBroker")
            .field("shards", &ids)
            .field("prefix", &self.inner.opts.keys)
            .finish()
    }
}

impl RedisBroker {
    /// Connects to the shards (one URL each, `redis://[user:password@]host[:port][/db]`)
    /// and checks that each answers; starts each shard's Pub/Sub task on the
    /// current Tokio runtime (they stop when the broker is dropped).
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] when no URL is given, a URL is invalid, two
    /// URLs name the same shard, or a shard does not answer within the command
    /// timeout.
    pub async fn connect(urls: &[String], options: RedisOptions) -> Result<RedisBroker, BrokerError> {
        if urls.is_empty() {
            return Err(BrokerError::Unavailable("no Redis URL was given".into()));
        }
        let opts = Arc::new(Options::new(options));
        let mut shards = Vec::with_capacity(urls.len());
        let mut seen = HashSet::new();
        for (i, url) in urls.iter().enumerate() {
            // The URL may hold a password: messages name the shard by address only.
            let client = ::redis::Client::open(url.as_str()).map_err(|e| {
                BrokerError::Unavailable(format!("Redis URL number {} is not valid: {e}", i + 1))
            })?;
            let info = client.get_connection_info();
            let db = info.redis_settings().db();
            let id = format!("{}/{db}", info.addr());
            if !seen.insert(id.clone()) {
                return Err(BrokerError::Unavailable(format!(
                    "Redis shard {id} is listed twice"
                )));
            }
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(opts.command_timeout))
                .set_response_timeout(Some(opts.command_timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(opts.reconnect_max_delay);
            let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
                .map_err(|e| BrokerError::Unavailable(format!("Redis {id}: {e}")))?;
            shards.push(Arc::new(Shard {
                id,
                db,
                client,
                config,
                conn: Mutex::new((0, conn)),
                subs: Subscriptions::default(),
            }));
        }
        let ring = Ring::new(&shards.iter().map(|s| s.id.clone()).collect::<Vec<_>>());
        let handler: Arc<OnceLock<Arc<dyn BrokerHandler>>> = Arc::new(OnceLock::new());
        let mut broker = RedisBroker {
            inner: Inner {
                opts: opts.clone(),
                shards,
                ring,
                handler: handler.clone(),
                tasks: Vec::new(),
            },
        };
        broker.ping().await?;
        for shard in &broker.inner.shards {
            let task = tokio::spawn(subscriber::run(shard.clone(), handler.clone(), opts.clone()));
            broker.inner.tasks.push(task);
        }
        Ok(broker)
    }

    /// The ids (`host:port/db`) of the shards, in the order of the URLs.
    pub fn shard_ids(&self) -> Vec<String> {
        self.inner.shards.iter().map(|s| s.id.clone()).collect()
    }

    /// The index (in the order of the URLs) of the shard that holds `key`.
    pub fn shard_of(&self, key: &ChannelKey) -> usize {
        self.inner
            .ring
            .pick(&format!("{}/{}", key.app, key.channel.as_str()))
    }

    fn shard(&self, key: &ChannelKey) -> &Arc<Shard> {
        &self.inner.shards[self.shard_of(key)]
    }

    fn opts(&self) -> &Options {
        &self.inner.opts
    }

    fn topic(&self, shard: &Shard, key: &ChannelKey) -> String {
        format!(
            "{}topic:{}:{}/{}",
            self.opts().keys,
            shard.db,
            key.app,
            key.channel.as_str()
        )
    }

    /// Runs the publish script on one channel.
    async fn append(
        &self,
        app: &AppName,
        channel: &ChannelName,
        policy: HistoryPolicy,
        publication: &Publication,
        ts: i64,
    ) -> Result<Published, BrokerError> {
        let key = ChannelKey::new(app.clone(), channel.clone());
        let shard = self.shard(&key);
        let (head, tail) = envelope_parts(channel, publication, ts)?;
        let mut inv = scripts::PUBLISH.prepare_invoke();
        inv.key(self.opts().meta_key(&key))
            .key(self.opts().key("hist", &key))
            .arg(&*new_epoch())
            .arg(policy.size)
            .arg(millis(policy.ttl))
            .arg(self.keep_ms(policy))
            .arg(self.topic(shard, &key))
            .arg(head)
            .arg(tail);
        let (offset, epoch): (u64, String) = shard
            .run(self.opts().command_timeout, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(Published {
            channel: channel.clone(),
            offset,
            epoch: Arc::from(epoch),
        })
    }

    /// How long a channel's keys outlive their last use.
    fn keep_ms(&self, policy: HistoryPolicy) -> u64 {
        millis(policy.ttl.max(self.opts().min_channel_life)).max(1)
    }

    /// Appends to each target, all at once; `prior` holds results already known.
    async fn append_all(
        &self,
        publication: &Publication,
        prior: &[Option<Published>],
    ) -> Vec<Result<Published, BrokerError>> {
        let ts = now_millis();
        join_all(
            publication
                .targets
                .iter()
                .enumerate()
                .map(|(i, (channel, policy))| async move {
                    match prior.get(i) {
                        Some(Some(p)) if p.channel == *channel => Ok(p.clone()),
                        _ => {
                            self.append(&publication.app, channel, *policy, publication, ts)
                                .await
                        }
                    }
                }),
        )
        .await
    }

    async fn publish_once(
        &self,
        publication: &Publication,
        idem: &Idempotency,
    ) -> Result<Vec<Published>, BrokerError> {
        let opts = self.opts();
        let name = format!("{}\u{0}idem\u{0}{}", publication.app, idem.key);
        let shard = &self.inner.shards[self.inner.ring.pick(&name)];
        let record = format!("{}idem:{}:{}", opts.keys, publication.app, idem.key);
        let nonce = new_epoch();
        let fingerprint = idem.fingerprint.to_string();
        let lease = millis(opts.idempotency_lease).max(1);
        let window = millis(idem.window).max(1);
        let deadline = tokio::time::Instant::now() + opts.idempotency_lease + opts.command_timeout;
        let mut poll = Duration::from_millis(10);
        let prior: Vec<Option<Published>> = loop {
            let mut inv = scripts::IDEM_CLAIM.prepare_invoke();
            inv.key(&record)
                .arg(&fingerprint)
                .arg(&*nonce)
                .arg(lease)
                .arg(window);
            let (state, results): (String, String) = shard
                .run(opts.command_timeout, |mut c| async move {
                    inv.invoke_async(&mut c).await
                })
                .await?;
            match state.as_str() {
                "claimed" if results.is_empty() => break Vec::new(),
                "claimed" => break parse_results(&results)?,
                "done" => {
                    return parse_results(&results)?
                        .into_iter()
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| {
                            BrokerError::Unavailable("an idempotency record is incomplete".into())
                        });
                }
                "conflict" => return Err(BrokerError::IdempotencyConflict),
                _ => {
                    if tokio::time::Instant::now() + poll > deadline {
                        return Err(BrokerError::Unavailable(
                            "a publish with the same idempotency key is still in progress; retry later"
                                .into(),
                        ));
                    }
                    tokio::time::sleep(poll).await;
                    poll = (poll * 2).min(Duration::from_millis(200));
                }
            }
        };
        let outcomes = self.append_all(publication, &prior).await;
        let stored: Vec<Option<Published>> = outcomes.iter().map(|r| r.as_ref().ok().cloned()).collect();
        let failed = failures(publication, &outcomes);
        let state = if failed.is_none() { "d" } else { "f" };
        let results = serde_json::to_string(&stored)
            .map_err(|e| BrokerError::Unavailable(format!("cannot encode publish results: {e}")))?;
        let mut inv = scripts::IDEM_FINISH.prepare_invoke();
        inv.key(&record).arg(&*nonce).arg(state).arg(results);
        match shard
            .run(opts.command_timeout, |mut c| async move {
                inv.invoke_async::<i64>(&mut c).await
            })
            .await
        {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!(key = %idem.key, "an idempotent publish outlived its lease; a retry may append again")
            }
            Err(e) => {
                tracing::warn!(key = %idem.key, error = %e, "could not record an idempotent publish; a retry may append again")
            }
        }
        match failed {
            None => Ok(stored.into_iter().flatten().collect()),
            Some(e) => Err(e),
        }
    }
}

/// `None` when every target succeeded; else an error naming the failed channels.
fn failures(publication: &Publication, outcomes: &[Result<Published, BrokerError>]) -> Option<BrokerError> {
    let mut failed = Vec::new();
    let mut first = None;
    for ((channel, _), r) in publication.targets.iter().zip(outcomes) {
        if let Err(e) = r {
            failed.push(channel.as_str());
            first.get_or_insert_with(|| e.to_string());
        }
    }
    let why = first?;
    Some(BrokerError::Unavailable(format!(
        "nothing was appended to {}: {why}",
        failed.join(", ")
    )))
}

fn parse_results(json: &str) -> Result<Vec<Option<Published>>, BrokerError> {
    serde_json::from_str(json)
        .map_err(|e| BrokerError::Unavailable(format!("an idempotency record is unreadable: {e}")))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The parts of the envelope's JSON before and after `"offset":N,"epoch":"E"`,
/// which only the publish script knows: the script joins them, so the stored and
/// published JSON is exactly `Envelope::to_json`.
fn envelope_parts(channel: &ChannelName, p: &Publication, ts: i64) -> Result<(String, String), BrokerError> {
    const HOLE: &str = "\"offset\":0,\"epoch\":\"\"";
    let json = Envelope {
        channel: channel.clone(),
        offset: 0,
        epoch: Arc::from(""),
        event: p.event.clone(),
        data: p.data.clone(),
        ts,
    }
    .to_json();
    // The first match is the field: a channel name holds no quote, and data comes later.
    let at = json
        .find(HOLE)
        .ok_or_else(|| BrokerError::Unavailable("the envelope format is not the one expected".into()))?;
    Ok((json[..at].to_owned(), json[at + HOLE.len()..].to_owned()))
}

/// Parses a history member, `<stored at, ms> <envelope JSON>`.
fn parse_member(member: &[u8], channel: &ChannelName) -> Result<Envelope, BrokerError> {
    let json = member
        .iter()
        .position(|b| *b == b' ')
        .map(|i| &member[i + 1..])
        .ok_or_else(|| BrokerError::Unavailable("a history entry is unreadable".into()))?;
    subscriber::parse_envelope(json, channel)
        .map_err(|e| BrokerError::Unavailable(format!("a history entry is unreadable: {e}")))
}

fn hex_encode(s: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn hex_decode(s: &str) -> Option<String> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let raw: Option<Vec<u8>> = pairs.map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect();
    String::from_utf8(raw?).ok()
}

/// Splits a presence value, `<user hex> <seq> <info>`.
fn parse_presence(v: &str) -> Option<(String, u64, &str)> {
    let (uhex, rest) = v.split_once(' ')?;
    let (seq, info) = rest.split_once(' ')?;
    Some((hex_decode(uhex)?, seq.parse().ok()?, info))
}

/// Parses a channel id, `app/channel`.
fn parse_channel_id(id: &str) -> Option<ChannelKey> {
    let (app, channel) = id.split_once('/')?;
    Some(ChannelKey::new(
        AppName::parse(app).ok()?,
        ChannelName::parse(channel).ok()?,
    ))
}

#[async_trait]
impl Broker for RedisBroker {
    fn set_handler(&self, handler: Arc<dyn BrokerHandler>) {
        let _ = self.inner.handler.set(handler);
    }

    async fn publish(&self, publication: Publication) -> Result<Vec<Published>, BrokerError> {
        if let Some(idem) = &publication.idempotency {
            return self.publish_once(&publication, idem).await;
        }
        let outcomes = self.append_all(&publication, &[]).await;
        if let Some(e) = failures(&publication, &outcomes) {
            return Err(e);
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    async fn history(
        &self,
        key: &ChannelKey,
        policy: HistoryPolicy,
        since: u64,
        limit: usize,
    ) -> Result<HistoryRead, BrokerError> {
        let shard = self.shard(key);
        let mut inv = scripts::HISTORY.prepare_invoke();
        inv.key(self.opts().meta_key(key))
            .key(self.opts().key("hist", key))
            .arg(&*new_epoch())
            .arg(policy.size)
            .arg(millis(policy.ttl))
            .arg(self.keep_ms(policy))
            .arg(since)
            .arg(limit.min(policy.size));
        let (epoch, top, oldest, members): (String, u64, u64, Vec<Vec<u8>>) = shard
            .run(self.opts().command_timeout, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        let messages = members
            .iter()
            .map(|m| parse_member(m, &key.channel).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HistoryRead {
            epoch: Arc::from(epoch),
            top,
            messages,
            complete: since >= top || oldest <= since.saturating_add(1),
        })
    }

    async fn subscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let shard = self.shard(key);
        shard
            .subs
            .subscribe(self.topic(shard, key), key, self.opts().command_timeout)
            .await
    }

    async fn unsubscribe(&self, key: &ChannelKey) -> Result<(), BrokerError> {
        let shard = self.shard(key);
        shard.subs.unsubscribe(&self.topic(shard, key));
        Ok(())
    }

    async fn broadcast(&self, key: &ChannelKey, payload: Arc<str>) -> Result<(), BrokerError> {
        let shard = self.shard(key);
        let topic = self.topic(shard, key);
        let mut body = Vec::with_capacity(payload.len() + 1);
        body.push(b'c');
        body.extend_from_slice(payload.as_bytes());
        shard
            .run(self.opts().command_timeout, |mut c| async move {
                ::redis::cmd("PUBLISH")
                    .arg(topic)
                    .arg(body)
                    .query_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let wait = self.opts().command_timeout;
        let answers = join_all(self.inner.shards.iter().map(|s| {
            s.run(wait, |mut c| async move {
                ::redis::cmd("PING").query_async::<String>(&mut c).await
            })
        }))
        .await;
        answers.into_iter().find_map(Result::err).map_or(Ok(()), Err)
    }
}

impl RedisBroker {
    fn presence_keys(&self, key: &ChannelKey) -> [String; 3] {
        [
            self.opts().key("pres", key),
            self.opts().key("pexp", key),
            self.opts().key("pusr", key),
        ]
    }

    fn channel_id(key: &ChannelKey) -> String {
        format!("{}/{}", key.app, key.channel.as_str())
    }
}

/// How many channels one sweep call visits, and how many calls per shard at most.
const SWEEP_BATCH: usize = 256;
const SWEEP_ROUNDS: usize = 64;

#[async_trait]
impl Presence for RedisBroker {
    async fn join(
        &self,
        key: &ChannelKey,
        client: &str,
        entry: PresenceEntry,
        ttl: Duration,
    ) -> Result<bool, BrokerError> {
        if entry.user.is_empty() {
            return Ok(false);
        }
        let shard = self.shard(key);
        let [e, x, u] = self.presence_keys(key);
        let mut inv = scripts::PRESENCE_JOIN.prepare_invoke();
        inv.key(e)
            .key(x)
            .key(u)
            .key(format!("{}psweep", self.opts().keys))
            .key(format!("{}pseq", self.opts().keys))
            .arg(client)
            .arg(hex_encode(&entry.user))
            .arg(&*entry.info)
            .arg(millis(ttl))
            .arg(Self::channel_id(key));
        let appeared: i64 = shard
            .run(self.opts().command_timeout, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(appeared == 1)
    }

    async fn leave(&self, key: &ChannelKey, client: &str) -> Result<Option<PresenceEntry>, BrokerError> {
        let shard = self.shard(key);
        let [e, x, u] = self.presence_keys(key);
        let mut inv = scripts::PRESENCE_LEAVE.prepare_invoke();
        inv.key(e)
            .key(x)
            .key(u)
            .key(format!("{}psweep", self.opts().keys))
            .arg(client)
            .arg(Self::channel_id(key));
        let left: Option<(String, String)> = shard
            .run(self.opts().command_timeout, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(left.and_then(|(uhex, info)| {
            Some(PresenceEntry {
                user: hex_decode(&uhex)?,
                info: Arc::from(info),
            })
        }))
    }

    async fn members(&self, key: &ChannelKey) -> Result<Vec<Member>, BrokerError> {
        let shard = self.shard(key);
        let [e, x, _] = self.presence_keys(key);
        let mut inv = scripts::PRESENCE_MEMBERS.prepare_invoke();
        inv.key(e).key(x);
        let values: Vec<String> = shard
            .run(self.opts().command_timeout, |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        let mut by_user: std::collections::BTreeMap<String, (u32, u64, &str)> = Default::default();
        for v in &values {
            let Some((user, seq, info)) = parse_presence(v) else {
                continue;
            };
            let slot = by_user.entry(user).or_insert((0, 0, "null"));
            slot.0 += 1;
            if seq >= slot.1 {
                slot.1 = seq;
                slot.2 = info;
            }
        }
        Ok(by_user
            .into_iter()
            .map(|(user, (connections, _, info))| Member {
                user,
                info: serde_json::from_str(info).unwrap_or(serde_json::Value::Null),
                connections,
            })
            .collect())
    }

    async fn sweep(&self) -> Result<Vec<PresenceEvent>, BrokerError> {
        let opts = self.opts();
        let per_shard = join_all(self.inner.shards.iter().map(|shard| async move {
            let mut left = Vec::new();
            for _ in 0..SWEEP_ROUNDS {
                let mut inv = scripts::PRESENCE_SWEEP.prepare_invoke();
                inv.key(format!("{}psweep", opts.keys))
                    .arg(&opts.keys)
                    .arg(SWEEP_BATCH);
                let (visited, gone): (usize, Vec<String>) = shard
                    .run(opts.command_timeout, |mut c| async move {
                        inv.invoke_async(&mut c).await
                    })
                    .await?;
                for t in gone.chunks_exact(3) {
                    let (Some(key), Some(user)) = (parse_channel_id(&t[0]), hex_decode(&t[1])) else {
                        continue;
                    };
                    left.push(PresenceEvent {
                        key,
                        entry: PresenceEntry {
                            user,
                            info: Arc::from(t[2].as_str()),
                        },
                    });
                }
                if visited < SWEEP_BATCH {
                    break;
                }
            }
            Ok::<_, BrokerError>(left)
        }))
        .await;
        // What a shard swept is removed for good: report it even if another failed.
        let mut left = Vec::new();
        let mut error = None;
        for r in per_shard {
            match r {
                Ok(l) => left.extend(l),
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) if left.is_empty() => Err(e),
            _ => Ok(left),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use herald_protocol::EventName;

    #[test]
    fn the_script_builds_exactly_the_envelope_json() {
        let channel = ChannelName::parse("chat:room-1").unwrap();
        let p = Publication {
            app: AppName::parse("app").unwrap(),
            targets: vec![(channel.clone(), HistoryPolicy::default())],
            event: EventName::parse("ev").unwrap(),
            data: Arc::from("{\"offset\":0,\"epoch\":\"\",\"s\":\"a b\"}"),
            idempotency: None,
        };
        let (head, tail) = envelope_parts(&channel, &p, 1_764_379_200_123).unwrap();
        // What the Lua script does with them:
        let built = format!("{head}\"offset\":{},\"epoch\":\"{}\"{tail}", 42, "k3J9");
        let expected = Envelope {
            channel: channel.clone(),
            offset: 42,
            epoch: Arc::from("k3J9"),
            event: p.event.clone(),
            data: p.data.clone(),
            ts: 1_764_379_200_123,
        };
        assert_eq!(built, expected.to_json());
        let member = format!("1764379200999 {built}");
        assert_eq!(parse_member(member.as_bytes(), &channel).unwrap(), expected);
        let other = ChannelName::parse("chat:room-2").unwrap();
        assert!(
            parse_member(member.as_bytes(), &other).is_err(),
            "another channel's entry is refused"
        );
    }

    #[test]
    fn users_survive_the_hex_round_trip() {
        for user in ["", "alice", "a b:c\u{0}d", "élève 学生"] {
            assert_eq!(hex_decode(&hex_encode(user)).as_deref(), Some(user));
        }
        assert_eq!(
            parse_presence(&format!("{} 17 {{\"a\":\"x y\"}}", hex_encode("bob"))),
            Some(("bob".to_owned(), 17, "{\"a\":\"x y\"}"))
        );
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn channel_ids_parse_back() {
        let k = parse_channel_id("my-app/chat:room-1#a,b").unwrap();
        assert_eq!(k.app.as_str(), "my-app");
        assert_eq!(k.channel.as_str(), "chat:room-1#a,b");
    }
}
