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
