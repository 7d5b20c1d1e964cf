"""Branch and bound over ReLU splits in β-CROWN's design (Wang et al. 2021): the native engine's
complete verifier.

A *domain* is one margin row of one example with a set of ReLU split decisions (a neuron
*active*: its input >= 0, or *inactive*: <= 0). A domain is bounded by CROWN's backward walk with
- the split neurons' relaxations made exact (their input bounds clamped at 0), and
- the split constraints themselves in the bound through Lagrangian multipliers β >= 0: the walk
  adds ``-β·s`` to a split neuron's input coefficients (s = +1 active, -1 inactive), which
  lowers the objective only where the constraint ``s·z >= 0`` is violated;
the unstable neurons' lower slopes (α) and the β optimised together by projected Adam; every
iterate is a sound bound, and a child keeps its parent's bound when its own is lower.
Intermediate bounds are the root's (full CROWN ∩ IBP) with the splits clamped in, not recomputed
per domain: the β terms carry a split's effect to the layers before it (β-CROWN's choice). Once
every unstable neuron of a domain is split its relaxation is exact and the optimal β make the
bound the LP optimum over the domain, so the search is complete up to the optimiser.

Per round each undecided example branches its ``domains_per_round`` domains with the lowest
bounds, on the neuron BaBSR (Bunel et al. 2020) scores highest, and the children of all examples
are bounded in one batched pass (chunked to the memory budget). A domain whose bound exceeds 0
is closed; an example is *verified* when its last domain closes, *falsified* when a point of its
box is misclassified by a plain forward pass (found by PGD from many random points and corners
before any bound - the counterexamples of these nets hide where one start of PGD rarely goes -,
or the minimiser of a domain's linear bound, a corner of the box, and a few PGD steps from it),
and *unknown* when its share of the rounds' time reaches ``timeout``, or would pass it in the
next round at the last round's cost per domain (so a limit is not overrun by a round). An
example's domains, their order and bounds are its own, so its verdict never depends on the
other examples of its batch.

An example the search has not decided within ``1 - milp_share`` of its time is handed, with the
rest of its time, to the exact MILP (:mod:`certlight.evaluation.milp`) on the margin rows whose
domains are still open, as α,β-CROWN hands its hardest properties to a MIP solver: on
DM-small nets the MILP decides most of the images the search leaves, while the search's attack
and batched bounds decide the others faster than the MILP would (results/verification.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from certlight.attacks.pgd import box_starts, pgd_search
from certlight.bounds import linear_lower, margin_spec, rule
from certlight.bounds.engine import crown_intermediate_bounds, layers_by_key, relu_keys, widest_layer
from certlight.bounds.relaxation import relu_relaxation
from certlight.bounds.rules import Key, SequentialRule, WalkState
from certlight.evaluation.milp import MILPEncoding, NetworkMatrices, milp_verify, minimise_row
from certlight.evaluation.verdicts import FALSIFIED, UNKNOWN, VERIFIED, Outcome, confirmed_counterexample

NO_BRANCH = -1  # a domain's branching decision when none of its neurons is unstable any more


@dataclass(frozen=True)
class BaBOptions:
    """``timeout``: seconds per example (its share of the rounds it took part in);
    ``root_iterations``, ``root_alpha_lr``: α-CROWN's Adam steps on the unsplit domains;
    ``iterations``, ``alpha_lr``, ``beta_lr``: the steps on α and β per bounded batch of split
    domains (the learning rates are α,β-CROWN's; it takes 100 and 50 steps, a GPU's budget);
    ``beta``: False enforces splits on the intermediate bounds only (incomplete: kept to measure
    what β adds); ``domains_per_round``: an example's domains branched per round;
    ``candidates``: neurons per score that filtered smart branching tries; ``attack_restarts``,
    ``attack_restart_steps``: the attack from random points and corners of each example's box before any
    bound (PGD of 0.1 box widths per step; it stops early at a tenth of ``timeout``);
    ``attack_steps``: steps of the attack from each example's lowest domain's corner, per round;
    ``milp_share``: the share of ``timeout`` left to the exact MILP for an example the search
    has not decided (0: the search alone); ``max_memory_gb``: what one bound pass may hold."""

    timeout: float = 60.0
    root_iterations: int = 50
    root_alpha_lr: float = 0.1
    iterations: int = 20
    alpha_lr: float = 0.01
    beta_lr: float = 0.05
    beta: bool = True
    domains_per_round: int = 32
    candidates: int = 3
    attack_restarts: int = 200
    attack_restart_steps: int = 20
    attack_steps: int = 10
    milp_share: float = 0.5
    max_memory_gb: float = 2.0

    def __post_init__(self):
        for name in ("timeout", "root_alpha_lr", "alpha_lr", "beta_lr", "max_memory_gb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name}={value!r} must be a number > 0")
        share = self.milp_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise ValueError(f"milp_share={share!r} must be a number in [0, 1)")
        for name, least in (
            ("root_iterations", 0),
            ("iterations", 0),
            ("domains_per_round", 1),
            ("candidates", 1),
            ("attack_restarts", 0),
            ("attack_restart_steps", 0),
            ("attack_steps", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}={value!r} must be an integer >= {least}")


@dataclass
class Domains:
    """A batch of domains, one row each: its example, margin row, sound lower bound, split
    decisions and optimised α, β (per ReLU walk key), and the neuron it branches on next (an
    index into the ReLUs of all keys, in key order, or NO_BRANCH)."""

    example: torch.Tensor  # (D,)
    row: torch.Tensor  # (D,)
    bound: torch.Tensor  # (D,)
    decision: torch.Tensor  # (D,)
    splits: dict[Key, torch.Tensor]  # (D, *shape): +1 active, -1 inactive, 0 not split
    alpha: dict[Key, torch.Tensor]  # (D, 1, *shape)
    beta: dict[Key, torch.Tensor]  # (D, 1, *shape)

    def __len__(self) -> int:
        return self.example.numel()

    def take(self, index: torch.Tensor) -> Domains:
        return self._map(lambda t: t[index])

    def _map(self, function) -> Domains:
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            values[f.name] = {k: function(v) for k, v in value.items()} if isinstance(value, dict) else function(value)
        return Domains(**values)

    @staticmethod
    def cat(parts: list[Domains]) -> Domains:
        first = parts[0]
        values = {}
        for f in dataclasses.fields(first):
            value = getattr(first, f.name)
            if isinstance(value, dict):
                values[f.name] = {k: torch.cat([getattr(p, f.name)[k] for p in parts]) for k in value}
            else:
                values[f.name] = torch.cat([getattr(p, f.name) for p in parts])
        return Domains(**values)


class _Problem:
    """What every domain of a batch of examples shares: the boxes, the margin rows, the root's
    ReLU input bounds, and what BaBSR reads of the network (the bias feeding each ReLU)."""

    def __init__(self, net: nn.Module, x, y, lower, upper):
        self.net, self.x, self.y, self.lower, self.upper = net, x, y, lower, upper
        self.spec = margin_spec(y, net[-1].out_features, lower.dtype)
        with torch.no_grad():
            self.roots = crown_intermediate_bounds(net, lower, upper).pre_activation
        self.keys = relu_keys(net, lower.shape[1:])
        others = [key for key in self.roots if key not in self.keys]
        if others:
            raise ValueError(f"branch and bound splits ReLUs; the layer at walk key {others[0]} is relaxed otherwise")
        self.sizes = [self.roots[k][0][0].numel() for k in self.keys]
        self.biases = _feeding_biases(net, lower.shape[1:], self.keys)
        self.matrices: NetworkMatrices | None = None  # built if a domain needs the exact LP or MILP

    def relu_bounds(self, domains: Domains) -> dict[Key, tuple[torch.Tensor, torch.Tensor]]:
        """Each domain's ReLU input bounds: its example's root bounds with its splits clamped in."""
        bounds = {}
        for key, (low, high) in self.roots.items():
            split = domains.splits[key]
            low, high = low[domains.example], high[domains.example]
            bounds[key] = (
                torch.where(split > 0, low.clamp(min=0), low),
                torch.where(split < 0, high.clamp(max=0), high),
            )
        return bounds

    def roots_of(self, example: torch.Tensor, row: torch.Tensor, known: torch.Tensor) -> Domains:
        """Unsplit domains, α at CROWN's own slopes, β at 0."""
        splits, alpha, beta = {}, {}, {}
        for key, (low, high) in self.roots.items():
            low, high = low[example], high[example]
            splits[key] = torch.zeros_like(low)
            alpha[key] = relu_relaxation(low, high)[0].unsqueeze(1)
            beta[key] = torch.zeros_like(low).unsqueeze(1)
        decision = torch.full_like(example, NO_BRANCH)
        return Domains(example, row, known, decision, splits, alpha, beta)

    def solve_exactly(self, domain: Domains, time_limit: float) -> tuple[str, torch.Tensor | None]:
        """One domain with every unstable neuron split, where the optimiser's bound fell short of
        the LP optimum it converges to: that LP (the MILP encoding with no gate left), solved by
        HiGHS. Verified: the domain is closed; falsified: a confirmed counterexample."""
        index, row = int(domain.example[0]), int(domain.row[0])
        bounds = {k: (low[0], high[0]) for k, (low, high) in self.relu_bounds(domain).items()}
        matrices = self.network_matrices()
        encoding = MILPEncoding(matrices, self.lower[index], self.upper[index], bounds, inactive_rows=True)
        spec_row = self.spec[index, row].double().cpu().numpy()
        verdict, point = minimise_row(encoding.solver(), encoding, spec_row, max(time_limit, 1e-3))
        if verdict != FALSIFIED:
            return verdict, None
        candidate = confirmed_counterexample(
            self.net, torch.as_tensor(point), self.y[index], self.lower[index], self.upper[index]
        )
        return (FALSIFIED, candidate) if candidate is not None else (UNKNOWN, None)

    def solve_milp(self, index: int, open_rows: torch.Tensor, time_limit: float) -> Outcome:
        """The whole box of one example by the exact MILP (root bounds, every gate free), on the
        margin rows ``open_rows`` (K-1,) marks: their lowest open bound, > 0 where closed."""
        one = slice(index, index + 1)
        return milp_verify(
            self.net,
            self.x[one],
            self.y[one],
            self.lower[one],
            self.upper[one],
            open_rows.unsqueeze(0),
            time_limit,
            self.network_matrices(),
            relu_bounds={k: (low[one], high[one]) for k, (low, high) in self.roots.items()},
        )[0]

    def network_matrices(self) -> NetworkMatrices:
        """The network's affine layers as sparse matrices, built when a MILP first needs them."""
        if self.matrices is None:
            self.matrices = NetworkMatrices(self.net, self.lower.shape[1:])
        return self.matrices

    def per_domain_floats(self) -> int:
        """Floats one domain holds in a bound pass: α and β with gradients and two Adam moments,
        the splits, clamped bounds and β terms (about 16 per ReLU), and a backward pass's
        coefficients and temporaries (about 6 per unit of the widest layer)."""
        return 16 * sum(self.sizes) + 6 * widest_layer(self.net, self.lower.shape[1:])


def _feeding_biases(net: nn.Module, shape, keys: list[Key]) -> dict[Key, torch.Tensor]:
    """Per ReLU, the constant its input gets from the layer before it in its Sequential (that
    layer applied to zeros: a Linear's or Conv2d's bias, an eval BatchNorm's shift), 0 for a
    ReLU that starts a container. BaBSR's bias term reads it."""
    layers = {key: (layer, layer_shape) for key, layer, layer_shape in layers_by_key(net, shape)}
    biases = {}
    for key in keys:
        _, relu_shape = layers[key]
        previous = (*key[:-1], key[-1] - 1) if key and isinstance(key[-1], int) and key[-1] > 0 else None
        if previous is None or previous not in layers or not isinstance(rule(layers[key[:-1]][0]), SequentialRule):
            biases[key] = torch.zeros(relu_shape)
            continue
        layer, in_shape = layers[previous]
        with torch.no_grad():
            biases[key] = layer(torch.zeros(1, *in_shape))[0]
    return biases


def _bound_pass(problem: _Problem, domains: Domains, alpha, beta, record: bool = False):
    """One backward walk for a batch of domains with these α and β: the input coefficients and
    the bounds (D,), and the walk's state (with the ReLU outputs' coefficients if ``record``)."""
    example = domains.example
    box_low, box_high = problem.lower[example], problem.upper[example]
    spec = problem.spec[example, domains.row].unsqueeze(1)
    state = WalkState(
        pre_activation=problem.relu_bounds(domains),
        lower_slopes=alpha,
        split_multipliers={k: -beta[k] * domains.splits[k].unsqueeze(1) for k in beta},
        relu_coefficients={} if record else None,
    )
    coefficients, bias = rule(problem.net).backward(problem.net, spec, (), state, box_low.shape[1:])
    return coefficients, linear_lower(coefficients, bias, box_low, box_high)[:, 0], state


def bound_domains(
    problem: _Problem, domains: Domains, options: BaBOptions, root: bool = False
) -> tuple[Domains, torch.Tensor]:
    """The domains with their bounds (never below the bound they came with), the α and β of the
    best iterate of each, and branching decisions; and each domain's candidate counterexample,
    the minimiser over the box of its final linear bound. ``root``: unsplit domains, α-CROWN's
    longer optimisation."""
    iterations = options.root_iterations if root else options.iterations
    alpha = {k: v.clone().requires_grad_(True) for k, v in domains.alpha.items()}
    beta = {k: v.clone().requires_grad_(options.beta) for k, v in domains.beta.items()}
    groups = [{"params": list(alpha.values()), "lr": options.root_alpha_lr if root else options.alpha_lr}]
    if options.beta:
        groups.append({"params": list(beta.values()), "lr": options.beta_lr})
    optimizer = torch.optim.Adam(groups)
    best = domains.bound.clone()
    best_alpha, best_beta = dict(domains.alpha), dict(domains.beta)
    with torch.enable_grad():
        for step in range(iterations + 1):
            last = step == iterations
            coefficients, bound, state = _bound_pass(problem, domains, alpha, beta, record=last)
            improved = bound.detach() > best
            best = torch.where(improved, bound.detach(), best)
            for params, kept in ((alpha, best_alpha), (beta, best_beta)):
                for key, value in params.items():
                    kept[key] = torch.where(improved.view(-1, *[1] * (value.dim() - 1)), value.detach(), kept[key])
            if last:
                break
            optimizer.zero_grad(set_to_none=True)
            (-bound.sum()).backward()
            optimizer.step()
            with torch.no_grad():
                for value in alpha.values():
                    value.clamp_(0.0, 1.0)
                for value in beta.values():
                    value.clamp_(min=0.0)
    example = domains.example
    corner = torch.where(coefficients[:, 0].detach() >= 0, problem.lower[example], problem.upper[example])
    bounded = dataclasses.replace(domains, bound=best, alpha=best_alpha, beta=best_beta)
    with torch.no_grad():
        bounded.decision = _fsb_decision(problem, bounded, state, options.candidates)
    return bounded, corner


def _branching_scores(problem: _Problem, state: WalkState) -> tuple[torch.Tensor, torch.Tensor]:
    """Per domain and ReLU (over all keys, in key order; -1 where the neuron is stable): BaBSR's
    score (Bunel et al. 2020), the estimated change of the bound if the neuron's triangle
    relaxation were split, from its coefficient ``a`` in the bound, its bounds and the bias ``b``
    feeding it, in α,β-CROWN's form ``|max(b·a·(s - 1), b·a·s) + min(a, 0)·t|`` (upper slope s,
    intercept t); and the intercept term alone, ``-min(a, 0)·t``."""
    scores, intercepts = [], []
    for key in problem.keys:
        low, high = state.pre_activation[key]
        _, slope, intercept = relu_relaxation(low, high)
        a = state.relu_coefficients[key][:, 0].detach()
        unstable = (low < 0) & (high > 0)
        bias_term = problem.biases[key].to(a.dtype) * a
        intercept_term = a.clamp(max=0) * intercept
        score = (torch.maximum(bias_term * (slope - 1), bias_term * slope) + intercept_term).abs()
        scores.append(torch.where(unstable, score, -1.0).flatten(1))
        intercepts.append(torch.where(unstable, -intercept_term, -1.0).flatten(1))
    return torch.cat(scores, dim=1), torch.cat(intercepts, dim=1)


def _fsb_decision(problem: _Problem, domains: Domains, state: WalkState, candidates: int) -> torch.Tensor:
    """Filtered smart branching (De Palma et al. 2021, as α,β-CROWN's kFSB): the ``candidates``
    best neurons by BaBSR's score and as many by the intercept score, each tried by bounding its
    two children once with the domain's α and β; the neuron whose worse child is best wins."""
    scores, intercepts = _branching_scores(problem, state)
    k = min(candidates, scores.shape[1])
    top_scores, by_score = scores.topk(k, dim=1)
    top_intercepts, by_intercept = intercepts.topk(k, dim=1)
    tried = torch.cat([by_score, by_intercept], dim=1)  # (D, 2k)
    valid = torch.cat([top_scores, top_intercepts], dim=1) >= 0
    count, width = tried.shape
    trials = Domains.cat([dataclasses.replace(domains, decision=tried[:, j]) for j in range(width)])
    children = branch(problem, trials)
    _, bounds, _ = _bound_pass(problem, children, children.alpha, children.beta)
    active, inactive = bounds.view(2, width, count)
    worse_child = torch.minimum(active, inactive).T  # (D, 2k)
    worse_child = torch.where(valid, worse_child, -torch.inf)
    chosen = tried.gather(1, worse_child.argmax(1, keepdim=True)).squeeze(1)
    return torch.where(valid.any(1), chosen, torch.full_like(chosen, NO_BRANCH))


def branch(problem: _Problem, domains: Domains) -> Domains:
    """Two children per domain, its decision neuron split active in the first and inactive in
    the second; α, β and the bound are inherited (a child's domain lies inside its parent's)."""
    count = len(domains)
    children = Domains.cat([domains, domains])
    sign = torch.cat([torch.ones(count), -torch.ones(count)]).to(domains.bound.dtype)
    offset = 0
    rows = torch.arange(2 * count)
    for key, size in zip(problem.keys, problem.sizes):
        local = children.decision - offset
        inside = (local >= 0) & (local < size)
        flat = children.splits[key].view(2 * count, size)
        flat[rows[inside], local[inside]] = sign[inside]
        offset += size
    children.decision = torch.full_like(children.decision, NO_BRANCH)
    return children


def _lowest_per_example(domains: Domains, limit: int) -> torch.Tensor:
    """Mask of each example's ``limit`` domains with the lowest bounds (ties by position)."""
    order = torch.argsort(domains.bound, stable=True)
    order = order[torch.argsort(domains.example[order], stable=True)]
    examples = domains.example[order]
    starts = torch.searchsorted(examples, examples, right=False)
    rank = torch.arange(len(domains)) - starts
    chosen = torch.zeros(len(domains), dtype=torch.bool)
    chosen[order[rank < limit]] = True
    return chosen


def bab_verify(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    margin_lower: torch.Tensor | None = None,
    options: BaBOptions | None = None,
    progress: bool = False,
) -> list[Outcome]:
    """Each example of the batch: verified, falsified (with a confirmed counterexample) or
    unknown. ``margin_lower`` (B, K-1): sound bounds already known (rows already positive are not
    searched; the others start from them); the network must be in eval mode (its BatchNorms use
    running statistics)."""
    options = options or BaBOptions()
    net = net.eval()
    problem = _Problem(net, x, y, lower, upper)
    count, rows = x.shape[0], problem.spec.shape[1]
    known = margin_lower if margin_lower is not None else lower.new_full((count, rows), -torch.inf)
    example, row = (known <= 0).nonzero(as_tuple=True)
    verdicts = [None] * count
    counterexamples: list[torch.Tensor | None] = [None] * count
    seconds = [0.0] * count
    frontier: list[float | None] = [None] * count  # an unknown example's lowest open bound
    per_pass = max(1, int(options.max_memory_gb * 2**30 / 4 // problem.per_domain_floats()))
    pending = problem.roots_of(example, row, known[example, row])
    pool = pending.take(torch.zeros(0, dtype=torch.long))
    bar = tqdm(total=count, desc="bab", unit="example", leave=False, disable=not progress)

    def decide(index: int, verdict: str) -> None:
        verdicts[index] = verdict
        open_bounds = torch.cat([pool.bound[pool.example == index], pending.bound[pending.example == index]])
        if verdict == UNKNOWN and open_bounds.numel():
            frontier[index] = float(open_bounds.min())
        bar.update(1)

    def undecided() -> torch.Tensor:
        return torch.tensor([v is None for v in verdicts])

    search_time = options.timeout * (1 - options.milp_share)

    def out_of_search_time(index: int) -> None:
        """Unknown, or (``milp_share`` > 0) the rest of the example's time to the exact MILP on
        the rows its open domains leave."""
        if not options.milp_share:
            decide(index, UNKNOWN)
            return
        open_rows = torch.ones(rows, dtype=lower.dtype)
        for domains in (pool, pending):
            mine = domains.example == index
            open_rows.scatter_reduce_(0, domains.row[mine], domains.bound[mine], "amin")
        outcome = problem.solve_milp(index, open_rows, options.timeout - seconds[index])
        seconds[index] += outcome.seconds
        counterexamples[index] = outcome.counterexample
        decide(index, outcome.verdict)

    def falsify(points: torch.Tensor, owners: torch.Tensor) -> None:
        """Decide as falsified the undecided owners of the points the network misclassifies."""
        with torch.no_grad():
            wrong = net(points).argmax(1) != y[owners]
        for d in wrong.nonzero().squeeze(1).tolist():
            index = int(owners[d])
            if verdicts[index] is None:
                candidate = confirmed_counterexample(net, points[d], y[index], lower[index], upper[index])
                if candidate is not None:
                    counterexamples[index] = candidate
                    decide(index, FALSIFIED)

    for index in set(range(count)) - set(example.tolist()):
        decide(index, VERIFIED)
    searched = example.unique()
    if options.attack_restarts and searched.numel():
        start = time.perf_counter()
        box_low, box_high = lower[searched], upper[searched]
        budget = options.timeout / 10  # per example: the attack may not eat the search's time
        starts = itertools.takewhile(
            lambda _: time.perf_counter() - start < budget * searched.numel(),
            box_starts(box_low, box_high, options.attack_restarts, corners="alternate"),
        )
        _, points = pgd_search(net, y[searched], box_low, box_high, starts, options.attack_restart_steps, 0.1)
        falsify(points, searched)
        share = (time.perf_counter() - start) / searched.numel()
        for index in searched.tolist():
            seconds[index] += share
        pending = pending.take(undecided()[pending.example])
    root = True
    seconds_per_domain = None  # the last round's cost, to stop an example before a round it cannot afford
    while len(pending):
        if seconds_per_domain is not None:
            shares = torch.bincount(pending.example, minlength=count).tolist()
            for index, share in enumerate(shares):
                if share and seconds[index] + share * seconds_per_domain > search_time:
                    out_of_search_time(index)
            pending = pending.take(undecided()[pending.example])
            if not len(pending):
                break
        start = time.perf_counter()
        parts = [
            bound_domains(problem, pending.take(slice(i, i + per_pass)), options, root)
            for i in range(0, len(pending), per_pass)
        ]
        root = False
        bounded, corners = Domains.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        lowest = _lowest_per_example(bounded, 1)
        # the corner is where the relaxation says the margin is lowest: a counterexample is often a few steps away
        attacked = bounded.example[lowest]
        _, near_corner = pgd_search(
            net, y[attacked], lower[attacked], upper[attacked], [corners[lowest]], options.attack_steps, 0.1
        )
        points = torch.cat([corners, near_corner])
        owners = torch.cat([bounded.example, attacked])
        falsify(points, owners)
        still_open = (bounded.bound <= 0) & undecided()[bounded.example]
        pool = Domains.cat([pool, bounded.take(still_open)])
        exhausted = pool.decision == NO_BRANCH
        for d in exhausted.nonzero().squeeze(1).tolist():
            index = int(pool.example[d])
            if verdicts[index] is None:
                verdict, candidate = problem.solve_exactly(pool.take(slice(d, d + 1)), options.timeout - seconds[index])
                if verdict == FALSIFIED:
                    counterexamples[index] = candidate
                if verdict != VERIFIED:
                    decide(index, verdict)
        pool = pool.take(~exhausted)
        elapsed = time.perf_counter() - start
        seconds_per_domain = elapsed / len(pending)
        shares = torch.bincount(pending.example, minlength=count).tolist()
        for index, share in enumerate(shares):
            if share:
                seconds[index] += elapsed * share / len(pending)
                if verdicts[index] is None and seconds[index] >= search_time:
                    out_of_search_time(index)
        left = undecided()
        pool = pool.take(left[pool.example])
        for index in set(left.nonzero().squeeze(1).tolist()) - set(pool.example.tolist()):
            decide(index, VERIFIED)
        chosen = _lowest_per_example(pool, options.domains_per_round)
        pending, pool = branch(problem, pool.take(chosen)), pool.take(~chosen)
    bar.close()
    return [Outcome(*fields) for fields in zip(verdicts, counterexamples, seconds, frontier)]
