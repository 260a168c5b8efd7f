#!/usr/bin/env bash
# Load benchmark, side by side in one run: the peers' bare FastAPI+asyncpg "ceiling" app and lpstudy
# (`lpstudy serve --workers 2` on PostgreSQL, a fresh database per repeat), driven by the peers' load client
# (bots.py machinery via bench/load/loadgen.py, which adds arrival spreading and think time).
#
# Usage: bench/load/run.sh [all|saturation|paced]        (from anywhere; see bench/README.md)
#   saturation: N=500 participants, C=200 in flight, no think time
#   paced:      N=500 participants arriving uniformly within 30 s, 5 s on every page before submitting
# Environment (defaults): PEERS=/tmp/peers  REPEATS=1  N=500 C=200  PACED_N=500 ARRIVAL_S=30 THINK_S=5
#   CEILING_WORKERS="1 2" (saturation)  PACED_CEILING_WORKERS=2  LP_WORKERS=2  SYSTEMS="ceiling lpstudy"
#   (add "otree" to SYSTEMS for oTree 6 in the saturation run: the side-by-side of issue 12; about 10 min more)
#   KEEPALIVE=75  BEFORE_REF=<git ref> (adds "lpstudy-before", that ref's app/, saturation only)
#   PAUSE_S=0 (seconds of idle before each run, so that one run's load does not spill into the next)
#   OUT=bench/load/results/<stamp>.jsonl
# Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and lpstudy's venv (.venv). The peers copy is
# made and set up (its setup.sh needs the package registry) when $PEERS has no client venv yet.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
MODE=${1:-all}
PEERS=${PEERS:-/tmp/peers}
SRC_PEERS=${SRC_PEERS:-$REPO/../shared/peers}
REPEATS=${REPEATS:-1}
N=${N:-500}
C=${C:-200}
PACED_N=${PACED_N:-500}
ARRIVAL_S=${ARRIVAL_S:-30}
THINK_S=${THINK_S:-5}
CEILING_WORKERS=${CEILING_WORKERS:-"1 2"}
PACED_CEILING_WORKERS=${PACED_CEILING_WORKERS:-2}
LP_WORKERS=${LP_WORKERS:-2}
SYSTEMS=${SYSTEMS:-"ceiling lpstudy"}
# Both servers keep idle connections this long. uvicorn's default (5 s) equals the paced think time, so it
# would close a participant's connection just as they submit ("Can not write request body").
KEEPALIVE=${KEEPALIVE:-75}
PAUSE_S=${PAUSE_S:-0}
# Optional: also measure lpstudy's participant path as of this git ref ("before"), same run, same settings.
BEFORE_REF=${BEFORE_REF:-}
CPORT=${CPORT:-8100}
OPORT=${OPORT:-8300}
LPORT=${LPORT:-8200}
PG=${PG:-postgresql://postgres@127.0.0.1:5432}
STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-$REPO/bench/load/results/$STAMP.jsonl}
LOGS=${LOGS:-/tmp/lpstudy-bench/$STAMP}
mkdir -p "$(dirname "$OUT")" "$LOGS"
PY="$PEERS/.venv-bench/bin/python"
LPY="$REPO/.venv/bin/python"

# --- the peers copy, with our adapter in it --------------------------------------------------------------
if [ ! -x "$PY" ]; then
  [ -d "$PEERS" ] || cp -r "$SRC_PEERS" "$PEERS"
  (cd "$PEERS" && ./setup.sh)
fi
cp "$REPO/bench/load/lpstudy_adapter.py" "$PEERS/bench_adapters/lpstudy_adapter.py"
"$PY" - "$PEERS/bench_adapters/__init__.py" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
if "LpstudyAdapter" not in s:
    s = s.replace("    from .ceiling_adapter import CeilingAdapter\n",
                  "    from .ceiling_adapter import CeilingAdapter\n    from .lpstudy_adapter import LpstudyAdapter\n")
    s = s.replace("(OTreeAdapter, CeilingAdapter)", "(OTreeAdapter, CeilingAdapter, LpstudyAdapter)")
    open(p, "w").write(s)
EOF

load1() { cut -d' ' -f1 /proc/loadavg; }
pause() { [ "$PAUSE_S" = 0 ] || sleep "$PAUSE_S"; }

wait_up() {  # URL PID
  for _ in $(seq 1 120); do
    curl -sf -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server exited"; return 1; }
    sleep 0.5
  done
  echo "server did not come up: $1"; return 1
}

stop_group() {  # PID (setsid made it the process-group leader)
  kill -TERM -- -"$1" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL -- -"$1" 2>/dev/null || true
}

run_otree() {  # TAG bots-args...   (oTree 6 `prodserver` on PostgreSQL, a fresh database per run; saturation only)
  local tag=$1; shift
  case " $SYSTEMS " in *" otree "*) ;; *) return 0 ;; esac
  local db="otree_bench_${STAMP//-/_}_$tag"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db OWNER bench"
  (
    . "$PEERS/otree_env.sh"
    export DATABASE_URL="postgresql://bench:benchpw@127.0.0.1:5432/$db" PATH="$PEERS/.venv/bin:$PATH"
    cd "$PEERS/otree_peer"
    echo y | otree resetdb > "$LOGS/otree-resetdb-$tag.log" 2>&1
    setsid otree prodserver "127.0.0.1:$OPORT" > "$LOGS/otree-$tag.log" 2>&1 &
    local pid=$!
    cd "$REPO"
    wait_up "http://127.0.0.1:$OPORT/" "$pid"
    sleep 1
    pause
    echo "== otree $tag (load $(load1))"
    "$PY" "$PEERS/bots.py" --system otree --base-url "http://127.0.0.1:$OPORT" --server-pid "$pid" \
      --label "otree $tag load=$(load1)" --out "$OUT" "$@" > "$LOGS/client-otree-$tag.out" 2>&1 \
      || echo "   (client exit code $?)"
    grep '^#' "$LOGS/client-otree-$tag.out" | head -1 || true
    stop_group "$pid"
  )
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}

run_ceiling() {  # WORKERS TAG loadgen-args...
  local w=$1 tag=$2; shift 2
  case " $SYSTEMS " in *" ceiling "*) ;; *) return 0 ;; esac
  # A fresh table, created here: with 2 workers the app's own CREATE TABLE IF NOT EXISTS races at startup
  # (one worker dies on a pg_type unique violation and uvicorn stops the server).
  PGPASSWORD=benchpw psql -q -h 127.0.0.1 -U bench -d fastapi_ceiling -c 'DROP TABLE IF EXISTS answers' \
    -c 'CREATE TABLE answers (id bigserial PRIMARY KEY, pid text NOT NULL, seq int NOT NULL, value text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now())' 2>/dev/null
  cd "$PEERS"
  setsid "$PEERS/.venv-bench/bin/uvicorn" ceiling_app.app:app --host 127.0.0.1 --port "$CPORT" \
    --workers "$w" --no-access-log --timeout-keep-alive "$KEEPALIVE" > "$LOGS/ceiling-$tag.log" 2>&1 &
  local pid=$!
  cd "$REPO"
  wait_up "http://127.0.0.1:$CPORT/page?pid=warm" "$pid"
  sleep 1
  pause
  echo "== ceiling W=$w $tag (load $(load1))"
  "$PY" "$REPO/bench/load/loadgen.py" --peers "$PEERS" --system ceiling --base-url "http://127.0.0.1:$CPORT" \
    --server-pid "$pid" --label "ceiling W=$w $tag load=$(load1)" --out "$OUT" "$@" \
    > "$LOGS/client-ceiling-$tag.out" 2>&1 || echo "   (client exit code $?)"
  grep '^#' "$LOGS/client-ceiling-$tag.out" | head -1 || true
  kill -0 "$pid" 2>/dev/null || echo "   ceiling server died during the run: see $LOGS/ceiling-$tag.log"
  stop_group "$pid"
}

run_lpstudy() {  # TAG CODE_DIR NAME loadgen-args...   (CODE_DIR: a tree with app/, templates/, static/)
  local tag=$1 code=$2 name=$3; shift 3
  case " $SYSTEMS " in *" lpstudy "*) ;; *) return 0 ;; esac
  local db="lpstudy_bench_${STAMP//-/_}_$tag"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  local url="$PG/$db"
  "$LPY" "$REPO/bench/load/make_study.py" --database-url "$url" > "$LOGS/make-study-$tag.log" 2>&1 \
    || { cat "$LOGS/make-study-$tag.log"; return 1; }
  grep -h WARNING "$LOGS/make-study-$tag.log" || true
  cd "$code"
  if [ "$code" = "$REPO" ] && "$REPO/.venv/bin/lpstudy" serve --help 2>/dev/null | grep -q -- --timeout-keep-alive; then
    PYTHONPATH="$code" setsid "$REPO/.venv/bin/lpstudy" serve --workers "$LP_WORKERS" --host 127.0.0.1 --port "$LPORT" \
      --database-url "$url" --timeout-keep-alive "$KEEPALIVE" > "$LOGS/lpstudy-$tag.log" 2>&1 &
  else
    # what `lpstudy serve` runs (uvicorn app.asgi:app, no access log, proxy headers), plus the keep-alive
    LPSTUDY_DATABASE_URL="$url" PYTHONPATH="$code" setsid "$REPO/.venv/bin/python" -m uvicorn app.asgi:app \
      --workers "$LP_WORKERS" --host 127.0.0.1 --port "$LPORT" --no-access-log --proxy-headers \
      --timeout-keep-alive "$KEEPALIVE" > "$LOGS/lpstudy-$tag.log" 2>&1 &
  fi
  local pid=$!
  cd "$REPO"
  wait_up "http://127.0.0.1:$LPORT/healthz" "$pid"
  sleep 1
  pause
  echo "== $name W=$LP_WORKERS $tag (load $(load1))"
  "$PY" "$REPO/bench/load/loadgen.py" --peers "$PEERS" --system lpstudy --base-url "http://127.0.0.1:$LPORT" \
    --server-pid "$pid" --label "$name W=$LP_WORKERS $tag load=$(load1)" --out "$OUT" \
    --lpstudy-db-url "$url" "$@" > "$LOGS/client-lpstudy-$tag.out" 2>&1 || echo "   (client exit code $?)"
  grep '^#' "$LOGS/client-lpstudy-$tag.out" | head -1 || true
  kill -0 "$pid" 2>/dev/null || echo "   lpstudy server died during the run: see $LOGS/lpstudy-$tag.log"
  stop_group "$pid"
  if grep -q Traceback "$LOGS/lpstudy-$tag.log"; then echo "   server errors: see $LOGS/lpstudy-$tag.log"; fi
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
}

BEFORE_DIR=""
if [ -n "$BEFORE_REF" ]; then
  BEFORE_DIR="$LOGS/before-$(git -C "$REPO" rev-parse --short "$BEFORE_REF")"
  mkdir -p "$BEFORE_DIR"
  git -C "$REPO" archive "$BEFORE_REF" app templates static migrations | tar -x -C "$BEFORE_DIR"
fi

echo "lpstudy load benchmark $STAMP: $(nproc) CPUs, load $(cat /proc/loadavg), results -> $OUT"
for r in $(seq 1 "$REPEATS"); do
  if [ "$MODE" = all ] || [ "$MODE" = saturation ]; then
    run_otree "sat_r$r" -n "$N" -c "$C"
    for w in $CEILING_WORKERS; do
      run_ceiling "$w" "sat-r$r" -n "$N" -c "$C"
    done
    if [ -n "$BEFORE_DIR" ]; then
      run_lpstudy "before_sat_r$r" "$BEFORE_DIR" "lpstudy-before($BEFORE_REF)" -n "$N" -c "$C"
    fi
    run_lpstudy "sat_r$r" "$REPO" lpstudy -n "$N" -c "$C"
  fi
  if [ "$MODE" = all ] || [ "$MODE" = paced ]; then
    run_ceiling "$PACED_CEILING_WORKERS" "paced-r$r" -n "$PACED_N" -c "$PACED_N" \
      --arrival-s "$ARRIVAL_S" --think-s "$THINK_S"
    run_lpstudy "paced_r$r" "$REPO" lpstudy -n "$PACED_N" -c "$PACED_N" --arrival-s "$ARRIVAL_S" --think-s "$THINK_S"
  fi
done
"$LPY" "$REPO/bench/load/report.py" "$OUT" | tee "${OUT%.jsonl}.md"
