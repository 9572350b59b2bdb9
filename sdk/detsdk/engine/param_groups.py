"""Parameter groups for ``train.optimizer.paramwise`` (MMDetection's ``DefaultOptimWrapperConstructor`` rules)."""

from __future__ import annotations

from torch import nn

from detsdk.errors import RecipeError

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def param_groups(
    model: nn.Module,
    weight_decay: float,
    norm_decay_mult: float = 1.0,
    bias_decay_mult: float = 1.0,
    bypass_duplicate: bool = False,
) -> list[dict]:
    """The model's trainable parameters grouped by their weight decay.

    Normalisation layers' parameters get ``weight_decay * norm_decay_mult``, other modules'
    ``bias`` ``weight_decay * bias_decay_mult``, the rest ``weight_decay``. A parameter met
    again through another module (shared weights) is skipped with ``bypass_duplicate``, an
    error otherwise (as MMDetection). Groups are in the order their first parameter appears.

    >>> param_groups(model, 0.05, norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True)  # doctest: +SKIP
    """
    groups: dict[float, list] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if id(param) in seen:
                if bypass_duplicate:
                    continue
                raise RecipeError(
                    f"train.optimizer.paramwise: parameter {module_name}.{name} is shared with another module; "
                    "set bypass_duplicate = true to list it once"
                )
            seen.add(id(param))
            if isinstance(module, NORMS):
                decay = weight_decay * norm_decay_mult
            elif name == "bias":
                decay = weight_decay * bias_decay_mult
            else:
                decay = weight_decay
            groups.setdefault(decay, []).append(param)
    return [{"params": params, "weight_decay": decay} for decay, params in groups.items()]
