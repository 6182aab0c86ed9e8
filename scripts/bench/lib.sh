# Shared by the bench scripts, sourced from the repository root:
#   cd "$(dirname "$0")/.." && . scripts/bench/lib.sh
# It builds the binaries, makes a work directory that goes at exit with every
# process the script started, and starts servers on free loopback ports.

ROOT=$PWD
# The tools (keygen, token minting) are always this tree's; the server
# measured may be another build's (APPAUTH_BIN=<dir>, for an A/B).
TOOLS=${CARGO_TARGET_DIR:-$ROOT/target}/release
BIN=${APPAUTH_BIN:-$TOOLS}

need() { # need COMMAND DEBIAN_PACKAGE: installs the package when the command is missing
  command -v "$1" >/dev/null && return
  echo "installing $2 from Debian's packages..." >&2
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

build_release() {
  # Two builds: a target flag (--example) narrows a build to that target
  # alone, which would leave the binaries stale.
  cargo build --release -q -p appauth-server -p appauth-keygen --bins
  cargo build --release -q -p appauth-client --example mint-tokens
  cargo build --release -q -p appauth-tower --example axum-api
}

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/keys" "$work/private"

# A prefix for every process a script starts (servers, load, references):
# scripts/bench-cpu.sh's BENCH_CPUS=one sets it to one CPU for all of them.
PIN=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_server() { # start_server NAME ARGS...: $BIN's server on $work/keys; sets URL and PID
  local port
  port=$(free_port)
  "${PIN[@]}" "$BIN/appauth-server" --keys-dir "$work/keys" --bind "127.0.0.1:$port" "${@:2}" >"$work/$1.log" 2>&1 &
  PID=$!
  pids+=("$PID")
  URL="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf "$URL/readyz" >/dev/null 2>&1 && return; sleep 0.05; done
  cat "$work/$1.log"; exit 1
}

start_axum() { # start_axum NAME ARGS...: the axum example (one tokio worker) on $work/keys; sets URL and PID
  local port
  port=$(free_port)
  TOKIO_WORKER_THREADS=1 "${PIN[@]}" "$TOOLS/examples/axum-api" --keys-dir "$work/keys" --bind "127.0.0.1:$port" "${@:2}" >"$work/$1.log" 2>&1 &
  PID=$!
  pids+=("$PID")
  URL="http://127.0.0.1:$port"
  for _ in $(seq 1 200); do curl -sf "$URL/readyz" >/dev/null 2>&1 && return; sleep 0.05; done
  cat "$work/$1.log"; exit 1
}

# A process's CPU time (user + system) in clock ticks, for CPU per request.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Its user time alone: the gate's work is all in user space, and the
# kernel's share (sockets, wakeups) is most of a request and most of its
# swing on a shared machine.
user_ticks() { awk '{print $14}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
