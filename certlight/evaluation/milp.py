"""An exact verifier for small ReLU networks: the big-M mixed-integer encoding of Tjeng et al.
2019 (MIPVerify), solved by HiGHS.

Every affine layer (Linear, Conv2d, BatchNorm in eval mode, Flatten, pooling, ...) is read as a
dense matrix by applying it to the unit vectors, so any layer the bound engine walks and that is
affine in eval mode is encoded without a rule of its own; ReLUs get the big-M constraints with
the tightest input bounds certlight has (full CROWN intersected with IBP); residual blocks add
their two branches. Per margin row (most negative bound first) HiGHS looks for an input in the
box with a negative margin, pruning at 0: none exists -> the row is verified; one exists -> a
counterexample, which a plain float32 forward pass must confirm; the time limit -> unknown.

The big-M's bounds make the encoding exact, not approximate: every input of the box satisfies
the constraints, and every solution is a real input with the real network's output (to the
solver's feasibility tolerance, which is why a counterexample is checked by a forward pass).
"""

from __future__ import annotations

import copy
import functools
import operator
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import sparse
from torch import nn
from tqdm import tqdm

from certlight.bounds import margin_spec, rule
from certlight.bounds.engine import crown_intermediate_bounds
from certlight.evaluation.verdicts import FALSIFIED, UNKNOWN, VERIFIED, Outcome, confirmed_counterexample

BOUND_SLACK = 1e-5  # relative widening of the ReLU input bounds (float32 rounding is about 6e-8)


class _Model:
    """The MILP under construction: columns with bounds and integrality, rows as sparse blocks
    over the global column numbering."""

    def __init__(self):
        self.lower: list[np.ndarray] = []
        self.upper: list[np.ndarray] = []
        self.integer: list[np.ndarray] = []
        self.count = 0
        self.rows: list[
            tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []  # low, high, row, col, value

    def columns(self, lower, upper, integer=False) -> np.ndarray:
        n = len(lower)
        index = np.arange(self.count, self.count + n)
        self.count += n
        self.lower.append(np.asarray(lower, dtype=np.float64))
        self.upper.append(np.asarray(upper, dtype=np.float64))
        self.integer.append(np.full(n, integer))
        return index

    def add_rows(self, low: np.ndarray, high: np.ndarray, parts: list[tuple[np.ndarray, sparse.spmatrix]]) -> None:
        """Rows ``low <= sum_k M_k @ columns_k <= high``."""
        coo = [sparse.coo_matrix(m) for _, m in parts]
        rows = np.concatenate([c.row for c in coo])
        cols = np.concatenate([columns[c.col] for (columns, _), c in zip(parts, coo)])
        self.rows.append((low, high, rows, cols, np.concatenate([c.data for c in coo])))


@dataclass
class _Expr:
    """A tensor's value as an affine function of MILP columns: ``sum_b M_b @ cols_b + c``, one
    sparse matrix per block of columns (a block: the input, or one ReLU layer's outputs)."""

    blocks: dict[int, tuple[np.ndarray, sparse.csr_matrix]]  # id -> (column indices, matrix (n_out, n_cols))
    const: np.ndarray

    def affine(self, weight: sparse.csr_matrix, bias: np.ndarray) -> _Expr:
        return _Expr(
            {k: (cols, (weight @ m).tocsr()) for k, (cols, m) in self.blocks.items()}, weight @ self.const + bias
        )

    def __add__(self, other: _Expr) -> _Expr:
        blocks = dict(self.blocks)
        for k, (cols, m) in other.blocks.items():
            blocks[k] = (cols, blocks[k][1] + m) if k in blocks else (cols, m)
        return _Expr(blocks, self.const + other.const)

    def rows(self, index: np.ndarray, scale: float = 1.0) -> list[tuple[np.ndarray, sparse.csr_matrix]]:
        return [(cols, scale * m[index]) for cols, m in self.blocks.values()]


def _affine_matrix(layer: nn.Module, shape: torch.Size) -> tuple[sparse.csr_matrix, np.ndarray]:
    """``(W, b)`` with ``layer(h).flatten() = W @ h.flatten() + b``, read off the layer itself
    (in float64, eval mode) and kept sparse: a convolution's rows have kernel-many entries."""
    n = shape.numel()
    with torch.no_grad():
        basis = torch.cat([torch.zeros(1, n), torch.eye(n)]).view(n + 1, *shape).double()
        out = copy.deepcopy(layer).cpu().double().eval()(basis).flatten(1)
    bias = out[0]
    return sparse.csr_matrix((out[1:] - bias).T.numpy()), bias.numpy()


class NetworkMatrices:
    """Every affine layer of a network as its sparse matrix, computed once and shared by the
    encodings of all examples (only the ReLU bounds differ between them)."""

    def __init__(self, net: nn.Module, shape: torch.Size):
        self.net, self.shape, self.cache = net, torch.Size(shape), {}

    def affine(self, layer: nn.Module, key, shape) -> tuple[sparse.csr_matrix, np.ndarray]:
        if key not in self.cache:
            self.cache[key] = _affine_matrix(layer, shape)
        return self.cache[key]


class MILPEncoding:
    """The network over one example's box, as a HiGHS model; ``minimise_row`` solves it."""

    def __init__(
        self,
        matrices: NetworkMatrices,
        lower: torch.Tensor,
        upper: torch.Tensor,
        relu_bounds: dict,
        inactive_rows: bool = False,
    ):
        """``relu_bounds``: each ReLU's input bounds, (*shape) per walk key. ``inactive_rows``: also
        constrain an inactive neuron's input to <= 0, which sound bounds of the box make
        redundant but a branch's split decisions (clamped into the bounds) do not."""
        self.model = _Model()
        self.inactive_rows = inactive_rows
        self.matrices = matrices
        self.relu_bounds = relu_bounds
        self.blocks = 0
        n = matrices.shape.numel()
        self.input_columns = self.model.columns(*(b.flatten().double().cpu().numpy() for b in (lower, upper)))
        start = _Expr({self._block(): (self.input_columns, sparse.identity(n, format="csr"))}, np.zeros(n))
        self.logits = self._walk(matrices.net, (), matrices.shape, start)

    def _block(self) -> int:
        self.blocks += 1
        return self.blocks

    def _walk(self, layer: nn.Module, key, shape, expr: _Expr) -> _Expr:
        """Containers by their rule's parts (chained: in turn; parallel, a residual block's
        branches: summed), ReLUs by big-M, every other layer as its affine matrix."""
        layer_rule = rule(layer)
        parts = layer_rule.parts(layer, key, shape)
        if parts and layer_rule.chained:
            for child, child_key, child_shape in parts:
                expr = self._walk(child, child_key, child_shape, expr)
            return expr
        if parts:
            branches = [self._walk(child, child_key, child_shape, expr) for child, child_key, child_shape in parts]
            return functools.reduce(operator.add, branches)
        if layer_rule.relu_like:
            return self._relu(key, expr)
        if layer_rule.needs_input_bounds:
            raise ValueError(f"the MILP encodes ReLUs and affine layers only, not {type(layer).__name__}")
        return expr.affine(*self.matrices.affine(layer, key, shape))

    def _relu(self, key, expr: _Expr) -> _Expr:
        """y = ReLU(x): y = x where the input is surely positive, y = 0 where surely negative,
        and for an unstable neuron (l < 0 < u) with gate z in {0, 1}:
        y >= x, y <= x - l (1 - z), y <= u z (and y >= 0 from its bounds)."""
        low, high = (b.detach().flatten().double().cpu().numpy() for b in self.relu_bounds[key])
        # The bounds are float32 and tight: a real input can sit on one (a corner attains a
        # linear bound), and HiGHS then cut it off within its tolerances. Widened a little they
        # stay sound and the encoding stays exact.
        low, high = low - BOUND_SLACK * (1 + np.abs(low)), high + BOUND_SLACK * (1 + np.abs(high))
        n = low.shape[0]
        inactive, active = high <= 0, low >= 0
        unstable = np.flatnonzero(~(inactive | active))
        on = np.flatnonzero(active)
        outputs = self.model.columns(np.zeros(n), np.where(inactive, 0.0, np.maximum(high, 0.0)))
        gates = self.model.columns(np.zeros(unstable.size), np.ones(unstable.size), integer=True)
        const = expr.const

        def pick(index):  # y_index as a sparse selection
            return (
                outputs,
                sparse.csr_matrix((np.ones(index.size), (np.arange(index.size), index)), shape=(index.size, n)),
            )

        off = np.flatnonzero(inactive)
        if self.inactive_rows and off.size:  # x <= 0
            self.model.add_rows(np.full(off.size, -np.inf), -const[off], expr.rows(off))
        if on.size:  # y - x = c
            self.model.add_rows(const[on], const[on], [pick(on), *expr.rows(on, -1.0)])
        if unstable.size:
            lo, hi, c = low[unstable], high[unstable], const[unstable]
            self.model.add_rows(c, np.full(c.size, np.inf), [pick(unstable), *expr.rows(unstable, -1.0)])  # y - x >= c
            self.model.add_rows(
                np.full(c.size, -np.inf),
                c - lo,
                [pick(unstable), *expr.rows(unstable, -1.0), (gates, sparse.diags(-lo, format="csr"))],
            )
            self.model.add_rows(
                np.full(c.size, -np.inf), np.zeros(c.size), [pick(unstable), (gates, sparse.diags(-hi, format="csr"))]
            )
        return _Expr({self._block(): (outputs, sparse.identity(n, format="csr"))}, np.zeros(n))

    def solver(self):
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("threads", 1)
        m = self.model
        h.addVars(m.count, np.concatenate(m.lower), np.concatenate(m.upper))
        integer = np.flatnonzero(np.concatenate(m.integer))
        if integer.size:
            h.changeColsIntegrality(
                integer.size, integer.astype(np.int32), np.full(integer.size, highspy.HighsVarType.kInteger)
            )
        if m.rows:
            low = np.concatenate([r[0] for r in m.rows])
            high = np.concatenate([r[1] for r in m.rows])
            offsets = np.cumsum([0] + [len(r[0]) for r in m.rows[:-1]])
            rows = np.concatenate([r[2] + offset for r, offset in zip(m.rows, offsets)])
            matrix = sparse.csr_matrix(
                (np.concatenate([r[4] for r in m.rows]), (rows, np.concatenate([r[3] for r in m.rows]))),
                shape=(low.size, m.count),
            )
            matrix.eliminate_zeros()
            h.addRows(
                matrix.shape[0],
                low,
                high,
                matrix.nnz,
                matrix.indptr[:-1].astype(np.int32),
                matrix.indices.astype(np.int32),
                matrix.data,
            )
        return h


def milp_verify(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    margin_lower: torch.Tensor | None = None,
    time_limit: float = 60.0,
    matrices: NetworkMatrices | None = None,
    progress: bool = False,
    relu_bounds: dict | None = None,
) -> list[Outcome]:
    """Each example of the batch: verified, falsified (with a confirmed counterexample) or unknown.
    ``margin_lower`` (B, K-1): sound bounds already known (rows already positive are skipped, the
    others are tried most negative first); ``matrices``: the network's affine layers, built once by
    a caller that verifies batch after batch; ``progress``: a bar of the examples decided;
    ``relu_bounds``: each ReLU's input bounds (B, *shape) per walk key where a caller has them
    (default: CROWN's); the network must be in eval mode."""
    net = net.eval()
    spec = margin_spec(y, net[-1].out_features, torch.float64)
    if relu_bounds is None:
        with torch.no_grad():
            relu_bounds = crown_intermediate_bounds(net, lower, upper).pre_activation
    matrices = matrices or NetworkMatrices(net, lower.shape[1:])
    outcomes = []
    for b in tqdm(range(x.shape[0]), desc="milp", unit="example", leave=False, disable=not progress):
        start = time.perf_counter()
        bounds = {k: (low[b], high[b]) for k, (low, high) in relu_bounds.items()}
        encoding = MILPEncoding(matrices, lower[b], upper[b], bounds)
        rows = (
            range(spec.shape[1])
            if margin_lower is None
            else [int(j) for j in margin_lower[b].argsort() if margin_lower[b, j] <= 0]
        )
        outcome = Outcome(VERIFIED)
        for j in rows:
            left = time_limit - (time.perf_counter() - start)
            if left <= 0:
                outcome = Outcome(UNKNOWN)
                break
            # A fresh solver per row: HiGHS re-run on the same instance with a new objective and
            # objective bound answered "verified" for rows a fresh instance falsifies.
            verdict, point = minimise_row(encoding.solver(), encoding, spec[b, j].cpu().numpy(), left)
            if verdict == FALSIFIED:
                candidate = confirmed_counterexample(net, torch.as_tensor(point), y[b], lower[b], upper[b])
                outcome = Outcome(FALSIFIED, candidate) if candidate is not None else Outcome(UNKNOWN)
                break
            if verdict == UNKNOWN:
                outcome = Outcome(UNKNOWN)
                break
        outcome.seconds = time.perf_counter() - start
        outcomes.append(outcome)
    return outcomes


def minimise_row(h, encoding: MILPEncoding, spec_row: np.ndarray, time_limit: float):
    """Minimise one margin over the box, looking only below 0 (HiGHS's objective bound): returns
    the verdict for the row and, when negative, the solution's input."""
    import highspy

    logits = encoding.logits
    cost = np.zeros(encoding.model.count)
    for cols, matrix in logits.blocks.values():
        np.add.at(cost, cols, matrix.T @ spec_row)
    offset = float(spec_row @ logits.const)
    h.changeColsCost(cost.size, np.arange(cost.size, dtype=np.int32), cost)
    h.changeObjectiveOffset(offset)
    h.setOptionValue("objective_bound", 0.0)
    h.setOptionValue("mip_max_improving_sols", 1)
    h.setOptionValue("time_limit", float(time_limit))
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    if has_solution and info.objective_function_value < 0:
        values = np.asarray(h.getSolution().col_value)
        return FALSIFIED, values[encoding.input_columns]
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kObjectiveBound) or (
        status == highspy.HighsModelStatus.kOptimal and info.objective_function_value >= 0
    ):
        return VERIFIED, None
    return UNKNOWN, None
