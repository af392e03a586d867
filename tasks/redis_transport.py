"""Two narrow subclasses that take per-message work out of Celery's Redis plumbing (measured, see README).

- `Transport`: kombu's Redis transport builds a new `redis.Redis` client object for every synchronous command
  (every published message, every ack): redis-py fills ~170 response callbacks per client, which was 12% of a
  chord's publish CPU. A `redis.Redis` is thread-safe (each command checks a connection out of the pool), so
  one client per channel serves every command of that channel; the pool, and the connections, are the same.
- `PublishOnlyRedisBackend`: the web only publishes and never waits for a result, yet Celery's Redis result
  backend subscribes to each sent task's result channel and tracks it as pending (then unsubscribes when the
  AsyncResult is collected): 15% of a chord's publish CPU and two Redis commands per task for nothing. The
  web's publisher app uses this backend; the workers keep Celery's own.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self.__dict__.get("_sync_client")
        if client is None:
            client = self.__dict__["_sync_client"] = super()._create_client(asynchronous=False)
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


# `broker_transport` setting: an explicit transport wins over the URL's scheme in kombu.
TRANSPORT = f"{__name__}:Transport"


class PublishOnlyRedisBackend(RedisBackend):
    """A result backend for a process that publishes tasks and never reads their results."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        return result

    def remove_pending_result(self, result: Any) -> Any:
        return result


def publish_only_backend_url(redis_url: str) -> str:
    """`<class>+redis://...`: Celery's form for a backend class of its own with a URL (like `db+postgresql://`)."""
    return f"{__name__}:PublishOnlyRedisBackend+{redis_url}"
