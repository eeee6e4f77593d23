"""Shared pieces of sluice's benchmark harness: installing the reference tools, a private Postfix relay, a
counting smtp-sink, CPU accounting per process tree (cgroup v1 cpuacct or v2 when writable, else /proc)."""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_postfix():
    if shutil.which("smtp-source") and shutil.which("postconf"):
        return
    lists = [f for f in os.listdir("/var/lib/apt/lists") if "Packages" in f] if os.path.isdir("/var/lib/apt/lists") else []
    if not lists:
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run("echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections",
                   shell=True, check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "postfix"], check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def sluice_binary():
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "sluice"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "sluice")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class CpuGroup:
    """CPU time of a process tree: a cpuacct cgroup when one can be made, else the sum over /proc of the
    processes alive at the end (which misses processes that exited: reported as such)."""

    def __init__(self, name):
        self.path = None
        for base in ("/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            p = os.path.join(base, f"sluice-bench-{name}-{os.getpid()}")
            try:
                os.makedirs(p, exist_ok=True)
                if os.path.exists(os.path.join(p, "cgroup.procs")):
                    self.path = p
                    break
            except OSError:
                continue
        self.method = "cgroup" if self.path else "proc (processes that exited are missed)"

    def preexec(self):
        if self.path:
            with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    def seconds(self, pids=()):
        if self.path:
            usage = os.path.join(self.path, "cpuacct.usage")
            if os.path.exists(usage):
                return int(open(usage).read()) / 1e9
            stat = open(os.path.join(self.path, "cpu.stat")).read()
            return int(re.search(r"usage_usec (\d+)", stat).group(1)) / 1e6
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick
            except OSError:
                pass
        return total

    def remove(self):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


class Sink:
    """Postfix's smtp-sink, counting accepted messages with its -c counter."""

    def __init__(self, workdir, port=None):
        self.port = port or free_port()
        self.log = os.path.join(workdir, f"sink-{self.port}-{time.time_ns()}.log")
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1024"],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        wait_port(self.port)

    def count(self):
        try:
            with open(self.log, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 400))
                tail = f.read().replace(b"\r", b"\n").decode("latin-1")
        except OSError:
            return 0
        found = re.findall(r"mesg=(\d+)", tail)
        return int(found[-1]) if found else 0

    def wait(self, n, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count() >= n:
                return True
            time.sleep(0.01)
        return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class PostfixRelay:
    """A private Postfix relay on loopback: its own config and queue directories, defaults plus what a relay
    needs (docs/benchmarks.md), relaying everything to the sink."""

    def __init__(self, workdir, relay_port, cpu):
        self.dir = tempfile.mkdtemp(prefix="postfix-", dir=workdir)
        # Postfix's daemons run as the postfix user: they must be able to reach their directories.
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        etc, spool, data = (os.path.join(self.dir, d) for d in ("etc", "spool", "data"))
        for d in (etc, spool, data):
            os.makedirs(d)
        shutil.chown(data, "postfix")
        os.chmod(data, 0o700)
        master = "/usr/share/postfix/master.cf.dist"
        shutil.copy(master if os.path.exists(master) else "/etc/postfix/master.cf", os.path.join(etc, "master.cf"))
        open(os.path.join(etc, "main.cf"), "w").close()
        pc = lambda *a: subprocess.run(["postconf", "-c", etc, *a], check=True, stdout=subprocess.DEVNULL)
        pc("-e", "compatibility_level = 3.6", f"queue_directory = {spool}", f"data_directory = {data}",
           "myhostname = relay.bench.test", "mydestination =", "inet_interfaces = 127.0.0.1",
           "inet_protocols = ipv4", "mynetworks = 127.0.0.0/8", f"relayhost = [127.0.0.1]:{relay_port}",
           "smtpd_relay_restrictions = permit_mynetworks, reject", "alias_maps =", "alias_database =",
           f"maillog_file = {self.dir}/maillog", f"maillog_file_prefixes = /var, /dev/stdout, /tmp, {self.dir}",
           "syslog_name = postfix-bench")
        pc("-M#", "smtp/inet")
        pc("-Me", f"127.0.0.1:{self.port}/inet = 127.0.0.1:{self.port} inet n - n - - smtpd")
        pc("-F", "*/*/chroot = n")
        self.etc = etc
        subprocess.run(["postfix", "-c", etc, "start"], check=True, preexec_fn=cpu.preexec,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def pids(self):
        out = subprocess.run(["pgrep", "-f", self.etc], capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


class SluiceRelay:
    """sluice with one send connector to the sink, full durability (fsync before 250, the only mode)."""

    def __init__(self, binary, workdir, relay_port, cpu, extra=""):
        self.dir = tempfile.mkdtemp(prefix="sluice-", dir=workdir)
        self.port = free_port()
        self.admin = admin = free_port()
        cfg = os.path.join(self.dir, "sluice.toml")
        with open(cfg, "w") as f:
            f.write(f"""[server]
data_dir = "data"
[log]
level = "warn"
[admin]
listen = "127.0.0.1:{admin}"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:{self.port}"
[[send_connectors]]
name = "Sink"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:{relay_port}"]
{extra}
""")
        self.proc = subprocess.Popen([binary, "serve", "--config", cfg], preexec_fn=cpu.preexec,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))
        wait_port(self.port)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class ClusterEngines:
    """A redis-server and a PostgreSQL cluster on loopback ports, for a sluice node with `[cluster]` and shadow
    copies (both installed from Debian when missing; PostgreSQL runs as the postgres user)."""

    def __init__(self, workdir):
        need = [pkg for pkg, present in (("redis-server", shutil.which("redis-server")),
                                         ("postgresql", os.path.isdir("/usr/lib/postgresql"))) if not present]
        if need:
            subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *need], check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        self.dir = tempfile.mkdtemp(prefix="engines-", dir=workdir)
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        self.redis_port, self.pg_port = free_port(), free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        wait_port(self.redis_port)
        version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
        self.pg_bin = f"/usr/lib/postgresql/{version}/bin"
        self.pg_data = os.path.join(self.dir, "pg")
        os.makedirs(self.pg_data)
        shutil.chown(self.pg_data, "postgres", "postgres")
        as_pg = ["runuser", "-u", "postgres", "--"]
        subprocess.run(as_pg + [f"{self.pg_bin}/initdb", "-D", self.pg_data, "-A", "trust", "-U", "postgres"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(as_pg + [f"{self.pg_bin}/pg_ctl", "-D", self.pg_data, "-l", f"{self.pg_data}/log", "-w",
                                "-o", f"-p {self.pg_port} -k {self.pg_data} -c listen_addresses=127.0.0.1", "start"],
                       check=True, stdout=subprocess.DEVNULL)

    def config(self):
        """The `[cluster]` table of a node with shadow copies."""
        return (f'[cluster]\nnode = "bench"\nredis = "redis://127.0.0.1:{self.redis_port}/0"\n'
                f'postgres = "postgres://postgres@127.0.0.1:{self.pg_port}/postgres"\n')

    def stop(self):
        self.redis.terminate()
        self.redis.wait()
        subprocess.run(["runuser", "-u", "postgres", "--", f"{self.pg_bin}/pg_ctl", "-D", self.pg_data, "-m",
                        "fast", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def smtp_source(port, sessions, messages, size):
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size),
                    "-f", "bench@source.test", "-t", "rcpt@sink.test", f"127.0.0.1:{port}"],
                   check=True, stdout=subprocess.DEVNULL)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"
