"""Benchmark the web app on the embedded store against its performance budgets.

One run measures, over HTTP on 127.0.0.1 with the repository's own servers and a fresh cache folder:
1. Cold start: the time from starting `python app.py` (and, separately, gunicorn with
   gunicorn.conf.py) until the models page `/` is loaded. Loading it takes four requests: the HTML,
   `/_dash-layout`, `/_dash-dependencies` and the routing callback that returns the page's content.
2. Circuit graph update, warm: the circuit page callback that draws the graph of the store's largest
   kept circuit (`webapp_requests.TASK`, threshold 0, so every edge), POSTed once to load it and then
   `--repeats` times.
3. Per-token forward: the per-token page callback on a typed text of exactly 256 tokens (the model's
   block_size), a different text each time so that no cache answers. One call loads the model first.
4. Load: `--users` simulated users (locust, `benchmarks/webapp_load.py`) against gunicorn with
   `--workers` workers, mixing page loads and callbacks, for `--duration` seconds after
   `--warmup` seconds; the p95 of every request and the number of failed requests.

    python benchmarks/webapp.py                                  # a table with the targets
    python benchmarks/webapp.py --json                           # one JSON object
    python benchmarks/webapp.py --users 3 --duration 5 --warmup 2 --repeats 5   # a quick check

Needs the `bench` extra (locust). Timings are only meaningful on a machine with nothing else running.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
# Run as a script, this file's folder comes first on sys.path, and this file's name would shadow
# the `webapp` package. The repository root goes first, so its packages win over an installed copy.
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
import webapp_requests as calls  # noqa: E402

logger = logging.getLogger("benchmarks.webapp")

TARGETS = {
    "cold_start_s": 3.0,
    "circuit_callback_p95_ms": 200.0,
    "per_token_p95_ms": 100.0,
    "load_p95_ms": 1000.0,
    "load_errors": 0,
}
PER_TOKEN_TOKENS = 256


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object")
    parser.add_argument(
        "--repeats",
        type=int,
        default=30,
        help="timed calls of the circuit and per-token callbacks (default 30)",
    )
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="measured load-test time in seconds (default 30)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds of load before measuring, while workers load the model (default 10)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=120.0,
        help="seconds a server may take to respond to its first request (default 120)",
    )
    parser.add_argument(
        "--load",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the gunicorn load test (default on)",
    )
    args = parser.parse_args()

    if args.repeats < 2:
        parser.error(f"--repeats {args.repeats} is too few for a p95; use 2 or more")
    if args.users < 1 or args.workers < 1:
        parser.error("--users and --workers must be at least 1")
    return args


# ---------------------------------------------------------------------------------------------
# Servers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(port: int, cache_dir: Path, workers: int) -> dict[str, str]:
    """Environment of a server reading the embedded store, with its own empty cache folder."""
    env = dict(os.environ)
    env.update(
        CIRCUIT_SPARSITY_STORE=str(REPO / "store"),
        CIRCUIT_VIEWER_HOST="127.0.0.1",
        CIRCUIT_VIEWER_PORT=str(port),
        CIRCUIT_VIEWER_CACHE_TYPE="FileSystemCache",
        CIRCUIT_VIEWER_CACHE_DIR=str(cache_dir),
        WEB_CONCURRENCY=str(workers),
    )
    return env


@dataclass
class Server:
    """A server process started by this script, and where it listens and logs."""

    process: subprocess.Popen
    started: float  # time.perf_counter() just before the process started
    base: str
    log_path: Path
    start_timeout_s: float

    def check_alive(self) -> None:
        """Raise RuntimeError with the end of the server's log when the process has exited."""
        if self.process.poll() is not None:
            raise RuntimeError(
                f"server exited with code {self.process.returncode}: {tail(self.log_path)}"
            )


@contextmanager
def running_server(
    command: list[str], port: int, env: dict[str, str], log_path: Path, start_timeout_s: float
):
    """Start `command` in the repository root, yield it as a `Server`, and stop it."""
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = Server(process, started, f"http://127.0.0.1:{port}", log_path, start_timeout_s)
        try:
            yield server
            server.check_alive()
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("server %d ignored SIGTERM for 15 s; killing it", process.pid)
                process.kill()
                process.wait()


def tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a log file, for error messages."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def first_page(session: requests.Session, server: Server) -> float:
    """Wait until the server responds to `/`, then load the page as a browser does; return seconds.

    The browser's requests for the first page are the HTML, the layout, the callback list and the
    routing callback that renders the page. Static JS and CSS files are not requested.
    """
    base = server.base
    while True:
        server.check_alive()
        try:
            # gunicorn accepts connections before its workers have imported the app.
            response = session.get(f"{base}/", timeout=server.start_timeout_s)
            break
        except requests.ConnectionError:
            if time.perf_counter() - server.started > server.start_timeout_s:
                raise RuntimeError(
                    f"server on {base} timed out: no response within "
                    f"{server.start_timeout_s:g} s (raise --start-timeout on a slow machine): "
                    f"{tail(server.log_path)}"
                ) from None
            time.sleep(0.01)
    response.raise_for_status()
    session.get(f"{base}/_dash-layout", timeout=30).raise_for_status()
    dependencies = session.get(f"{base}/_dash-dependencies", timeout=30)
    dependencies.raise_for_status()
    body = calls.callback_body(dependencies.json(), calls.ROUTING_OUTPUT, calls.routing_values("/"))
    routed = session.post(f"{base}{calls.UPDATE_PATH}", json=body, timeout=30)
    calls.check_response(routed.status_code, routed.json(), calls.ROUTING_OUTPUT)
    return time.perf_counter() - server.started


# ---------------------------------------------------------------------------------------------
# Measurements


def summarise(samples_ms: list[float]) -> dict[str, float]:
    """Return the count, median, p95 (inclusive method) and maximum of response times in ms."""
    p95 = statistics.quantiles(samples_ms, n=100, method="inclusive")[94]
    return {
        "n": len(samples_ms),
        "median_ms": round(statistics.median(samples_ms), 1),
        "p95_ms": round(p95, 1),
        "max_ms": round(max(samples_ms), 1),
    }


def time_callback(
    session: requests.Session, base: str, body: dict, output: str
) -> tuple[float, dict]:
    """POST one callback; return its wall time in ms and the updated properties."""
    start = time.perf_counter()
    response = session.post(f"{base}{calls.UPDATE_PATH}", json=body, timeout=60)
    elapsed_ms = (time.perf_counter() - start) * 1000
    return elapsed_ms, calls.check_response(response.status_code, response.json(), output)


def measure_circuit_callback(
    session: requests.Session, base: str, dependencies: list, repeats: int
) -> dict:
    """Time the graph callback of the benchmark circuit, warm, and count what it draws."""
    body = calls.callback_body(dependencies, calls.GRAPH_OUTPUT, calls.circuit_values(threshold=0))
    _, updated = time_callback(session, base, body, calls.GRAPH_OUTPUT)  # loads the circuit
    samples = [time_callback(session, base, body, calls.GRAPH_OUTPUT)[0] for _ in range(repeats)]
    elements = [element["data"] for element in updated["elements"]]
    edges = sum(1 for data in elements if "source" in data)
    # The graph also draws one label per hook-location row, with an id starting "row:".
    nodes = sum(
        1 for data in elements if "source" not in data and not data["id"].startswith("row:")
    )
    circuit = f"{calls.MODEL}/{calls.TASK}/{calls.SWEEP}/{calls.K}"
    return {"circuit": circuit, "nodes": nodes, "edges": edges, **summarise(samples)}


def texts_of_tokens(count: int, n_tokens: int) -> list[str]:
    """Return `count` different snippets of standard-library code of exactly `n_tokens` tokens."""
    from registry.store import Store
    from registry.tokenizer import get_encoding

    encoding = get_encoding("stdlib_2k", Store(str(REPO / "store")))
    lines = Path(argparse.__file__).read_text().splitlines(keepends=True)
    texts = []
    for i in range(count):
        start = (i * 37) % (len(lines) - 400)
        token_ids = encoding.encode("".join(lines[start : start + 400]), disallowed_special=())
        texts.append(_text_of_exactly(encoding, token_ids, n_tokens))
    if len(set(texts)) != count:
        raise RuntimeError("the per-token texts repeat, so the cache would return some results")
    return texts


def _text_of_exactly(encoding, token_ids: list[int], n_tokens: int) -> str:
    # Decoding a prefix and encoding it again can merge differently at the cut, so try a few cuts.
    for length in sorted(range(n_tokens - 8, n_tokens + 9), key=lambda n: abs(n - n_tokens)):
        text = encoding.decode(token_ids[:length])
        if len(encoding.encode(text, disallowed_special=())) == n_tokens:
            return text
    raise RuntimeError(f"no prefix of the snippet encodes to exactly {n_tokens} tokens")


def measure_per_token(
    session: requests.Session, base: str, dependencies: list, repeats: int
) -> dict:
    """Time the per-token callback on new 256-token texts, after one call that loads the model."""
    texts = texts_of_tokens(repeats + 1, PER_TOKEN_TOKENS)
    samples = []
    for i, text in enumerate(texts):
        values = calls.per_token_values(text=text)
        body = calls.callback_body(dependencies, calls.PER_TOKEN_OUTPUT, values)
        elapsed_ms, updated = time_callback(session, base, body, calls.PER_TOKEN_OUTPUT)
        if updated.get("children") is None:
            raise RuntimeError(f"per-token callback showed no heatmap: {str(updated)[:300]}")
        if i > 0:
            samples.append(elapsed_ms)
    return {"tokens": PER_TOKEN_TOKENS, **summarise(samples)}


def measure_single_server(args: argparse.Namespace, workdir: Path) -> dict:
    """Cold start of `python app.py`, then the circuit and per-token callbacks on it."""
    port = free_port()
    env = server_env(port, workdir / "cache-app", workers=1)
    command = [sys.executable, "app.py"]
    logger.info("starting python app.py on port %d", port)
    log_path = workdir / "app.log"
    with running_server(command, port, env, log_path, args.start_timeout) as server:
        session = requests.Session()
        cold_start_s = first_page(session, server)
        dependencies = session.get(f"{server.base}/_dash-dependencies", timeout=30).json()
        logger.info("timing the circuit graph callback, %d calls", args.repeats)
        circuit = measure_circuit_callback(session, server.base, dependencies, args.repeats)
        logger.info("timing the per-token callback, %d calls", args.repeats)
        per_token = measure_per_token(session, server.base, dependencies, args.repeats)
    return {
        "cold_start_s": round(cold_start_s, 3),
        "circuit_callback": circuit,
        "per_token": per_token,
    }


def measure_gunicorn(args: argparse.Namespace, workdir: Path) -> dict:
    """Cold start of gunicorn with the repository's settings, then the locust load test on it."""
    port = free_port()
    env = server_env(port, workdir / "cache-gunicorn", workers=args.workers)
    command = [sys.executable, "-m", "gunicorn", "app:server", "-c", "gunicorn.conf.py"]
    logger.info("starting gunicorn with %d workers on port %d", args.workers, port)
    log_path = workdir / "gunicorn.log"
    with running_server(command, port, env, log_path, args.start_timeout) as server:
        cold_start_s = first_page(requests.Session(), server)
        load = run_load_test(server.base, args)
    return {"gunicorn_cold_start_s": round(cold_start_s, 3), "load": load}


def run_load_test(base: str, args: argparse.Namespace) -> dict:
    """Run benchmarks/webapp_load.py (locust) in its own process and return its JSON result.

    Locust patches the standard library for gevent when imported, so it gets a process of its own.
    """
    command = [
        sys.executable,
        str(BENCHMARKS / "webapp_load.py"),
        f"--host={base}",
        f"--users={args.users}",
        f"--duration={args.duration}",
        f"--warmup={args.warmup}",
        "--json",
    ]
    logger.info(
        "load test: %d users, %g s warm-up, %g s measured", args.users, args.warmup, args.duration
    )
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"load test failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return {"workers": args.workers, **json.loads(result.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------------------------------------
# Report


def verdicts(result: dict) -> dict[str, bool]:
    """Compare each measured figure with its target."""
    checks = {
        "cold_start_s": result["cold_start_s"] < TARGETS["cold_start_s"],
        "circuit_callback_p95_ms": result["circuit_callback"]["p95_ms"]
        < TARGETS["circuit_callback_p95_ms"],
        "per_token_p95_ms": result["per_token"]["p95_ms"] < TARGETS["per_token_p95_ms"],
    }
    if "load" in result:
        checks["gunicorn_cold_start_s"] = result["gunicorn_cold_start_s"] < TARGETS["cold_start_s"]
        # With no request finished in the measured window, locust reports a p95 of 0.
        checks["load_p95_ms"] = (
            result["load"]["requests"] > 0 and result["load"]["p95_ms"] < TARGETS["load_p95_ms"]
        )
        checks["load_errors"] = result["load"]["errors"] == TARGETS["load_errors"]
    return checks


def _timing(summary: dict) -> str:
    return f"p95 {summary['p95_ms']:.0f} ms, median {summary['median_ms']:.0f} ms, n {summary['n']}"


def table_rows(result: dict) -> list[tuple[str, str, str, bool]]:
    """Return (budget, target, measured, met) for every figure of `result`."""
    passed = result["passed"]
    circuit, per_token = result["circuit_callback"], result["per_token"]
    rows = [
        (
            "cold start to first page, python app.py",
            "< 3 s",
            f"{result['cold_start_s']:.2f} s",
            passed["cold_start_s"],
        ),
        (
            f"circuit graph callback, warm ({circuit['nodes']} nodes, {circuit['edges']} edges)",
            "p95 < 200 ms",
            _timing(circuit),
            passed["circuit_callback_p95_ms"],
        ),
        (
            f"per-token callback, {per_token['tokens']} tokens, uncached",
            "p95 < 100 ms",
            _timing(per_token),
            passed["per_token_p95_ms"],
        ),
    ]
    if "load" not in result:
        return rows
    load = result["load"]
    return rows + [
        (
            f"cold start to first page, gunicorn with {load['workers']} workers",
            "< 3 s",
            f"{result['gunicorn_cold_start_s']:.2f} s",
            passed["gunicorn_cold_start_s"],
        ),
        (
            f"{load['users']} users on {load['workers']} gunicorn workers, {load['duration_s']:g} s",
            "p95 < 1 s",
            f"{_timing(load)}, {load['rps']:.1f} requests/s",
            passed["load_p95_ms"],
        ),
        ("failed requests under load", "0", str(load["errors"]), passed["load_errors"]),
    ]


def print_table(result: dict) -> None:
    """Print a Markdown table of every budget, its target, the measurement and whether it is met."""
    print("| budget | target | measured | met |")
    print("| --- | --- | --- | --- |")
    for budget, target, measured, met in table_rows(result):
        print(f"| {budget} | {target} | {measured} | {'yes' if met else 'NO'} |")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    result: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory(prefix="webapp-bench-") as workdir:
        result |= measure_single_server(args, Path(workdir))
        if args.load:
            result |= measure_gunicorn(args, Path(workdir))
    result["targets"] = TARGETS
    result["passed"] = verdicts(result)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
