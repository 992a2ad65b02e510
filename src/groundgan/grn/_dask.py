"""The dask.distributed client that GRN inference runs on: the user's, one at an address, or
groundgan's own local cluster for the duration of a call."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from typing import Any

from .._validation import InvalidInputError

__all__: list[str] = []

#: Workers of groundgan's own cluster: ``True`` = one single-threaded worker process per CPU,
#: ``False`` = one worker thread per CPU in this process. Measured side by side
#: (benchmarks/bench_grn.py, docs/data_and_grn.md), processes ran GRNBoost2 1.6-1.8x faster
#: on 2 workers: much of a boosting round is Python code, which threads run one at a time.
#: They cost a few seconds to start, and a script needs the ``if __name__ == "__main__":``
#: guard (workers re-import the main module).
LOCAL_PROCESSES = True

#: How long connecting to a scheduler address may take before the address counts as unreachable.
CONNECT_TIMEOUT = "20s"

#: dask settings while groundgan's own cluster runs. Its scheduler and workers run on this
#: machine: a slow answer means a starved event loop (a loaded machine), never a lost peer, so
#: connections wait instead of timing out (the default 30 s failed worker heartbeats under
#: load), and no worker is removed for late heartbeats.
LOCAL_CLUSTER_CONFIG = {
    "distributed.comm.timeouts.connect": "600s",
    "distributed.scheduler.worker-ttl": None,
}
#: The one log record of a failed worker heartbeat (logged with its traceback, then retried).
HEARTBEAT_FAILURE = "Failed to communicate with scheduler during heartbeat"


class DaskClientError(InvalidInputError):
    """The dask client cannot be reached, or closed while GRN inference ran on it."""


class _DropHeartbeatFailures(logging.Filter):
    """Drops the worker's failed-heartbeat record: harmless (the next heartbeat retries), and
    printed with a long traceback. Attached to ``distributed.worker`` only while groundgan's own
    cluster runs; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HEARTBEAT_FAILURE)


def n_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def dask_client(client: Any = None, *, processes: bool | None = None) -> Iterator[Any]:
    """A running :class:`distributed.Client` for the duration of the block.

    ``client`` is a client (used as is, left open), a scheduler address (connected to, closed
    afterwards) or ``None``: a local cluster of single-threaded workers, one per CPU, closed
    afterwards; ``processes`` overrides :data:`LOCAL_PROCESSES` for it.
    """
    if client is None:
        with _local_client(LOCAL_PROCESSES if processes is None else processes) as local:
            yield local
    elif isinstance(client, str):
        with _address_client(client) as remote:
            yield remote
    elif callable(getattr(client, "submit", None)) and hasattr(client, "scatter"):
        if getattr(client, "status", "running") not in ("running", "connecting"):
            raise DaskClientError(
                f"the dask client is {client.status}: pass a running distributed.Client, "
                "a scheduler address, or client=None for a local cluster"
            )
        yield client
    else:
        raise InvalidInputError(
            "client must be a distributed.Client, a scheduler address such as "
            f"'tcp://10.0.0.1:8786', or None (a local cluster); got {type(client).__name__}"
        )


@contextlib.contextmanager
def _address_client(address: str) -> Iterator[Any]:
    from distributed import Client

    try:
        remote = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except Exception as err:  # OSError, TimeoutError, or ValueError for a malformed address
        raise DaskClientError(
            f"cannot reach a dask scheduler at {address!r} within {CONNECT_TIMEOUT} "
            f"({type(err).__name__}: {err}); check the address and that the scheduler runs, or "
            "pass client=None to run on a local cluster"
        ) from err
    with remote:
        yield remote


@contextlib.contextmanager
def _local_client(processes: bool) -> Iterator[Any]:
    import dask
    from distributed import Client, LocalCluster

    worker_log = logging.getLogger("distributed.worker")
    quiet = _DropHeartbeatFailures()
    worker_log.addFilter(quiet)
    try:
        # until the cluster has closed: a heartbeat can still be in flight while it shuts down
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            with warnings.catch_warnings():
                # without a dashboard the scheduler still serves health checks, on port 8787
                warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
                # offline, distributed cannot find the host's outward address; it is local
                warnings.filterwarnings("ignore", "Couldn't detect a suitable IP", RuntimeWarning)
                cluster = _start_local_cluster(LocalCluster, processes)
            # the client closes first, then the cluster (scheduler and workers)
            with cluster, Client(cluster, set_as_default=False) as local_client:
                if processes:  # the filter, in each worker process too
                    local_client.run(_drop_heartbeat_failures)
                yield local_client
    finally:
        worker_log.removeFilter(quiet)


def _start_local_cluster(local_cluster: type, processes: bool) -> Any:
    try:
        return local_cluster(
            n_workers=n_cpus(),
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    except RuntimeError as err:
        if not processes:
            raise
        raise DaskClientError(
            "the local cluster's worker processes failed to start. They re-import the main "
            "module: in a script, put the code that calls groundgan under "
            '`if __name__ == "__main__":`. Or pass your own client, e.g. '
            "client=distributed.Client(processes=False) for thread workers"
        ) from err


def _drop_heartbeat_failures() -> None:
    """Run on a worker process: :class:`_DropHeartbeatFailures` on its ``distributed.worker``
    log (the process ends with the cluster, and the filter with it)."""
    logging.getLogger("distributed.worker").addFilter(_DropHeartbeatFailures())


def n_threads(client: Any) -> int:
    """Worker threads of the client's cluster (at least 1)."""
    return max(sum(client.nthreads().values()), 1)


def gather_in_completion_order(
    client: Any,
    futures: dict[Any, Any],
    on_result: Callable[[Any, Any], None],
    *,
    release: Sequence[Any] = (),
) -> None:
    """Call ``on_result(label, result)`` for each future as it completes.

    A regression's own error propagates as raised on the worker; a client or scheduler that
    closes during the run becomes a :class:`DaskClientError`. All futures, and the futures in
    ``release`` (e.g. scattered data), are released in the end, completed or not.
    """
    from distributed import as_completed

    done = 0
    try:
        for future in as_completed(futures, loop=client.loop):
            try:
                result = future.result()
            except Exception as err:
                if _client_lost(client, err):
                    raise DaskClientError(
                        f"the dask client closed during GRN inference, after {done} of "
                        f"{len(futures)} tasks; nothing was returned. Keep the client open "
                        "until the call returns, or pass client=None for a local cluster"
                    ) from err
                raise
            on_result(futures[future], result)
            done += 1
    finally:
        if client.status == "running":
            client.cancel([*futures, *release])


def _client_lost(client: Any, err: Exception) -> bool:
    from distributed.comm.core import CommClosedError

    if client.status not in ("running", "connecting"):
        return True
    return isinstance(err, (CancelledError, CommClosedError))
