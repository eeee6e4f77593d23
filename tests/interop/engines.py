"""The network engines against real clamd, spamd and rspamd: run by tests/interop/engines.sh (which installs
them). One line per check; exit 1 when one fails. KEEP=1 keeps the work directory."""

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="sluice-engines.")
os.chmod(WORK, 0o755)
PROCS = []
FAILED = []

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# A second signature, delivered by an update: the hex of this marker, anywhere in the message.
MARKER = b"sluice-interop-update-marker-7f3a"


def ok(text):
    print(f"ok: {text}", flush=True)


def bad(text):
    print(f"FAILED: {text}", flush=True)
    FAILED.append(text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, predicate, timeout=60.0, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except OSError:
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
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def tail(path, n=15):
    try:
        return "\n".join(open(path, errors="replace").read().splitlines()[-n:])
    except OSError:
        return ""


# --- clamd ---------------------------------------------------------------------------------------------------

CLAMD_DIR = os.path.join(WORK, "clamd")
CLAMD_DB = os.path.join(CLAMD_DIR, "db")
os.makedirs(CLAMD_DB)
with open(os.path.join(CLAMD_DB, "sluice.hdb"), "w") as f:
    f.write(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Sluice-Test.EICAR\n")
CLAMD_PORT = free_port()
with open(os.path.join(CLAMD_DIR, "clamd.conf"), "w") as f:
    f.write(f"""Foreground yes
LogFile {CLAMD_DIR}/clamd.log
DatabaseDirectory {CLAMD_DB}
TCPSocket {CLAMD_PORT}
TCPAddr 127.0.0.1
User root
""")


def clamd_command(cmd):
    with socket.create_connection(("127.0.0.1", CLAMD_PORT), timeout=5) as s:
        s.sendall(b"z" + cmd + b"\0")
        return s.recv(4096).rstrip(b"\0").decode()


def start_clamd():
    p = start(["clamd", "-c", os.path.join(CLAMD_DIR, "clamd.conf")], os.path.join(CLAMD_DIR, "out.log"))
    if not wait("clamd", lambda: clamd_command(b"PING") == "PONG", timeout=120):
        bad(f"clamd did not answer PING:\n{tail(os.path.join(CLAMD_DIR, 'out.log'))}")
        sys.exit(1)
    return p


# --- spamd ---------------------------------------------------------------------------------------------------

SPAMD_DIR = os.path.join(WORK, "spamd")
SITE = os.path.join(SPAMD_DIR, "site")
HOME = os.path.join(SPAMD_DIR, "home")
os.makedirs(SITE)
os.makedirs(HOME)
for pre in sorted(glob.glob("/etc/spamassassin/*.pre")):
    if os.path.basename(pre) != "sa-compile.pre":
        shutil.copy(pre, SITE)
with open(os.path.join(SITE, "local.cf"), "w") as f:
    f.write("use_bayes 0\nskip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\nuse_dcc 0\nuse_auto_whitelist 0\n"
            "dns_available no\nrequired_score 5.0\n")
SPAMD_PORT = free_port()


def spamd_ping():
    with socket.create_connection(("127.0.0.1", SPAMD_PORT), timeout=5) as s:
        s.sendall(b"PING SPAMC/1.5\r\n\r\n")
        return b"PONG" in s.recv(4096)


def start_spamd():
    for d in (SPAMD_DIR, SITE, HOME):
        os.chmod(d, 0o755)
    shutil.chown(HOME, "debian-spamd")
    shutil.chown(SPAMD_DIR, "debian-spamd")
    cmd = ["spamd", "--local", "--nouser-config", "--configpath=/usr/share/spamassassin", f"--siteconfigpath={SITE}",
           f"--listen=127.0.0.1:{SPAMD_PORT}", "--max-children=2", "--min-children=1",
           f"--pidfile={SPAMD_DIR}/spamd.pid", "--syslog=stderr", f"--helper-home-dir={HOME}",
           "--username=debian-spamd"]
    p = start(cmd, os.path.join(SPAMD_DIR, "spamd.log"))
    if not wait("spamd", spamd_ping, timeout=300, every=0.5):
        bad(f"spamd did not answer PING:\n{tail(os.path.join(SPAMD_DIR, 'spamd.log'))}")
        sys.exit(1)
    return p


# --- rspamd --------------------------------------------------------------------------------------------------

RSPAMD_DIR = os.path.join(WORK, "rspamd")
RSPAMD_PORT = free_port()


def start_rspamd():
    local = os.path.join(RSPAMD_DIR, "local")
    for d in ("local.d", "override.d"):
        os.makedirs(os.path.join(local, d))
    for d in ("db", "run", "log"):
        os.makedirs(os.path.join(RSPAMD_DIR, d))
    workers = {"normal": RSPAMD_PORT, "controller": free_port(), "proxy": free_port()}
    for name, port in workers.items():
        with open(os.path.join(local, "override.d", f"worker-{name}.inc"), "w") as f:
            f.write(f'bind_socket = "127.0.0.1:{port}";\ncount = 1;\n')
    # No network: a resolver that does not answer, and the modules that only look things up turned off.
    with open(os.path.join(local, "local.d", "options.inc"), "w") as f:
        f.write('dns {\n  nameserver = ["127.0.0.1:1"];\n  timeout = 0.2s;\n  retransmits = 1;\n}\n')
    for module in ("rbl", "fuzzy_check", "asn", "spf", "dkim", "dmarc", "dkim_signing", "arc", "phishing",
                   "url_redirector", "emails"):
        with open(os.path.join(local, "local.d", f"{module}.conf"), "w") as f:
            f.write("enabled = false;\n")
    subprocess.run(["chown", "-R", "_rspamd:_rspamd", RSPAMD_DIR], check=True)
    cmd = ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
           f"--var=LOCAL_CONFDIR={local}", f"--var=DBDIR={RSPAMD_DIR}/db", f"--var=RUNDIR={RSPAMD_DIR}/run",
           f"--var=LOGDIR={RSPAMD_DIR}/log"]
    p = start(cmd, os.path.join(RSPAMD_DIR, "out.log"))

    def ready():
        # The normal worker answers /ping once its hyperscan database is loaded.
        with urllib.request.urlopen(f"http://127.0.0.1:{RSPAMD_PORT}/ping", timeout=2) as r:
            return r.read().strip() == b"pong"
    if not wait("rspamd", ready, timeout=300, every=0.5):
        bad(f"rspamd did not answer /ping:\n{tail(os.path.join(RSPAMD_DIR, 'log', 'rspamd.log'))}")
        sys.exit(1)
    return p


# --- sluice --------------------------------------------------------------------------------------------------

class Sluice:
    def __init__(self, name, antispam, antivirus, extra=""):
        self.dir = os.path.join(WORK, name)
        os.makedirs(os.path.join(self.dir, "updates", "antivirus"))
        self.smtp = free_port()
        self.admin = free_port()
        self.config = os.path.join(self.dir, "sluice.toml")
        with open(self.config, "w") as f:
            f.write(f"""[server]
data_dir = "{self.dir}/data"
hostname = "mx.example.test"
[admin]
listen = "127.0.0.1:{self.admin}"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:{self.smtp}"
[alerts]
work_queue_pause_alert_after = "1s"
[updater]
source = "{self.dir}/updates"
interval = "1h"
[antispam]
{antispam}
timeout = "10s"
[antivirus]
{antivirus}
timeout = "10s"
{extra}""")
        self.log = os.path.join(self.dir, "sluice.log")
        self.proc = start([BIN, "serve", "--config", self.config], self.log)
        if not wait("sluice", lambda: socket.create_connection(("127.0.0.1", self.smtp), timeout=1).close() or True):
            bad(f"sluice did not start:\n{tail(self.log)}")
            sys.exit(1)

    def api(self, path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/api/v1/{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def send(self, subject, body, attachment=None):
        msgid = f"<{subject.replace(' ', '-')}-{time.time_ns()}@example.test>"
        if attachment is None:
            text = f"From: alice@example.test\r\nTo: bob@localhost\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n" \
                   f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n\r\n{body}\r\n"
        else:
            import base64
            b64 = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
            text = (f"From: alice@example.test\r\nTo: bob@localhost\r\nSubject: {subject}\r\nMessage-ID: {msgid}\r\n"
                    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
                    f"--b1\r\nContent-Type: text/plain\r\n\r\n{body}\r\n"
                    "--b1\r\nContent-Type: application/octet-stream; name=\"file.bin\"\r\n"
                    "Content-Transfer-Encoding: base64\r\n"
                    f"Content-Disposition: attachment; filename=\"file.bin\"\r\n\r\n{b64}--b1--\r\n")
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=30) as s:
            s.sendmail("alice@example.test", ["bob@localhost"], text.encode())
        return msgid

    def delivered(self, msgid):
        for path in glob.glob(os.path.join(self.dir, "data", "mail", "localhost", "bob", "new", "*")):
            text = open(path, "rb").read().decode(errors="replace")
            if msgid in text:
                return text
        return None

    def quarantined(self, msgid):
        for q in self.api("quarantine?result_size=1000")["items"]:
            if q["internet_message_id"] == msgid:
                return q
        return None

    def alerts(self):
        return [a["text"] for a in self.api("alerts?result_size=1000")["items"]]

    def stage(self, name):
        return next(s for s in self.api("workqueue")["stages"] if s["stage"] == name)

    def stop(self):
        stop(self.proc)


def keep(d, key, value):
    """Stores `value` under `key` and returns it: for the predicates of `wait`."""
    d[key] = value
    return value


def header(text, name):
    """The field's value, unfolded."""
    m = re.search(rf"^{name}: (.*(?:\r?\n[ \t].*)*)", text, re.M | re.I)
    return re.sub(r"\r?\n[ \t]+", " ", m.group(1)).strip() if m else None


def check_spam_engine(s, engine):
    clean = s.send(f"lunch {engine}", "Shall we meet for lunch on Thursday at noon? The usual place.")
    spam = s.send(f"gtube {engine}", f"This is the GTUBE:\r\n{GTUBE}")
    got = {}
    if wait("delivery", lambda: keep(got, "m", s.delivered(clean)), timeout=60):
        status, scl = header(got["m"], "X-Spam-Status"), header(got["m"], "X-Sluice-SCL")
        # Folded after a comma: the names are split at commas, white space around them dropped.
        tests = re.search(r" tests=(.*)$", status or "")
        names = [n.strip() for n in tests.group(1).split(",")] if tests else []
        if (status and status.startswith("No, score=") and scl is not None and names != ["none"]
                and names and all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names)):
            ok(f"{engine}: clean mail is delivered with the engine's score and symbols: X-Spam-Status: {status}, "
               f"SCL {scl}")
        else:
            bad(f"{engine}: the delivered clean message lacks the score or the symbols:\n{got['m'][:800]}")
    else:
        bad(f"{engine}: clean mail was not delivered:\n{tail(s.log)}")
    if wait("quarantine", lambda: keep(got, "q", s.quarantined(spam)), timeout=60):
        q = got["q"]
        if q["scl"] == 9 and q["stage"] == "antispam" and "GTUBE" in q["verdict"]:
            ok(f"{engine}: GTUBE is SCL 9 and quarantined ({q['verdict']})")
        else:
            bad(f"{engine}: GTUBE quarantined with {q}")
    else:
        bad(f"{engine}: GTUBE was not quarantined:\n{tail(s.log)}")
    if s.delivered(spam):
        bad(f"{engine}: GTUBE was delivered")


def main():
    procs = {}
    procs["clamd"] = start_clamd()
    ok(f"clamd answers on 127.0.0.1:{CLAMD_PORT} with only sluice's signature file")
    procs["spamd"] = start_spamd()
    ok(f"spamd answers on 127.0.0.1:{SPAMD_PORT} (Debian's rules, use_bayes 0, network tests off)")
    procs["rspamd"] = start_rspamd()
    ok(f"rspamd answers on 127.0.0.1:{RSPAMD_PORT} (no network lookups)")

    # spamd and clamd together.
    s = Sluice("spamd-clamd", f'engine = "spamd"\naddress = "127.0.0.1:{SPAMD_PORT}"',
               f'engine = "clamd"\naddress = "127.0.0.1:{CLAMD_PORT}"\ndatabase_dir = "{CLAMD_DB}"')
    check_spam_engine(s, "spamd")
    virus = s.send("eicar", "see the attachment", attachment=EICAR)
    got = {}
    if wait("quarantine", lambda: keep(got, "q", s.quarantined(virus)), timeout=60):
        q = got["q"]
        if q["stage"] == "antivirus" and "Sluice-Test.EICAR" in q["verdict"]:
            ok(f"clamd: EICAR in a base64 attachment is found and quarantined ({q['verdict']})")
        else:
            bad(f"clamd: EICAR quarantined with {q}")
    else:
        bad(f"clamd: EICAR was not quarantined:\n{tail(s.log)}")

    # clamd killed: the stage goes Offline, mail is still accepted and waits.
    stop(procs["clamd"], signal.SIGKILL)
    waiting = [s.send(f"while clamd is down {i}", "nothing to see here") for i in range(3)]
    ok("mail is accepted (250) while clamd is down")
    if wait("offline", lambda: s.stage("antivirus")["state"] == "Offline", timeout=30):
        ok(f"the anti-virus stage is Offline: {s.stage('antivirus').get('reason')}")
    else:
        bad(f"the anti-virus stage is {s.stage('antivirus')}")
    if wait("alert", lambda: any("antivirus engine offline" in a for a in s.alerts()), timeout=10):
        ok("an alert says so: " + next(a for a in s.alerts() if "antivirus engine offline" in a))
    else:
        bad(f"no offline alert: {s.alerts()}")
    time.sleep(2)
    if not any(s.delivered(m) for m in waiting):
        ok(f"the messages wait while clamd is down ({s.api('workqueue')['messages']} in the work queue)")
    else:
        bad("a message was delivered unscanned while clamd was down")
    procs["clamd"] = start_clamd()
    if wait("flow", lambda: all(s.delivered(m) for m in waiting), timeout=60):
        ok("clamd started again: the waiting messages are scanned and delivered by themselves")
        if any("unscanned" in (s.delivered(m) or "") for m in waiting):
            bad("a message was stamped unscanned")
    else:
        bad(f"the waiting messages were not delivered after clamd returned:\n{tail(s.log)}")
    if wait("resumed", lambda: any(a.startswith("work queue resumed") for a in s.alerts()), timeout=10):
        ok("`" + next(a for a in s.alerts() if a.startswith("work queue resumed")) + "` was raised")
    else:
        bad(f"no resumed alert: {s.alerts()}")

    # An update for clamd: written into its database directory, then RELOAD.
    sig = f"Sluice-Test.Update:0:*:{MARKER.hex()}\n".encode()
    updates = os.path.join(s.dir, "updates", "antivirus")
    with open(os.path.join(updates, "update.ndb"), "wb") as f:
        f.write(sig)
    manifest = {"version": "interop-2", "files": [{"name": "update.ndb", "sha256": hashlib.sha256(sig).hexdigest(),
                                                   "size": len(sig)}]}
    with open(os.path.join(updates, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    subprocess.run([BIN, "update", "antivirus", "--config", s.config], check=False,
                   capture_output=True)
    updater_log = os.path.join(s.dir, "data", "logs", "updater.log")
    line = {}

    def switched():
        for l in open(updater_log).read().splitlines():
            if "clamd RELOAD" in l:
                line["l"] = l
                return True
        return False
    if wait("update", switched, timeout=120):
        paused = re.search(r"paused for (\d+) us", line["l"])
        ok(f"the update was written into clamd's database directory and RELOADed; the stage paused "
           f"{int(paused.group(1)) / 1000:.1f} ms: {line['l']}")
        if os.path.exists(os.path.join(CLAMD_DB, "update.ndb")):
            ok("update.ndb is in clamd's database directory")
        marked = s.send("marked", f"the marker: {MARKER.decode()}")
        if wait("quarantine", lambda: keep(got, "m", s.quarantined(marked)), timeout=60):
            ok(f"clamd finds the updated signature: {got['m']['verdict']}")
        else:
            bad("the updated signature is not in force in clamd")
        engines = s.api("engines")
        av = next(e for e in engines if e["engine"] == "antivirus")
        if av["version"] == "interop-2" and av["kind"] == "clamd":
            ok("GET /api/v1/engines shows clamd with version interop-2")
        else:
            bad(f"engines: {av}")
    else:
        bad(f"no RELOAD in the updater log:\n{tail(updater_log)}\n{tail(s.log)}")
    s.stop()

    # rspamd.
    r = Sluice("rspamd", f'engine = "rspamd"\nurl = "http://127.0.0.1:{RSPAMD_PORT}"', 'engine = "off"')
    check_spam_engine(r, "rspamd")
    r.stop()

    for p in procs.values():
        stop(p)
    print(f"{len(FAILED)} failed", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        for p in PROCS:
            if p.poll() is None:
                stop(p, signal.SIGKILL)
        if os.environ.get("KEEP"):
            print(f"kept {WORK}", file=sys.stderr)
        else:
            shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(code)
