"""The cost model of the explanations: the passes it counts are the passes the methods make."""
from __future__ import annotations

import pytest
import torch

from tokenfusion.explain import Explainer, Request, available_methods, estimate_seconds, forward_passes, measure_forward


class Counter:
    """Images that go through ``model``'s forward, and those whose output is sent backward."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.forwards = self.backwards = 0
        self.handle = model.register_forward_hook(self._seen)

    def _seen(self, _module: torch.nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
        images = args[0].shape[0]
        self.forwards += images
        output = output[0] if isinstance(output, tuple) else output  # a traced forward: (logits, trace)
        if output.requires_grad:
            output.register_hook(lambda grad: self._back(images))

    def _back(self, images: int) -> None:
        self.backwards += images


@pytest.mark.parametrize("arch", ["early", "layerwise"])
def test_counted_passes_are_the_passes_each_method_makes(tiny, image, arch: str) -> None:
    model = tiny(arch)
    cost = measure_forward(model, repeats=1)
    session = Explainer(model, image())
    counter = Counter(model)
    try:
        for info in available_methods(model):
            layer, kind = info.targets[0]  # a target other than the default, where there is one
            counter.forwards = counter.backwards = 0
            session.explain(info.name, layer, kind=kind)
            passes = forward_passes(model, cost, Request.of(info.name, layer, kind))
            assert (passes.forwards, passes.backwards) == (counter.forwards, counter.backwards), info.name
    finally:
        counter.handle.remove()


def test_options_change_the_count_and_the_estimate(tiny) -> None:
    model = tiny("early")
    cost = measure_forward(model, repeats=1)
    side = model.config.img_size
    assert cost.channels["trunk.stage2"] == model(torch.zeros(1, 3, side, side), trace=True)[1].cnn_features[-1].shape[1]
    few, many = (forward_passes(model, cost, Request.of("integrated_gradients", n_steps=n)) for n in (8, 64))
    assert (few.forwards, many.forwards) == (8, 64) and many.backwards == 64  # the session has the logits
    coarse, fine = (forward_passes(model, cost, Request.of("occlusion", stride=s)) for s in (1.0, 0.5))
    assert coarse.forwards < fine.forwards
    assert estimate_seconds(model, cost, Request.of("attention")) == 0  # read from the session's traced forward
    seconds = {m: estimate_seconds(model, cost, Request(m)) for m in ("scorecam", "gradcam")}
    assert seconds["scorecam"] > seconds["gradcam"] > 0


def test_scorecam_topk_costs_one_pass_per_scored_channel(tiny, image) -> None:
    model = tiny("early")
    cost = measure_forward(model, repeats=1)
    session = Explainer(model, image())
    counter = Counter(model)
    try:
        session.explain("scorecam_topk", channels=8)
    finally:
        counter.handle.remove()
    assert forward_passes(model, cost, Request.of("scorecam_topk", channels=8)).forwards == counter.forwards == 9
    every = forward_passes(model, cost, Request.of("scorecam_topk", channels=10_000))
    assert every == forward_passes(model, cost, Request.of("scorecam"))  # no more passes than there are channels
    assert estimate_seconds(model, cost, Request.of("scorecam_topk", channels=8)) < estimate_seconds(model, cost,
                                                                                        Request("scorecam"))


@pytest.mark.parametrize("method,options", [("scorecam_topk", {"channels": 40, "batch_size": 16}),
                                            ("integrated_gradients", {"n_steps": 10, "internal_batch_size": 4}),
                                            ("occlusion", {"window": 0.25, "perturbations_per_eval": 4}),
                                            ("smoothgrad", {"n_samples": 6, "batch_size": 2})])
def test_progress_counts_every_batch_up_to_the_estimated_passes(tiny, image, method, options) -> None:
    model = tiny("early")
    cost = measure_forward(model, repeats=1)
    calls: list[tuple[int, int]] = []
    session = Explainer(model, image())
    plain = session.explain(method, **options)  # SmoothGrad draws its noise from its own seed: the same twice
    reported = session.explain(method, progress=lambda done, total: calls.append((done, total)), **options)
    total = forward_passes(model, cost, Request.of(method, **options)).forwards
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls) and [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) > 3  # between batches, not only at the end
    torch.testing.assert_close(reported.map, plain.map)  # watching changes nothing


class Stop(Exception):
    pass


@pytest.mark.parametrize("method", ["scorecam", "integrated_gradients", "occlusion"])
def test_an_error_raised_by_progress_stops_the_method_at_once(tiny, image, hook_count, method) -> None:
    model = tiny("early")
    hooks = hook_count(model)
    session = Explainer(model, image())
    seen: list[int] = []

    def stop_after_one_batch(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        session.explain(method, progress=stop_after_one_batch)
    total = forward_passes(model, measure_forward(model, repeats=1), Request(method)).forwards
    assert len(seen) == 2 and seen[-1] < total
    assert hook_count(model) == hooks  # no hook of the counter or the CAM left behind
    torch.testing.assert_close(session.explain(method).map, Explainer(model, image()).explain(method).map)


def test_faithfulness_reports_the_maps_passes_then_both_curves(tiny, image) -> None:
    model = tiny("early")
    session = Explainer(model, image())
    calls: list[tuple[int, int]] = []
    reported = session.faithfulness("occlusion", steps=5, progress=lambda done, total: calls.append((done, total)))
    total = forward_passes(model, measure_forward(model, repeats=1), Request.of("occlusion")).forwards + 2 * 6
    assert calls[0] == (0, total) and calls[-1] == (total, total) and all(t == total for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and (total - 6, total) in calls
    torch.testing.assert_close(reported.deletion.scores, session.faithfulness("occlusion", steps=5).deletion.scores)


def test_randomisation_reports_each_map_and_stops_when_told(tiny, image) -> None:
    model = tiny("early")
    session = Explainer(model, image())
    calls: list[tuple[int, int]] = []
    check = session.randomisation("gradcam", steps=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)] and len(check.correlations) == 3

    def stop_after_the_first_copy(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        session.randomisation("gradcam", steps=3, progress=stop_after_the_first_copy)
