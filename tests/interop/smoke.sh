#!/usr/bin/env bash
# Interop smoke suite: drives the sluice binary with real peers (swaks, Postfix's smtp-source and smtp-sink)
# the way the issue's checks do. Installs what it needs. Prints one line per check and a summary.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
ensure() {
  if ! command -v swaks >/dev/null || ! command -v smtp-sink >/dev/null; then
    [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -q >/dev/null
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix swaks >/dev/null
  fi
}
ensure
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
work=$(mktemp -d)
pids=()
cleanup() { exec 2>/dev/null; for p in "${pids[@]}"; do kill -9 "$p" || true; wait "$p" || true; done; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=tests/interop/lib.sh
. "$root/tests/interop/lib.sh"

# 1. Built-in defaults, from an empty directory, and swaks to user@localhost.
mkdir -p "$work/defaults" && cd "$work/defaults"
"$bin" serve >serve.log 2>&1 & pids+=($!)
wait_port 2525
out=$(swaks --server 127.0.0.1:2525 --to user@localhost --from a@example.test 2>&1 || true)
sleep 0.5
if echo "$out" | grep -q '^<-  250 2.0.0' && ls sluice-data/mail/localhost/user/new/* >/dev/null 2>&1; then
  ok "defaults: swaks to user@localhost got 250 and a Maildir file"
else
  bad "defaults: swaks"; echo "$out" | tail -5
fi
kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true

# 2. A smart host (smtp-sink) and smtp-source -s 20 -m 2000 -l 4096 through sluice.
cd "$work"; sink_port=$(free_port); smtp_port=$(free_port); admin_port=$(free_port)
smtp-sink -u nobody -c "127.0.0.1:$sink_port" 1024 >"$work/sink.log" 2>&1 & pids+=($!)
cat >"$work/relay.toml" <<TOML
[server]
data_dir = "relay-data"
[admin]
listen = "127.0.0.1:$admin_port"
[transport]
queue_glitch_retry_interval = "2s"
transient_failure_retry_interval = "2s"
outbound_connection_failure_retry_interval = "2s"
message_retry_interval = "2s"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$smtp_port"
[[send_connectors]]
name = "Sink"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:$sink_port"]
TOML
"$bin" serve --config "$work/relay.toml" >"$work/relay.log" 2>&1 & pids+=($!)
wait_port "$smtp_port"; wait_port "$sink_port"
smtp-source -s 20 -m 2000 -l 4096 -f a@example.test -t b@remote.test "127.0.0.1:$smtp_port"
sink_count() { tail -c 400 "$work/sink.log" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
for _ in $(seq 1200); do [ "$(sink_count)" = 2000 ] && break; sleep 0.1; done
if [ "$(sink_count)" = 2000 ]; then
  ok "relay: smtp-source 2000 messages all reached smtp-sink"
else
  bad "relay: the sink has $(sink_count) of 2000"
fi

# 3. A relay attempt from outside relay_networks gets 550 5.7.1.
deny_port=$(free_port); deny_admin=$(free_port)
cat >"$work/deny.toml" <<TOML
[server]
data_dir = "deny-data"
[admin]
listen = "127.0.0.1:$deny_admin"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$deny_port"
relay_networks = ["127.0.0.2/32"]
TOML
"$bin" serve --config "$work/deny.toml" >"$work/deny.log" 2>&1 & pids+=($!)
wait_port "$deny_port"
out=$(swaks --server "127.0.0.1:$deny_port" --to victim@elsewhere.test --from a@example.test 2>&1 || true)
if echo "$out" | grep -q '<\*\* 550 5.7.1'; then ok "relay denied: 550 5.7.1"; else bad "relay denied"; echo "$out" | tail -5; fi

# 4. swaks with STARTTLS and AUTH (self-signed certificate; relay only after AUTH), and Python's smtplib
#    with SMTPUTF8 and BDAT, through a connector without relay networks.
tls_port=$(free_port); tls_admin=$(free_port)
hash=$(echo "swaks-secret" | "$bin" hash-password)
cat >"$work/tls.toml" <<TOML
[server]
data_dir = "tls-data"
hostname = "mx.test"
[admin]
listen = "127.0.0.1:$tls_admin"
[[receive_connectors]]
name = "Submission"
listen = "127.0.0.1:$tls_port"
relay_networks = []
tls = "self-signed"
auth = "optional"
users = [{ name = "alice", password_hash = '$hash' }]
[[send_connectors]]
name = "Sink"
address_spaces = ["*"]
smart_hosts = ["127.0.0.1:$sink_port"]
TOML
"$bin" serve --config "$work/tls.toml" >"$work/tls.log" 2>&1 & pids+=($!)
wait_port "$tls_port"
before=$(sink_count)
out=$(swaks --server "127.0.0.1:$tls_port" --tls --auth LOGIN --auth-user alice --auth-password swaks-secret \
  --to someone@remote.test --from alice@example.test 2>&1 || true)
if echo "$out" | grep -q '<~  235 2.7.0' && echo "$out" | grep -q '<~  250 2.0.0'; then
  ok "swaks: STARTTLS + AUTH LOGIN relayed (235, 250)"
else
  bad "swaks STARTTLS + AUTH"; echo "$out" | tail -8
fi
out=$(swaks --server "127.0.0.1:$tls_port" --tls --auth PLAIN --auth-user alice --auth-password wrong \
  --to someone@remote.test --from alice@example.test 2>&1 || true)
if echo "$out" | grep -q '<~\* 535 5.7.8'; then ok "swaks: a wrong password gets 535 5.7.8"; else bad "swaks wrong password"; echo "$out" | tail -5; fi
out=$(swaks --server "127.0.0.1:$tls_port" --tls --to someone@remote.test --from alice@example.test 2>&1 || true)
if echo "$out" | grep -q '<~\* 550 5.7.1'; then ok "swaks: STARTTLS without AUTH may not relay"; else bad "swaks relay without AUTH"; echo "$out" | tail -5; fi
for _ in $(seq 100); do [ "$(sink_count)" -gt "$before" ] && break; sleep 0.1; done
if [ "$(sink_count)" -gt "$before" ]; then ok "the authenticated message reached the smart host"; else bad "authenticated message not delivered"; fi
if python3 - "$tls_port" <<'PY'
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo(); s.starttls(context=ctx); s.ehlo()
assert s.has_extn("smtputf8") and s.has_extn("chunking"), s.esmtp_features
s.login("alice", "swaks-secret")
code, _ = s.mail("jürgen@example.test", ["SMTPUTF8"]); assert code == 250, code
code, _ = s.rcpt("user@localhost"); assert code == 250, code
body = "Subject: grüße\r\n\r\nüber BDAT\r\n".encode()
s.send(b"BDAT %d LAST\r\n" % len(body) + body)
code, reply = s.getreply(); assert code == 250, (code, reply)
s.quit()
PY
then ok "smtplib: STARTTLS, login, SMTPUTF8 and BDAT accepted"; else bad "smtplib SMTPUTF8 + BDAT"; fi
utf8_mail() { grep -l "jürgen@example.test" "$work"/tls-data/mail/localhost/user/new/* 2>/dev/null | head -1; }
for _ in $(seq 100); do [ -n "$(utf8_mail)" ] && break; sleep 0.1; done
if [ -n "$(utf8_mail)" ] && grep -q "über BDAT" "$(utf8_mail)"; then
  ok "the SMTPUTF8 message sent with BDAT is in the Maildir, intact"
else
  bad "SMTPUTF8 message not delivered"
fi

# 5. DNS routing: a send connector without smart hosts finds smtp-sink through MX records served by
#    sluice-testdns (the preferred MX has no listener), and a null MX domain fails at once (556 5.1.10).
tdns=${SLUICE_TESTDNS_BIN:-$root/target/debug/sluice-testdns}
[ -x "$tdns" ] || (cd "$root" && cargo build -q -p sluice-testdns)
"$tdns" MX:routed.test:10:mx1.routed.test MX:routed.test:20:mx2.routed.test A:mx1.routed.test:127.0.0.2 \
  A:mx2.routed.test:127.0.0.1 MX:null.test:0:. >"$work/dns.addr" & pids+=($!)
for _ in $(seq 100); do [ -s "$work/dns.addr" ] && break; sleep 0.05; done
mx_port=$(free_port); mx_admin=$(free_port)
cat >"$work/mx.toml" <<TOML
[server]
data_dir = "mx-data"
[admin]
listen = "127.0.0.1:$mx_admin"
[dns]
servers = ["$(cat "$work/dns.addr")"]
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$mx_port"
[[send_connectors]]
name = "Internet"
address_spaces = ["*"]
port = $sink_port
TOML
"$bin" serve --config "$work/mx.toml" >"$work/mx.log" 2>&1 & pids+=($!)
wait_port "$mx_port"
before=$(sink_count)
swaks --server "127.0.0.1:$mx_port" --to user@routed.test --from a@example.test >/dev/null 2>&1 || true
swaks --server "127.0.0.1:$mx_port" --to user@null.test --from a@example.test >/dev/null 2>&1 || true
for _ in $(seq 100); do [ "$(sink_count)" -gt "$before" ] && break; sleep 0.1; done
if [ "$(sink_count)" -gt "$before" ]; then ok "DNS routing: mail went to the second MX (smtp-sink)"; else bad "DNS routing: not delivered"; tail -5 "$work/mx.log"; fi
null_failed() { grep -h '"FAIL"' "$work"/mx-data/tracking/*.log 2>/dev/null | grep -q '556 5.1.10'; }
for _ in $(seq 100); do null_failed && break; sleep 0.1; done
if null_failed; then ok "DNS routing: a null MX domain fails at once with 556 5.1.10"; else bad "DNS routing: no FAIL for the null MX"; fi
if grep -q "not yet in effect" "$work/mx.log"; then bad "DNS routing: a key is reported not yet in effect"; else ok "DNS routing: [dns] servers and port are in effect"; fi

echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
