#!/usr/bin/env bash
# The web queue viewer in a real browser: Debian's headless Chromium driven by Selenium (tests/viewer/browser.py)
# against a running sluice with mail queued for a next hop that is down. Checks sign-in, the queue counts, a
# filter by sender, a <script> subject shown as text, a bulk suspend by filter (checked through the API) and
# the refusal of cross-site posts. Screenshots go to $SCREENSHOTS (default: a temporary directory); the ones
# in docs/viewer/ come from `SCREENSHOTS=docs/viewer tests/viewer/browser.sh`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
if ! command -v chromedriver >/dev/null || ! /usr/bin/python3 -c 'import selenium' 2>/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver python3-selenium >/dev/null
fi
work=$(mktemp -d)
pids=()
cleanup() { exec 2>/dev/null; for p in "${pids[@]}"; do kill -9 "$p" || true; wait "$p" || true; done; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=tests/interop/lib.sh
. "$root/tests/interop/lib.sh"
shots=${SCREENSHOTS:-$work/shots}
mkdir -p "$shots"

smtp_port=$(free_port); admin_port=$(free_port); dead_port=$(free_port)
cat >"$work/sluice.toml" <<TOML
[server]
hostname = "mx.test"
name = "mx"
data_dir = "$work/data"

[admin]
listen = "127.0.0.1:$admin_port"
token = "viewer-s3cret"

[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$smtp_port"

[[send_connectors]]
name = "Partner"
address_spaces = ["remote.test", "other.test"]
smart_hosts = ["127.0.0.1:$dead_port"]
TOML
"$bin" serve --config "$work/sluice.toml" >"$work/serve.log" 2>&1 & pids+=($!)
wait_port "$smtp_port"
wait_port "$admin_port"
python3 - "$smtp_port" <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    for i in range(5):
        s.sendmail("alice@client.test", ["bob@remote.test"], f"Subject: report {i}\r\n\r\nHello.\r\n")
    for i in range(3):
        s.sendmail("spammer@bad.test", ["carol@other.test"], "Subject: <script>alert(1)</script>\r\n\r\nBuy.\r\n")
PY
# Until the eight copies wait in the next hop's queue.
for _ in $(seq 100); do
  n=$(curl -s -H 'Authorization: Bearer viewer-s3cret' "http://127.0.0.1:$admin_port/api/v1/messages" | python3 -c 'import json,sys; print(sum(m["status"] == "Retry" for m in json.load(sys.stdin)["items"]))')
  [ "$n" = 8 ] && break
  sleep 0.1
done
# Debian's Python, which has Debian's python3-selenium.
if /usr/bin/python3 "$root/tests/viewer/browser.py" "$admin_port" "$smtp_port" viewer-s3cret "$shots"; then
  echo "viewer: passed"
else
  echo "viewer: FAILED; the server's log:"; tail -20 "$work/serve.log"; exit 1
fi
