#!/usr/bin/env bash
# Three sluice nodes on 127.0.0.1 sharing a real redis-server and PostgreSQL (both from Debian, started here
# on loopback ports, PostgreSQL under `runuser -u postgres`): the shared limit of 2 connections to one next
# hop, the fallback share with Redis killed and its alert, the cluster digest and a cluster-wide suspend that
# reaches a node started later, SIGKILL of a node holding 1,000 messages and their adoption by the survivors
# (original expiry kept, delivered once, dropped by the restarted node), and drain. Installs what it needs;
# prints one line per check.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
need=()
command -v redis-server >/dev/null || need+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's packages start their own servers; these tests start their own on other ports.
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
exec python3 "$root/tests/cluster/cluster.py" "$bin"
