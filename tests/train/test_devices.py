"""The GPU code paths run on a CPU too: ``--compile`` (inductor, gcc), ``--amp`` (bf16 autocast) and
``--channels-last``. Each trains two steps and must predict as the plain float32 run does."""
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tokenfusion.checkpoint import load_checkpoint
from tokenfusion.models import create
from train.engine import autocast

from .conftest import QUICK, run_train

PROBE = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _two_steps(arch: str, out: Path, *options: str) -> tuple[torch.Tensor, dict]:
    """Train ``arch`` two steps with ``options``: the trained model's logits on ``PROBE`` and its provenance."""
    quick = [a if a != "vit" else arch for a in QUICK]
    run_train(*quick, "--epochs", "1", "--max-steps", "2", "--warmup-epochs", "0", "--device", "cpu", *options,
              "--output-dir", str(out))
    checkpoint = load_checkpoint(out / "model.pt")
    with torch.inference_mode():
        return checkpoint.model(PROBE), checkpoint.provenance


@pytest.fixture(scope="module")
def eager(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], torch.Tensor]:
    """Logits after two plain float32 steps of an architecture (trained once), checked to have moved
    well away from the initial model's."""
    done: dict[str, torch.Tensor] = {}

    def logits(arch: str) -> torch.Tensor:
        if arch not in done:
            done[arch], provenance = _two_steps(arch, tmp_path_factory.mktemp(arch))
            assert (provenance["amp"], provenance["channels_last"], provenance["compile"]) == (False, False, False)
            torch.manual_seed(0)  # the engine seeds with --seed before building the model
            with torch.inference_mode():
                initial = create(arch, "tiny", img_size=32).eval()(PROBE)
            assert (done[arch] - initial).abs().max() > 0.05, "two steps did not change the predictions"
        return done[arch]

    return logits


def test_compiled_training_matches_eager(eager: Callable[[str], torch.Tensor], tmp_path: Path) -> None:
    """The one compile of the suite (about a minute on two cores): the ViT, the cheapest to compile."""
    logits, provenance = _two_steps("vit", tmp_path, "--compile")
    assert provenance["compile"] is True
    torch.testing.assert_close(logits, eager("vit"), rtol=0, atol=1e-4)  # measured: 3e-7


def test_bf16_autocast_and_channels_last_train_on_cpu(eager: Callable[[str], torch.Tensor], tmp_path: Path) -> None:
    """``early``: a CNN trunk (what channels-last is for) and patch tokens."""
    logits, provenance = _two_steps("early", tmp_path, "--amp", "--channels-last")
    assert (provenance["amp"], provenance["channels_last"]) == (True, True)
    difference = (logits - eager("early")).abs().max().item()  # measured: 6e-4; two steps move them 0.27
    assert 0 < difference < 2e-2, f"bf16 steps moved the logits by {difference:.2e} from the float32 steps"


def test_amp_means_a_bf16_forward_on_cpu() -> None:
    model = create("early", "tiny", img_size=32).eval().to(memory_format=torch.channels_last)
    x = PROBE.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        with autocast(torch.device("cpu"), True):
            assert model(x).dtype == torch.bfloat16
        with autocast(torch.device("cpu"), False):
            assert model(x).dtype == torch.float32
