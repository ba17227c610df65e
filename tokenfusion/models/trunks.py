"""Convolutional trunks that turn an image into feature maps (the source of CNN tokens)."""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.models import resnet50
from torchvision.models.resnet import BasicBlock

__all__ = ["Trunk", "LocalTrunk", "TinyTrunk", "ResNet50Trunk", "build_trunk"]


class Trunk(nn.Module):
    """A CNN that returns one feature map per stage, shallow to deep.

    ``channels[i]`` and ``reductions[i]`` give the channels and stride of stage ``i``, and
    ``stage_names[i]`` the submodule that outputs it (a target for CAMs), ``receptive_fields[i]`` the
    side in pixels of the input square one position of stage ``i`` sees. Fusion
    models read CNN tokens from the last stage; ``layerwise`` also feeds earlier stages to
    earlier transformer blocks.
    """

    channels: tuple[int, ...]
    reductions: tuple[int, ...]
    stage_names: tuple[str, ...]
    receptive_fields: tuple[int, ...]

    def forward(self, x: Tensor) -> list[Tensor]:  # (B, 3, H, W) -> [(B, C_i, H/r_i, W/r_i)]
        raise NotImplementedError

    def grids(self, img_size: tuple[int, int]) -> list[tuple[int, int]]:
        """Feature-map size of each stage for an input of ``img_size``."""
        return [(-(-img_size[0] // r), -(-img_size[1] // r)) for r in self.reductions]


def _downsample(inplanes: int, planes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=2, bias=False), nn.BatchNorm2d(planes))


class _SmallTrunk(Trunk):
    """A 3x3 stride-2 stem and a residual stage (torchvision ``BasicBlock``, stride 4), then the second
    stage of :meth:`make_stage2` (stride 8): the teaching trunks, which differ in their second stage only.
    Modules are built in forward order, so a seed gives the same initial weights as it always did."""

    receptive_fields: tuple[int, int]

    def __init__(self, channels: tuple[int, int, int] = (32, 48, 96)) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)
        )
        self.stage1 = BasicBlock(c0, c1, stride=2, downsample=_downsample(c0, c1))
        self.stage2 = self.make_stage2(c1, c2)
        self.channels = (c1, c2)
        self.reductions = (4, 8)
        self.stage_names = ("stage1", "stage2")

    def make_stage2(self, c1: int, c2: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, x: Tensor) -> list[Tensor]:
        s1 = self.stage1(self.stem(x))
        return [s1, self.stage2(s1)]


class LocalTrunk(_SmallTrunk):
    """The teaching trunk: CNN tokens that see a local neighbourhood only (strides 4 and 8, receptive
    fields 15 and 19 px: under a third of a 64-px image). Its second stage is a 2x2 stride-2 and a 1x1
    convolution, which widen the features without widening what they see."""

    receptive_fields = (15, 19)

    def make_stage2(self, c1: int, c2: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(c1, c2, 2, stride=2, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
            nn.Conv2d(c2, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
        )


class TinyTrunk(_SmallTrunk):
    """The trunk of the SynthShapes v1 models: a second residual stage, strides 4 and 8, receptive fields
    15 and 39 px (most of a 48-px image)."""

    receptive_fields = (15, 39)

    def make_stage2(self, c1: int, c2: int) -> nn.Module:
        return BasicBlock(c1, c2, stride=2, downsample=_downsample(c1, c2))


class ResNet50Trunk(Trunk):
    """torchvision ResNet-50 up to ``layer3``; stages ``layer2`` (stride 8) and ``layer3`` (stride 16)."""

    def __init__(self) -> None:
        super().__init__()
        net = resnet50(weights=None)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.channels = (512, 1024)
        self.reductions = (8, 16)
        self.stage_names = ("layer2", "layer3")
        self.receptive_fields = (91, 267)

    def forward(self, x: Tensor) -> list[Tensor]:
        s2 = self.layer2(self.layer1(self.stem(x)))
        return [s2, self.layer3(s2)]

    def load_torchvision_state(self, state: dict[str, Tensor]) -> None:
        """Load a torchvision ResNet-50 ``state_dict`` (``layer4`` and ``fc`` are ignored)."""
        renamed = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in ("conv1", "bn1"):
                renamed[f"stem.{0 if head == 'conv1' else 1}.{rest}"] = value
            elif head in ("layer1", "layer2", "layer3"):
                renamed[key] = value
        missing, _ = self.load_state_dict(renamed, strict=False)
        if missing:
            raise ValueError(f"not a torchvision ResNet-50 state dict: missing {missing[:5]}...")


TRUNKS = ("local", "tiny", "resnet50")


def build_trunk(name: str, tiny_channels: tuple[int, int, int]) -> Trunk:
    """The trunk ``name`` (one of :data:`TRUNKS`); ``tiny_channels`` are the channels of the small ones."""
    if name == "local":
        return LocalTrunk(tiny_channels)
    if name == "tiny":
        return TinyTrunk(tiny_channels)
    if name == "resnet50":
        return ResNet50Trunk()
    raise ValueError(f"Unknown trunk {name!r}. Expected one of {list(TRUNKS)}")
