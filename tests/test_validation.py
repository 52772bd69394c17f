"""The argument checks shared by the modules (`deepfocus._validation`)."""

import numpy as np
import pytest

from deepfocus._validation import check_seed
from deepfocus.exceptions import InvalidInputError


@pytest.mark.parametrize("seed", [0, 7, np.int64(7), np.uint32(7), 2**40])
def test_check_seed_returns_a_plain_int(seed):
    checked = check_seed(seed)
    assert type(checked) is int and checked == seed


@pytest.mark.parametrize("seed", [-1, np.int64(-1), 2.5, 2.0, True, np.bool_(True), "3", None])
def test_check_seed_refuses_what_is_not_a_non_negative_integer(seed):
    with pytest.raises(InvalidInputError, match=r"^seed must be a non-negative integer, got .+$"):
        check_seed(seed)


def test_check_seed_upper_bound():
    assert check_seed(2**32 - 1, upper=2**32 - 1) == 2**32 - 1
    with pytest.raises(InvalidInputError, match=r"^seed must be a non-negative integer up to 9, got 10$"):
        check_seed(10, upper=9)
