"""Shared fixtures: the local stack of real services, and unique per-test names.

``stack`` (session) starts a fresh stack in a temporary ``CATSTREAM_HOME``,
points every ``CATSTREAM_*`` URL variable at it and yields the ``Settings``;
it stops the stack at the end of the session. Set ``CATSTREAM_TEST_STACK_HOME``
to the home of a stack you keep running (``CATSTREAM_HOME=... catstream stack
up``) to reuse it across sessions: it is started if needed and left running.

A test that uses ``stack`` (directly or through ``topic_settings``) is marked
``integration`` automatically, so ``pytest -m 'not integration'`` runs only
the unit tests. Tests never skip when a service is unreachable: they fail.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest

from catstream.settings import Settings, get_settings, load_settings
from deploy.stack import Stack, UpReport
from workers.run_data import delete_run_data

REUSE_ENV = "CATSTREAM_TEST_STACK_HOME"

# In CI the property tests use a fixed example sequence (a red build must be reproducible);
# on a developer's machine they keep exploring new examples.
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")
_INTEGRATION_FIXTURES = {"stack", "local_stack", "topic_settings"}


@dataclass(frozen=True)
class RunningStack:
    """The session's stack: the ``Stack`` handle, how ``up`` went, and who owns it."""

    stack: Stack
    report: UpReport
    owned: bool  # False when reusing a developer's stack: never stopped by the tests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The running local stack (use ``stack`` for its ``Settings``)."""
    reuse = os.environ.get(REUSE_ENV)
    home = Path(reuse) if reuse else tmp_path_factory.mktemp("catstream-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CATSTREAM_HOME", str(home))
        # The stack serves its own copy of the model repository (deploy/model_repository.py),
        # so models trained by tests never land in the source tree.
        stack = Stack(
            home, settings=Settings(home=home, model_repository=home / "model-repository")
        )
        report = stack.up()
        try:
            for name, value in stack.settings_env().items():
                env.setenv(name, value)
            get_settings.cache_clear()  # code calling get_settings() must see this stack
            yield RunningStack(stack, report, owned=not reuse)
        finally:
            get_settings.cache_clear()
            if not reuse:
                stack.down()


@pytest.fixture(scope="session")
def stack(local_stack: RunningStack) -> Settings:
    """``Settings`` pointing at the session's local stack."""
    return load_settings(home=local_stack.stack.home)


_SAFE = re.compile(r"[^a-z0-9_]+")
_counter = itertools.count()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique_name(prefix)`` → a name unique to this call, safe everywhere.

    Lower-case letters, digits and underscores, starting with a letter, at most
    ~60 characters: valid as a Kafka topic, an Elasticsearch index and a Milvus
    collection name. It carries the test's name, so leftovers are traceable.
    """
    test = _SAFE.sub("_", request.node.name.lower()).strip("_")[:24]

    def make(prefix: str = "t") -> str:
        head = _SAFE.sub("_", prefix.lower()).strip("_")[:16] or "t"
        if not head[0].isalpha():
            head = f"t{head}"
        return f"{head}_{test}_{next(_counter)}_{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_settings(stack: Settings, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    """The stack's ``Settings`` with this test's own topics, index, collection and app id.

    Deleted after the test: noida-db rewrites everything it holds about once a second,
    so what earlier tests leave behind would make every later test's broker slower."""
    settings = stack.model_copy(
        update={
            "topic_prefix": f"{unique_name('test')}.",
            "elasticsearch_index": unique_name("idx"),
            "milvus_collection": unique_name("col"),
            "app_id": unique_name("app"),
        }
    )
    yield settings
    try:
        delete_run_data(settings)
    except Exception as exc:  # cleanup only: a leftover costs later tests time, not truth
        warnings.warn(f"could not delete the test's data: {exc}", stacklevel=1)
