import pytest
import torch

from models.guidance import Condition, Scales, combine, default_scales, passes_for
from models.specs import HUMO_1_7B, HUMO_17B

NULL = Condition(False, False, False)


def preds_for(chain):
    """A distinct random prediction per condition."""
    table = {}
    for cond, _ in chain:
        table.setdefault(cond, torch.randn(3))
    return table


def test_17b_defaults_and_1_7b_defaults():
    assert default_scales(HUMO_17B) == Scales(text=5.0, audio=5.5, image=0.0)
    assert default_scales(HUMO_1_7B) == Scales(text=7.0, audio=7.5, image=4.0)
    assert HUMO_1_7B.passes_per_step == {"T": 2, "TI": 3, "TA": 3, "TIA": 4}
    assert HUMO_17B.passes_per_step == {"T": 2, "TI": 2, "TA": 3, "TIA": 3}


def test_1_7b_tia_is_the_reference_four_pass_formula():
    chain = passes_for(HUMO_1_7B, "TIA", 999)
    p = preds_for(chain)
    neg, t, ta, tia = (p[c] for c, _ in chain)
    assert [c for c, _ in chain] == [
        NULL,
        Condition(True, False, False),
        Condition(True, False, True),
        Condition(True, True, True),
    ]
    expected = 4.0 * (tia - ta) + 7.5 * (ta - t) + 7.0 * (t - neg) + neg
    torch.testing.assert_close(combine([neg, t, ta, tia], [s for _, s in chain]), expected)


@pytest.mark.parametrize("t,text_scale,negative", [(999, 5.0, Condition(False, True, False)), (975, 3.0, NULL)])
def test_17b_tia_switches_its_negative_and_text_scale_after_t980(t, text_scale, negative):
    chain = passes_for(HUMO_17B, "TIA", t)
    assert [c for c, _ in chain] == [negative, Condition(True, True, False), Condition(True, True, True)]
    neg, ti, tia = torch.randn(3), torch.randn(3), torch.randn(3)
    expected = 5.5 * (tia - ti) + text_scale * (ti - neg) + neg
    torch.testing.assert_close(combine([neg, ti, tia], [s for _, s in chain]), expected)


def test_17b_ta_has_no_time_switch():
    for t in (999, 500):
        chain = passes_for(HUMO_17B, "TA", t)
        assert [c for c, _ in chain] == [NULL, Condition(True, False, False), Condition(True, False, True)]
        assert [s for _, s in chain] == [0.0, 5.0, 5.5]


def test_text_only_is_plain_cfg_and_custom_scales_apply():
    chain = passes_for(HUMO_1_7B, "T", 500, Scales(text=3.0, audio=1.0, image=1.0))
    assert chain == [(NULL, 0.0), (Condition(True, False, False), 3.0)]
    ti = passes_for(HUMO_1_7B, "TI", 500, Scales(text=3.0, audio=1.0, image=2.0))
    assert ti[-1] == (Condition(True, True, False), 2.0)
