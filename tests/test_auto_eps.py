import pytest
import torch

from certlight.errors import CertlightError
from certlight.methods import AutoEpsilon


def test_offsets_start_at_zero_and_follow_algorithm_1():
    table = AutoEpsilon(6, eps_maxoff=0.2, eps_train=0.4)
    index = torch.tensor([0, 2, 5])
    torch.testing.assert_close(table.epsilon(index, 0.3), torch.full((3,), 0.3))
    table.update(index, torch.tensor([-0.5, 0.0, 0.7]))
    # negative margin -> offset = -margin * eps_maxoff; zero or positive margin -> 0
    torch.testing.assert_close(table.offsets, torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(table.epsilon(torch.tensor([0, 1]), 0.3), torch.tensor([0.2, 0.3]))


def test_epsilon_is_clamped_at_zero_during_warmup():
    table = AutoEpsilon(2, eps_maxoff=0.2, eps_train=0.4)
    table.update(torch.tensor([0]), torch.tensor([-1.0]))
    assert table.epsilon(torch.tensor([0]), 0.05).item() == 0.0


def test_a_later_positive_margin_resets_the_offset():
    table = AutoEpsilon(3, eps_maxoff=0.1, eps_train=0.4)
    table.update(torch.tensor([1]), torch.tensor([-0.4]))
    assert table.offsets[1] > 0
    table.update(torch.tensor([1]), torch.tensor([0.2]))
    assert table.offsets[1] == 0


def test_offsets_are_in_the_state_dict():
    table = AutoEpsilon(4, eps_maxoff=0.1, eps_train=0.4)
    table.update(torch.tensor([3]), torch.tensor([-1.0]))
    restored = AutoEpsilon(4, eps_maxoff=0.1, eps_train=0.4)
    restored.load_state_dict(table.state_dict())
    torch.testing.assert_close(restored.offsets, table.offsets)


@pytest.mark.parametrize("maxoff", [-0.1, 0.5])
def test_eps_maxoff_outside_zero_to_eps_train_is_named(maxoff):
    with pytest.raises(CertlightError, match=f"auto_eps.eps_maxoff={maxoff} must lie in"):
        AutoEpsilon(3, eps_maxoff=maxoff, eps_train=0.4)
