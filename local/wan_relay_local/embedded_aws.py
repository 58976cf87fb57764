"""An AWS on loopback for local runs: moto's server in this process, so the in-process Lambda bridge
applies, with state machines really executed and boto3 pointed at it through `AWS_ENDPOINT_URL`.
"""

from __future__ import annotations

import os
from typing import Any

import requests

#: what boto3 (ours, the relay's and the state-machine interpreter's) needs to reach the server
_ENV_NAMES = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "MOTO_PORT",
)
#: moto flags: run the ASL for real, and use the Docker-free Lambda the bridge patches
_MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}


class EmbeddedAws:
    """Context manager: a fresh, empty moto account on 127.0.0.1 and a process environment pointing at it.

    The environment variables it sets (endpoint, dummy credentials, region, `MOTO_PORT`) and moto's
    configuration are put back as they were on exit. Only one can be active per process: moto's
    backends and `MOTO_PORT` are process-wide.
    """

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._saved_config: dict[str, Any] = {}
        self.endpoint_url = ""

    def __enter__(self) -> EmbeddedAws:
        from moto.core.config import default_user_config
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

        self._saved_config = {name: default_user_config.get(name) for name in _MOTO_CONFIG}
        default_user_config.update(_MOTO_CONFIG)  # type: ignore[typeddict-item]

        self._saved_env = {name: os.environ.get(name) for name in _ENV_NAMES}
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update({
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": "embedded",
            "AWS_SESSION_TOKEN": "embedded",
            "AWS_DEFAULT_REGION": self.region,
            # the state-machine interpreter calls Lambda at localhost:$MOTO_PORT
            "MOTO_PORT": str(port),
        })
        self.reset()
        return self

    def reset(self) -> None:
        """Empties every moto backend (they are process-wide and outlive a server)."""
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=30).raise_for_status()

    def __exit__(self, *exc: object) -> None:
        from moto.core.config import default_user_config

        try:
            self.reset()
        finally:
            self._server.stop()
            for name, value in self._saved_config.items():
                default_user_config[name] = value  # type: ignore[literal-required]
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
