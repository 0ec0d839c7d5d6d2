"""The search expert: never worse than its nominal candidate, deterministic, batch-invariant."""

from dataclasses import replace

import numpy as np
import pytest

from imitate.config import EnvConfig
from imitate.errors import ConfigError
from imitate.experts.search import SearchConfig, SearchExpert
from imitate.motion import load_clip
from imitate.simulation import Simulation

SMALL = SearchConfig(candidates=6, horizon=3, noise_rad=0.1, cold_iterations=2, seed=3, nthread=1)


@pytest.fixture
def setup(synthetic_clip_path):
    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(synthetic_clip_path)
    sim = Simulation(config, 3, nthread=1, clip=clip)
    sim.reset(np.arange(3), np.array([0.0, 0.05, 0.12]))
    return config, clip, sim


def test_best_is_never_worse_than_the_nominal_candidate(setup):
    config, clip, sim = setup
    expert = SearchExpert(clip, config, SMALL)
    for _ in range(3):
        expert.label(sim)
        costs = expert.last_costs
        chosen = np.min(costs, axis=1)
        assert np.all(chosen <= costs[:, 0]) and np.all(chosen <= costs[:, 1])
        sim.step(expert.label(sim))


def test_costs_reproduce_a_rollout_of_the_env(setup):
    """The plan's first target, executed by the env itself, reaches the state the planner
    predicted: rollouts from the exact state row reproduce the simulator."""
    config, clip, sim = setup
    expert = SearchExpert(clip, config, SMALL)
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    plan = np.zeros((3, 1, SMALL.horizon, 28))
    first, again = expert.costs(states, times, plan)[:, 0], expert.costs(states, times, plan)[:, 0]
    np.testing.assert_array_equal(first, again)  # the same rollout twice: the same numbers
    # step the env with the reference targets (zero offsets) and compare the planner's first state
    from imitate.config import action_to_ctrl, targets_to_action

    action = np.clip(targets_to_action(clip.qpos(times + config.control_dt)[:, 7:]), -1, 1)
    expert._batch(3).state[:] = states
    expert._planner.ctrl[:] = action_to_ctrl(action, "pd_target")  # the env's own mapping, bit for bit
    expert._planner.step(nstep=config.substeps)
    sim.step(action)
    np.testing.assert_array_equal(expert._planner.qpos, sim.qpos)


def test_deterministic_under_a_seed(setup):
    config, clip, sim = setup
    a = SearchExpert(clip, config, SMALL).label(sim)
    b = SearchExpert(clip, config, SMALL).label(sim)
    c = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "seed": 4})).label(sim)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batched_labelling_equals_one_by_one(setup):
    config, clip, sim = setup
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    keys = np.array([7, 8, 9])
    batched = SearchExpert(clip, config, SMALL)
    single = SearchExpert(clip, config, SMALL)
    for _ in range(2):  # a cold decision, then a warm-started one
        together = batched.label_states(states, times, keys)
        apart = np.concatenate([single.label_states(states[i:i + 1], times[i:i + 1], keys[i:i + 1]) for i in range(3)])
        np.testing.assert_array_equal(together, apart)
        times = times + config.control_dt


def test_a_cold_mppi_label_does_not_depend_on_the_batch_it_is_computed_in(synthetic_clip_path):
    """The DAgger recipe's labels (cold, MPPI, knots): the same bits for a state whatever other
    states share its batch (Ray workers split batches; a BLAS kernel's blocking must not show)."""
    from imitate.experts.search import DAGGER_LABELS

    config = EnvConfig(clip=str(synthetic_clip_path))
    clip = load_clip(synthetic_clip_path)
    n = 7
    sim = Simulation(config, n, nthread=1, clip=clip)
    sim.reset(np.arange(n), np.linspace(0.0, 0.25, n))
    rng = np.random.default_rng(0)
    for _ in range(3):
        sim.step(rng.uniform(-0.3, 0.3, (n, 28)))
    cold = replace(DAGGER_LABELS, candidates=6, horizon=4, nthread=1)
    states, times, keys = np.array(sim.batch.state), sim.ref_time_s.copy(), np.arange(n)
    expert = SearchExpert(clip, config, cold)
    together = expert.label_states(states, times, keys)
    for parts in ([[0, 2, 4, 6], [1, 3, 5]], [[0, 1, 2], [3, 4, 5, 6]], [[i] for i in range(n)]):
        split = np.empty_like(together)
        for rows in parts:
            split[rows] = expert.label_states(states[rows], times[rows], keys[rows])
        np.testing.assert_array_equal(split, together)


def test_mppi_label_weights_the_candidates_and_keeps_the_best_plan(setup):
    """label="mppi": with a vanishing temperature the weights fall on the best candidate (the
    label equals best-of-K's); at the default it is a mean that differs; the plan kept for the
    warm start is the best candidate's either way."""
    config, clip, sim = setup
    experts = {name: SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, **kw}))
               for name, kw in (("best", {}), ("cold", {"label": "mppi", "temperature": 1e-12}),
                                ("mppi", {"label": "mppi"}))}
    labels = {name: e.label(sim) for name, e in experts.items()}
    np.testing.assert_allclose(labels["cold"], labels["best"], atol=1e-12)
    assert np.abs(labels["mppi"] - labels["best"]).max() > 1e-4
    for k in range(3):
        np.testing.assert_array_equal(experts["mppi"].plans[k], experts["best"].plans[k])


@pytest.mark.parametrize("label", ["best", "mppi"])
def test_cold_search_labels_are_a_function_of_the_state(setup, label):
    """warm_start=False: the same state and time get the same label whatever was labelled
    before (and under any key); with a warm start the history changes it."""
    config, clip, sim = setup
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    cold = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "warm_start": False, "label": label}))
    warm = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "label": label}))
    for name, expert in (("cold", cold), ("warm", warm)):
        first = expert.label_states(states[:1], times[:1], np.array([0]))
        expert.label_states(states[1:], times[1:], np.array([0, 1]))  # other states, the same key
        again = expert.label_states(states[:1], times[:1], np.array([0]))
        other_key = expert.label_states(states[:1], times[:1], np.array([5]))
        if name == "cold":
            np.testing.assert_array_equal(again, first)
            np.testing.assert_array_equal(other_key, first)
        else:
            assert not np.array_equal(again, first)


def test_torque_label_applies_the_servo_force(setup, synthetic_clip_path):
    """In torque space the label, with the torque model's passive damping, exerts on every hinge
    the force the servo would exert for the pd_target label's target (MuJoCo's own force
    fields, mj_forward): the damping -kd dq counted once, not twice."""
    import mujoco

    from imitate import humanoid as hum
    from imitate.config import action_to_ctrl

    _, clip, sim = setup
    pd = SearchExpert(clip, EnvConfig(clip=str(synthetic_clip_path)), SMALL).label(sim)
    torque = SearchExpert(clip, EnvConfig(clip=str(synthetic_clip_path), action_space="torque"), SMALL).label(sim)
    forces = {}
    for space, action in (("pd_target", pd), ("torque", torque)):
        model = hum.load_model(space)
        data = mujoco.MjData(model)
        rows = []
        for i in range(sim.num_envs):
            data.qpos[:], data.qvel[:] = sim.qpos[i], sim.qvel[i]
            data.ctrl[:] = action_to_ctrl(action[i:i + 1], space)[0]
            mujoco.mj_forward(model, data)
            rows.append((data.qfrc_actuator + data.qfrc_passive)[hum.HINGE_QVEL].copy())
        forces[space] = np.array(rows)
    servo = forces["pd_target"]  # the servo's force, its damping included
    # where neither the torque label nor the servo's force is at its limit
    unclipped = (np.abs(torque) < 1 - 1e-9) & (np.abs(servo) < hum.TORQUE_LIMIT - 1e-6)
    assert unclipped.mean() > 0.3
    np.testing.assert_allclose(forces["torque"][unclipped], forces["pd_target"][unclipped], atol=1e-6)


def test_config_refusals():
    with pytest.raises(ConfigError):
        SearchConfig(candidates=1)
    with pytest.raises(ConfigError):
        SearchConfig(noise_rad=-0.1)
    for temperature in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature"):
            SearchConfig(temperature=temperature)


# ----- knots and noise decay ------------------------------------------------------------------
def test_knot_weights_interpolate_linearly_between_evenly_spread_knots():
    from imitate.experts.search import knot_weights

    np.testing.assert_array_equal(knot_weights(6, 6), np.eye(6))
    np.testing.assert_array_equal(knot_weights(4, 1), np.ones((4, 1)))
    values = np.array([1.0, -2.0, 5.0])  # knots at steps 0, 2.5 and 5 of a 6-step horizon
    expected = []
    for step in range(6):  # explicit piecewise-linear interpolation
        if step <= 2.5:
            w = step / 2.5
            expected.append((1 - w) * values[0] + w * values[1])
        else:
            w = (step - 2.5) / 2.5
            expected.append((1 - w) * values[1] + w * values[2])
    np.testing.assert_allclose(knot_weights(6, 3) @ values, expected, atol=1e-12)


@pytest.mark.parametrize("knots", [1, 2])
def test_knot_candidates_are_piecewise_linear_around_the_plan(setup, knots):
    config, clip, _ = setup
    h = 5
    expert = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "horizon": h, "knots": knots}))
    plans = np.random.default_rng(0).normal(size=(2, h, 28))
    out = expert._candidates(plans, [np.random.default_rng(1), np.random.default_rng(2)])
    np.testing.assert_array_equal(out[:, 0], plans)  # the plan itself
    np.testing.assert_array_equal(out[:, 1], 0.0)  # the reference
    noise = out[:, 2:] - plans[:, None]
    if knots == 1:  # one constant offset over the horizon
        np.testing.assert_allclose(noise, np.broadcast_to(noise[:, :, :1], noise.shape), atol=1e-12)
    else:  # a straight line from the first step to the last
        line = noise[:, :, :1] + (noise[:, :, -1:] - noise[:, :, :1]) * np.arange(h)[:, None] / (h - 1)
        np.testing.assert_allclose(noise, line, atol=1e-12)
    assert np.abs(noise).max() > 0.01


@pytest.mark.parametrize("candidates", [7, 8])
def test_antithetic_candidates_come_in_mirrored_pairs_around_the_plan(setup, candidates):
    """Candidates 2.. are plan + e_1..e_P then plan - e_1..e_P (cut to K), with e the generator's
    first draws, as an explicit draw of the same generator gives them."""
    config, clip, _ = setup
    h, knots = 4, 2
    cfg = replace(SMALL, candidates=candidates, horizon=h, knots=knots, antithetic=True)
    plans = np.random.default_rng(0).normal(size=(1, h, 28))
    out = SearchExpert(clip, config, cfg)._candidates(plans, [np.random.default_rng(9)], 0.5)
    pairs = (candidates - 1) // 2
    e = np.random.default_rng(9).normal(0.0, 0.5 * cfg.noise_rad, (pairs, knots, 28))
    at_steps = np.array([[1.0, 0.0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0.0, 1.0]])  # 2 knots over 4 steps
    e = np.einsum("hm,pmj->phj", at_steps, e)
    expected = np.concatenate([e, -e])[:candidates - 2]
    np.testing.assert_array_equal(out[0, 0], plans[0])
    np.testing.assert_array_equal(out[0, 1], 0.0)
    np.testing.assert_allclose(out[0, 2:] - plans[0], expected, atol=1e-12)
    assert out.shape == (1, candidates, h, 28)


def test_antithetic_labels_are_batch_invariant(setup):
    """A cold antithetic search labels each state alike alone or in a batch."""
    config, clip, sim = setup
    cfg = replace(SMALL, warm_start=False, label="mppi", knots=2, antithetic=True)
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    together = SearchExpert(clip, config, cfg).label_states(states, times, np.arange(3))
    alone = [SearchExpert(clip, config, cfg).label_states(states[i:i + 1], times[i:i + 1], np.array([i]))
             for i in range(3)]
    np.testing.assert_array_equal(together, np.concatenate(alone))


def test_noise_decay_scales_the_noise_of_later_iterations(setup):
    config, clip, _ = setup
    expert = SearchExpert(clip, config, SMALL)
    plans = np.random.default_rng(0).normal(size=(1, SMALL.horizon, 28))
    full = expert._candidates(plans, [np.random.default_rng(5)], 1.0)
    half = expert._candidates(plans, [np.random.default_rng(5)], 0.5)
    np.testing.assert_allclose(half[:, 2:] - plans[:, None], 0.5 * (full[:, 2:] - plans[:, None]), atol=1e-12)


def test_each_search_iteration_shrinks_the_noise_by_the_decay(setup):
    """A cold row (3 iterations) and a warm row (1) in one batch: iteration i draws noise at
    noise_decay**i, for the rows still searching."""
    config, clip, sim = setup
    expert = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "iterations": 1, "cold_iterations": 3,
                                                        "noise_decay": 0.5, "knots": 2}))
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    expert.label_states(states[:1], times[:1], np.array([0]))  # key 0 now has a plan: warm
    seen = []
    original = expert._candidates

    def spy(plans, rngs, scale=1.0):
        seen.append((len(plans), scale))
        return original(plans, rngs, scale)

    expert._candidates = spy
    expert.label_states(states[:2], times[:2], np.array([0, 1]))  # key 1 is new: cold
    assert seen == [(2, 1.0), (1, 0.5), (1, 0.25)]


def test_knot_and_decay_refusals():
    for bad in ({"knots": -1}, {"knots": 16}, {"knots": 2.0}, {"knots": True}, {"noise_decay": 0.0},
                {"noise_decay": 1.5}):
        with pytest.raises(ConfigError, match="knots"):
            SearchConfig(**bad)


def test_planning_hz_plans_on_a_coarser_timestep(setup):
    """planning_hz=300: the planner takes 10 steps of 1/300 s per control step, as a plain
    MjData stepped by hand on a 300 Hz model from the same state would."""
    import mujoco

    from imitate import humanoid as hum

    config, clip, sim = setup
    expert = SearchExpert(clip, config, SearchConfig(**{**SMALL.__dict__, "planning_hz": 300.0}))
    assert expert.model.opt.timestep == pytest.approx(1 / 300) and expert.substeps == 10
    states, times = np.array(sim.batch.state), sim.ref_time_s.copy()
    targets = np.clip(clip.qpos(times + config.control_dt)[:, 7:], hum.HINGE_RANGE[:, 0], hum.HINGE_RANGE[:, 1])
    planner = expert._batch(3)
    planner.state[:] = states
    planner.ctrl[:] = targets
    planner.step(nstep=expert.substeps)
    model = hum.load_model("pd_target", 300.0)
    data = mujoco.MjData(model)
    for i in range(3):
        mujoco.mj_setState(model, data, states[i], mujoco.mjtState.mjSTATE_INTEGRATION)
        data.ctrl[:] = targets[i]
        for _ in range(10):
            mujoco.mj_step(model, data)
        np.testing.assert_allclose(planner.qpos[i], data.qpos, atol=1e-9)
    costs = expert.costs(states, times, np.zeros((3, 2, SMALL.horizon, 28)))
    assert np.isfinite(costs).all()


def test_planning_hz_must_be_a_multiple_of_the_control_rate(setup):
    config, clip, _ = setup
    with pytest.raises(ConfigError, match="multiple of the control rate"):
        SearchExpert(clip, config, SearchConfig(planning_hz=45.0))
    with pytest.raises(ConfigError, match="planning_hz"):
        SearchConfig(planning_hz=0.0)
