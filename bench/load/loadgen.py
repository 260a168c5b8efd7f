#!/usr/bin/env python3
"""The peers' load client (bots.py) plus pacing: arrivals spread over a window, and think time between pages.

bots.py sends N participants in one burst through at most C workers with no pause. This driver reuses its
machinery unchanged (``bots.main_async``, ``bench_adapters``: Browser, Metrics, Form, the adapters) and adds:

  --arrival-s S   participant i starts at i * S / N seconds after the run starts (uniform arrivals);
  --think-s T     each participant pauses T seconds on every page before submitting its form
                  (the time a person reads and answers; it is not part of any request's latency).

With neither option it is exactly bots.py's saturation run. Run it with the peers' client venv:

  /tmp/peers/.venv-bench/bin/python bench/load/loadgen.py --peers /tmp/peers --system lpstudy \
      --base-url http://127.0.0.1:8200 -n 500 -c 500 --arrival-s 30 --think-s 5 --lpstudy-db-url ...

The lpstudy adapter is taken from the peers copy (bench_adapters/lpstudy_adapter.py, where run.sh copies it),
or else loaded from this folder as bench_adapters.lpstudy_adapter. The last line printed is the JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _peers_dir(argv: list[str]) -> Path:
    for i, a in enumerate(argv):
        if a == "--peers" and i + 1 < len(argv):
            return Path(argv[i + 1]).resolve()
        if a.startswith("--peers="):
            return Path(a.split("=", 1)[1]).resolve()
    return Path(os.environ.get("PEERS", "/tmp/peers")).resolve()


def load(argv: list[str]):  # type: ignore[no-untyped-def]
    peers = _peers_dir(argv)
    if not (peers / "bots.py").is_file():
        raise SystemExit(f"{peers}/bots.py not found: copy the peers folder there first (see bench/README.md)")
    sys.path.insert(0, str(peers))
    import bench_adapters
    import bots

    adapters = bench_adapters.load_adapters()
    if "lpstudy" not in adapters:
        name = "bench_adapters.lpstudy_adapter"
        if name not in sys.modules:
            src = peers / "bench_adapters" / "lpstudy_adapter.py"
            spec = importlib.util.spec_from_file_location(name, src if src.is_file() else HERE / "lpstudy_adapter.py")
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
        adapters["lpstudy"] = sys.modules[name].LpstudyAdapter
    return bots, adapters


def paced(adapter_cls, n: int, arrival_s: float, think_s: float):  # type: ignore[no-untyped-def]
    """A subclass of the adapter that waits for its arrival time and pauses before every form submission."""

    class Paced(adapter_cls):  # type: ignore[misc, valid-type]
        _t0: float | None = None

        async def run_participant(self, b, p):  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            if Paced._t0 is None:
                Paced._t0 = loop.time()
            delay = Paced._t0 + p.idx * arrival_s / max(n, 1) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await super().run_participant(b, p)

        async def before_submit(self, b, p, page, tree):  # type: ignore[no-untyped-def]
            token = await super().before_submit(b, p, page, tree)
            if think_s > 0:
                await asyncio.sleep(think_s)
            return token

    Paced.__name__ = f"Paced{adapter_cls.__name__}"
    return Paced


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bots, adapters = load(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=os.environ.get("PEERS", "/tmp/peers"), help="the peers copy (bots.py)")
    ap.add_argument("--system", required=True, choices=sorted(adapters))
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("-n", type=int, default=200, help="participants")
    ap.add_argument("-c", type=int, default=50, help="max participants in flight")
    ap.add_argument("--arrival-s", type=float, default=0.0, help="spread the arrivals uniformly over this window")
    ap.add_argument("--think-s", type=float, default=0.0, help="pause on every page before submitting it")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout (s)")
    ap.add_argument("--max-seconds", type=float, default=900.0, help="hard limit for the whole run")
    ap.add_argument("--fetch-assets", action="store_true", help="also fetch CSS/JS once per participant")
    ap.add_argument("--server-pid", type=int, action="append", default=[], help="server pid, for CPU accounting")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--label", default="")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default="", help="append the JSON summary to this file")
    for a in adapters.values():
        a.add_args(ap)
    args = ap.parse_args(argv)
    bots.assert_local(args.base_url)
    cls = adapters[args.system]
    if args.arrival_s > 0 or args.think_s > 0:
        cls = paced(cls, args.n, args.arrival_s, args.think_s)
    adapter = cls(args)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    summary = asyncio.run(bots.main_async(args, adapter))
    summary["mode"] = "paced" if (args.arrival_s > 0 or args.think_s > 0) else "saturation"
    summary["arrival_s"] = args.arrival_s
    summary["think_s"] = args.think_s
    bots.print_human(summary)
    line = json.dumps(summary)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")
    print(line)
    return 0 if summary["verify"].get("ok") is not False and summary["error_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
