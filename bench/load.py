#!/usr/bin/env python3
"""Load benchmark for `saypro-bot run`: signed Telegram and Twilio webhooks in, replies out to a fake provider.

For each database asked for (SQLite, PostgreSQL or both) it starts, on 127.0.0.1 only:

* a fake provider API (this file with `--serve-fake`): Telegram's sendMessage and Twilio's
  Messages.json, answered at once, each reply's recipient and arrival time written to this
  process through a pipe;
* `saypro-bot run` in a new temporary directory with a new database, Telegram, SMS and
  WhatsApp live and pointed at the fake (TELEGRAM_API_BASE_URL, TWILIO_API_BASE_URL); with
  `--workers N`, N `saypro-bot worker` processes beside it and ANSWERS_BY_WORKERS set, so the
  web process stores and the workers answer;
* a bare FastAPI endpoint that only returns 200 (this file with `--serve-bare`), on uvicorn
  started the way `saypro-bot run` starts it, so the bot's figure is also a ratio;

then runs these phases, each bounded in time and in number of requests:

1. warm-up at a low rate; the run stops if no reply reaches the fake;
2. bare: N clients POST a webhook-sized body to the bare endpoint back to back;
3. capacity: N users, each sending one webhook and waiting for its reply at the fake before
   sending the next: the messages/s one web process answers end to end (replies, not merely
   accepted webhooks, so a growing backlog cannot inflate it);
4. half: an open loop at half that rate, for the latencies of a process that is not overloaded;
5. fixed rate: an open loop at `--rate` messages/s whatever the answers: webhook latency (request
   to response) and end-to-end latency (request sent to the reply's arrival at the fake). A
   failed webhook or a reply that never came counts as slower than every other;
6. with `--workers`, intake: the workers paused, N clients POST webhooks back to back without
   waiting for replies: the messages/s the web process stores, which with ANSWERS_BY_WORKERS is
   all a web process does with them.

Between phases it waits until no reply has arrived for 2 s, so one phase's backlog does not
leak into the next.

Every message is "hi" from a user who has not written before (a new Telegram chat id or phone
number), so its reply, the greeting and menu, is matched to it by chat id or `To`, and no two
messages share a conversation (the bot answers one conversation's messages in order).

    python bench/load.py --databases sqlite,postgres
    python bench/load.py --database-url postgresql+psycopg://user@127.0.0.1:5432/db --json out.json

`postgres` starts a throwaway cluster with Debian's binaries (/usr/lib/postgresql/*/bin, run
as the `postgres` user when this runs as root) on a free port, and deletes it afterwards.

This file is the entry point (options and main); the rest lives beside it: bench/common.py (the
address, credentials, limits and targets), bench/fake_provider.py (the fake provider and the bare
endpoint), bench/postgres.py (the throwaway PostgreSQL cluster), bench/cluster.py (the child
processes), bench/traffic.py (the signed webhooks, the client and the phases) and bench/report.py
(percentiles, table, verdicts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

# Run as a script (python bench/load.py, from any directory), the checkout is put on the path
# so that `bench` is this directory.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench.common import TARGETS
from bench.fake_provider import serve_bare, serve_fake
from bench.report import DatabaseRun, environment, markdown, print_table, verdicts
from bench.runs import run_database

# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--databases",
        default="sqlite,postgres",
        help="comma-separated: sqlite (a file in a temporary directory), postgres (a throwaway cluster)",
    )
    parser.add_argument(
        "--database-url",
        help="this database instead (best a new one); labelled by its scheme",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s of the fixed-rate phase")
    parser.add_argument("--rate-seconds", type=float, default=15.0)
    parser.add_argument(
        "--clients",
        type=int,
        default=64,
        help="users of the capacity phase's closed loop",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="saypro-bot worker processes beside the web process, answering for it (ANSWERS_BY_WORKERS)",
    )
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    parser.add_argument(
        "--intake-seconds",
        type=float,
        default=8.0,
        help="with --workers: the phase that measures the web process storing webhooks alone (at most 9 s: "
        "a message unanswered for 10 s is answered by the web process's own sweep)",
    )
    parser.add_argument("--bare-clients", type=int, default=64)
    parser.add_argument("--bare-seconds", type=float, default=10.0)
    parser.add_argument("--warmup-rate", type=float, default=20.0)
    parser.add_argument("--warmup-seconds", type=float, default=4.0)
    parser.add_argument(
        "--no-half-rate",
        dest="half_rate",
        action="store_false",
        help="skip the phase at half the sustained messages/s (before the fixed-rate one)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=15.0,
        help="seconds a reply may take before it counts as missing",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="at most this long for a phase's backlog to clear",
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=2.0,
        help="seconds without a reply at the fake that mean a phase's backlog has cleared",
    )
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument(
        "--mix",
        default="telegram,sms,telegram,whatsapp",
        help="channels of successive messages, repeated: telegram, sms, whatsapp",
    )
    parser.add_argument(
        "--pg-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the throwaway cluster, e.g. synchronous_commit=off (repeatable)",
    )
    parser.add_argument(
        "--bare-access-log",
        action="store_true",
        help="the bare endpoint logs each request at INFO, as saypro-bot run's uvicorn does",
    )
    parser.add_argument(
        "--bot-command",
        help="the command before 'run' (default: saypro-bot beside this Python)",
    )
    parser.add_argument(
        "--knowledge-dir",
        help="the bot's KNOWLEDGE_DIR (default: the knowledge base bundled with the checkout)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy record the bot (and each worker) during the capacity phase into DIR",
    )
    parser.add_argument(
        "--profile-wall",
        action="store_true",
        help="profile every thread's waiting too (py-spy --idle), not only the GIL holder",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write everything as JSON ('-': standard output)",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the table as Markdown (for the README) too",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directories (logs, SQLite file)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=1200.0,
        help="stop the whole run after this long",
    )
    args = parser.parse_args(argv)
    args.mix = [name.strip() for name in args.mix.split(",") if name.strip()]
    if not args.mix or set(args.mix) - {"telegram", "sms", "whatsapp"}:
        parser.error("--mix takes telegram, sms and whatsapp")
    if not all(
        0 < s <= 300
        for s in (
            args.rate_seconds,
            args.capacity_seconds,
            args.bare_seconds,
            args.warmup_seconds,
            args.quiet,
        )
    ):
        parser.error("a phase lasts more than 0 and at most 300 seconds")
    if not 0 < args.rate <= 5000 or not 0 < args.warmup_rate <= 5000:
        parser.error("a rate is more than 0 and at most 5000 messages/s")
    if not (1 <= args.clients <= 1000 and 1 <= args.bare_clients <= 1000):
        parser.error("clients: 1 to 1000")
    if not 0 <= args.workers <= 16:
        parser.error("workers: 0 to 16")
    if not 0 < args.intake_seconds <= 9:
        parser.error("--intake-seconds: more than 0 and at most 9")
    return args


async def main_async(args: argparse.Namespace) -> list[DatabaseRun]:
    if args.database_url:
        plan: list[tuple[str, str | None]] = [
            (
                "postgres" if args.database_url.startswith("postgres") else "sqlite",
                args.database_url,
            )
        ]
    else:
        plan = [(name.strip(), None) for name in args.databases.split(",") if name.strip()]
        unknown = {name for name, _ in plan} - {"sqlite", "postgres"}
        if unknown:
            raise SystemExit(f"bench: unknown database {', '.join(sorted(unknown))}: sqlite or postgres")
    runs = []
    for label, url in plan:
        workdir = Path(tempfile.mkdtemp(prefix=f"saypro-bench-{label}-"))
        try:
            runs.append(await run_database(label, url, args, workdir))
        finally:
            if args.keep:
                print(f"[{label}] kept {workdir}", flush=True)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-fake"]:
        serve_fake(int(argv[1]))
        return 0
    if argv[:1] == ["--serve-bare"]:
        serve_bare(int(argv[1]))
        return 0
    args = parse_args(argv)
    env = environment()
    print(
        f"bench: {env['cpus']} CPUs, Python {env['python']}, uvicorn on {env['uvicorn_loop']} + {env['uvicorn_http']}, "
        f"commit {env['commit']} (+{env['uncommitted_files']} changed files); "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    try:
        runs = asyncio.run(asyncio.wait_for(main_async(args), timeout=args.max_seconds))
    except TimeoutError:
        print(f"bench: stopped after --max-seconds {args.max_seconds:g}", file=sys.stderr)
        return 3
    print()
    print(f"python bench/load.py {' '.join(argv)}".rstrip())
    print()
    print_table(runs, args)
    if args.markdown:
        print()
        print(markdown(runs, args))
    print()
    for line in verdicts(runs, args):
        print(line)
    if args.json:
        payload = {
            "environment": env,
            "arguments": {key: value for key, value in vars(args).items() if key != "json"},
            "targets": TARGETS,
            "runs": [
                {
                    **{k: v for k, v in asdict(run).items() if k != "phases"},
                    "ratio": run.ratio,
                    "phases": {name: asdict(phase) for name, phase in run.phases.items()},
                }
                for run in runs
            ],
        }
        text = json.dumps(payload, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
