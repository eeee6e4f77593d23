#!/usr/bin/env bash
# GET /metrics read by Prometheus's own Python parser (prometheus_client, installed into a virtualenv here):
# after a message through sluice, every family parses, the counters match GET /api/v1/status, and with a
# token a request without it gets 401.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
work=$(mktemp -d)
pids=()
cleanup() { exec 2>/dev/null; for p in "${pids[@]}"; do kill -9 "$p" || true; wait "$p" || true; done; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=tests/interop/lib.sh
. "$root/tests/interop/lib.sh"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q prometheus_client
py="$work/venv/bin/python"

smtp_port=$(free_port); admin_port=$(free_port)
cat >"$work/sluice.toml" <<TOML
[server]
hostname = "mx.test"
name = "mx"
data_dir = "$work/data"

[admin]
listen = "127.0.0.1:$admin_port"
token = "s3cret"

[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$smtp_port"
TOML
"$bin" serve --config "$work/sluice.toml" >"$work/serve.log" 2>&1 & pids+=($!)
wait_port "$smtp_port"
wait_port "$admin_port"
"$py" - "$smtp_port" <<'PY'
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("a@example.test", ["user@localhost"], "Subject: metrics\r\n\r\nhello\r\n")
PY
sleep 1
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin_port/metrics")
[ "$code" = 401 ] && ok "metrics: 401 without the token" || bad "metrics without the token: $code"
curl -sf -H 'Authorization: Bearer s3cret' "http://127.0.0.1:$admin_port/metrics" >"$work/metrics.txt"
curl -sf -H 'Authorization: Bearer s3cret' "http://127.0.0.1:$admin_port/api/v1/status" >"$work/status.json"
if out=$("$py" - "$work/metrics.txt" "$work/status.json" 2>&1 <<'PY'
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
status = json.load(open(sys.argv[2]))
def value(family, **labels):
    for s in families[family].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise SystemExit(f"no sample {family} {labels}")
# prometheus_client names counter families without their _total.
assert value("sluice_messages_received") == status["counters"]["messages_received"]["uptime"] == 1
assert value("sluice_recipients_delivered") == status["counters"]["delivered_recipients"]["uptime"] == 1
assert families["sluice_queue_database_commit_latency_seconds"].type == "histogram"
assert value("sluice_queue_messages", queue="other") == 0
assert value("sluice_queue_incoming_rate", queue="other") == 0 and families["sluice_queue_outgoing_rate"].type == "gauge"
assert value("sluice_back_pressure_level") == 0
print(f"{len(families)} families")
PY
); then ok "metrics: parsed by prometheus_client ($out), counters match the status"; else bad "metrics: $out"; fi

echo "metrics: $passed passed, $failed failed"
[ "$failed" = 0 ]
