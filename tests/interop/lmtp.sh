#!/usr/bin/env bash
# LMTP interop: sluice delivers to a real Dovecot LMTP server (Debian's dovecot-lmtpd, started here on a
# loopback port with a private configuration) and acts on its per-recipient replies: a recipient Dovecot
# does not know (550 5.1.1 at RCPT) and one over quota (552 after the data, RFC 2033) fail, the others are
# delivered, and the sender gets one RFC 3464 report, itself delivered by LMTP, that Python's email package
# reads. NOTIFY=NEVER suppresses the report. Installs what it needs; prints one line per check.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v dovecot >/dev/null || [ ! -x /usr/lib/dovecot/lmtp ]; then
  [ -n "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' 2>/dev/null | head -1)" ] || apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-lmtpd >/dev/null
fi
bin=${SLUICE_BIN:-$root/target/debug/sluice}
[ -x "$bin" ] || (cd "$root" && cargo build -q --bin sluice)
work=$(mktemp -d /tmp/sluice-lmtp.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  exec 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" || true; wait "$p" || true; done
  [ -f "$work/dovecot/run/master.pid" ] && kill "$(cat "$work/dovecot/run/master.pid")"
  sleep 0.2; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=tests/interop/lib.sh
. "$root/tests/interop/lib.sh"

# Dovecot: mail processes may not run as root, so the mailboxes belong to nobody.
lmtp_port=$(free_port); smtp_port=$(free_port); admin_port=$(free_port)
dv="$work/dovecot"; mkdir -p "$dv/run" "$dv/mail"; chown nobody "$dv/mail"
uid=$(id -u nobody); gid=$(id -g nobody)
cat >"$dv/users" <<USERS
alice@example.test:{PLAIN}x:$uid:$gid::$dv/mail/alice::
sender@example.test:{PLAIN}x:$uid:$gid::$dv/mail/sender::
full@example.test:{PLAIN}x:$uid:$gid::$dv/mail/full::userdb_quota_rule=*:storage=1K
USERS
cat >"$dv/dovecot.conf" <<CONF
base_dir = $dv/run
instance_name = sluice-lmtp-$lmtp_port
log_path = $dv/dovecot.log
protocols = lmtp
ssl = no
listen = 127.0.0.1
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = quota
plugin {
  quota = maildir:User quota
}
passdb {
  driver = passwd-file
  args = $dv/users
}
userdb {
  driver = passwd-file
  args = $dv/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp_port
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
CONF
dovecot -c "$dv/dovecot.conf"
wait_port "$lmtp_port" || { bad "Dovecot LMTP did not start"; cat "$dv/dovecot.log"; exit 1; }

cat >"$work/sluice.toml" <<TOML
[server]
data_dir = "$work/data"
hostname = "mx.example.test"
[admin]
listen = "127.0.0.1:$admin_port"
[transport]
transient_failure_retry_interval = "2s"
[[receive_connectors]]
name = "Default"
listen = "127.0.0.1:$smtp_port"
[[mailbox_stores]]
name = "Dovecot"
lmtp = "127.0.0.1:$lmtp_port"
[[accepted_domains]]
domain = "example.test"
mailbox_store = "Dovecot"
TOML
"$bin" serve --config "$work/sluice.toml" >"$work/sluice.log" 2>&1 & pids+=($!)
wait_port "$smtp_port" || { bad "sluice did not start"; cat "$work/sluice.log"; exit 1; }

# One message to a known user, one over quota and one Dovecot does not know; a second message whose
# unknown recipient asked NOTIFY=NEVER.
python3 - "$smtp_port" <<'PY'
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20)
s.ehlo()
body = ("Subject: lmtp interop\r\nMessage-ID: <lmtp-1@example.test>\r\n\r\n" + "x" * 3000 + "\r\n").encode()
refused = s.sendmail("sender@example.test", ["alice@example.test", "full@example.test", "nobody@example.test"], body)
assert not refused, refused
s.mail("sender@example.test")
code, _ = s.rcpt("ghost@example.test", ["NOTIFY=NEVER"]); assert code == 250, code
code, _ = s.data(b"Subject: never tell\r\nMessage-ID: <lmtp-2@example.test>\r\n\r\nquiet\r\n"); assert code == 250, code
s.quit()
PY

mails() { find "$dv/mail/$1/Maildir/new" -type f 2>/dev/null; }
for _ in $(seq 200); do [ -n "$(mails alice)" ] && [ -n "$(mails sender)" ] && break; sleep 0.1; done
if [ -n "$(mails alice)" ] && grep -q "lmtp interop" $(mails alice); then
  ok "alice's copy is in her Dovecot mailbox"
else
  bad "alice's copy was not delivered"; tail -5 "$work/sluice.log"
fi
if [ -z "$(mails full)" ]; then ok "nothing was stored for the user over quota"; else bad "a message went past the quota"; fi
events() { cat "$work"/data/tracking/tracking-*.log 2>/dev/null; }
# The tracking log is written by a thread of its own, within a fraction of a second.
for _ in $(seq 50); do [ "$(events | grep -c '"FAIL"')" -ge 3 ] && break; sleep 0.1; done
if events | grep '"FAIL"' | grep -q 'full@example.test' && events | grep '"FAIL"' | grep -q 'nobody@example.test'; then
  ok "the per-recipient refusals (552 after the data, 550 at RCPT) are FAIL events"
else
  bad "FAIL events missing"; events | tail -10
fi
sleep 1
if python3 - $(mails sender) <<'PY'
import email, sys
from email import policy
reports = [email.message_from_binary_file(open(p, "rb"), policy=policy.compat32) for p in sys.argv[1:]]
assert len(reports) == 1, f"{len(reports)} reports; expected one (NOTIFY=NEVER sends none)"
r = reports[0]
assert r.get_content_type() == "multipart/report", r.get_content_type()
assert r.get_param("report-type") == "delivery-status", r.get_param("report-type")
status = [p for p in r.walk() if p.get_content_type() == "message/delivery-status"][0]
fields = [dict(block.items()) for block in status.get_payload()]
recipients = {f["Final-Recipient"].split(";")[1].strip(): f for f in fields[1:]}
assert set(recipients) == {"full@example.test", "nobody@example.test"}, recipients
for f in recipients.values():
    assert f["Action"].strip() == "failed", f
assert recipients["nobody@example.test"]["Status"].strip() == "5.1.1", recipients["nobody@example.test"]
assert recipients["full@example.test"]["Status"].strip().startswith("5."), recipients["full@example.test"]
assert r["From"].lower().startswith("mailer-daemon@") or "mailer-daemon@" in r["From"].lower(), r["From"]
PY
then ok "the sender got one RFC 3464 report naming both failed recipients"; else bad "the delivery report"; fi

echo "lmtp interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
