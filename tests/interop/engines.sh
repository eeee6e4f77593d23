#!/usr/bin/env bash
# The network engines against the real daemons, from Debian, each started here offline on loopback:
# clamd (a database directory holding only our own signature file, with EICAR: no download is possible),
# rspamd (the packaged rules, a local configuration that turns off every network lookup) and spamd
# (Debian's rules, use_bayes 0, network tests off). Each is waited for until it answers. Then, through
# sluice's SMTP port and admin API as an administrator would: EICAR is found by clamd and quarantined; GTUBE
# through spamd and through rspamd is SCL 9 and quarantined; clean mail is delivered with the engine's score
# in its headers; clamd killed (SIGKILL) takes the anti-virus stage Offline with an alert while mail is still
# accepted and waits; clamd started again lets it flow by itself with `work queue resumed`; an update written
# into clamd's database directory and RELOADed pauses the stage only until clamd scans again, and the pause is
# reported. Installs what it needs; prints one line per check.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
need=()
command -v clamd >/dev/null || need+=(clamav-daemon)
command -v rspamd >/dev/null || need+=(rspamd)
command -v spamd >/dev/null || need+=(spamassassin spamd)
if [ ${#need[@]} -gt 0 ]; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
exec python3 "$root/tests/interop/engines.py" "$bin"
