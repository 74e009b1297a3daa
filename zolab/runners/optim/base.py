"""Shared machinery of the zeroth-order optimizers (torch.optim style).

A ZO step draws ``n_samples`` seeds from a stream that depends only on ``(seed, step, k)``, so a
run is replayable: its whole trajectory is the list of ``(seed, projected_grad)`` pairs in
:attr:`ZOOptimizer.trajectory`. Every change of the weights goes through a
:class:`~zolab.runners.kernels.PerturbationBackend` (``apply``: ``p <- (1-d) p + sum alpha z``),
so z is regenerated from the seed, never stored (unless ``in_place=False``: see
:class:`MaterialisedBackend`).

Loss evaluations go through an *oracle*: live steps evaluate the closure under ``torch.no_grad``;
:meth:`ZOOptimizer.replay` runs the very same sequence of weight operations with the recorded
projected gradients instead of forwards, so a resumed run is bit-identical to an uninterrupted one.

The projected gradient comes from one of three estimators (``RunConfig.estimator``, see
:meth:`ZOOptimizer.probe`): ``central`` (two-point SPSA, MeZO), ``forward`` (one-sided, ZO-Bench
``perturbation_mode=one_side``, L(theta) shared by the q probes) or ``one-point`` (residual feedback).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zolab.runners.config import ESTIMATORS
from zolab.runners.errors import NonFiniteLossError
from zolab.runners.kernels import PerturbationBackend, TorchBackend

Closure = Callable[[], Any]
_SEED_SPACE = (1 << 53) - 1  # JSON-safe integers
Terms = list[tuple[int, float]]


def stream_seed(seed: int, step: int, sample: int = 0) -> int:
    """Seed of sample ``sample`` at step ``step`` of a run seeded ``seed`` (deterministic, well spread)."""
    digest = hashlib.blake2b(f"zolab:{seed}:{step}:{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _SEED_SPACE


class LiveOracle:
    """Evaluates the closure (one forward each call), refusing non-finite losses."""

    replaying = False

    def __init__(self, closure: Closure, step: int) -> None:
        self.closure = closure
        self.step = step

    def loss(self) -> float:
        with torch.no_grad():
            return self.check(float(self.closure()))

    def check(self, value: float) -> float:
        if not math.isfinite(value):
            raise NonFiniteLossError(self.step, value)
        return value

    def grad(self, compute: Callable[[], float]) -> float:
        return compute()


class ReplayOracle:
    """Stands in for forwards during replay: losses are unknown, projected gradients are recorded."""

    replaying = True

    def __init__(self, grads: Sequence[float]) -> None:
        self._grads = list(grads)
        self._next = 0

    def loss(self) -> float:
        return math.nan

    def grad(self, compute: Callable[[], float]) -> float:
        g = self._grads[self._next]
        self._next += 1
        return g


Oracle = LiveOracle | ReplayOracle


class MaterialisedBackend:
    """Naive ZO (``in_place=False``): z of every parameter is drawn once per seed and held for the step.

    Same z values and the same sequence of additions as the wrapped backend's in-place path, so the
    update is identical; only memory differs (one extra model-sized copy per sampled direction).
    """

    def __init__(self, inner: PerturbationBackend) -> None:
        self.inner = inner
        self.name = f"materialised-{inner.name}"
        self._held: dict[tuple[int, int], torch.Tensor] = {}

    def z(self, p: torch.Tensor, seed: int, index: int) -> torch.Tensor:
        key = (seed, index)
        if key not in self._held:
            self._held[key] = self.inner.z(p, seed, index)
        return self._held[key]

    @torch.no_grad()
    def apply(self, params: Sequence[torch.Tensor], terms: Sequence[tuple[int, float]],
              decay: Sequence[float] | None = None) -> None:
        zs = {seed: [self.z(p, seed, i) for i, p in enumerate(params)] for seed, _ in terms}
        for i, p in enumerate(params):
            if decay is not None and decay[i]:
                p.mul_(1.0 - decay[i])
            for seed, alpha in terms:
                if alpha:
                    p.add_(zs[seed][i], alpha=alpha)

    def release(self) -> None:
        self._held.clear()


def probe_forwards(estimator: str, n_samples: int) -> int:
    """Forward passes of an estimator's probes: central 2q, forward q + 1, one-point 1."""
    return {"central": 2 * n_samples, "forward": n_samples + 1, "one-point": 1}[estimator]


@dataclass
class Probe:
    """One step's estimate: the q projected gradients, the loss to report, the terms that restore theta,
    and ``L(theta)`` itself when the estimator evaluated it (forward)."""

    grads: list[float]
    loss: float
    pending: Terms
    theta_loss: float | None = None


class ZOOptimizer(torch.optim.Optimizer):
    """Base of the ZO family: param groups, seed stream, estimators, trajectory, replay.

    Subclasses implement :meth:`_update` (``grads`` are the q projected gradients of the step;
    ``pending`` the terms that bring the weights back to theta, for the update to fuse) or
    override :meth:`_zo_step` entirely (forward-gradient, conservative).
    """

    needs_grad = False

    #: whether this method's update is a multiple of the step's z (it can then leave the weights at
    #: ``theta + eps z`` of the next step: ``lookahead``); see :meth:`lookahead_blocker`
    supports_lookahead = False

    def __init__(self, params: Iterable[Any], *, lr: float, eps: float = 1e-3, weight_decay: float = 0.0,
                 n_samples: int = 1, seed: int = 0, backend: PerturbationBackend | None = None,
                 in_place: bool = True, lookahead: bool = False, estimator: str = "central",
                 settle_after: Callable[[int], bool] | None = None, **extra: Any) -> None:
        if not lr > 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not eps > 0:
            raise ValueError(f"invalid perturbation scale eps: {eps}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        if int(n_samples) < 1:
            raise ValueError(f"invalid n_samples: {n_samples}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator {estimator!r} is not one of {', '.join(ESTIMATORS)}")
        if estimator == "one-point" and int(n_samples) != 1:
            raise ValueError("estimator one-point (residual feedback, one-point-rf) uses one direction per step: "
                             f"n_samples must be 1, got {n_samples}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, **extra))
        if len({g["lr"] for g in self.param_groups}) != 1:
            raise ValueError("ZO optimizers share one lr across param groups (z is shared across groups)")
        self.eps = float(eps)
        self.n_samples = int(n_samples)
        self.seed = int(seed)
        self.estimator = estimator
        inner = backend or TorchBackend()
        self.backend: PerturbationBackend = inner if in_place else MaterialisedBackend(inner)
        self.in_place = in_place
        self.step_count = 0
        self.trajectory: list[tuple[int, float]] = []
        self.prev_loss: float | None = None   # one-point: L(theta_{t-1} + eps z_{t-1}), not in the trajectory
        self.lookahead = False
        self.settle_after: Callable[[int], bool] = lambda step: False
        self._ahead: int | None = None   # seed whose +eps z is already on the weights (lookahead)
        if lookahead:
            self.enable_lookahead(settle_after)
        elif settle_after is not None:
            self.settle_after = settle_after

    # -- parameters --------------------------------------------------------------------------
    @property
    def params(self) -> list[torch.Tensor]:
        """All parameters in group order; a parameter's position is its z index."""
        return [p for g in self.param_groups for p in g["params"]]

    @property
    def lr(self) -> float:
        return float(self.param_groups[0]["lr"])

    @property
    def forwards_per_step(self) -> int:
        """Closure calls (forward passes) per step: the estimator's plus the method's own."""
        return probe_forwards(self.estimator, self.n_samples) + self.extra_forwards

    #: forwards a method adds to its estimator's (zo-cons: its candidates)
    extra_forwards = 0

    def decays(self, scale: float | None = None) -> list[float] | None:
        """Per-parameter multiplicative decay ``lr * weight_decay`` (None when all zero)."""
        lr = self.lr if scale is None else scale
        out = [lr * g["weight_decay"] for g in self.param_groups for _ in g["params"]]
        return out if any(out) else None

    def perturb(self, terms: Sequence[tuple[int, float]], decay: Sequence[float] | None = None) -> None:
        """``p <- (1 - decay) p + sum alpha z(seed)`` for every parameter, in place."""
        self.backend.apply(self.params, terms, decay)

    # -- the step ----------------------------------------------------------------------------
    def seeds_for(self, step: int) -> list[int]:
        return [stream_seed(self.seed, step, k) for k in range(self.n_samples)]

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> float:  # type: ignore[override]
        """One ZO step; ``closure()`` returns the loss on the current batch (:attr:`forwards_per_step` calls)."""
        if closure is None:
            raise ValueError(f"{type(self).__name__} needs a closure that returns the loss")
        seeds = self.seeds_for(self.step_count)
        loss, grads = self._zo_step(seeds, LiveOracle(closure, self.step_count + 1))  # 1-based, as reported
        self._finish(seeds, grads)
        return loss

    def begin_replay(self, state: dict[str, Any]) -> None:
        """Called with a checkpoint's ``optimizer_state`` before its trajectory is replayed (a method whose
        weight operations depend on more than the projected gradients reads that here: zo-cons)."""

    @torch.no_grad()
    def replay(self, records: Sequence[tuple[int, float]]) -> None:
        """Re-apply one recorded step (its q ``(seed, projected_grad)`` pairs) without forwards."""
        seeds = self.seeds_for(self.step_count)
        got = [int(s) for s, _ in records]
        if got != seeds:
            raise ValueError(f"trajectory step {self.step_count}: seeds {got} do not match the run's stream {seeds}")
        _, grads = self._zo_step(seeds, ReplayOracle([float(g) for _, g in records]))
        self._finish(seeds, grads)

    def _finish(self, seeds: Sequence[int], grads: Sequence[float]) -> None:
        self.trajectory.extend(zip(seeds, (float(g) for g in grads)))
        self.step_count += 1
        if isinstance(self.backend, MaterialisedBackend):
            self.backend.release()

    def _zo_step(self, seeds: Sequence[int], oracle: Oracle) -> tuple[float, list[float]]:
        probe = self.probe(seeds, oracle)
        self._update(seeds, probe.grads, probe.pending)
        return probe.loss, probe.grads

    # -- estimators --------------------------------------------------------------------------
    def estimate(self, seeds: Sequence[int], oracle: Oracle) -> tuple[list[float], float, Terms]:
        """``(grads, loss, pending)`` of :meth:`probe` (weights left at theta + the negation of ``pending``)."""
        probe = self.probe(seeds, oracle)
        return probe.grads, probe.loss, probe.pending

    def probe(self, seeds: Sequence[int], oracle: Oracle) -> Probe:
        """The q projected gradients of the step by ``self.estimator``.

        * ``central`` (MeZO, large_models/trainer.py ``zo_step`` l.757-788; ZO-Bench zo-bench/trainer.py
          ``zo_step`` l.1036-1042): ``g_k = (L(theta + eps z_k) - L(theta - eps z_k)) / (2 eps)``, 2q forwards.
        * ``forward`` (ZO-Bench ``perturbation_mode == "one_side"``, trainer.py l.1032-1035):
          ``g_k = (L(theta + eps z_k) - L(theta)) / eps`` with ``L(theta)`` evaluated once and shared by the q
          probes (ZO-Bench evaluates it again per probe): q + 1 forwards.
        * ``one-point`` (residual feedback, Zhang et al. 2022, "A new one-point residual-feedback oracle for
          black-box learning and control"): ``g_t = (L(theta_t + eps z_t) - L(theta_{t-1} + eps z_{t-1})) / eps``,
          one forward; the first step has no previous value: ``g_0 = 0`` (no move).

        Each probe's restoring pass is fused with the next probe's ``+eps``; the last one is returned as
        ``pending`` so the update can fuse it too.
        """
        if self.estimator == "forward":
            return self._forward(seeds, oracle)
        if self.estimator == "one-point":
            return self._one_point(seeds, oracle)
        return self._central(seeds, oracle)

    def _first_plus(self, seed: int, pending: Terms) -> None:
        """Bring the weights to ``theta + eps z_seed`` (already there when the last step looked ahead)."""
        if self._ahead is None:
            self.perturb(pending + [(seed, self.eps)])
            return
        if self._ahead != seed or pending:
            raise RuntimeError(f"step {self.step_count}: weights carry +eps z of seed {self._ahead}, "
                               f"the step's first seed is {seed}")
        self._ahead = None                     # already at theta + eps z_seed: no pass

    def _central(self, seeds: Sequence[int], oracle: Oracle) -> Probe:
        eps = self.eps
        grads: list[float] = []
        losses: list[float] = []
        pending: Terms = []
        for s in seeds:
            self._first_plus(s, pending)
            lp = oracle.loss()
            self.perturb([(s, -2.0 * eps)])
            lm = oracle.loss()
            grads.append(oracle.grad(lambda lp=lp, lm=lm: (lp - lm) / (2.0 * eps)))
            losses.append(0.5 * (lp + lm))
            pending = [(s, eps)]
        return Probe(grads, sum(losses) / len(losses), pending)

    def _forward(self, seeds: Sequence[int], oracle: Oracle) -> Probe:
        if self._ahead is not None:          # lookahead is refused for this estimator (lookahead_blocker)
            raise RuntimeError("estimator forward starts at theta: the weights must not carry a lookahead")
        eps = self.eps
        base = oracle.loss()                 # L(theta), once for the q probes
        grads: list[float] = []
        pending: Terms = []
        for s in seeds:
            self.perturb(pending + [(s, eps)])
            lp = oracle.loss()
            grads.append(oracle.grad(lambda lp=lp: (lp - base) / eps))
            pending = [(s, -eps)]
        return Probe(grads, base, pending, theta_loss=base)

    def _one_point(self, seeds: Sequence[int], oracle: Oracle) -> Probe:
        (s,) = seeds
        self._first_plus(s, [])
        value = oracle.loss()
        prev = self.prev_loss
        g = oracle.grad(lambda: 0.0 if prev is None else (value - prev) / self.eps)
        if not oracle.replaying:             # a replay restores prev_loss from the checkpoint (zo_state)
            self.prev_loss = value
        return Probe([g], value, [(s, -self.eps)])

    def _update(self, seeds: Sequence[int], grads: Sequence[float], pending: Terms) -> None:
        raise NotImplementedError

    # -- cross-step fusion (lookahead) -------------------------------------------------------
    def lookahead_blocker(self) -> str | None:
        """Why this optimizer cannot fuse across steps (None: it can).

        Lookahead needs an update that is a multiple of the step's z (so the next ``+eps z'`` can join
        its pass), weights updated in place, and an estimator whose first forward is at
        ``theta + eps z`` (central, one-point). The forward estimator's first forward is at theta itself:
        there is no pass to save, so it keeps the plain schedule (2 passes a step for q = 1 already).
        """
        if not self.supports_lookahead:
            return ""
        if not self.in_place:
            return "with in_place=False"
        if self.estimator == "forward":
            return "with estimator forward (its first forward is at theta: no pass to save)"
        return None

    def enable_lookahead(self, settle_after: Callable[[int], bool] | None = None) -> None:
        """Leave the weights at the next step's ``theta + eps z`` between steps, except after the steps where
        ``settle_after(step)`` is true. Before the first step only."""
        reason = self.lookahead_blocker()
        if reason is not None:
            raise ValueError(f"{type(self).__name__} cannot fuse across steps (lookahead) {reason}".rstrip())
        if self.step_count or not self.settled:
            raise RuntimeError("enable lookahead before the first step")
        self.lookahead = True
        self.settle_after = settle_after or (lambda step: False)

    def ahead_terms(self) -> Terms:
        """``[(next step's first seed, +eps)]`` to fuse into this step's last pass, or ``[]``.

        With ``lookahead`` the weights are left at ``theta_{t+1} + eps z_{t+1}`` between steps, so a
        step costs two weight passes (``-2 eps z``; restore + update + next ``+eps``) instead of
        three (one instead of two for the one-point estimator). Not after a step where
        ``settle_after(step)`` is true (the caller reads the weights there: evaluation, checkpoint,
        the end): live runs and replays decide alike, so a resumed run stays bit-identical.
        """
        done = self.step_count + 1
        if not self.lookahead or self.settle_after(done):
            return []
        return [(self.seeds_for(done)[0], self.eps)]

    def note_ahead(self, terms: Sequence[tuple[int, float]]) -> None:
        self._ahead = int(terms[0][0]) if terms else None

    @property
    def settled(self) -> bool:
        """True when the weights are theta itself (no next-step perturbation on them)."""
        return self._ahead is None

    @torch.no_grad()
    def settle(self) -> bool:
        """Take a lookahead perturbation off the weights (True if there was one). Callers that read
        the weights at a step ``settle_after`` did not announce use this; a replay will not repeat
        it, so such a run is exact but no longer bit-identical on resume."""
        if self._ahead is None:
            return False
        self.perturb([(self._ahead, -self.eps)])
        self._ahead = None
        return True

    def directional(self, seeds: Sequence[int], grads: Sequence[float]):
        """Yields (index, param, group, ghat) with ``ghat = (1/q) sum_k g_k z_k`` materialised for one param."""
        q = len(seeds)
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                ghat = torch.zeros_like(p)
                for s, g in zip(seeds, grads):
                    ghat.add_(self.backend.z(p, s, i), alpha=g / q)
                yield i, p, group, ghat
                i += 1

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def _drawing_backend(self) -> PerturbationBackend:
        """The backend that draws z (the naive path wraps it to hold each z for the step)."""
        return getattr(self.backend, "inner", self.backend)

    @property
    def z_stream(self) -> str:
        """Which backend's stream z is drawn from (each backend gives other values for a seed, same law)."""
        return self._drawing_backend.name

    def adopt_z_stream(self, kind: str) -> None:
        """Draw z from backend ``kind`` from now on, with the same law (a resume replays a checkpoint with
        the stream it was recorded with). Call it on the base weights: magnitude masks are prepared here."""
        from zolab.runners.kernels import get_backend  # noqa: WPS433 (the optimizer module needs no backend list)

        device = self.params[0].device if self.params else torch.device("cpu")
        inner = get_backend(kind, device, self._drawing_backend.law)
        if inner.name != kind:
            raise ValueError(f"kernel {kind!r} is not usable here (got {inner.name!r})")
        inner.prepare(self.params)
        self.backend = inner if self.in_place else MaterialisedBackend(inner)

    def zo_state(self) -> dict[str, Any]:
        """Small state that a trajectory replay cannot rebuild (one-point: the last perturbed loss)."""
        if not self.settled:
            raise RuntimeError(f"checkpoint at step {self.step_count} while the weights carry the next step's "
                               "perturbation: settle_after must include checkpoint steps")
        state: dict[str, Any] = {"step": self.step_count, "z_stream": self.z_stream}
        if self.estimator == "one-point":
            state["prev_loss"] = self.prev_loss
        return state

    def load_zo_state(self, state: dict[str, Any]) -> None:
        if "step" in state and int(state["step"]) != self.step_count:
            raise ValueError(f"optimizer state is for step {state['step']} but replay reached {self.step_count}")
        if self.estimator == "one-point":
            self.prev_loss = state.get("prev_loss")
