"""``sdk run --nproc N``: start ``torchrun`` (``torch.distributed.run``) on ``python -m detsdk run ...``.

The same launcher as typing ``torchrun --nproc-per-node N -m detsdk run
recipe.toml`` by hand: one process per rank, the elastic agent watching
them, rendezvous on this node (``--standalone``) or at ``--rdzv-endpoint``
for several nodes. What ``sdk`` adds: a failed rank's exit code (2 for a
user error, which that rank has already printed as ``error: rank R: ...``)
becomes the launcher's, with none of the agent's report.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from detsdk.errors import RecipeError

RDZV_ID = "detsdk"


def torchrun_arguments(
    nproc: int, worker_args: list[str], nnodes: str = "1", node_rank: int | None = None, rdzv_endpoint: str = "",
    rdzv_id: str = RDZV_ID,
) -> list[str]:
    """The ``torchrun`` command line (without ``torchrun``) for ``python -m detsdk <worker_args>``.

    One node rendezvous on a free local port (``--standalone``). Several
    nodes meet at ``rdzv_endpoint`` (``HOST:PORT`` every node can reach): with
    ``node_rank`` as a static rendezvous whose node 0 runs at that address,
    without it through the c10d backend, where nodes may start in any order
    and torchrun numbers them.
    """
    if nproc < 1:
        raise RecipeError(f"--nproc {nproc}: expected at least 1 process")
    arguments = ["--nproc-per-node", str(nproc), "--nnodes", str(nnodes)]
    if rdzv_endpoint and node_rank is not None:
        arguments += ["--rdzv-backend", "static", "--rdzv-endpoint", rdzv_endpoint, "--node-rank", str(node_rank)]
    elif rdzv_endpoint:
        arguments += ["--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", rdzv_id]
    elif str(nnodes) != "1":
        raise RecipeError(
            f"--nnodes {nnodes}: several nodes need --rdzv-endpoint HOST:PORT (an address of the first node "
            "that every node can reach), given the same on every node"
        )
    else:
        arguments.append("--standalone")
    return [*arguments, "-m", "detsdk", *worker_args]


def launch(arguments: list[str], nproc: int) -> int:
    """Run ``torchrun`` with ``arguments`` in this process; returns the exit code for ``sdk``.

    0 when every rank finished; else the exit code of the first rank that
    failed (2: a user error it printed on one line). A rank killed by a
    signal is reported here, on one line, as nobody else can.
    """
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    # torchrun would set 1 with a banner; split this machine's cores between the ranks instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # The agent logs every rendezvous step and, on a failure, a report; the ranks say what matters.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun.run(torchrun.parse_args(arguments))
    except ChildFailedError as exc:
        return _failure_exit_code(exc)
    except SignalException as exc:  # Ctrl-C or a kill of the launcher: the agent stopped the ranks
        return 128 + int(exc.sigval)
    return 0


def _failure_exit_code(exc) -> int:
    """The exit code of the rank that failed by itself, a user error (2) first.

    Ranks the agent stopped afterwards (SIGTERM) count only when no rank
    exited by itself: then a signal killed one (the OOM killer, say), which
    that rank could not report, so it is reported here.
    """
    failures = exc.failures  # global rank -> ProcessFailure
    exited = {rank: failure for rank, failure in failures.items() if failure.exitcode > 0}
    if exited:
        rank = min(exited, key=lambda r: (exited[r].exitcode != 2, exited[r].timestamp, r))
        return exited[rank].exitcode
    rank = min(failures, key=lambda r: (failures[r].timestamp, r))
    number = -failures[rank].exitcode
    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
    print(f"error: rank {rank} was killed by signal {name} (out of memory? the system log may say)",
          file=sys.stderr, flush=True)
    return 128 + number
