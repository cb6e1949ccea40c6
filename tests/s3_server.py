"""An S3-compatible server on loopback for tests: moto's server mode in a subprocess.

The server (``python -m moto.server``) listens on a free 127.0.0.1 port, holds its buckets in memory
and honours ``If-None-Match: *`` on PUT, the conditional write Lance commits with; the same endpoint
serves DynamoDB, for Lance's ``s3+ddb://`` commit store. It starts with the
default SIGINT/SIGTERM handling restored (a shell started in the background passes them on ignored)
and is stopped by its PID. Nothing leaves the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["S3Server", "free_port", "s3_server"]


@dataclass(frozen=True)
class S3Server:
    """A running loopback S3 server: its endpoint and the environment that points Lance and pyarrow at it."""

    endpoint: str
    pid: int

    @property
    def env(self) -> dict[str, str]:
        """The AWS variables a process needs to use the server (test credentials, plain HTTP allowed)."""
        return {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true",
            "AWS_EC2_METADATA_DISABLED": "true", "DYNAMODB_ENDPOINT": self.endpoint,
        }

    def client(self, service: str):
        """A boto3 client of ``service`` (``s3``, ``dynamodb``) on this server."""
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def create_bucket(self, name: str) -> None:
        """Create a bucket (through boto3, which moto ships with)."""
        self.client("s3").create_bucket(Bucket=name)

    def create_commit_table(self, name: str) -> None:
        """Create the DynamoDB table Lance's ``s3+ddb://...?ddbTableName=NAME`` commits through.

        Its key is what Lance's external manifest store expects: ``base_uri`` (string, hash) and
        ``version`` (number, range).
        """
        self.client("dynamodb").create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "base_uri", "KeyType": "HASH"},
                       {"AttributeName": "version", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "base_uri", "AttributeType": "S"},
                                  {"AttributeName": "version", "AttributeType": "N"}])

    def commits(self, table: str) -> list[tuple[str, int]]:
        """``(base_uri, version)`` of every commit recorded in a DynamoDB commit table."""
        items = self.client("dynamodb").scan(TableName=table)["Items"]
        return sorted((i["base_uri"]["S"], int(i["version"]["N"])) for i in items)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def s3_server(timeout_s: float = 30.0) -> Iterator[S3Server]:
    """Run a moto S3 server on a free loopback port for the ``with`` body; stopped (by PID) afterwards."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_default_signals)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto server exited with status {proc.returncode} before listening")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server not listening on port {port} after {timeout_s:g} s") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
