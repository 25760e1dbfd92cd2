"""Acceptance fixtures: a real instance on SQLite and on PostgreSQL, driven through the CLI."""

from __future__ import annotations

import pathlib

import pytest

from tests.acceptance.harness import Instance, base_env, store_yaml, workspace_yaml


def _instance(tmp_path: pathlib.Path, store_section: str) -> Instance:
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    instance = Instance(home=home, cwd=cwd, env=base_env(home))
    instance.write_config(workspace_yaml() + store_section)
    return instance


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Instance:
    """An instance with the example and test code locations, on each kind of store."""
    if request.param == "sqlite":
        return _instance(tmp_path, store_yaml(None))
    url = request.getfixturevalue("postgres_database")
    return _instance(tmp_path, store_yaml(url))


@pytest.fixture
def sqlite_instance(tmp_path: pathlib.Path) -> Instance:
    return _instance(tmp_path, store_yaml(None))
