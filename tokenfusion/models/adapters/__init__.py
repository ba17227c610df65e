"""Models of other libraries explained through a declared structure, as our own are.

``create_adapted("timm", "deit_small_patch16_224")`` builds a library model (random weights; nothing
is downloaded) and wraps it in an :class:`AdaptedModel`; ``adapt(net, library, name)`` wraps one the
caller built. A checkpoint of an adapted model stores an :class:`AdaptedConfig`, which
:func:`build_adapted` turns back into the model. A user's own module needs no adapter: give it a
``structure`` (a :class:`~tokenfusion.models.ModelStructure`) and a traced forward (``docs/own_model.md``).
"""
from __future__ import annotations

from dataclasses import replace

from torch import nn

from .config import LIBRARIES, AdaptedConfig
from .model import AdaptedModel, TokenSource, TokenTap

__all__ = ["LIBRARIES", "AdaptedConfig", "AdaptedModel", "TokenSource", "TokenTap", "adapt", "build_adapted",
           "create_adapted"]


def adapt(net: nn.Module, library: str, name: str) -> AdaptedModel:
    """``net`` (built by ``library`` as ``name``) wrapped with its declared structure."""
    if library == "timm":
        from .timm_models import adapt_timm

        return adapt_timm(net, name)
    if library == "torchvision":
        from .torchvision_models import adapt_torchvision

        return adapt_torchvision(net, name)
    raise ValueError(f"Unknown library {library!r}. Expected one of {list(LIBRARIES)}")


def create_adapted(library: str, name: str, *, num_classes: int | None = None) -> AdaptedModel:
    """The ``library`` model ``name`` with random weights (``num_classes`` outputs, default the library's),
    adapted. ``ValueError`` for a name the library does not know."""
    classes = {} if num_classes is None else {"num_classes": num_classes}
    if library == "timm":
        import timm

        if not timm.is_model(name):
            raise ValueError(f"timm has no model {name!r}; timm.list_models() lists them.")
        net = timm.create_model(name, pretrained=False, **classes)
    elif library == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            raise ValueError(f"torchvision has no model {name!r}; torchvision.models.list_models() lists them.")
        net = torchvision.models.get_model(name, weights=None, **classes)
    else:
        raise ValueError(f"Unknown library {library!r}. Expected one of {list(LIBRARIES)}")
    return adapt(net.eval(), library, name)


def build_adapted(config: AdaptedConfig) -> AdaptedModel:
    """The model ``config`` describes (random weights), with its normalisation and crop. ``ValueError`` when
    the library builds a model of another shape than the config records."""
    model = create_adapted(config.library, config.name, num_classes=config.num_classes)
    built = replace(model.config, mean=config.mean, std=config.std, crop_pct=config.crop_pct)
    if built != config:
        raise ValueError(f"{config.library} builds {config.name!r} as {built}, not as recorded ({config}); "
                         "the library's version may differ from the one that wrote the file")
    model.config = built
    return model
