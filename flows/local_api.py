"""Pointing Prefect at the local API livedrill.prefect_api started, unless the user's settings name one."""

from __future__ import annotations

import os

from prefect.context import refresh_global_settings_context
from prefect.settings import get_current_settings

from livedrill.prefect_api import API_URL_ENV, LocalPrefectAPI


def adopt(api: LocalPrefectAPI) -> bool:
    """True when Prefect now uses `api`; False when a profile or settings file names an API (that one wins)."""
    if get_current_settings().api.url:
        return False
    os.environ[API_URL_ENV] = api.url
    # Prefect built its settings from the environment when it was imported.
    refresh_global_settings_context()
    return True


def adopt_environment(url: str) -> None:
    """In a process forked after Prefect was imported (livedrill.drill_runner): Prefect's settings re-read from
    this process's environment, and `url` as the API unless they name one."""
    refresh_global_settings_context()
    if not get_current_settings().api.url:
        os.environ[API_URL_ENV] = url
        refresh_global_settings_context()


def configured_api_url() -> str | None:
    """The Prefect API the user's environment, profile or settings name, if any."""
    return get_current_settings().api.url


def use_api(url: str) -> None:
    """Prefect in this process (and the processes it starts) talks to `url` from now on."""
    os.environ[API_URL_ENV] = url
    refresh_global_settings_context()
