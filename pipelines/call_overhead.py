"""What diffusers works out in Python on every pipeline call that Kiln works out once.

    trim_call_overhead(pipe)    # the engine, for every pipeline it loads or derives

1. Where the pipeline runs. Each call asks ``pipe._execution_device``, and diffusers
   answers by walking every module of every component twice over, looking for
   offloading hooks (accelerate's, or its own group offloading), before it falls back to
   where the components are: 3.8 ms a call on tiny-sdxl's 691 modules, several times that
   on a real SDXL, spent before the first step. Kiln never offloads (a model is placed
   whole on its replica's device, and IP-Adapters and ControlNets join it there), so the
   answer cannot change after loading. ``pin_execution_device`` gives the pipeline that
   answer, found once: its class becomes a subclass of the same name whose
   ``_execution_device`` returns it. A pipeline with offloading hooks is left as it is.
2. Attention's keyword check. Every ``Attention.forward`` of
   ``diffusers.models.attention_processor`` (the UNets' attention: SD 1.5, SDXL) builds
   ``inspect.signature`` of its processor's ``__call__``, on every call of every layer,
   to warn about keywords the processor would ignore. ``cache_attention_signatures``
   gives that module an ``inspect`` whose ``signature`` of a bound method is computed once
   per function (a method's signature is its function's, less ``self``): the check is
   the same, without the rebuild.

The images are the same bit for bit (tests/pipelines/test_call_overhead.py);
``benchmarks/call_overhead.py`` measures what each saves. Both undo with
``untrim_call_overhead`` (the benchmark's baseline).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# The attribute a pinned pipeline keeps its execution device in.
_DEVICE_ATTRIBUTE = "_kiln_execution_device"


def trim_call_overhead(pipe: Any) -> None:
    """Both trims on ``pipe`` (the signature cache is process-wide, installed once)."""
    pin_execution_device(pipe)
    cache_attention_signatures()


def untrim_call_overhead(pipe: Any) -> None:
    """``pipe`` as diffusers made it, and diffusers' own ``inspect`` back (benchmarks)."""
    pipe.__class__ = diffusers_class(pipe)
    _set_attention_inspect(inspect)


def diffusers_class(pipe: Any) -> type:
    """The diffusers class of ``pipe``, pinned or not (a pinned pipeline's class is a
    subclass of it, of the same name)."""
    return getattr(type(pipe), "_kiln_pinned_from", type(pipe))


def pin_execution_device(pipe: Any) -> bool:
    """Give ``pipe`` the execution device it has now, found once (see the module doc);
    False, and ``pipe`` unchanged, when a component carries offloading hooks."""
    cls = type(pipe)
    if getattr(cls, "_kiln_pinned_from", None) is not None:
        return True
    if _offloaded(pipe):
        logger.info("%s has offloading hooks: its execution device stays asked", cls.__name__)
        return False
    setattr(pipe, _DEVICE_ATTRIBUTE, pipe._execution_device)
    pipe.__class__ = _pinned_class(cls)
    return True


@functools.cache
def _pinned_class(cls: type) -> type:
    """``cls`` with its execution device pinned: one subclass of the same name a class."""
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "_execution_device": property(_pinned_device),
        "_kiln_pinned_from": cls,
    }
    return type(cls.__name__, (cls,), namespace)


def _pinned_device(pipe: Any) -> Any:
    return getattr(pipe, _DEVICE_ATTRIBUTE)


def _offloaded(pipe: Any) -> bool:
    """Whether a component of ``pipe`` has accelerate's or diffusers' offloading hooks."""
    import torch
    from diffusers.hooks.group_offloading import _get_group_onload_device

    for component in pipe.components.values():
        if not isinstance(component, torch.nn.Module):
            continue
        if any(hasattr(module, "_hf_hook") for module in component.modules()):
            return True
        try:
            _get_group_onload_device(component)
        except ValueError:  # diffusers' answer for "no group offloading here"
            continue
        return True
    return False


class _CachedSignatures:
    """``inspect`` as diffusers' attention module uses it, with ``signature`` of a bound
    method computed once per function; everything else is ``inspect``'s own."""

    def __init__(self) -> None:
        self._of: dict[Callable[..., Any], inspect.Signature] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(inspect, name)

    def signature(self, obj: Any, *args: Any, **kwargs: Any) -> inspect.Signature:
        function = getattr(obj, "__func__", None)
        if function is None or args or kwargs:
            return inspect.signature(obj, *args, **kwargs)
        found = self._of.get(function)
        if found is None:
            found = self._of[function] = inspect.signature(obj)
        return found


_CACHED_SIGNATURES = _CachedSignatures()


def cache_attention_signatures() -> None:
    """Install the signature cache in ``diffusers.models.attention_processor`` (once)."""
    _set_attention_inspect(_CACHED_SIGNATURES)


def _set_attention_inspect(value: Any) -> None:
    from diffusers.models import attention_processor

    if getattr(attention_processor, "inspect", None) is None:
        return  # a diffusers without the module-level import: nothing to replace
    attention_processor.inspect = value
