"""``catstream review serve``: the review web app on its own, and its image fetcher.

The app itself is ``workers.review_app`` (mounted on the worker's API under
``/review``); this module gives it the stream's ``ImageFetcher``, so the image
proxy applies exactly the fetcher's SSRF rules (public addresses only, checked in
the resolver; redirects re-checked; timeout; ``image/*`` only), with the size
limit lowered to ``settings.review_image_max_bytes``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from catstream.settings import Settings
from streams.images import ImageFetcher
from workers.api import run_api


def review_image_fetcher(settings: Settings) -> ImageFetcher:
    limit = min(settings.image_max_bytes, settings.review_image_max_bytes)
    return ImageFetcher(settings.model_copy(update={"image_max_bytes": limit}))


def serve(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.api_host
    port = args.port or settings.worker_web_port
    print(f"review app: http://{host}:{port}/review  (dashboard: /review/dashboard)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_api(settings, port, host=host, images=review_image_fetcher(settings)))
    return 0
