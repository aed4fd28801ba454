//! The Lua scripts: each one step that Redis runs atomically.
//!
//! Rules every script keeps: time is Redis's (`TIME`), so nodes with skewed clocks
//! agree on ages and expiries; integers are written with `%d` (Lua 5.1 would print
//! large numbers in exponent form); a script never fails half-way on data it wrote
//! itself (entries that do not parse are dropped, not trusted).

use std::sync::LazyLock;

use ::redis::Script;

/// `now` in Unix milliseconds, from Redis's clock.
macro_rules! now_ms {
    () => {
        "local _t = redis.call('TIME')\n\
         local now = tonumber(_t[1]) * 1000 + math.floor(tonumber(_t[2]) / 1000)\n"
    };
}

/// Reads the channel's epoch, starting one (with top 0 and no history) when the
/// meta key is gone; then trims the history to `size` and drops entries stored at
/// or before `now - ttl`. Expects `meta`, `hist`, `cand`, `size`, `ttl`, `now`.
macro_rules! epoch_and_trim {
    () => {
        "local epoch = redis.call('HGET', meta, 'epoch')\n\
         if not epoch then\n\
           epoch = cand\n\
           redis.call('DEL', hist)\n\
           redis.call('HSET', meta, 'epoch', epoch, 'top', 0)\n\
         end\n\
         local function trim()\n\
           local n = redis.call('ZCARD', hist)\n\
           if n > size then redis.call('ZREMRANGEBYRANK', hist, 0, n - size - 1) end\n\
           local cutoff = now - ttl\n\
           while true do\n\
             local first = redis.call('ZRANGE', hist, 0, 0, 'WITHSCORES')\n\
             if not first[1] then return nil end\n\
             local at = tonumber(string.match(first[1], '^(%d+) '))\n\
             if at and at > cutoff then return tonumber(first[2]) end\n\
             redis.call('ZREMRANGEBYRANK', hist, 0, 0)\n\
           end\n\
         end\n"
    };
}

/// Publish to one channel: offset, history, epoch and fan-out in one step.
///
/// KEYS: meta (hash `epoch`, `top`), hist (sorted set: score = offset, member =
/// `<stored ms> <envelope json>`). ARGV: epoch candidate, size, ttl ms, keep ms,
/// Pub/Sub topic, envelope head, envelope tail. Returns `{offset, epoch}`.
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local meta, hist = KEYS[1], KEYS[2]\n",
        "local cand, size, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n",
        now_ms!(),
        epoch_and_trim!(),
        "local top = redis.call('HINCRBY', meta, 'top', 1)\n",
        "local json = ARGV[6] .. '\"offset\":' .. string.format('%d', top) .. ',\"epoch\":\"' .. epoch .. '\"' .. ARGV[7]\n",
        "if size > 0 then\n",
        "  redis.call('ZADD', hist, top, string.format('%d', now) .. ' ' .. json)\n",
        "  trim()\n",
        "  redis.call('PEXPIRE', hist, keep)\n",
        "else\n",
        "  redis.call('DEL', hist)\n",
        "end\n",
        "redis.call('PEXPIRE', meta, keep)\n",
        "redis.call('PUBLISH', ARGV[5], 'm' .. json)\n",
        "return {top, epoch}\n",
    ))
});

/// Reads a channel's position and the messages after `since`.
///
/// KEYS: meta, hist. ARGV: epoch candidate, size, ttl ms, keep ms, since
/// (exclusive, decimal), limit. Returns `{epoch, top, oldest, {members...}}` where
/// `oldest` is the oldest retained offset (`top + 1` when none is).
pub(crate) static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local meta, hist = KEYS[1], KEYS[2]\n",
        "local cand, size, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])\n",
        "local limit = tonumber(ARGV[6])\n",
        now_ms!(),
        epoch_and_trim!(),
        "local top = tonumber(redis.call('HGET', meta, 'top')) or 0\n",
        "local oldest = trim() or (top + 1)\n",
        "redis.call('PEXPIRE', meta, keep)\n",
        "redis.call('PEXPIRE', hist, keep)\n",
        "local msgs = {}\n",
        "if limit > 0 then\n",
        "  msgs = redis.call('ZRANGEBYSCORE', hist, '(' .. ARGV[5], '+inf', 'LIMIT', 0, limit)\n",
        "end\n",
        "return {epoch, top, oldest, msgs}\n",
    ))
});

/// Extends the life of existing keys to at least ARGV[1] ms (never shortens it,
/// never creates a key): what keeps a quiet channel's epoch while a node listens.
pub(crate) static KEEPALIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local ms = tonumber(ARGV[1])\n",
        "for _, k in ipairs(KEYS) do\n",
        "  local left = redis.call('PTTL', k)\n",
        "  if left >= 0 and left < ms then redis.call('PEXPIRE', k, ms) end\n",
        "end\n",
        "return 0\n",
    ))
});

/// Claims an idempotency key, or tells its state.
///
/// KEYS: the key's record (hash `s` state p/d/f, `fp`, `n` owner nonce, `r`
/// results JSON, `x` end of window in ms). ARGV: fingerprint, nonce, lease ms,
/// window ms. Returns `{state, results}` with state `claimed` (results: what a
/// failed earlier attempt already appended, or empty), `done`, `pending` or
/// `conflict`.
pub(crate) static IDEM_CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local k = KEYS[1]\n",
        "local fp, nonce, lease, window = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])\n",
        now_ms!(),
        "local s = redis.call('HGET', k, 's')\n",
        "if not s then\n",
        "  redis.call('HSET', k, 's', 'p', 'fp', fp, 'n', nonce, 'r', '', 'x', string.format('%d', now + window))\n",
        "  redis.call('PEXPIRE', k, math.max(1, math.min(lease, window)))\n",
        "  return {'claimed', ''}\n",
        "end\n",
        "if redis.call('HGET', k, 'fp') ~= fp then return {'conflict', ''} end\n",
        "if s == 'd' then return {'done', redis.call('HGET', k, 'r')} end\n",
        "if s == 'f' then\n",
        "  local left = (tonumber(redis.call('HGET', k, 'x')) or now) - now\n",
        "  redis.call('HSET', k, 's', 'p', 'n', nonce)\n",
        "  redis.call('PEXPIRE', k, math.max(1, math.min(lease, left)))\n",
        "  return {'claimed', redis.call('HGET', k, 'r')}\n",
        "end\n",
        "return {'pending', ''}\n",
    ))
});

/// Records the outcome of a claimed idempotent publish, if the claim is still ours.
///
/// KEYS: the record. ARGV: nonce, state (`d` done, `f` failed part-way), results
/// JSON. The record then lives until the end of its window. Returns 1, or 0 when
/// the claim was lost (its lease ran out).
pub(crate) static IDEM_FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local k = KEYS[1]\n",
        now_ms!(),
        "if redis.call('HGET', k, 'n') ~= ARGV[1] then return 0 end\n",
        "local left = (tonumber(redis.call('HGET', k, 'x')) or now) - now\n",
        "if left <= 0 then redis.call('DEL', k) return 1 end\n",
        "redis.call('HSET', k, 's', ARGV[2], 'r', ARGV[3])\n",
        "redis.call('PEXPIRE', k, left)\n",
        "return 1\n",
    ))
});

/// Lua: true when the user (hex) has an entry other than those removed that has
/// not expired. Expects `U` (lex index), `X` (expiries), `now`.
macro_rules! user_present {
    () => {
        "local function present(uhex)\n\
           for _, m in ipairs(redis.call('ZRANGEBYLEX', U, '[' .. uhex .. ':', '(' .. uhex .. ';')) do\n\
             local e = tonumber(redis.call('ZSCORE', X, string.sub(m, #uhex + 2)))\n\
             if e and e > now then return true end\n\
           end\n\
           return false\n\
         end\n"
    };
}

/// Adds or refreshes a connection's presence entry.
///
/// KEYS: E (hash client -> `<user hex> <seq> <info>`), X (sorted set client ->
/// expiry ms), U (sorted set of `<user hex>:<client>`, read by lex range), S (the
/// shard's sweep index: channel id -> earliest expiry), Q (the shard's sequence).
/// ARGV: client, user hex, info, ttl ms, channel id. Returns 1 when the user was
/// not present before, else 0.
pub(crate) static PRESENCE_JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local E, X, U, S, Q = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n",
        "local client, uhex, info, ttl, ch = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]\n",
        now_ms!(),
        user_present!(),
        "local exp = now + ttl\n",
        "local prior = redis.call('HGET', E, client)\n",
        "if prior then\n",
        "  local phex = string.match(prior, '^(%x*) ')\n",
        "  if phex ~= uhex then redis.call('ZREM', U, (phex or '') .. ':' .. client) end\n",
        "end\n",
        "local was = present(uhex)\n",
        "local seq = redis.call('INCR', Q)\n",
        "redis.call('HSET', E, client, uhex .. ' ' .. string.format('%d', seq) .. ' ' .. info)\n",
        "redis.call('ZADD', X, exp, client)\n",
        "redis.call('ZADD', U, 0, uhex .. ':' .. client)\n",
        "local cur = tonumber(redis.call('ZSCORE', S, ch))\n",
        "if not cur or exp < cur then redis.call('ZADD', S, exp, ch) end\n",
        // Keys outlive their newest entry by a minute, so a channel nobody sweeps
        // (every node gone) still disappears; the sequence outlives every entry.
        "local keep = ttl + 60000\n",
        "for _, k in ipairs({E, X, U}) do\n",
        "  if redis.call('PTTL', k) < keep then redis.call('PEXPIRE', k, keep) end\n",
        "end\n",
        "if redis.call('PTTL', Q) < math.max(86400000, 2 * keep) then redis.call('PEXPIRE', Q, math.max(86400000, 2 * keep)) end\n",
        "if was then return 0 end\n",
        "return 1\n",
    ))
});

/// Removes a connection's entry.
///
/// KEYS: E, X, U, S. ARGV: client, channel id. Returns `{user hex, info}` when it
/// was the user's last unexpired entry, else nil.
pub(crate) static PRESENCE_LEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local E, X, U, S = KEYS[1], KEYS[2], KEYS[3], KEYS[4]\n",
        "local client, ch = ARGV[1], ARGV[2]\n",
        now_ms!(),
        user_present!(),
        "local v = redis.call('HGET', E, client)\n",
        "if not v then return false end\n",
        "redis.call('HDEL', E, client)\n",
        "redis.call('ZREM', X, client)\n",
        "local uhex, info = string.match(v, '^(%x*) %d+ (.*)$')\n",
        "if redis.call('HLEN', E) == 0 then\n",
        "  redis.call('DEL', E, X, U)\n",
        "  redis.call('ZREM', S, ch)\n",
        "end\n",
        "if not uhex then return false end\n",
        "redis.call('ZREM', U, uhex .. ':' .. client)\n",
        "if present(uhex) then return false end\n",
        "return {uhex, info}\n",
    ))
});

/// The unexpired entries of a channel (values of E), read in chunks so that a
/// large channel does not overflow Lua's stack.
///
/// KEYS: E, X.
pub(crate) static PRESENCE_MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local E, X = KEYS[1], KEYS[2]\n",
        now_ms!(),
        "local clients = redis.call('ZRANGEBYSCORE', X, '(' .. string.format('%d', now), '+inf')\n",
        "local out = {}\n",
        "for i = 1, #clients, 500 do\n",
        "  local chunk = {}\n",
        "  for j = i, math.min(i + 499, #clients) do chunk[#chunk + 1] = clients[j] end\n",
        "  for _, v in ipairs(redis.call('HMGET', E, unpack(chunk))) do\n",
        "    if v then out[#out + 1] = v end\n",
        "  end\n",
        "end\n",
        "return out\n",
    ))
});

/// Removes the expired entries of up to ARGV[2] channels that are due, and returns
/// the users that left by it. Atomic, so nodes sweeping at once report each
/// departure once.
///
/// KEYS: S (the shard's sweep index). ARGV: key prefix (`<prefix>:`), batch size.
/// The channels' keys are derived from the prefix and the ids in S. Returns
/// `{channels visited, {channel id, user hex, info, ...}}`.
pub(crate) static PRESENCE_SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        "local S, P = KEYS[1], ARGV[1]\n",
        now_ms!(),
        "local due = redis.call('ZRANGEBYSCORE', S, '-inf', string.format('%d', now), 'LIMIT', 0, tonumber(ARGV[2]))\n",
        "local out = {}\n",
        "for _, ch in ipairs(due) do\n",
        "  local E, X, U = P .. 'pres:' .. ch, P .. 'pexp:' .. ch, P .. 'pusr:' .. ch\n",
        user_present!(),
        "  local users, order = {}, {}\n",
        "  for _, c in ipairs(redis.call('ZRANGEBYSCORE', X, '-inf', string.format('%d', now))) do\n",
        "    local v = redis.call('HGET', E, c)\n",
        "    redis.call('HDEL', E, c)\n",
        "    redis.call('ZREM', X, c)\n",
        "    if v then\n",
        "      local uhex, info = string.match(v, '^(%x*) %d+ (.*)$')\n",
        "      if uhex then\n",
        "        redis.call('ZREM', U, uhex .. ':' .. c)\n",
        "        if not users[uhex] then users[uhex] = info; order[#order + 1] = uhex end\n",
        "      end\n",
        "    end\n",
        "  end\n",
        "  for _, uhex in ipairs(order) do\n",
        "    if not present(uhex) then\n",
        "      out[#out + 1] = ch; out[#out + 1] = uhex; out[#out + 1] = users[uhex]\n",
        "    end\n",
        "  end\n",
        "  local nxt = redis.call('ZRANGE', X, 0, 0, 'WITHSCORES')\n",
        "  if nxt[2] then\n",
        "    redis.call('ZADD', S, nxt[2], ch)\n",
        "  else\n",
        "    redis.call('ZREM', S, ch)\n",
        "    redis.call('DEL', E, X, U)\n",
        "  end\n",
        "end\n",
        "return {#due, out}\n",
    ))
});
