//! One shard's Pub/Sub side: the node's subscriptions, kept by one task.
//!
//! `subscribe` and `unsubscribe` only change reference counts and mark the topic
//! pending; the shard's task owns the dedicated Pub/Sub connection, drains every
//! pending topic at once and sends one `SUBSCRIBE` and one `UNSUBSCRIBE` for the
//! lot (churn is batched for free: what piles up while a command is in flight goes
//! out in the next one). A `subscribe` returns when Redis has confirmed the topic,
//! because the node reads history right after it and relies on "subscribe first,
//! then history" to close the seam.
//!
//! The task is the only reader of the connection, so messages reach the handler in
//! the order Redis sent them, which is offset order per channel. When the
//! connection drops (or stops answering pings) the task reconnects with a bounded
//! backoff, subscribes every topic that still has local subscribers, and then calls
//! [`BrokerHandler::on_disruption`] so that every subscriber re-reads history.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use herald_protocol::{ChannelName, Envelope, EventName};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};
use tokio::time::{timeout, Instant, MissedTickBehavior};

use super::{scripts, Options, Shard};
use crate::broker::{BrokerError, BrokerHandler, ChannelKey};

/// The most topics sent in one `SUBSCRIBE` or `UNSUBSCRIBE`.
const TOPICS_PER_COMMAND: usize = 1000;
/// The most keys refreshed by one keepalive call.
const KEYS_PER_KEEPALIVE: usize = 500;
/// The first reconnection delay; it doubles up to [`Options::reconnect_max_delay`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// A connection that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(1);

type Waiter = oneshot::Sender<Result<(), String>>;

/// What the node wants and what the connection has.
#[derive(Default)]
struct State {
    /// Topic -> (channel, local subscribe count), for counts above zero.
    wanted: HashMap<String, (ChannelKey, usize)>,
    /// Topics the current connection confirmed (and did not unsubscribe since).
    confirmed: HashSet<String>,
    /// Topics whose wanted and confirmed states may differ.
    pending: HashSet<String>,
    /// `subscribe` calls waiting for their topic's confirmation.
    waiters: HashMap<String, Vec<Waiter>>,
}

/// A shard's subscriptions, shared by the broker and the shard's task.
#[derive(Default)]
pub(crate) struct Subscriptions {
    state: Mutex<State>,
    wake: Notify,
}

impl Subscriptions {
    /// Counts one more local subscriber of `key`; returns when Redis has confirmed
    /// the topic. On error the subscription still counts (undo it with
    /// `unsubscribe`) and is established as soon as Redis answers again.
    pub(crate) async fn subscribe(
        &self,
        topic: String,
        key: &ChannelKey,
        wait: Duration,
    ) -> Result<(), BrokerError> {
        let rx = {
            let mut s = self.state.lock();
            s.wanted
                .entry(topic.clone())
                .or_insert_with(|| (key.clone(), 0))
                .1 += 1;
            if s.confirmed.contains(&topic) {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            s.waiters.entry(topic.clone()).or_default().push(tx);
            s.pending.insert(topic);
            rx
        };
        self.wake.notify_one();
        match timeout(wait, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(BrokerError::Unavailable(e)),
            Ok(Err(_)) => Err(BrokerError::Unavailable("the Redis subscriber stopped".into())),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "Redis did not confirm the subscription within {wait:?}"
            ))),
        }
    }

    /// Undoes one `subscribe`; the last one unsubscribes in Redis (in the background).
    pub(crate) fn unsubscribe(&self, topic: &str) {
        {
            let mut s = self.state.lock();
            let Some(entry) = s.wanted.get_mut(topic) else {
                return;
            };
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 > 0 {
                return;
            }
            s.wanted.remove(topic);
            s.pending.insert(topic.to_owned());
        }
        self.wake.notify_one();
    }

    /// The channel of a wanted topic.
    fn channel_of(&self, topic: &str) -> Option<ChannelKey> {
        self.state.lock().wanted.get(topic).map(|(k, _)| k.clone())
    }

    fn fail_waiters(&self, why: &str) {
        let waiters: Vec<Waiter> = self.state.lock().waiters.drain().flat_map(|(_, w)| w).collect();
        for w in waiters {
            let _ = w.send(Err(why.to_owned()));
        }
    }

    /// Records topics as confirmed and releases their waiters.
    fn confirm(&self, topics: &[String]) {
        let mut released = Vec::new();
        {
            let mut s = self.state.lock();
            for t in topics {
                s.confirmed.insert(t.clone());
                if let Some(w) = s.waiters.remove(t) {
                    released.extend(w);
                }
            }
        }
        for w in released {
            let _ = w.send(Ok(()));
        }
    }
}

/// Why a connection ended.
struct Lost(String);

/// Runs the shard's Pub/Sub side until the broker is dropped (the task is aborted).
pub(crate) async fn run(
    shard: Arc<Shard>,
    handler: Arc<OnceLock<Arc<dyn BrokerHandler>>>,
    opts: Arc<Options>,
) {
    let subs = &shard.subs;
    let mut backoff = MIN_BACKOFF;
    // True once a connection was lost or could not be made: subscribers may have
    // missed messages, so the next connection that resubscribes tells the handler.
    let mut disrupted = false;
    loop {
        let attempt_at = Instant::now();
        let connected = match timeout(opts.command_timeout, shard.client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", opts.command_timeout)),
        };
        let failed = match connected {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                let topics: Vec<String> = {
                    let mut s = subs.state.lock();
                    s.pending.clear();
                    s.confirmed.clear();
                    s.wanted.keys().cloned().collect()
                };
                match subscribe_all(&mut sink, &topics, opts.command_timeout).await {
                    Ok(()) => {
                        subs.confirm(&topics);
                        if disrupted && !topics.is_empty() {
                            tracing::info!(shard = %shard.id, topics = topics.len(), "Redis Pub/Sub resubscribed after a disruption");
                            if let Some(h) = handler.get() {
                                h.on_disruption();
                            }
                        }
                        let lost = serve(&shard, &handler, &opts, &mut sink, &mut stream).await;
                        subs.state.lock().confirmed.clear();
                        disrupted = true;
                        tracing::warn!(shard = %shard.id, error = %lost.0, "Redis Pub/Sub connection lost; reconnecting");
                        // Reconnect at once (waiting subscribers may still make it),
                        // unless the connection keeps dropping right after it is made.
                        if attempt_at.elapsed() >= STABLE {
                            backoff = MIN_BACKOFF;
                        } else {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(opts.reconnect_max_delay.max(MIN_BACKOFF));
                        }
                        continue;
                    }
                    Err(lost) => lost,
                }
            }
            Err(e) => Lost(e),
        };
        subs.state.lock().confirmed.clear();
        disrupted = true;
        tracing::warn!(shard = %shard.id, error = %failed.0, "cannot reach Redis for Pub/Sub; retrying");
        subs.fail_waiters(&format!(
            "Redis Pub/Sub of shard {} is unavailable: {}",
            shard.id, failed.0
        ));
        // Wait out the backoff, but a new subscribe cuts it short (not below the
        // minimum), so that a caller learns quickly whether Redis is back.
        let _ = tokio::time::timeout_at(attempt_at + backoff, subs.wake.notified()).await;
        tokio::time::sleep_until(attempt_at + MIN_BACKOFF).await;
        backoff = (backoff * 2).min(opts.reconnect_max_delay.max(MIN_BACKOFF));
    }
}

async fn subscribe_all(
    sink: &mut ::redis::aio::PubSubSink,
    topics: &[String],
    wait: Duration,
) -> Result<(), Lost> {
    for chunk in topics.chunks(TOPICS_PER_COMMAND) {
        match timeout(wait, sink.subscribe(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Lost(format!("SUBSCRIBE failed: {e}"))),
            Err(_) => return Err(Lost(format!("SUBSCRIBE not confirmed within {wait:?}"))),
        }
    }
    Ok(())
}

async fn unsubscribe_all(
    sink: &mut ::redis::aio::PubSubSink,
    topics: &[String],
    wait: Duration,
) -> Result<(), Lost> {
    for chunk in topics.chunks(TOPICS_PER_COMMAND) {
        match timeout(wait, sink.unsubscribe(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Lost(format!("UNSUBSCRIBE failed: {e}"))),
            Err(_) => return Err(Lost(format!("UNSUBSCRIBE not confirmed within {wait:?}"))),
        }
    }
    Ok(())
}

/// Delivers messages and applies pending (un)subscriptions until the connection is lost.
async fn serve(
    shard: &Arc<Shard>,
    handler: &Arc<OnceLock<Arc<dyn BrokerHandler>>>,
    opts: &Arc<Options>,
    sink: &mut ::redis::aio::PubSubSink,
    stream: &mut ::redis::aio::PubSubStream,
) -> Lost {
    let subs = &shard.subs;
    let mut ping = tokio::time::interval_at(Instant::now() + opts.ping_interval, opts.ping_interval);
    let mut keepalive =
        tokio::time::interval_at(Instant::now() + opts.keepalive_interval, opts.keepalive_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => deliver(subs, handler, &msg),
                None => return Lost("the connection closed".into()),
            },
            () = subs.wake.notified() => {
                if let Err(lost) = reconcile(subs, sink, opts.command_timeout).await {
                    return lost;
                }
            }
            _ = ping.tick() => {
                match timeout(opts.command_timeout, sink.ping::<::redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Lost(format!("PING failed: {e}")),
                    Err(_) => return Lost(format!("no answer to PING within {:?}", opts.command_timeout)),
                }
            }
            _ = keepalive.tick() => {
                tokio::spawn(keep_channels_alive(shard.clone(), opts.clone()));
            }
        }
    }
}

/// Sends what changed since the last round: one UNSUBSCRIBE, then one SUBSCRIBE.
async fn reconcile(
    subs: &Subscriptions,
    sink: &mut ::redis::aio::PubSubSink,
    wait: Duration,
) -> Result<(), Lost> {
    let mut to_sub = Vec::new();
    let mut to_unsub = Vec::new();
    let mut ready = Vec::new();
    {
        let mut s = subs.state.lock();
        let pending = std::mem::take(&mut s.pending);
        for t in pending {
            let want = s.wanted.contains_key(&t);
            let have = s.confirmed.contains(&t);
            match (want, have) {
                (true, false) => to_sub.push(t),
                (false, true) => {
                    s.confirmed.remove(&t);
                    to_unsub.push(t);
                }
                (true, true) => ready.push(t),
                (false, false) => {}
            }
        }
    }
    subs.confirm(&ready);
    if !to_unsub.is_empty() {
        unsubscribe_all(sink, &to_unsub, wait).await?;
    }
    if !to_sub.is_empty() {
        subscribe_all(sink, &to_sub, wait).await?;
        subs.confirm(&to_sub);
    }
    Ok(())
}

/// Hands one Pub/Sub payload to the handler. The payload is a one-byte tag and a
/// body: `m` + envelope JSON, or `c` + control payload.
fn deliver(subs: &Subscriptions, handler: &OnceLock<Arc<dyn BrokerHandler>>, msg: &::redis::Msg) {
    let topic = msg.get_channel_name();
    let Some(key) = subs.channel_of(topic) else {
        return; // unsubscribed meanwhile: no local listener
    };
    let Some(h) = handler.get() else {
        return;
    };
    match msg.get_payload_bytes().split_first() {
        Some((b'm', body)) => match parse_envelope(body, &key.channel) {
            Ok(env) => h.on_message(&key.app, Arc::new(env)),
            Err(e) => tracing::warn!(topic, error = %e, "dropped an unreadable Redis message"),
        },
        Some((b'c', body)) => match std::str::from_utf8(body) {
            Ok(payload) => h.on_control(&key, Arc::from(payload)),
            Err(_) => tracing::warn!(topic, "dropped a control payload that is not UTF-8"),
        },
        _ => tracing::warn!(topic, "dropped a Redis message of unknown kind"),
    }
}

/// The envelope as stored and published (`Envelope::to_json`), `data` kept verbatim.
#[derive(serde::Deserialize)]
struct WireEnvelope<'a> {
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    offset: u64,
    #[serde(borrow)]
    epoch: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
    ts: i64,
}

/// Parses an envelope of `channel` (any other channel is refused).
pub(crate) fn parse_envelope(json: &[u8], channel: &ChannelName) -> Result<Envelope, String> {
    let w: WireEnvelope<'_> = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    if w.channel != channel.as_str() {
        return Err(format!(
            "envelope of channel {:?} on {:?}",
            w.channel,
            channel.as_str()
        ));
    }
    let event = if w.event == "message" {
        EventName::message()
    } else {
        EventName::parse(&w.event).map_err(|e| e.to_string())?
    };
    Ok(Envelope {
        channel: channel.clone(),
        offset: w.offset,
        epoch: Arc::from(&*w.epoch),
        event,
        data: Arc::from(w.data.get()),
        ts: w.ts,
    })
}

/// Extends the meta keys of the channels this node listens to, so that a quiet
/// channel keeps its epoch as long as anyone listens (see `Options::min_channel_life`).
async fn keep_channels_alive(shard: Arc<Shard>, opts: Arc<Options>) {
    let keys: Vec<String> = {
        let s = shard.subs.state.lock();
        s.wanted.values().map(|(k, _)| opts.meta_key(k)).collect()
    };
    let ms = opts.min_channel_life.as_millis().to_string();
    for chunk in keys.chunks(KEYS_PER_KEEPALIVE) {
        let mut inv = scripts::KEEPALIVE.prepare_invoke();
        for k in chunk {
            inv.key(k);
        }
        inv.arg(&ms);
        let res = shard
            .run(opts.command_timeout, |mut c| async move {
                inv.invoke_async::<i64>(&mut c).await
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(shard = %shard.id, error = %e, "could not refresh the keys of subscribed channels");
            return;
        }
    }
}
