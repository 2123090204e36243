import numpy as np
import torch

from models.sampler import make_scheduler, model_timesteps


def wan_schedule(steps: int, shift: float):
    """Wan's FlowUniPC schedule written out: sigmas linear from 0.999 to 0, then shifted."""
    sigmas = np.linspace(1 - 1 / 1000, 0, steps + 1)[:-1]
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    return np.append(sigmas, 0.0).astype(np.float32), (sigmas * 1000).astype(np.int64)


def test_sigmas_and_timesteps_match_wans_flow_unipc_schedule():
    sigmas, timesteps = wan_schedule(50, 5.0)
    scheduler = make_scheduler(50, 5.0)
    np.testing.assert_allclose(scheduler.sigmas.numpy(), sigmas, rtol=1e-6, atol=1e-7)
    assert model_timesteps(scheduler).tolist() == timesteps.tolist()
    assert timesteps[0] == 999 and len(timesteps) == 50
    assert int((torch.tensor(timesteps) > 980).sum()) == 5  # the 17B's early-guidance steps


def test_sampler_is_second_order_flow_unipc():
    cfg = make_scheduler(10, 3.0).config
    assert cfg.prediction_type == "flow_prediction" and cfg.use_flow_sigmas and cfg.solver_order == 2


def test_a_constant_velocity_is_integrated_exactly():
    """x_t = x0 + sigma * v with constant v: the sampler must land on x0."""
    scheduler = make_scheduler(20, 5.0)
    x0, v = torch.randn(4, 3), torch.randn(4, 3)
    x = x0 + scheduler.sigmas[0] * v
    for t in scheduler.timesteps:
        x = scheduler.step(v[None], t, x[None], return_dict=False)[0][0]
    torch.testing.assert_close(x, x0, rtol=1e-4, atol=1e-4)


def test_many_steps_with_repeated_integer_timesteps_run_to_the_end():
    scheduler = make_scheduler(400, 5.0)
    assert len(set(model_timesteps(scheduler).tolist())) < 400  # repeats exist
    x0, v = torch.randn(2, 2), torch.randn(2, 2)
    x = x0 + scheduler.sigmas[0] * v
    for t in scheduler.timesteps:
        x = scheduler.step(v[None], t, x[None], return_dict=False)[0][0]
    torch.testing.assert_close(x, x0, rtol=1e-4, atol=1e-4)
