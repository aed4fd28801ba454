//! The history journal: what makes the embedded broker's history survive a restart.
//!
//! The broker keeps its channels in memory ([`crate::memory`]); the journal is an
//! append-only file beside them that records every change (a channel's epoch, each
//! message, a forgotten channel, an idempotency key), read once at start.
//! Publishers queue their records under the channel's shard lock (so the queue
//! holds each channel's records in offset order). Then each publisher tries to
//! take the file: the one that gets it writes everything queued in one `write(2)`
//! (group commit: the publishes that arrived meanwhile ride along), marks the
//! messages durable, hands them to the handler and answers their publishers; the
//! others find the file taken and wait for their answer. No thread hand-off when
//! publishes come one at a time. So nobody — publisher, subscriber, history
//! reader — ever sees a message that is not in the file. A thread of the journal
//! does what must not hold a publisher up: rewrites, retries of a failed write,
//! the final sync.
//!
//! What survives what (docs/reliability.md):
//! - **Process death** (`kill -9`, a panic, the OOM killer): the kernel still holds
//!   every byte written, so every acknowledged or delivered message is kept. A
//!   publish in flight (not yet acknowledged) is kept whole or not at all: each
//!   publish is one checksummed frame, and a torn last frame is dropped at start.
//! - **Clean shutdown**: the file is synced to disk and the directory marked clean:
//!   nothing is lost.
//! - **The machine stopping** (power cut, kernel crash) while Herald ran: the page
//!   cache may have lost any part of the file. The `state` file says which boot the
//!   running process belonged to (`/proc/sys/kernel/random/boot_id`); a start in
//!   another boot after an unclean end drops the journal, and every channel starts a
//!   new epoch (clients get a reset, never a silent gap).
//!
//! Files in the directory: `journal` (the records), `state` (`clean`, or
//! `running BOOT_ID`), `lock` (held while a process uses the directory). The journal
//! is rewritten from memory (a snapshot of what history still holds) at every start
//! and whenever it grows past twice its last snapshot (and
//! [`JournalOptions::compact_min`]), so its size follows the history bounds.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herald_protocol::{AppName, ChannelName, Envelope, EventName};
use parking_lot::Mutex;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::broker::{BrokerError, Published};
use crate::memory::Core;

/// The first bytes of a journal (the format's version).
const MAGIC: &[u8] = b"HERALD-HISTORY-1\n";

/// A batch is written once it holds this many bytes (or the queue is empty).
const MAX_BATCH_BYTES: usize = 4 << 20;

/// Snapshot frames hold at most this many bytes (a frame is read whole at start).
const SNAPSHOT_FRAME_BYTES: usize = 1 << 20;

/// A publisher that found the file free writes at most this many batches before
/// leaving the rest to the journal thread (its own answer waits meanwhile).
const LEADER_ROUNDS: usize = 4;

/// How long [`Journal::close`] waits for the journal thread to finish.
const CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// Settings of the journal.
#[derive(Clone, Debug)]
pub struct JournalOptions {
    /// The journal is rewritten from memory when it grows past this many bytes and
    /// twice its last rewrite.
    pub compact_min: u64,
    /// At most this many publishes wait to be written at once; more wait for a
    /// place before their offset is assigned (backpressure on publishers).
    pub max_unwritten: usize,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            compact_min: 64 << 20,
            max_unwritten: 16_384,
        }
    }
}

/// One change, as written to the journal.
#[derive(Clone, Debug)]
pub(crate) enum Record {
    /// A channel state began (a new epoch), or (snapshot) holds `top` with its
    /// kept messages following.
    Channel {
        app: AppName,
        channel: ChannelName,
        epoch: Arc<str>,
        top: u64,
    },
    /// A published message; `kept` is false when the channel keeps no history (the
    /// record then only moves the offset on).
    Message {
        app: AppName,
        msg: Arc<Envelope>,
        kept: bool,
    },
    /// A channel state was dropped (idle, empty): a later use starts a new epoch.
    Forget {
        app: AppName,
        channel: ChannelName,
        epoch: Arc<str>,
    },
    /// An idempotency key and the result of its publish.
    Idem {
        app: AppName,
        key: String,
        fingerprint: u64,
        expires_ms: i64,
        results: Vec<Published>,
    },
}

/// One publish (or one note), written as one frame, and what follows its writing.
pub(crate) struct Unit {
    pub(crate) records: Vec<Record>,
    /// Messages to mark durable and hand to the handler, in queue order.
    pub(crate) deliver: Vec<(AppName, Arc<Envelope>, Arc<AtomicU64>)>,
    /// Told once the unit is written (the publisher waits on it).
    pub(crate) done: Option<oneshot::Sender<()>>,
    /// The publisher's place among the unwritten ones.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// What the journal thread is asked to do.
enum Job {
    /// Rewrite the journal from memory (it outgrew its last rewrite).
    Compact,
    /// Write what is queued, waiting for the file (a leader stopped after its
    /// rounds, or a write failed and must be retried).
    Drain,
    /// Write what is queued, sync, mark the directory clean, stop.
    Close(oneshot::Sender<()>),
}

/// The units waiting to be written, in the order they were queued.
#[derive(Default)]
struct Queue {
    units: VecDeque<Unit>,
    closed: bool,
}

/// What publishers and the journal thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// The file, held by whoever writes (a publisher leading a group commit, or
    /// the journal thread).
    file: Mutex<FileState>,
    core: Arc<Core>,
    failing: Failing,
}

/// The handle the broker keeps.
pub(crate) struct Journal {
    shared: Arc<Shared>,
    jobs: std::sync::mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    dir: PathBuf,
}

#[derive(Default)]
struct Failing {
    now: AtomicBool,
    last: Mutex<String>,
}

impl Journal {
    /// Waits for a place among the unwritten publishes.
    pub(crate) async fn permit(&self) -> Result<OwnedSemaphorePermit, BrokerError> {
        self.permits.clone().acquire_owned().await.map_err(|_| closed())
    }

    /// Queues a unit (call under the shard locks of its channels); false when the
    /// journal is closed. [`Journal::flush`] writes it.
    pub(crate) fn push(&self, unit: Unit) -> bool {
        let mut q = self.shared.queue.lock();
        if q.closed {
            return false;
        }
        q.units.push_back(unit);
        true
    }

    /// Queues records nobody waits for (a channel's epoch, a forgotten channel).
    pub(crate) fn note(&self, record: Record) {
        let _ = self.push(Unit {
            records: vec![record],
            deliver: Vec::new(),
            done: None,
            permit: None,
        });
    }

    /// Writes what is queued, here and now, unless someone else is writing (who
    /// then writes it too): group commit without a thread hand-off.
    pub(crate) fn flush(&self) {
        self.shared.lead(Some(&self.jobs));
    }

    /// `Err` while the journal cannot be written.
    pub(crate) fn health(&self) -> Result<(), BrokerError> {
        if self.shared.failing.now.load(Ordering::Acquire) {
            return Err(BrokerError::Unavailable(format!(
                "the history journal in {} cannot be written: {}",
                self.dir.display(),
                self.shared.failing.last.lock()
            )));
        }
        if self.shared.queue.lock().closed {
            return Err(closed());
        }
        Ok(())
    }

    /// Writes what is queued, syncs the file and marks the directory clean; later
    /// publishes fail. Waits at most [`CLOSE_LIMIT`].
    pub(crate) async fn close(&self) -> Result<(), BrokerError> {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).is_err() {
            return Ok(());
        }
        match tokio::time::timeout(CLOSE_LIMIT, rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Ok(()),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "the history journal was not closed within {CLOSE_LIMIT:?}"
            ))),
        }
    }
}

pub(crate) fn closed() -> BrokerError {
    BrokerError::Unavailable("the broker is closed".into())
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

fn context(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// This boot of the machine, if the system says (Linux).
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && !s.contains(char::is_whitespace))
}

/// Writes `text` to `dir/name` durably (a temporary file, synced, renamed, the
/// directory synced).
fn write_durably(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.new"));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Opens (or creates) the journal in `dir`, replays it into `core` (unless the
/// machine stopped while a previous process ran), trims with `policy_of`, rewrites
/// it, and starts the journal thread.
pub(crate) fn open(
    dir: &Path,
    options: &JournalOptions,
    core: &Arc<Core>,
    trim: impl FnOnce(&Core),
) -> io::Result<Journal> {
    std::fs::create_dir_all(dir).map_err(|e| context(e, format_args!("cannot create {}", dir.display())))?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| context(e, format_args!("cannot open {}", dir.join("lock").display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "another Herald process is using {} (its history is locked); stop it or use another --data-dir",
                    dir.display()
                ),
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(context(e, format_args!("cannot lock {}", dir.join("lock").display())))
        }
    }
    let boot = boot_id();
    let path = dir.join("journal");
    let state = std::fs::read_to_string(dir.join("state")).unwrap_or_default();
    let state = state.trim();
    let trusted = match state.split_once(' ') {
        _ if state == "clean" => true,
        Some(("running", b)) => boot.as_deref() == Some(b),
        _ => false,
    };
    if path.exists() {
        if trusted {
            let loaded = replay(&path, core)?;
            tracing::info!(
                channels = loaded.channels,
                messages = loaded.messages,
                dropped_tail_bytes = loaded.dropped,
                clean = state == "clean",
                "history journal replayed"
            );
        } else {
            tracing::warn!(
                dir = %dir.display(),
                state,
                "the history journal is not trusted (the machine stopped while Herald ran, or the state is unknown): every channel starts a new epoch"
            );
        }
    }
    trim(core);
    // From here the file changes: say so (durably) before it does.
    write_durably(
        dir,
        "state",
        &format!("running {}\n", boot.as_deref().unwrap_or("unknown")),
    )
    .map_err(|e| context(e, format_args!("cannot write {}", dir.join("state").display())))?;
    let len =
        snapshot(dir, core).map_err(|e| context(e, format_args!("cannot rewrite {}", path.display())))?;
    let file = OpenOptions::new().append(true).open(&path)?;
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        file: Mutex::new(FileState {
            dir: dir.to_owned(),
            file,
            len,
            compact_at: options.compact_min.max(len.saturating_mul(2)),
            compact_min: options.compact_min,
            compacting: false,
            buf: Vec::new(),
            lock: Some(lock),
        }),
        core: core.clone(),
        failing: Failing::default(),
    });
    let (jobs, rx) = std::sync::mpsc::channel();
    let thread = shared.clone();
    std::thread::Builder::new()
        .name("herald-journal".into())
        .spawn(move || thread.run(&rx))?;
    Ok(Journal {
        shared,
        jobs,
        permits: Arc::new(Semaphore::new(options.max_unwritten.max(1))),
        dir: dir.to_owned(),
    })
}

struct Loaded {
    channels: usize,
    messages: usize,
    dropped: u64,
}

/// Applies every whole frame of the journal to `core`; stops at the first torn
/// or damaged one (the end of a write cut by the process's death).
fn replay(path: &Path, core: &Core) -> io::Result<Loaded> {
    let mut f = std::io::BufReader::with_capacity(
        1 << 20,
        File::open(path).map_err(|e| context(e, format_args!("cannot open {}", path.display())))?,
    );
    let total = std::fs::metadata(path)?.len();
    let mut magic = vec![0u8; MAGIC.len()];
    if total == 0 {
        return Ok(Loaded {
            channels: 0,
            messages: 0,
            dropped: 0,
        });
    }
    if f.read_exact(&mut magic).is_err() || magic != MAGIC {
        return Err(other(format!(
            "{} is not a history journal this version of Herald can read (move it away to start with empty history)",
            path.display()
        )));
    }
    let now = tokio::time::Instant::now();
    let now_ms = crate::now_millis();
    let mut read = MAGIC.len() as u64;
    let mut messages = 0;
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 8];
        if f.read_exact(&mut head).is_err() {
            break;
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as u64;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > total.saturating_sub(read + 8) {
            break;
        }
        payload.resize(len as usize, 0);
        if f.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
            break;
        }
        let Some(records) = decode(&payload) else {
            tracing::warn!(
                offset = read,
                "a history journal frame does not decode; the rest is dropped"
            );
            break;
        };
        for r in records {
            messages += usize::from(matches!(r, Record::Message { .. }));
            core.apply(r, now, now_ms);
        }
        read += 8 + len;
    }
    Ok(Loaded {
        channels: core.channel_count(),
        messages,
        dropped: total - read,
    })
}

/// Rewrites the journal from what `core` holds (durable messages only); returns
/// its length. Not synced: see the module doc (a stop of the machine drops it).
fn snapshot(dir: &Path, core: &Core) -> io::Result<u64> {
    let tmp = dir.join("journal.new");
    let mut out = Frames {
        out: BufWriter::with_capacity(1 << 20, File::create(&tmp)?),
        frame: Vec::new(),
        len: 0,
    };
    out.out.write_all(MAGIC)?;
    out.len = MAGIC.len() as u64;
    let mut records = Vec::new();
    for shard in 0..core.shard_count() {
        core.snapshot_shard(shard, &mut records);
        for r in records.drain(..) {
            out.add(&r)?;
        }
    }
    core.snapshot_idempotency(&mut records);
    for r in records.drain(..) {
        out.add(&r)?;
    }
    let len = out.finish()?;
    std::fs::rename(&tmp, dir.join("journal"))?;
    Ok(len)
}

/// Records written as frames of about [`SNAPSHOT_FRAME_BYTES`].
struct Frames {
    out: BufWriter<File>,
    frame: Vec<u8>,
    len: u64,
}

impl Frames {
    fn add(&mut self, r: &Record) -> io::Result<()> {
        if self.frame.is_empty() {
            self.frame.extend_from_slice(&[0; 8]);
        }
        encode(r, &mut self.frame);
        if self.frame.len() >= SNAPSHOT_FRAME_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        seal(&mut self.frame, 0);
        self.out.write_all(&self.frame)?;
        self.len += self.frame.len() as u64;
        self.frame.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<u64> {
        self.flush()?;
        self.out.flush()?;
        Ok(self.len)
    }
}

/// Fills in the 8-byte head (length, CRC-32 of the payload) of the frame that
/// starts at `start` of `buf` and runs to its end.
fn seal(buf: &mut [u8], start: usize) {
    let payload = &buf[start + 8..];
    let len = payload.len() as u32;
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The open journal and what whoever writes it keeps.
struct FileState {
    dir: PathBuf,
    file: File,
    len: u64,
    compact_at: u64,
    compact_min: u64,
    /// A rewrite was asked of the journal thread.
    compacting: bool,
    buf: Vec<u8>,
    /// Held while the journal is open: the directory's lock.
    lock: Option<File>,
}

impl Shared {
    /// Takes the file if nobody holds it and writes the queue, in batches, until
    /// it is empty (at most [`LEADER_ROUNDS`] batches; the journal thread writes
    /// the rest). With `jobs` (a publisher), a failed write is left to the journal
    /// thread; without (the journal thread itself), it blocks for the file and
    /// retries until the write succeeds.
    fn lead(&self, jobs: Option<&std::sync::mpsc::Sender<Job>>) {
        loop {
            // Pairs with the fence below: a publisher that queued a unit either
            // finds the file free or is seen by the one holding it.
            std::sync::atomic::fence(Ordering::SeqCst);
            let mut f = match jobs {
                Some(_) => match self.file.try_lock() {
                    Some(f) => f,
                    None => return,
                },
                None => self.file.lock(),
            };
            let mut rounds = 0;
            loop {
                let mut batch = std::mem::take(&mut self.queue.lock().units);
                if batch.is_empty() {
                    break;
                }
                let written = f.write_units(&mut batch, &self.core, jobs.is_none(), &self.failing);
                if !written {
                    // Back in front of what was queued since: order is kept.
                    let mut q = self.queue.lock();
                    batch.append(&mut q.units);
                    q.units = batch;
                    drop(q);
                    drop(f);
                    if let Some(jobs) = jobs {
                        let _ = jobs.send(Job::Drain);
                    }
                    return;
                }
                if f.len > f.compact_at && !f.compacting {
                    if let Some(jobs) = jobs {
                        f.compacting = true;
                        let _ = jobs.send(Job::Compact);
                    }
                }
                rounds += 1;
                if let (Some(jobs), true) = (jobs, rounds >= LEADER_ROUNDS) {
                    // Enough for one publisher's turn: the rest is the thread's.
                    drop(f);
                    if !self.queue.lock().units.is_empty() {
                        let _ = jobs.send(Job::Drain);
                    }
                    return;
                }
            }
            drop(f);
            // A unit queued while we held the file found it taken and left it
            // to us: look again now that it is free.
            std::sync::atomic::fence(Ordering::SeqCst);
            if self.queue.lock().units.is_empty() {
                return;
            }
        }
    }

    /// The journal thread: rewrites, drains and the final close.
    fn run(&self, jobs: &std::sync::mpsc::Receiver<Job>) {
        loop {
            match jobs.recv() {
                Ok(Job::Compact) => {
                    let mut f = self.file.lock();
                    f.compact(&self.core);
                    f.compacting = false;
                    drop(f);
                    self.lead(None);
                }
                Ok(Job::Drain) => self.lead(None),
                Ok(Job::Close(reply)) => {
                    self.close();
                    let _ = reply.send(());
                    return;
                }
                Err(_) => {
                    // The broker was dropped without close: close anyway.
                    self.close();
                    return;
                }
            }
        }
    }

    fn close(&self) {
        let mut f = self.file.lock();
        let mut batch = {
            let mut q = self.queue.lock();
            q.closed = true;
            std::mem::take(&mut q.units)
        };
        f.write_units(&mut batch, &self.core, true, &self.failing);
        f.finish();
        // The next process may take the directory once this one hears.
        f.lock.take();
    }
}

impl FileState {
    /// Writes `units` (batches of at most [`MAX_BATCH_BYTES`], one `write(2)`
    /// each) and hands each written one to `core`. On a failed write the file is
    /// cut back to its length; with `retry` the write is tried again (every second
    /// at most) until it succeeds, else what is not written stays in `units` and
    /// false is returned.
    fn write_units(
        &mut self,
        units: &mut VecDeque<Unit>,
        core: &Core,
        retry: bool,
        failing: &Failing,
    ) -> bool {
        while !units.is_empty() {
            self.buf.clear();
            let mut n = 0;
            for unit in units.iter() {
                if !unit.records.is_empty() {
                    let start = self.buf.len();
                    self.buf.extend_from_slice(&[0; 8]);
                    for r in &unit.records {
                        encode(r, &mut self.buf);
                    }
                    seal(&mut self.buf, start);
                }
                n += 1;
                if self.buf.len() >= MAX_BATCH_BYTES {
                    break;
                }
            }
            let mut pause = Duration::from_millis(10);
            loop {
                match self.file.write_all(&self.buf) {
                    Ok(()) => {
                        self.len += self.buf.len() as u64;
                        if failing.now.swap(false, Ordering::AcqRel) {
                            tracing::info!("the history journal is written again");
                        }
                        break;
                    }
                    Err(e) => {
                        if !failing.now.swap(true, Ordering::AcqRel) {
                            tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the history journal; publishes wait until it can");
                        }
                        *failing.last.lock() = e.to_string();
                        let _ = self.file.set_len(self.len);
                        if !retry {
                            return false;
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                }
            }
            for unit in units.drain(..n) {
                core.written(unit);
            }
        }
        if self.buf.capacity() > MAX_BATCH_BYTES {
            self.buf = Vec::new();
        }
        true
    }

    fn compact(&mut self, core: &Core) {
        let started = std::time::Instant::now();
        let before = self.len;
        match snapshot(&self.dir, core).and_then(|len| {
            Ok((
                len,
                OpenOptions::new().append(true).open(self.dir.join("journal"))?,
            ))
        }) {
            Ok((len, file)) => {
                self.file = file;
                self.len = len;
                self.compact_at = self.compact_min.max(len.saturating_mul(2));
                tracing::debug!(before, after = len, took = ?started.elapsed(), "history journal rewritten");
            }
            Err(e) => {
                // Keep appending to the old file; try again after it grew as much.
                self.compact_at = self.len.saturating_mul(2);
                tracing::warn!(error = %e, "cannot rewrite the history journal");
            }
        }
    }

    /// A clean end: the journal synced, the directory marked clean.
    fn finish(&mut self) {
        let synced = self
            .file
            .sync_all()
            .and_then(|()| sync_dir(&self.dir))
            .and_then(|()| write_durably(&self.dir, "state", "clean\n"));
        if let Err(e) = synced {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot mark the history journal clean; the next start trusts it only on this boot");
        }
    }
}

// ----- encoding: little-endian integers, strings as a u32 length and bytes -----

const CHANNEL: u8 = 1;
const MESSAGE: u8 = 2;
const FORGET: u8 = 3;
const IDEM: u8 = 4;

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn encode(r: &Record, buf: &mut Vec<u8>) {
    match r {
        Record::Channel {
            app,
            channel,
            epoch,
            top,
        } => {
            buf.push(CHANNEL);
            put_str(buf, app.as_str());
            put_str(buf, channel.as_str());
            put_str(buf, epoch);
            put_u64(buf, *top);
        }
        Record::Message { app, msg, kept } => {
            buf.push(MESSAGE);
            put_str(buf, app.as_str());
            put_str(buf, msg.channel.as_str());
            put_str(buf, &msg.epoch);
            put_u64(buf, msg.offset);
            put_u64(buf, msg.ts as u64);
            buf.push(u8::from(*kept));
            if *kept {
                put_str(buf, msg.event.as_str());
                put_str(buf, &msg.data);
            }
        }
        Record::Forget { app, channel, epoch } => {
            buf.push(FORGET);
            put_str(buf, app.as_str());
            put_str(buf, channel.as_str());
            put_str(buf, epoch);
        }
        Record::Idem {
            app,
            key,
            fingerprint,
            expires_ms,
            results,
        } => {
            buf.push(IDEM);
            put_str(buf, app.as_str());
            put_str(buf, key);
            put_u64(buf, *fingerprint);
            put_u64(buf, *expires_ms as u64);
            buf.extend_from_slice(&(results.len() as u32).to_le_bytes());
            for p in results {
                put_str(buf, p.channel.as_str());
                put_u64(buf, p.offset);
                put_str(buf, &p.epoch);
            }
        }
    }
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// The records of one frame's payload; `None` if any does not decode.
pub(crate) fn decode(payload: &[u8]) -> Option<Vec<Record>> {
    let mut c = Cursor(payload);
    let mut out = Vec::new();
    while !c.0.is_empty() {
        let r = match c.u8()? {
            CHANNEL => Record::Channel {
                app: AppName::parse(c.str()?).ok()?,
                channel: ChannelName::parse(c.str()?).ok()?,
                epoch: Arc::from(c.str()?),
                top: c.u64()?,
            },
            MESSAGE => {
                let app = AppName::parse(c.str()?).ok()?;
                let channel = ChannelName::parse(c.str()?).ok()?;
                let epoch = Arc::from(c.str()?);
                let offset = c.u64()?;
                let ts = c.u64()? as i64;
                let kept = c.u8()? != 0;
                let (event, data) = if kept {
                    (EventName::parse(c.str()?).ok()?, Arc::from(c.str()?))
                } else {
                    (EventName::message(), Arc::from(""))
                };
                Record::Message {
                    app,
                    msg: Arc::new(Envelope {
                        channel,
                        offset,
                        epoch,
                        event,
                        data,
                        ts,
                    }),
                    kept,
                }
            }
            FORGET => Record::Forget {
                app: AppName::parse(c.str()?).ok()?,
                channel: ChannelName::parse(c.str()?).ok()?,
                epoch: Arc::from(c.str()?),
            },
            IDEM => {
                let app = AppName::parse(c.str()?).ok()?;
                let key = c.str()?.to_owned();
                let fingerprint = c.u64()?;
                let expires_ms = c.u64()? as i64;
                let n = c.u32()? as usize;
                let mut results = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    results.push(Published {
                        channel: ChannelName::parse(c.str()?).ok()?,
                        offset: c.u64()?,
                        epoch: Arc::from(c.str()?),
                    });
                }
                Record::Idem {
                    app,
                    key,
                    fingerprint,
                    expires_ms,
                    results,
                }
            }
            _ => return None,
        };
        out.push(r);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_round_trip() {
        let app = AppName::parse("acme").unwrap();
        let channel = ChannelName::parse("chat:room").unwrap();
        let epoch: Arc<str> = Arc::from("abcDEF123456");
        let msg = Arc::new(Envelope {
            channel: channel.clone(),
            offset: 7,
            epoch: epoch.clone(),
            event: EventName::parse("ev").unwrap(),
            data: Arc::from("{\"x\":\"é\"}"),
            ts: 1_764_379_200_123,
        });
        let records = vec![
            Record::Channel {
                app: app.clone(),
                channel: channel.clone(),
                epoch: epoch.clone(),
                top: 6,
            },
            Record::Message {
                app: app.clone(),
                msg: msg.clone(),
                kept: true,
            },
            Record::Message {
                app: app.clone(),
                msg,
                kept: false,
            },
            Record::Forget {
                app: app.clone(),
                channel: channel.clone(),
                epoch: epoch.clone(),
            },
            Record::Idem {
                app,
                key: "order-42".into(),
                fingerprint: u64::MAX,
                expires_ms: 1_764_379_500_000,
                results: vec![Published {
                    channel,
                    offset: 7,
                    epoch,
                }],
            },
        ];
        let mut buf = Vec::new();
        for r in &records {
            encode(r, &mut buf);
        }
        let back = decode(&buf).unwrap();
        assert_eq!(back.len(), records.len());
        let mut again = Vec::new();
        for r in &back {
            encode(r, &mut again);
        }
        assert_eq!(again, buf, "what is read writes the same bytes");
        match &back[1] {
            Record::Message { msg, kept: true, .. } => {
                assert_eq!(
                    (msg.offset, msg.event.as_str(), &*msg.data),
                    (7, "ev", "{\"x\":\"é\"}")
                );
                assert_eq!(msg.ts, 1_764_379_200_123);
            }
            other => panic!("{other:?}"),
        }
        for cut in 0..buf.len() {
            // A cut record never decodes into something else.
            if let Some(rs) = decode(&buf[..cut]) {
                assert!(rs.len() < records.len());
            }
        }
    }
}
