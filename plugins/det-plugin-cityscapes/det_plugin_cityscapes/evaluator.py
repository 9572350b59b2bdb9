"""Run cityscapesscripts' instance-level evaluator (``evalInstanceLevelSemanticLabeling``) on files.

The evaluator is called as the benchmark calls it, with its own arguments
object copied from the module's defaults, and with every file it writes
(``gtInstances.json``, ``matches.json``) kept in a work folder instead of the
package or the current directory. Its module globals are patched only while
it runs (see ``_PatchedNumpy``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os

import attrs
import numpy as np

from detsdk.errors import DataError


@attrs.frozen
class EvaluationResult:
    """The evaluator's averages (``allAp``, ``allAp50%``, ``classes``) and its printed table."""

    averages: dict
    table: str


class _PatchedNumpy:
    """numpy as cityscapesscripts 2.3's instance evaluator needs it.

    ``np.in1d`` was removed in numpy 2.4 (``np.isin`` replaces it). ``np.cumsum`` of
    nothing gives ``[0]``: the evaluator crashes on ``cumsum(y_true)[-1]`` when a class
    has ground truth and only ignored predictions (cityscapesScripts issue #89); with
    ``[0]`` that class scores AP 0, as the fix ScanNet's copy of the code took.
    """

    def __getattr__(self, name: str):
        if name == "in1d":
            return lambda a, b: np.isin(a, b).ravel()
        if name == "cumsum":
            return lambda a, *args, **kwargs: np.cumsum(a, *args, **kwargs) if np.size(a) else np.zeros(1)
        return getattr(np, name)


def _write_json(data: dict, path: str) -> None:
    """cityscapesscripts' ``writeDict2JSON``, also for the numpy integers numpy 2 counts return."""
    with open(path, "w") as f:
        json.dump(data, f, default=lambda o: o.item() if isinstance(o, np.generic) else o.__dict__, sort_keys=True)


@contextlib.contextmanager
def _patched(module):
    """Run the evaluator with ``_PatchedNumpy`` and ``_write_json``; restore its globals after."""
    saved = module.np, module.writeDict2JSON
    module.np, module.writeDict2JSON = _PatchedNumpy(), _write_json
    try:
        yield
    finally:
        module.np, module.writeDict2JSON = saved


def evaluate_instances(predictions: list[str], ground_truth: list[str], work_dir: str) -> EvaluationResult:
    """Evaluate prediction text files against ``*_instanceIds.png`` files, pairwise in list order.

    Each prediction file lists ``<mask png relative to the file> <label id> <score>``
    per line; every mask must lie inside ``work_dir`` (the evaluator's prediction root).
    """
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as module

    # Absolute before the chdir below: dataset paths are usually relative to the current directory.
    work_dir = os.path.abspath(work_dir)
    predictions = [os.path.abspath(p) for p in predictions]
    ground_truth = [os.path.abspath(g) for g in ground_truth]
    args = copy.copy(module.args)
    args.predictionPath = work_dir
    args.predictionWalk = None
    args.gtInstancesFile = os.path.join(work_dir, "gtInstances.json")
    if os.path.exists(args.gtInstancesFile):
        os.remove(args.gtInstancesFile)  # the evaluator would trust a cache from another evaluation
    args.exportFile = os.path.join(work_dir, "resultInstanceLevelSemanticLabeling.json")
    args.JSONOutput = False
    args.quiet = True
    args.colorized = False
    output = io.StringIO()
    previous = os.getcwd()
    try:
        os.chdir(work_dir)  # the evaluator writes matches.json into the current directory
        with contextlib.redirect_stdout(output), _patched(module):
            result = module.evaluateImgLists(predictions, ground_truth, args)
            module.printResults(result["averages"], args)
    except SystemExit:
        # The evaluator reports bad input by printing "ERROR: ..." and exiting.
        lines = [line for line in output.getvalue().splitlines() if line.strip()]
        raise DataError(f"cityscapes evaluator: {lines[-1] if lines else 'stopped without a message'}") from None
    finally:
        os.chdir(previous)
    return EvaluationResult(averages=result["averages"], table=output.getvalue())
