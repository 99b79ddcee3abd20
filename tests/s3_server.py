"""A moto S3 server on 127.0.0.1 for fast tests; credentials and endpoint through the AWS environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "audify-test-key",
    "AWS_SECRET_ACCESS_KEY": "audify-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_s3() -> Iterator[str]:
    """Start moto's threaded server on a free port; yields the endpoint URL; restores the env.

    fsspec caches S3 filesystems by their arguments, not by the endpoint in the environment:
    the cache is cleared on entry and exit so that no test talks to another test's server.
    """
    import s3fs
    from moto.server import ThreadedMotoServer

    s3fs.S3FileSystem.clear_instance_cache()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {key: os.environ.get(key) for key in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    try:
        yield endpoint
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def moto_bucket() -> Iterator[str]:
    """A fresh bucket in a fresh moto server; yields ``s3://<bucket>``."""
    import uuid

    import fsspec

    with moto_s3():
        bucket = f"audify-{uuid.uuid4().hex[:8]}"
        fsspec.filesystem("s3").mkdir(bucket)
        yield f"s3://{bucket}"
