"""Keeping freed host memory: a CROWN-IBP step stops faulting its pages in afresh."""

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from certlight.bounds.engine import crown_ibp_margin_lower, ibp_margin_lower
    from certlight.bounds.spec import margin_spec
    from certlight.runs.host_memory import keep_freed_memory
    from certlight.models import dm_small

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = dm_small(1, 28, 10)
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    spec = margin_spec(y, 10, x.dtype)

    def faults_per_step(steps=4):
        for _ in range(3):  # warm up
            step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(steps):
            step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

    def step():
        lower, upper = (x - 0.2).clamp(0, 1), (x + 0.2).clamp(0, 1)
        ibp, walk = ibp_margin_lower(net, lower, upper, spec)
        crown_ibp_margin_lower(net, lower, upper, spec, walk).sum().backward()

    default = faults_per_step()
    assert keep_freed_memory()
    print(default, faults_per_step())
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_crown_ibp_step_reuses_freed_memory_instead_of_faulting_it_in():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    default, kept = float(out[0]), float(out[1])
    assert default > 1000  # glibc's defaults: the step's large blocks come from (and go back to) the kernel
    assert kept < default / 5
