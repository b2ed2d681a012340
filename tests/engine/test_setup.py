"""setup_cfg: the mistakes made when typing config overrides are one clear UserError each."""
import pytest

from maskrcnnpp.errors import UserError
from maskrcnnpp.config import setup_cfg


def test_an_override_without_its_value_says_they_come_in_pairs():
    with pytest.raises(UserError, match=r"KEY VALUE pairs; got 3 items: \['SOLVER.MAX_ITER', '10', 'SOLVER.BASE_LR'\]"):
        setup_cfg("maskrcnnpp_tiny", ["SOLVER.MAX_ITER", "10", "SOLVER.BASE_LR"], device="cpu")


def test_an_unknown_key_is_named():
    with pytest.raises(UserError, match="Non-existent key: SOLVER.MAX_ITERS"):
        setup_cfg("maskrcnnpp_tiny", ["SOLVER.MAX_ITERS", "10"], device="cpu")
    assert setup_cfg("maskrcnnpp_tiny", ["SOLVER.MAX_ITER", "10"], device="cpu").SOLVER.MAX_ITER == 10
