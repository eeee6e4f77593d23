"""Three sluice nodes on 127.0.0.1 with a real redis-server and PostgreSQL: run by tests/cluster/cluster.sh
(which installs them). One line per check; exit 1 when one fails. KEEP=1 keeps the work directory.

The next hop is a sink in this process that counts the connections open at once and every Message-ID it
takes, and that can be taken down (connection refused) and brought back."""

import asyncio
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

BIN = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="sluice-cluster.")
os.chmod(WORK, 0o755)
PROCS = []
FAILED = []
DOMAIN = "example.com"


def ok(text):
    print(f"ok: {text}", flush=True)


def bad(text):
    print(f"FAILED: {text}", flush=True)
    FAILED.append(text)


def check(cond, text, why=""):
    if cond:
        ok(text)
    else:
        bad(f"{text}{': ' + why if why else ''}")
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(predicate, timeout=60.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(every)
    return False


def start(cmd, log, **kw):
    p = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def tail(path, n=20):
    try:
        return "\n".join(open(path, errors="replace").read().splitlines()[-n:])
    except OSError:
        return ""


# --- the next hop ----------------------------------------------------------------------------------------------

class Sink:
    """An SMTP sink on its own event loop: counts connections at once (and the most seen), takes every
    message (after `delay` seconds) and counts each Message-ID."""

    def __init__(self):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.open = 0
        self.most = 0
        self.delay = 0.0
        self.ids = {}
        self.arrivals = []
        self.writers = set()
        self.lock = threading.Lock()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def up(self):
        async def go():
            self.server = await asyncio.start_server(self.session, "127.0.0.1", self.port, reuse_address=True)
        asyncio.run_coroutine_threadsafe(go(), self.loop).result()

    def down(self):
        """Refuses connections, and drops those open (a sender keeps an idle one for more mail)."""
        async def go():
            if self.server:
                self.server.close()
                for w in list(self.writers):
                    w.close()
                await self.server.wait_closed()
                self.server = None
        asyncio.run_coroutine_threadsafe(go(), self.loop).result()

    def reset_most(self):
        with self.lock:
            self.most = self.open

    def count(self, prefix=""):
        with self.lock:
            return sum(n for k, n in self.ids.items() if k.startswith(prefix))

    def span(self, prefix):
        """Seconds from the first to the last arrival of the messages whose Message-ID starts with `prefix`."""
        with self.lock:
            times = [t for t, m in self.arrivals if m and m.startswith(prefix)]
        return max(times) - min(times) if times else 0.0

    def duplicates(self, prefix=""):
        with self.lock:
            return [k for k, n in self.ids.items() if k.startswith(prefix) and n > 1]

    async def session(self, reader, writer):
        self.writers.add(writer)
        with self.lock:
            self.open += 1
            self.most = max(self.most, self.open)
        try:
            writer.write(b"220 sink ESMTP\r\n")
            while True:
                line = await reader.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(b"250-sink\r\n250 PIPELINING\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go on\r\n")
                    await writer.drain()
                    msgid = None
                    while True:
                        data = await reader.readline()
                        if not data or data == b".\r\n":
                            break
                        if msgid is None and data.lower().startswith(b"message-id:"):
                            msgid = data.split(b":", 1)[1].strip().decode()
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    with self.lock:
                        self.ids[msgid] = self.ids.get(msgid, 0) + 1
                        self.arrivals.append((time.monotonic(), msgid))
                    writer.write(b"250 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                elif verb == b"RSET" or verb == b"NOOP" or verb == b"MAIL" or verb == b"RCPT":
                    writer.write(b"250 ok\r\n")
                else:
                    writer.write(b"502 no\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            with self.lock:
                self.open -= 1
            writer.close()


# --- Redis and PostgreSQL --------------------------------------------------------------------------------------

REDIS_PORT = free_port()
PG_PORT = free_port()
PG_DIR = os.path.join(WORK, "pg")
PG_BIN = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
PG_BIN = f"/usr/lib/postgresql/{PG_BIN}/bin"
redis_proc = None


def start_redis():
    global redis_proc
    redis_proc = start(["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"], os.path.join(WORK, "redis.log"))
    if not wait(lambda: socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1).close() or True, 20):
        bad(f"redis-server did not start:\n{tail(os.path.join(WORK, 'redis.log'))}")
        sys.exit(1)


def start_postgres():
    os.makedirs(PG_DIR)
    shutil.chown(PG_DIR, "postgres", "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + [f"{PG_BIN}/initdb", "-D", f"{PG_DIR}/data", "-A", "trust", "-U", "postgres"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_pg + [f"{PG_BIN}/pg_ctl", "-D", f"{PG_DIR}/data", "-l", f"{PG_DIR}/log", "-w", "-o",
                            f"-p {PG_PORT} -k {PG_DIR} -c listen_addresses=127.0.0.1 -c fsync=on", "start"],
                   check=True, stdout=subprocess.DEVNULL)


def stop_postgres():
    subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/pg_ctl", "-D", f"{PG_DIR}/data", "-m", "fast",
                    "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def psql(sql):
    out = subprocess.run(["runuser", "-u", "postgres", "--", f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p",
                          str(PG_PORT), "-U", "postgres", "-tAc", sql], capture_output=True, text=True)
    return out.stdout.strip()


# --- sluice nodes ----------------------------------------------------------------------------------------------

class Node:
    def __init__(self, name, sink):
        self.name = name
        self.dir = os.path.join(WORK, name)
        os.makedirs(self.dir)
        self.smtp = free_port()
        self.admin = free_port()
        self.config = os.path.join(self.dir, "sluice.toml")
        with open(self.config, "w") as f:
            f.write(f"""[server]
data_dir = "{self.dir}/data"
hostname = "{name}.example.net"
name = "{name}"
[admin]
listen = "127.0.0.1:{self.admin}"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:{self.smtp}"
relay_networks = ["127.0.0.0/8"]
max_connections_per_ip = 100
[[send_connectors]]
name = "Out"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{sink.port}"]
[transport]
max_per_domain_outbound_connections = 2
max_per_domain_messages_per_minute = 0
queue_glitch_retry_interval = "1s"
transient_failure_retry_interval = "1s"
outbound_connection_failure_retry_interval = "1s"
message_retry_interval = "1s"
message_expiration_timeout = "2d"
[cluster]
node = "{name}"
redis = "redis://127.0.0.1:{REDIS_PORT}/0"
postgres = "postgres://postgres@127.0.0.1:{PG_PORT}/postgres"
heartbeat_interval = "1s"
shadow_takeover_after = "6s"
""")
        self.log = os.path.join(self.dir, "sluice.log")
        self.proc = None

    def start(self):
        self.proc = start([BIN, "serve", "--config", self.config], self.log)
        if not wait(lambda: self.get("health") is not None, 60):
            bad(f"{self.name} did not start:\n{tail(self.log)}")
            sys.exit(1)

    def stop(self, sig=signal.SIGTERM):
        stop(self.proc, sig)

    def request(self, path, method="GET", body=None):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"X-Sluice-Request": "1"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/api/v1/{path}", data=data, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get(self, path):
        try:
            status, body = self.request(path)
        except OSError:
            return None
        return body if status == 200 else None

    def cli(self, *args):
        return subprocess.run([BIN, *args, "--api", f"http://127.0.0.1:{self.admin}"], capture_output=True,
                              text=True, timeout=60)

    def send(self, count, tag):
        """`count` messages to bob@example.com, Message-IDs `<tag-i@test>`, over a few sessions."""
        ids = []
        done = 0
        while done < count:
            with smtplib.SMTP("127.0.0.1", self.smtp, timeout=60) as s:
                for _ in range(min(100, count - done)):
                    msgid = f"<{tag}-{done}@test>"
                    text = f"From: alice@test\r\nTo: bob@{DOMAIN}\r\nSubject: {tag} {done}\r\nMessage-ID: {msgid}\r\n\r\nhi\r\n"
                    s.sendmail("alice@test", [f"bob@{DOMAIN}"], text.encode())
                    ids.append(msgid)
                    done += 1
        return ids

    def set_rate(self, per_minute):
        """Rewrites `max_per_domain_messages_per_minute` and reloads the configuration."""
        text = open(self.config).read()
        old = next(line for line in text.splitlines() if line.startswith("max_per_domain_messages_per_minute"))
        with open(self.config, "w") as f:
            f.write(text.replace(old, f"max_per_domain_messages_per_minute = {per_minute}"))
        r = self.cli("config", "reload")
        if r.returncode != 0:
            bad(f"{self.name}: config reload failed: {r.stdout}{r.stderr}")

    def held(self):
        qs = self.get("queues?result_size=1000")
        return sum(q["message_count"] for q in qs["items"]) if qs else None

    def domain_queues(self):
        qs = self.get("queues?result_size=1000") or {"items": []}
        return [q for q in qs["items"] if q["next_hop_domain"] == HOP]

    def alerts(self):
        a = self.get("alerts?result_size=1000") or {"items": []}
        return [x["text"] for x in a["items"]]


def main():
    start_redis()
    start_postgres()
    sink = Sink()
    sink.up()
    # The next hop of a smart-host connector's queue is its host list: the key of the shared limit.
    global HOP, FILTER
    HOP = f"127.0.0.1:{sink.port}"
    FILTER = f"NextHopDomain -eq '{HOP}'"
    nodes = [Node(f"n{i}", sink) for i in (1, 2, 3)]
    for n in nodes:
        n.start()
    n1, n2, n3 = nodes
    check(wait(lambda: len([x for x in n1.get("cluster/nodes")["items"] if x["state"] == "active"]) == 3, 20),
          "three nodes see each other through their heartbeats")
    r = n1.cli("cluster", "status")
    check(r.returncode == 0 and "n2" in r.stdout and "n3" in r.stdout and "shared" in r.stdout,
          "sluice cluster status lists the nodes", r.stdout + r.stderr)

    # --- one limit of 2 connections to the next hop, shared by the three nodes ---
    sink.delay = 0.05
    sink.reset_most()
    threads = [threading.Thread(target=n.send, args=(60, f"limit-{n.name}")) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(wait(lambda: sink.count("<limit-") == 180, 120), "180 messages from three nodes delivered",
          f"{sink.count('<limit-')} arrived")
    check(sink.most <= 2, f"the sink never saw more than 2 connections at once (most: {sink.most})")
    check(sink.most == 2, "the shared limit was used to the full (2 at once)", f"most {sink.most}")

    # --- one rate of 600 messages a minute (10/s) to the next hop, set by a reload, shared: 60 take 6 s ---
    sink.delay = 0.0
    for n in nodes:
        n.set_rate(600)
    threads = [threading.Thread(target=n.send, args=(20, f"rate-{n.name}")) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(wait(lambda: sink.count("<rate-") == 60, 120), "60 messages from three nodes delivered under the rate",
          f"{sink.count('<rate-')} arrived")
    span = sink.span("<rate-")
    check(span >= 5.3, f"at most 10 a second from the three together (59 intervals took {span:.2f} s; "
          "three unshared rates of 10/s would take about 2 s)")
    for n in nodes:
        n.set_rate(0)

    # --- Redis killed: each node falls back to its share (2 / 3 live nodes, at least 1) ---
    # The connections kept open for more mail close first (their leases were Redis's).
    check(wait(lambda: sink.open == 0, 30), "idle connections close and give their leases back")
    stop(redis_proc, signal.SIGKILL)
    sink.reset_most()
    threads = [threading.Thread(target=n.send, args=(30, f"fallback-{n.name}")) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(wait(lambda: sink.count("<fallback-") == 90, 120), "with Redis killed, delivery goes on (90 messages)",
          f"{sink.count('<fallback-')} arrived")
    check(sink.most <= 3, f"at the fallback share: at most 1 connection per node (most at once: {sink.most})")
    check(all(any("Redis is unreachable" in a for a in n.alerts()) for n in nodes),
          "each node raised a Warning alert naming Redis")
    start_redis()
    check(wait(lambda: all(n.get("cluster/status")["limits"] == "shared" for n in nodes), 30),
          "Redis back: the nodes return to shared limits by themselves")

    # --- the cluster digest, and a cluster-wide suspend that reaches a node restarted meanwhile ---
    sink.down()
    sink.delay = 0.0
    for n in nodes:
        n.send(5, f"digest-{n.name}")

    def digest_total():
        d = n1.get("cluster/digest?digest_threshold=1")
        return sum(r["message_count"] for r in d["items"] if r["group"] == HOP)
    check(wait(lambda: digest_total() == 15, 20), "the cluster digest adds the three nodes' queues (15)",
          json.dumps(n1.get("cluster/digest?digest_threshold=1")))
    r = n2.cli("cluster", "digest", "--group-by", "node", "--threshold", "1")
    check(r.returncode == 0 and all(f"n{i}" in r.stdout for i in (1, 2, 3)),
          "sluice cluster digest --group-by node shows a row per node", r.stdout + r.stderr)
    # A message on n2, seen and acted on through n1's API (proxied to n2's).
    held = n2.get("messages?result_size=1")["items"][0]
    ident = urllib.request.quote(held["identity"], safe="")
    status, body = n1.request(f"messages/{ident}")
    check(status == 200 and body.get("identity") == held["identity"] and body.get("internet_message_id") ==
          held["internet_message_id"], "a message on n2 is shown through n1's API", f"{status} {body}")
    status, body = n1.request(f"messages/{ident}/suspend", "POST")
    on_n2 = n2.get(f"messages/{ident}")
    check(status == 200 and "Suspended" in json.dumps(on_n2), "and suspended through it, on n2", f"{status} {body}")
    status, body = n1.request(f"messages/{ident}/resume", "POST")
    check(status == 200 and "Suspended" not in json.dumps(n2.get(f"messages/{ident}")), "and resumed", f"{status}")
    n3.stop()
    r = n1.cli("cluster", "suspend", "--filter", FILTER)
    check(r.returncode == 0, "sluice cluster suspend --filter stores the action", r.stdout + r.stderr)
    t0 = time.time()
    suspended = lambda n: (qs := n.domain_queues()) and all(q["status"] == "Suspended" for q in qs)
    check(wait(lambda: suspended(n1) and suspended(n2), 10),
          f"suspended on the running nodes within 10 s ({time.time() - t0:.1f} s)")
    n3.start()
    t0 = time.time()
    check(wait(lambda: suspended(n3), 10), f"and on the node started afterwards within 10 s ({time.time() - t0:.1f} s)")
    r = n1.cli("cluster", "resume", "--filter", FILTER)
    check(r.returncode == 0 and wait(lambda: not any(suspended(n) for n in nodes), 10),
          "sluice cluster resume resumes them on every node", r.stdout + r.stderr)
    sink.up()
    check(wait(lambda: sink.count("<digest-") == 15, 60), "and the 15 are delivered")

    # --- SIGKILL a node holding 1,000 messages: the survivors adopt them ---
    sink.down()
    ids = n2.send(1000, "kill")
    check(wait(lambda: n2.held() == 1000, 30), "node n2 holds 1,000 messages the next hop refuses")
    sample = n2.get("messages?result_size=1&filter=" + urllib.request.quote("InternetMessageId -eq '<kill-7@test>'"))
    expiry = sample["items"][0]["expiration_time"] if sample and sample["items"] else None
    shadowed = psql("SELECT count(*) FROM sluice_shadow WHERE node = 'n2'")
    check(shadowed == "1000", f"each has its shadow row in PostgreSQL ({shadowed})")
    n2.stop(signal.SIGKILL)
    t0 = time.time()
    check(wait(lambda: (n1.held() or 0) + (n3.held() or 0) == 1000, 60),
          f"after the takeover time the survivors hold the 1,000 ({time.time() - t0:.1f} s after the kill)",
          f"{n1.held()} + {n3.held()}")
    adopted = [n.get("messages?result_size=1&filter=" + urllib.request.quote("InternetMessageId -eq '<kill-7@test>'"))
               for n in (n1, n3)]
    adopted = [a["items"][0] for a in adopted if a and a["items"]]
    check(len(adopted) == 1 and expiry is not None and adopted[0]["expiration_time"] == expiry,
          "an adopted message keeps its original expiry", f"{expiry} vs {[a['expiration_time'] for a in adopted]}")
    sink.up()
    check(wait(lambda: sink.count("<kill-") == 1000, 120), "the survivors deliver all 1,000 once the next hop returns",
          f"{sink.count('<kill-')}")
    check(not sink.duplicates("<kill-"), "none twice")
    n2.start()
    check(wait(lambda: n2.held() == 0, 30), "the killed node, restarted, drops what was adopted", f"{n2.held()}")
    time.sleep(3)
    check(sink.count("<kill-") == 1000 and not sink.duplicates("<kill-"),
          "and delivers none of them again", f"{sink.count('<kill-')} arrived, {len(sink.duplicates('<kill-'))} twice")
    check(wait(lambda: psql("SELECT count(*) FROM sluice_shadow") == "0", 20),
          "every shadow row is deleted after delivery", psql("SELECT count(*) FROM sluice_shadow"))

    # --- drain: intake refused, mail handed over at the deadline, nothing lost ---
    sink.down()
    n1.send(20, "drain")
    status, body = n1.request("cluster/drain", "POST", {"deadline": "3s"})
    check(status == 200 and body.get("state", "").startswith("draining"), f"drain started ({body.get('state')})")
    check(n1.request("health")[0] == 503, "/health answers 503 while draining")
    try:
        with socket.create_connection(("127.0.0.1", n1.smtp), timeout=10) as s:
            greeting = s.recv(200).decode()
    except OSError as e:
        greeting = str(e)
    check(greeting.startswith("421 4.3.2"), f"a new SMTP session gets 421 4.3.2 ({greeting.strip()})")
    check(wait(lambda: n1.get("cluster/status")["state"].startswith("released"), 20),
          "at the deadline the node releases its mail", n1.get("cluster/status")["state"])
    check(wait(lambda: (n2.held() or 0) + (n3.held() or 0) == 20 and n1.held() == 0, 30),
          "peers adopt the 20 and the drained node drops them", f"{n1.held()} {n2.held()} {n3.held()}")
    r = n1.cli("cluster", "status")
    check("released: 0 left" in r.stdout, "status reports what is left", r.stdout)
    sink.up()
    check(wait(lambda: sink.count("<drain-") == 20, 60) and not sink.duplicates("<drain-"),
          "the 20 are delivered once", f"{sink.count('<drain-')}")

    for n in nodes:
        n.stop()
    stop(redis_proc)
    stop_postgres()


try:
    main()
except Exception as e:  # noqa: BLE001 - reported as a failure with the logs
    import traceback
    traceback.print_exc()
    bad(f"the test stopped: {e}")
finally:
    for p in PROCS:
        if p.poll() is None:
            stop(p, signal.SIGKILL)
    stop_postgres()
    if FAILED:
        for name in ("n1", "n2", "n3"):
            print(f"--- {name} log ---\n{tail(os.path.join(WORK, name, 'sluice.log'), 30)}")
    if os.environ.get("KEEP"):
        print(f"kept {WORK}")
    else:
        shutil.rmtree(WORK, ignore_errors=True)
print(f"{len(FAILED)} failed" if FAILED else "all passed")
sys.exit(1 if FAILED else 0)
