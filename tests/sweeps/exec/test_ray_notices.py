"""Ray 2.60 logs a token-authentication notice at every `ray.init`; users never see it."""

from __future__ import annotations

import logging

from ray._private.authentication import authentication_token_setup as auth

from sweeps.exec.raytune.cluster import RAY_AUTH_LOGGER, quiet_ray_notices


class _Seen(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_the_token_auth_notice_is_filtered_and_other_records_pass():
    logger = logging.getLogger(RAY_AUTH_LOGGER)
    assert auth.logger is logger  # the logger Ray logs the notice with
    seen = _Seen()
    logger.addHandler(seen)
    try:
        quiet_ray_notices()
        quiet_ray_notices()  # idempotent: one filter
        auth._warn_token_auth_enabled()
        auth._warn_token_auth_disabled()
        logger.error("Token file unreadable")
    finally:
        logger.removeHandler(seen)
    assert seen.messages == ["Token file unreadable"]
