# Helpers the interop scripts share: source it after setting `set -euo pipefail`.
passed=0; failed=0
ok() { echo "ok: $*"; passed=$((passed+1)); }
bad() { echo "FAILED: $*"; failed=$((failed+1)); }
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
