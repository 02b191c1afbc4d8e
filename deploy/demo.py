"""``catstream demo``: the whole job on the local stack, with a readable summary.

1. bring the local stack up (a running one is reused), create the topics, and
   check Kafka and Triton answer (a round trip and a few embeddings);
2. generate a messy affiliate feed (images served from a loopback server);
3. bootstrap a categoriser without human labels: the starter rules label the
   shop's products, and the zero-shot prior (MiniLM embeddings of category names
   and paths) keeps every other category of the Google taxonomy (5,582), trained
   and loaded into Triton (`catstream train --rules R --unlabelled U`);
4. start the worker (normalise → infer → sinks, with the HTTP API);
5. publish the feed and wait until every product has its prediction;
6. print a summary: categorised, sent to review, dead letters, throughput, a
   few predictions with their category paths, and one product's similar products;
7. send a phone, a LEGO set and a garden hose (outside the feed's branches)
   through the stream and show which got a category and which went to review.

The worker and its API keep running afterwards (the URL is printed);
``catstream stack down`` stops the stack and the demo worker.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from catstream.settings import PROJECT_ROOT, Settings, get_settings, load_settings
from catstream.taxonomy import load_taxonomy
from deploy.demo_checks import DemoError, embed_titles, round_trip, section
from deploy.demo_images import ImageServer
from deploy.stack import Stack, StackError
from deploy.stack_cli import format_table
from feeds.generator import GenerateOptions, generate_feed
from feeds.publisher import publish_feed
from streams.topic_records import latest_by_key, publish_json, read_topic
from streams.topics import create_topics

# The demo's shop sells from these branches of the Google taxonomy (about 80 leaf
# categories), so a few hundred labelled products cover what the feed contains.
DEMO_BRANCHES = (
    "Apparel & Accessories > Shoes",
    "Apparel & Accessories > Handbags, Wallets & Cases",
    "Home & Garden > Kitchen & Dining > Cookware & Bakeware",
    "Electronics > Audio > Audio Components",
    "Furniture > Chairs",
    "Toys & Games > Toys > Play Vehicles",
)
BOOTSTRAP = 1600  # generated shop products for the starter rules to label
STARTER_RULES = PROJECT_ROOT / "training" / "rules" / "google_starter.yaml"
SENTINEL = "demo-sentinel"
# Products from outside the demo feed's branches, sent through the stream at the end:
# each must get a sensible category or go to review.
OUTSIDE = (
    {"title": "Apple iPhone 13 Pro Max 256GB smartphone, Sierra Blue", "brand": "Apple"},
    {"title": "LEGO City Police Station 60316 building set", "brand": "LEGO"},
    {"title": "Hozelock 30 m garden hose with spray gun", "brand": "Hozelock"},
)


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:  # type: ignore[type-arg]
    parser = sub.add_parser(name, help=help_text, description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=600, help="feed rows to stream")
    parser.add_argument("--seed", type=int, default=42, help="feed generator seed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    started = time.perf_counter()
    try:
        settings = _stack_up(settings)
        section("2. topics and service checks")
        create_topics(settings)
        round_trip(settings)
        embed_titles(settings)
        with ImageServer() as images:
            work = settings.home / "demo"
            work.mkdir(parents=True, exist_ok=True)
            shop = _shop_taxonomy(settings, work)
            feed = _generate(shop, work, args, images.base_url)
            _bootstrap_model(settings, shop, work, args)
            api = _start_worker(settings)
            since_ms = int(time.time() * 1000)
            throughput = _stream(settings, feed)
            _summary(settings, throughput, api, since_ms)
            _outside_products(settings)
    except (DemoError, StackError) as exc:
        print(f"\ncatstream demo failed: {exc}", file=sys.stderr)
        return 1
    section("done")
    print(f"demo finished in {time.perf_counter() - started:.1f} s")
    print(f"the worker and its API keep running: {api}  (log: {_worker_log(settings)})")
    print(
        f"label the review queue in a browser: {api}/review  (dashboard: {api}/review/dashboard);"
        " then `catstream retrain` promotes a better model"
    )
    print("`catstream stack down` stops the stack and the demo worker.")
    return 0


def _stack_up(settings: Settings) -> Settings:
    section("1. local stack")
    stack = Stack(settings.home, settings=settings)
    print(f"starting the local stack under {stack.home} (Triton may take a minute) ...")
    report = stack.up()
    print("already up: reusing it" if report.already_running else f"up in {report.seconds:.1f} s")
    print(format_table(report.services))
    # The stack may have chosen new ports: its URLs win over what this process read at start.
    os.environ.update(stack.settings_env())
    get_settings.cache_clear()
    return load_settings(home=stack.home, image_allow_private=True)


def _shop_taxonomy(settings: Settings, work: Path) -> Path:
    """The demo branches of the taxonomy, with Google's ids, as a taxonomy file."""
    taxonomy = load_taxonomy(settings.taxonomy_path)
    chosen: set[int] = set()
    for branch in DEMO_BRANCHES:
        root = taxonomy.by_path(branch)
        chosen.update(taxonomy.ancestors_and_self(root), taxonomy.descendants(root))
    path = work / "shop-taxonomy.txt"
    lines = [f"{cid} - {taxonomy.path_str(cid)}" for cid in sorted(chosen)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _generate(shop: Path, work: Path, args: argparse.Namespace, images: str) -> Path:
    section("3. a messy affiliate feed")
    feed = work / "feed.jsonl"
    options = GenerateOptions(
        products=args.products,
        network="generic",
        seed=args.seed,
        fmt="jsonl",
        corrupt_fraction=0.05,
        image_base_url=images,
        taxonomy_path=shop,
    )
    with feed.open("wb") as out:
        report = generate_feed(options, out)
    print(
        f"  {report.rows} rows -> {feed}: {report.products} products, "
        f"{report.duplicates} duplicates, {report.price_updates + report.title_updates} "
        f"updates, {sum(report.corrupt.values())} corrupt rows"
    )
    for line in feed.read_text(errors="replace").splitlines()[:2]:
        print(f"  e.g. {line[:150]}...")
    return feed


def _bootstrap_model(settings: Settings, shop: Path, work: Path, args: argparse.Namespace) -> None:
    """No human labels: the starter rules label the shop's products, the zero-shot prior
    keeps the rest of the Google taxonomy (`catstream train --rules --unlabelled`)."""
    section("4. bootstrap a categoriser: zero-shot prior + starter rules")
    unlabelled = work / "unlabelled.jsonl"
    options = GenerateOptions(
        products=BOOTSTRAP, network="generic", seed=args.seed + 1, fmt="jsonl",
        duplicate_fraction=0.0, update_fraction=0.0, taxonomy_path=shop,
    )  # fmt: skip
    truth = io.StringIO()
    generate_feed(options, io.BytesIO(), labels_out=truth)
    rows = [json.loads(line) for line in truth.getvalue().splitlines()]
    product_fields = ("product_id", "title", "description", "brand", "raw_category", "image_urls")
    unlabelled.write_text(
        "".join(json.dumps({k: r[k] for k in product_fields if k in r}) + "\n" for r in rows)
    )
    command = [
        sys.executable, "-m", "catstream.cli", "train", "--quiet", "--model", "linear",
        "--taxonomy", str(settings.taxonomy_path),
        "--rules", str(STARTER_RULES), "--unlabelled", str(unlabelled),
    ]  # fmt: skip
    print(
        f"  training on {len(rows)} unlabelled products the starter rules label, with the "
        "zero-shot prior for every other category of the Google taxonomy ..."
    )
    started = time.perf_counter()
    done = subprocess.run(
        command,
        env={**os.environ, **settings.as_env()},
        text=True,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(f"`catstream train` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    print("\n".join("  " + line for line in done.stdout.strip().splitlines()[-12:]))
    print(f"  trained and loaded into Triton in {time.perf_counter() - started:.0f} s")


def _worker_log(settings: Settings) -> Path:
    return settings.home / "logs" / "demo-worker.log"


def _start_worker(settings: Settings) -> str:
    section("5. the stream worker")
    pid_file = settings.home / "demo-worker.pid"
    if pid_file.exists():  # a previous demo's worker: replace it
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
            time.sleep(3)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
    log = _worker_log(settings)
    log.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "catstream.cli", "worker", "--sinks", "--api"],
        env={**os.environ, **settings.as_env(), "CATSTREAM_LOG_FORMAT": "json"},
        stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    pid_file.write_text(str(process.pid))
    api = f"http://127.0.0.1:{settings.worker_web_port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the worker exited with {process.returncode}; see {log}")
        if _get(api + "/health") is not None:
            print(f"  worker pid {process.pid}; API at {api}; log {log}")
            return api
        time.sleep(2)
    raise DemoError(f"the worker's API did not answer at {api} within 120 s; see {log}")


def _stream(settings: Settings, feed: Path) -> float:
    section("6. publish the feed and stream it")
    started = time.perf_counter()
    report = publish_feed(feed, "generic", settings, progress=False)
    print(f"  published {report.sent} events ({report.skipped} unparsable rows skipped)")
    sentinels = _publish_sentinels(settings)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        keys = {r.key for r in read_topic(settings, "predictions", idle_s=1.5)}
        print(f"  {len(keys)} products categorised so far ...", flush=True)
        if keys.issuperset(sentinels):
            elapsed = time.perf_counter() - started
            return report.sent / elapsed
        time.sleep(5)
    raise DemoError(f"predictions did not arrive within 15 minutes; see {_worker_log(settings)}")


def _publish_sentinels(settings: Settings) -> set[str]:
    """Products published after the feed on every partition: their predictions mean "done"."""
    run = f"{SENTINEL}-{int(time.time())}"
    keys = {f"{run}-{i}" for i in range(32)}
    publish_json(settings, [(k, {"product_id": k, "title": "end of the demo feed"}) for k in keys])
    return keys


def _summary(settings: Settings, throughput: float, api: str, since_ms: int) -> None:
    """What this run produced (the topics may hold earlier demo runs too)."""
    section("7. summary")
    predictions = {
        k: v
        for k, v in latest_by_key(read_topic(settings, "predictions", idle_s=2)).items()
        if v and v["predicted_at"] >= since_ms and not k.startswith(SENTINEL)
    }
    accepted = [p for p in predictions.values() if p["categories"]]
    review = [r for r in read_topic(settings, "review", 2) if r.value["created_at"] >= since_ms]
    dead = [d for d in read_topic(settings, "deadletter", 2) if d.value["timestamp"] >= since_ms]
    print(
        f"  products categorised : {len(predictions)} ({len(accepted)} with an accepted category)"
    )
    print(
        f"  sent to review       : {len(review)} (budget {settings.review_budget_per_window} "
        f"per {settings.review_window_s:.0f} s)"
    )
    print(f"  dead letters         : {len(dead)}")
    print(f"  throughput           : {throughput:.1f} products/s, publish to prediction")
    print("  a few predictions:")
    for pid, prediction in list(predictions.items())[:5]:
        top = prediction["top_category"]
        path = top["path"] if top else "(none)"
        print(f"    {pid:10s} {prediction['confidence']:.2f}  {path}")
    if accepted:
        _similar(api, accepted[0]["product_id"])


def outside_answer(prediction: dict[str, Any]) -> str:
    """What the stream did with a product: its accepted category, or review."""
    if prediction.get("needs_review") or not prediction.get("categories"):
        top = prediction.get("top_category") or {}
        return f"review (best guess {top.get('path', 'none')!r})"
    deepest = prediction["categories"][-1]
    return f"{deepest['path']} ({deepest['score']:.2f})"


def _outside_products(settings: Settings) -> None:
    section("8. products from outside the feed")
    run = f"demo-outside-{int(time.time())}"
    events = [(f"{run}-{i}", {"product_id": f"{run}-{i}", **p}) for i, p in enumerate(OUTSIDE)]
    publish_json(settings, events)
    wanted = {key for key, _ in events}
    deadline = time.monotonic() + 120
    found: dict[str, Any] = {}
    while time.monotonic() < deadline and not wanted.issubset(found):
        found = latest_by_key(read_topic(settings, "predictions", idle_s=1.5))
        time.sleep(1)
    for key, event in events:
        answer = outside_answer(found[key]) if found.get(key) else "no prediction yet"
        print(f"  {event['title'][:55]:55s} -> {answer}")


def _similar(api: str, product_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = _get(f"{api}/products/{product_id}/similar?k=5&level=1")
        if answer is not None and answer.get("products") is not None:
            print(
                f"  similar to {product_id} (same level-1 category): GET {api}/products/"
                f"{product_id}/similar?k=5&level=1"
            )
            for item in answer["products"][:5]:
                print(f"    {item['product_id']:10s} {item['score']:.3f}  {item['category_path']}")
            return
        time.sleep(3)
    print(f"  similar products of {product_id} not available yet (the Milvus sink is catching up)")


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None
