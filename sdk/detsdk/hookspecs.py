"""The whole extension surface of det-sdk, on one page.

A plugin is a module (or object) with functions named after these hooks and
marked with ``detsdk.hookimpl``. Register-style hooks receive ``register``,
bound to the calling plugin::

    register(name, factory, *, description="")

where ``factory`` is a callable or a lazy ``"module:attr"`` string (so that
listing plugins never imports torch). The factory's signature is the
component's schema: recipe keys are its keyword arguments.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("detsdk")
hookimpl = pluggy.HookimplMarker("detsdk")


@hookspec
def detsdk_register_backbones(register):
    """Register backbones: ``nn.Module`` returning a fine-to-coarse dict of feature maps."""


@hookspec
def detsdk_register_necks(register):
    """Register necks: built as ``factory(in_channels=[...], **params)``; dict in, dict out."""


@hookspec
def detsdk_register_heads(register):
    """Register heads: parts a detector composes (RPN, RoI box head, mask head, dense head)."""


@hookspec
def detsdk_register_detectors(register):
    """Register detectors: built from ``backbone``, ``neck``, heads and ``num_classes``."""


@hookspec
def detsdk_register_datasets(register):
    """Register datasets: sized, indexable, with ``classes: list[str]``."""


@hookspec
def detsdk_register_transforms(register):
    """Register transforms: ``Callable[[dict], dict]`` over samples."""


@hookspec
def detsdk_register_schedulers(register):
    """Register LR schedulers: ``factory(optimizer, *, total_iters, iters_per_epoch, **params)``."""


@hookspec
def detsdk_register_optimizers(register):
    """Register optimizers: ``factory(params, **params)``."""


@hookspec
def detsdk_register_metrics(register):
    """Register metrics: objects with ``process(samples, detections)`` and ``compute()``."""


@hookspec
def detsdk_register_hooks(register):
    """Register training hooks: objects with any of ``before_train``, ``before_epoch``, ``after_iter``,
    ``after_epoch``, ``after_eval``, ``after_train`` (see DESIGN.md "Hooks"); recipes use them in ``train.hooks``."""


@hookspec
def detsdk_register_recipes(register):
    """Register recipe folders: ``register(name, path_to_folder)``; used as ``plugin:file.toml``."""


@hookspec
def detsdk_register_commands(cli):
    """Add click commands or groups to the ``sdk`` command line (``cli`` is a click.Group)."""


@hookspec
def detsdk_on_train_start(engine):
    """Called once before the first training iteration."""


@hookspec
def detsdk_after_train_iter(engine, iteration, losses):
    """Called after each training iteration with its 1-based number and its losses, a mapping of floats
    (``LossReadout``: read from the device on first access, one sync; leave it unread to keep steps async)."""


@hookspec
def detsdk_after_epoch(engine, epoch):
    """Called after each training epoch with its 1-based number."""


@hookspec
def detsdk_after_eval(engine, metrics):
    """Called after each evaluation with the flat metrics dict."""


@hookspec
def detsdk_on_train_end(engine):
    """Called once after training finished (not after a failure)."""
