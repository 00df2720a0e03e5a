"""Load-test a running web app with locust: simulated users loading pages and running callbacks.

Each user first opens the circuit page as a browser does: HTML, layout, callback list, the routing
callback, then the page's circuit, graph, sweep and node callbacks. After that, with pauses of 1 to
3 s, it moves the edge threshold, clicks graph nodes, runs the per-token page on a task sample, or
opens one of the two pages again. Static JS and CSS files are not requested, because browsers cache them.

A callback counts as failed when the HTTP status is not 200 or the response lacks its output. An
exception inside a user counts as an error too. The statistics are reset after `--warmup` seconds,
so the figures cover `--duration` seconds of steady load.

    python benchmarks/webapp_load.py --host http://127.0.0.1:8050 --users 20 --duration 30

`benchmarks/webapp.py` starts gunicorn and runs this script; it needs the `bench` extra (locust).
"""

from __future__ import annotations

# Locust replaces blocking parts of the standard library with gevent versions when it is imported,
# so it is imported before everything else.
# isort: off
import locust

# isort: on
import argparse
import json
import logging
import random
import sys
from pathlib import Path

import gevent
from locust import HttpUser, between, task
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import webapp_requests as calls  # noqa: E402

logger = logging.getLogger("benchmarks.webapp_load")

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.5)  # edge thresholds a user moves the slider to
LOCATIONS = ("0.attn.q", "0.mlp.post_act", "1.attn.v", "3.mlp.resid_delta")
SAMPLES = 10  # task test pairs the per-token users pick from
CHANNELS = 32  # channels the per-token users pick from (every location has at least 32)


class ViewerUser(HttpUser):
    """A user browsing the benchmark circuit and the per-token page."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.dependencies: list = []
        self.nodes: list[str] = []
        self.open_circuit_page()

    def get(self, path: str, name: str):
        """GET `path`; return the response, or None when it failed."""
        with self.client.get(path, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return None
            return response

    def callback(self, output: str, values: dict, name: str) -> dict | None:
        """POST the callback that has `output`; return its updated properties, or None on failure."""
        body = calls.callback_body(self.dependencies, output, values)
        with self.client.post(
            calls.UPDATE_PATH, json=body, name=name, catch_response=True
        ) as response:
            try:
                return calls.check_response(response.status_code, response.json(), output)
            except ValueError as err:  # also a body that is not JSON
                response.failure(str(err))
                return None

    def load_page(self, path: str, search: str = "") -> bool:
        """Request what a browser requests to show `path`; return whether all of it succeeded."""
        if self.get(f"{path}{search}", f"GET {path}") is None:
            return False
        if self.get("/_dash-layout", "GET /_dash-layout") is None:
            return False
        dependencies = self.get("/_dash-dependencies", "GET /_dash-dependencies")
        if dependencies is None:
            return False
        self.dependencies = dependencies.json()
        values = calls.routing_values(path, search)
        return self.callback(calls.ROUTING_OUTPUT, values, "POST page routing") is not None

    @task(2)
    def open_circuit_page(self) -> None:
        if not self.load_page("/circuit", calls.circuit_query()):
            return
        values = calls.circuit_values()
        loaded = self.callback(calls.CIRCUIT_OUTPUT, values, "POST circuit load")
        if loaded is not None:
            self.nodes = [option["value"] for option in loaded["options"]]
        self.callback(calls.GRAPH_OUTPUT, values, "POST circuit graph")
        self.callback(calls.SWEEP_OUTPUT, values, "POST circuit sweep")
        self.callback(calls.NODE_OUTPUT, values, "POST circuit node")

    @task(3)
    def move_threshold(self) -> None:
        values = calls.circuit_values(threshold=random.choice(THRESHOLDS))
        self.callback(calls.GRAPH_OUTPUT, values, "POST circuit graph")

    @task(3)
    def click_node(self) -> None:
        if not self.nodes:
            return
        values = calls.circuit_values(node=random.choice(self.nodes))
        self.callback(calls.NODE_OUTPUT, values, "POST circuit node")

    @task(1)
    def run_per_token(self) -> None:
        values = calls.per_token_values(
            location=random.choice(LOCATIONS),
            index=random.randrange(CHANNELS),
            sample=random.randrange(SAMPLES),
        )
        self.callback(calls.PER_TOKEN_OUTPUT, values, "POST per-token")

    @task(1)
    def open_models_page(self) -> None:
        self.load_page("/")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--host", required=True, help="base URL of the app, e.g. http://127.0.0.1:8050"
    )
    parser.add_argument("--users", type=int, default=20, help="simulated users (default 20)")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="measured seconds of load (default 30)"
    )
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of load before measuring (default 10)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args()
    if args.users < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--users and --duration must be positive and --warmup at least 0")
    return args


def _exception_count(runner) -> int:
    return sum(row["count"] for row in runner.exceptions.values())


def run(args: argparse.Namespace) -> dict:
    """Spawn the users, reset the statistics after the warm-up, measure, and summarise."""
    env = Environment(user_classes=[ViewerUser], host=args.host, events=locust.events)
    runner = env.create_local_runner()
    runner.start(args.users, spawn_rate=args.users)  # every user within about 1 s
    gevent.sleep(args.warmup)
    warmup_errors = env.stats.total.num_failures + _exception_count(runner)
    env.stats.reset_all()
    exceptions_before = _exception_count(runner)
    gevent.sleep(args.duration)
    runner.quit()

    total = env.stats.total
    exceptions = _exception_count(runner) - exceptions_before
    by_request = {
        name: {
            "n": entry.num_requests,
            "failures": entry.num_failures,
            "p95_ms": entry.get_response_time_percentile(0.95),
        }
        for (name, _), entry in sorted(env.stats.entries.items())
    }
    messages = [str(error.error) for error in env.stats.errors.values()]
    messages += [row["msg"] for row in runner.exceptions.values()]
    return {
        "users": args.users,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "requests": total.num_requests,
        "n": total.num_requests,
        "rps": round(total.num_requests / args.duration, 2),
        "failures": total.num_failures,
        "exceptions": exceptions,
        "errors": total.num_failures + exceptions,
        "warmup_errors": warmup_errors,
        "median_ms": total.get_response_time_percentile(0.5),
        "p95_ms": total.get_response_time_percentile(0.95),
        "max_ms": round(total.max_response_time or 0, 1),
        "by_request": by_request,
        "error_messages": [message[:200] for message in messages[:10]],
    }


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    result = run(args)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['requests']} requests, {result['errors']} errors")
    print(f"p95 {result['p95_ms']} ms, median {result['median_ms']} ms")
    for name, figures in result["by_request"].items():
        print(f"  {name}: {figures}")


if __name__ == "__main__":
    main()
