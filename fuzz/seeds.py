#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target (fuzz/corpus/<target>/)
from real examples: the protocol's own examples (docs/protocol.md, frame.rs),
the configuration of docs/configuration.md, the demo deck, the tests' PDFs and
bodies. Run it again after changing a target's input format; libFuzzer grows
its own working corpus elsewhere (fuzz/run.sh), so this one stays small."""
import base64, hashlib, hmac, json, os, re, struct, sys, zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def position(channel, epoch, offset):
    return b64url(f"{channel}|{epoch}|{offset}".encode())


# channel_name: names, and "pattern\nchannel" pairs.
for i, s in enumerate([
    "chat:room-1", "im#alice,bob", "a:b:c", "news", "class:k3J9x", "user@example.org",
    "chat:*\nchat:room-1", "room-*\nroom-7", "a:*:c\na:b:c", "*\nanything", "im#alice,bob\ncarol",
    "demo", "message", "reset", "x" * 255,
]):
    write("channel_name", f"seed-{i:02}", s)

# cursor: one channel, several, a repeated channel (the later wins).
cursors = [
    position("chat:a", "E1", 4),
    position("chat:a", "E1", 4) + "." + position("im#x,y", "E2", 0),
    ".".join(position(f"c{i}", "k3J9", i) for i in range(5)),
    position("chat:a", "E1", 4) + "." + position("chat:a", "E1", 9),
    position("news", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-", 18446744073709551615),
    "",
]
for i, c in enumerate(cursors):
    write("cursor", f"seed-{i:02}", c)
# (No seed at the 128 KiB limit: libFuzzer would then mutate inputs that long
# and run a thousand times slower. cursor.rs has the unit test at the limit.)

# ws_command: the frames of frame.rs and docs/protocol.md.
frames = [
    '{"id":1,"op":"subscribe","channel":"a","cursor":"%s"}' % cursors[0],
    '{"id":2,"op":"unsubscribe","channel":"a"}',
    '{"id":3,"op":"publish","channel":"a","event":"e","data":{"x": 1}}',
    '{"id":3,"op":"publish","channel":"chat:room-1","data":{\n"text": "hi"\n}}',
    '{"id":4,"op":"presence","channel":"a"}',
    '{"id":5,"op":"ping"}',
    '{"id":6,"op":"refresh","token":"eyJ.eyJ.sig"}',
    '{"op":"subscribe","channel":"im#alice,bob"}',
]
for i, f in enumerate(frames):
    write("ws_command", f"seed-{i:02}", f)


# ws_codec: [read size - 1][max message / 16] then masked client frames.
def client_frame(first, payload, mask=b"\x01\x02\x03\x04"):
    out = bytes([first])
    n = len(payload)
    if n < 126:
        out += bytes([0x80 | n])
    elif n < 65536:
        out += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        out += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return out + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


ws = [
    client_frame(0x81, frames[0].encode()) + client_frame(0x81, frames[5].encode()),
    client_frame(0x01, b"hel") + client_frame(0x89, b"p") + client_frame(0x80, b"lo") + client_frame(0x88, struct.pack(">H", 1000)),
    client_frame(0x81, "é".encode()) + client_frame(0x82, b"\x00\x01") + client_frame(0x8A, b""),
    client_frame(0x81, b"a" * 300),
    client_frame(0x88, struct.pack(">H", 1001) + b"bye"),
]
for i, w in enumerate(ws):
    write("ws_codec", f"seed-{i:02}", bytes([6, 200]) + w)
write("ws_codec", "seed-byte-at-a-time", bytes([0, 64]) + ws[1])

# token: mode 0 = a token, 1 = claims signed with the app's secret, 2 = another secret.
SECRET = b"fuzz-token-secret-0123456789abcdef"


def jwt(claims, secret=SECRET, header='{"alg":"HS256","typ":"JWT"}'):
    m = b64url(header.encode()) + "." + b64url(claims.encode())
    return m + "." + b64url(hmac.new(secret, m.encode(), hashlib.sha256).digest())


claims = [
    '{"sub":"alice","exp":4102444800,"channels":["chat:*"],"publish":["chat:*"],"info":{"name":"Alice"}}',
    '{"exp":4102444800,"app":"demo","iat":1700000000,"nbf":1700000000,"channels":["*"]}',
    '{"sub":"bob","exp":1}',
    '{"exp":4102444800,"app":"other"}',
    '{"exp":4102444800,"iat":4102444800}',
]
for i, c in enumerate(claims):
    write("token", f"seed-token-{i:02}", b"\x00" + jwt(c).encode())
    write("token", f"seed-claims-{i:02}", b"\x01" + c.encode())
write("token", "seed-other-secret", b"\x02" + claims[0].encode())
write("token", "seed-alg-none", b"\x00" + jwt(claims[0], header='{"alg":"none"}').encode())

# sse_request: request heads of EventSource, long-poll and WebSocket clients.
heads = [
    "GET /v1/apps/demo/events?channel=a&token=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %s\r\n\r\n" % cursors[1],
    "GET /v1/apps/demo/events?channel=chat:room-1&channel=news&cursor=%s HTTP/1.1\r\nHost: localhost:8080\r\nAccept: text/event-stream\r\nAuthorization: Bearer %s\r\n\r\n" % (cursors[2], jwt(claims[0])),
    "GET /v1/apps/demo/ws?token=t HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://x\r\n\r\n",
    "GET /v1/apps/demo/events HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "channel=a&channel=b&token=x&cursor=%s\n%s" % (cursors[0], cursors[3]),
]
for i, h in enumerate(heads):
    write("sse_request", f"seed-{i:02}", h)
# (No seed of 40 000 channels, for the same reason: request.rs has that unit test.)

# config: the file of docs/configuration.md, and pieces of it.
doc = open(os.path.join(ROOT, "docs", "configuration.md")).read()
m = re.search(r"```toml\n(.*?)```", doc, re.S)
write("config", "seed-configuration-md", m.group(1))
write("config", "seed-redis", 'broker = "redis://127.0.0.1:6379,redis://127.0.0.1:6380"\ndatabase = "postgres://u:p@127.0.0.1:5432/herald"\n')
write("config", "seed-small", '[transport]\nsse_heartbeat = "1ms"\nws_ping = "1s"\nws_idle_timeout = "2s"\n[namespaces."a.b"]\nhistory_ttl = "1h 30m"\n')
write("config", "seed-empty", "")

# markdown_deck: the demo deck, the tests' decks.
demo = open(os.path.join(ROOT, "crates", "herald-classroom", "src", "demo.rs")).read()
deck = re.search(r'pub const DECK: &str = "\\\n(.*?)";', demo, re.S).group(1)
write("markdown_deck", "seed-demo", deck.replace('\\"', '"'))
write("markdown_deck", "seed-tests", "# Welcome\n\nToday: **forces**.\n\n<script>alert('x')</script>\n\n## Newton\n\n- first law\n- [a link](https://example.org) and [a trap](javascript:alert(1))\n\n---\n\nA slide without a heading.\n\n# Questions?\n\n```\n# not a new slide\n```\n")
write("markdown_deck", "seed-links", "[a](javascript:alert(1)) [b](https://example.org) [c](mailto:x@example.org) <javascript:alert(2)> <x@example.org> [d]( JaVaScRiPt:alert(3))\n\n![e](data:image/png;base64,xx) ![f](https://example.org/f.png) ![g](/api/x)\n")
write("markdown_deck", "seed-tables", "Title\n=====\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\n- [ ] todo\n- [x] done\n\n~~gone~~ `code` *em*\n\n1. one\n2. two\n\n> quote\n\n```rust\nfn main() {}\n```\n\n# T {#id .class}\n\n![![nested](https://x/y.png)](javascript:z)\n")


# upload: [declared type index] then the file. 0 = application/pdf, 1 = image/png...
def pdf(pages, content=lambda i: f"0 0 {i % 2} rg 20 20 {100 + 50 * i} 100 re f", extra_objects=(), resources="", compress=False, box="0 0 320 180"):
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(pages))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>")
    for i in range(pages):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [{box}] /Contents {4 + 2 * i} 0 R {resources} >>")
        c = content(i).encode()
        if compress:
            z = zlib.compress(c)
            objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(z) + z + b"\nendstream")
        else:
            objects.append(f"<< /Length {len(c)} >>\nstream\n{c.decode()}\nendstream")
    objects.extend(extra_objects)
    out = b"%PDF-1.4\n"
    offsets = []
    for n, body in enumerate(objects):
        offsets.append(len(out))
        body = body if isinstance(body, bytes) else body.encode()
        out += f"{n + 1} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for o in offsets:
        out += f"{o:010} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


write("upload", "seed-pdf-1", b"\x00" + pdf(1))
write("upload", "seed-pdf-3", b"\x00" + pdf(3))
write("upload", "seed-pdf-flate", b"\x00" + pdf(2, compress=True))
n_extra = 3 + 2 * 1  # the first object after one page
write("upload", "seed-pdf-text", b"\x00" + pdf(
    1,
    content=lambda i: "BT /F1 24 Tf 20 100 Td (Hello, class) Tj ET 1 0 0 RG 2 w 10 10 m 300 170 l S",
    resources=f"/Resources << /Font << /F1 {n_extra} 0 R >> >>",
    extra_objects=["<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"],
))
write("upload", "seed-pdf-image", b"\x00" + pdf(
    1,
    content=lambda i: "q 100 0 0 50 10 10 cm /Im1 Do Q q 0.5 0 0 0.5 0 0 cm 0 0 1 rg 0 0 50 50 re f Q",
    resources=f"/Resources << /XObject << /Im1 {n_extra} 0 R >> >>",
    extra_objects=[b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceRGB /BitsPerComponent 8 /Length 12 >>\nstream\n\xff\x00\x00\x00\xff\x00\x00\x00\xff\xff\xff\xff\nendstream"],
))
write("upload", "seed-pdf-rotated", b"\x00" + pdf(1, box="0 0 180 320").replace(b"/Type /Page ", b"/Type /Page /Rotate 90 "))
png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")
write("upload", "seed-png", b"\x01" + png)
write("upload", "seed-jpeg", b"\x02" + bytes([0xFF, 0xD8, 0xFF, 0xE0]) + b"\x00\x10JFIF\x00")
write("upload", "seed-gif", b"\x03GIF89a\x01\x00\x01\x00")
write("upload", "seed-webp", b"\x04RIFF\x00\x00\x00\x00WEBPVP8 ")
write("upload", "seed-liar", b"\x01GIF89a not a png")

# classroom_body: [endpoint index, +128 to call as the student] then the body
# (the endpoint table is in fuzz_targets/classroom_body.rs).
bodies = {
    0: {"code": "XXXX-XXXX", "name": "Ada"},
    1: {"title": "Physics 101"},
    2: {"code": "XXXX-XXXX"},
    3: {"title": "Physics 102", "guests_allowed": True},
    4: {"role": "co_trainer"},
    5: {"title": "Second lesson"},
    6: {"title": "Forces", "markdown": deck.replace('\\"', '"')},
    7: {"deck_id": None},
    8: {"mode": "student"},
    9: {"page": 1},
    10: {"kind": "single", "question": "How is the pace?", "options": ["Too slow", "Just right", "Too fast"], "correct": [1], "duration_s": 60},
    11: {"visible": True},
    12: {"answer": 1},
    13: {"anonymous": True, "moderation": False},
    14: {"text": "What is a force?", "anonymous": False},
    15: {"text": "What is a force, exactly?"},
    16: {"state": "starred"},
    17: {"mode": "public", "text": "A push or a pull."},
    18: {"groups": [{"name": "Red", "members": []}, {"name": "Blue"}], "mode": "free", "duration_s": 300},
    19: {"mode": "assigned"},
    20: {"count": 2, "names": ["A", "B"], "online_only": False},
    21: {"extend_s": 60},
    22: {"text": "Five minutes left"},
    23: {"name": "Green"},
    24: {"user_id": "u"},
    25: {"role": "observer"},
    26: {"activity": "typing"},
    27: {},
}
for k, v in bodies.items():
    write("classroom_body", f"seed-{k:02}", bytes([k]) + json.dumps(v).encode())
write("classroom_body", "seed-student-poll", bytes([10 | 0x80]) + json.dumps(bodies[10]).encode())
write("classroom_body", "seed-rating", bytes([10]) + b'{"kind":"rating","question":"Rate it","scale":5}')
write("classroom_body", "seed-word", bytes([12 | 0x80]) + b'{"answer":[0,2]}')
print("seeds written to", OUT)
