"""Slow work said before it starts: each model's forward measured on this machine, now (timed again
as the load changes), and a gate that shows the estimated time of anything longer than :data:`SLOW_SECONDS`, waits for the user to start it and,
for work that reports its progress, runs it on a thread of its own with a progress bar and a Stop
button in its place."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import streamlit as st

from tokenfusion.explain import ForwardCost, Progress, Request, forward_passes, measure_forward

from . import timing
from .state import LoadedModel, exclusive
from .ui import duration, fragment

__all__ = ["SLOW_SECONDS", "Job", "Stopped", "forward_cost", "may_start", "stop_others"]

#: Work estimated above this many seconds waits for a click.
SLOW_SECONDS = 5.0
#: How often the progress bar of running work is redrawn.
POLL_SECONDS = 1.0
#: How old the timing of a model's forward may be before it is timed again (the load changes).
PACE_SECONDS = 15.0
_PACES: dict[str, tuple[float, float]] = {}  # model key -> (when timed, seconds of one forward then)
_STARTED = "_slow_work_started"
_JOBS = "_slow_work_jobs"


class Stopped(Exception):
    """Raised inside work whose Stop button was clicked."""


@dataclass
class Job:
    """Work running on a thread of its own: ``done`` of ``total`` ``unit`` so far (as its ``progress``
    reports them), the ``estimate`` in seconds it started with, and its ``error``."""

    estimate: float
    unit: str = "forward passes"
    total: int = 0
    done: int = 0
    error: BaseException | None = None
    started: float = field(default_factory=time.perf_counter)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def report(self, done: int, total: int) -> None:
        """The work's ``progress``: keeps the count, and raises :class:`Stopped` once Stop was clicked."""
        if self.stop.is_set():
            raise Stopped
        self.done, self.total = done, total

    def start(self, work: Callable[[Progress], object]) -> None:
        """Run ``work(self.report)`` on a daemon thread; its error is kept in ``error``."""
        def run() -> None:
            try:
                work(self.report)
            except BaseException as error:  # noqa: BLE001 - handed to the page's thread, which raises it
                self.error = error

        self.thread = threading.Thread(target=run, name="tokenfusion-slow-work", daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def seconds_left(self) -> float:
        """From the pace so far; the estimate before the first pass is done."""
        elapsed = time.perf_counter() - self.started
        if self.done == 0 or self.total == 0:
            return max(self.estimate - elapsed, 0.0)
        return elapsed / self.done * (self.total - self.done)


@st.cache_resource(max_entries=32, show_spinner=False, hash_funcs={LoadedModel: lambda loaded: loaded.key})
def _measured(loaded: LoadedModel, batched: bool) -> ForwardCost:
    """The model's forward, measured once per model (see :func:`~tokenfusion.explain.measure_forward`): of
    one image, and with ``batched`` of a batch too (several times longer: only for work that runs in
    batches). That timing is the model's pace now (:func:`_pace` need not time it again at once)."""
    with exclusive(loaded) as model:
        cost = measure_forward(model) if batched else measure_forward(model, budget=0.0)
    _PACES[loaded.key] = (time.monotonic(), cost.seconds)
    return cost


def _pace(loaded: LoadedModel, measured: float) -> float:
    """Seconds of one forward of one image now: timed again (three forwards) once the last timing is
    older than :data:`PACE_SECONDS`, unless the model is busy (then the last timing, or ``measured``)."""
    when, seconds = _PACES.get(loaded.key, (-PACE_SECONDS, measured))
    if time.monotonic() - when >= PACE_SECONDS:
        with exclusive(loaded, wait=False) as model:
            if model is not None:
                seconds = measure_forward(model, budget=0.0).seconds
                _PACES[loaded.key] = (time.monotonic(), seconds)
    return seconds


def forward_cost(loaded: LoadedModel, request: Request | None = None) -> ForwardCost:
    """The model's forward as measured once, scaled to this machine's pace now (:func:`_pace`), so
    estimates and the Start threshold hold when the load changes. Given the ``request`` it is for, a
    batch is timed only when that request runs in batches (its estimate alone reads the batched time)."""
    with timing.phase("estimates"):
        cost = _measured(loaded, batched=False)
        if request is None or forward_passes(loaded.model, cost, request).batched:
            cost = _measured(loaded, batched=True)
        scale = _pace(loaded, cost.seconds) / cost.seconds
    return replace(cost, seconds=cost.seconds * scale, batched=cost.batched * scale)


def stop_others(request: tuple) -> None:
    """Stop this session's running work of the same kind as ``request`` (its first item: "compare",
    "randomisation"...) but for another request: a map chosen while the previous one is computed. The
    old work ends after its batch and keeps nothing, so the model's lock is free for the new one,
    instead of the page waiting, behind a spinner, for work nobody looks at any more."""
    jobs: dict[tuple, Job] = st.session_state.get(_JOBS, {})
    for other in [r for r, job in jobs.items() if r[0] == request[0] and r != request and job.running]:
        jobs.pop(other).stop.set()


def may_start(request: tuple, seconds: float, what: str, work: Callable[[Progress], object] | None = None, *,
              basis: str = "the measured time of one forward pass times the passes it needs",
              unit: str = "forward passes", asked: bool = False) -> bool:
    """True when the work named by ``request`` (a hashable description: model, image, method...)
    is quick (estimated ``seconds`` at most :data:`SLOW_SECONDS`) or finished before in this
    session (its results are cached); otherwise shows ``what`` with its estimated time (from ``basis``)
    and a button.

    Without ``work``, True only on the run its button was clicked (the page computes it then).
    With ``work`` (which computes and caches the results, calling its ``progress(done, total)``
    between batches), the click runs it on a thread while a progress bar with the time left and a
    Stop button stand in its place (counting ``unit``); True on the run after it has finished.
    Stopped work keeps nothing and says so; an error raised by the work is raised here. ``asked``:
    the user already asked for this work (a toggle), so ``work`` starts without a Start button."""
    started = st.session_state.setdefault(_STARTED, set())
    if seconds <= SLOW_SECONDS or request in started:
        return True
    jobs: dict[tuple, Job] = st.session_state.setdefault(_JOBS, {})
    job = jobs.get(request)
    if job is not None and not job.running:
        del jobs[request]
        if job.error is None:
            started.add(request)
            return True
        if not isinstance(job.error, Stopped):
            raise job.error
        st.info(f"Stopped: {what} was not finished, and nothing of it was kept.", icon=":material/stop_circle:")
    elif job is not None:
        _watch(request, what)
        return False
    if not (asked and work is not None and job is None):
        st.info(f"{what} takes about {duration(seconds)} on this machine (estimated from {basis}).",
                icon=":material/schedule:")
        if not st.button(f"Start ({duration(seconds)})", key=f"start:{hash(request)}"):
            return False
    if work is None:
        started.add(request)
        return True
    jobs[request] = job = Job(seconds, unit)
    job.start(work)
    _watch(request, what)
    return False


@fragment(run_every=POLL_SECONDS)
def _watch(request: tuple, what: str) -> None:
    """The progress of running work and its Stop button, redrawn on a timer; the whole page reruns
    once the work has ended (to draw its results, or say it was stopped)."""
    job = st.session_state.get(_JOBS, {}).get(request)
    if job is None or not job.running:
        st.rerun()
    stopping = job.stop.is_set()
    text = (f"Stopping {what}…" if stopping else
            f"{what}: {job.done} of {job.total or '?'} {job.unit}, about {duration(job.seconds_left())} left")
    st.progress(job.done / job.total if job.total else 0.0, text=text)
    st.button("Stop", key=f"stop:{hash(request)}", on_click=job.stop.set, disabled=stopping,
              help="Ends the computation after the batch it is running; nothing of it is kept.")
