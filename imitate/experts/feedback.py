"""Time-varying linear feedback (TVLQR) around a feasible trajectory: pure functions.

The state deviation lives in MuJoCo's tangent space, dx = (dq, dv) (2 nv = 68): dq as
``mj_differentiatePos`` gives it (root position in the world frame, root rotation in the root's
local frame, hinge angles), dv the velocity difference.  One control step (servo targets u held
for ``substeps`` physics steps) is linearised as dx' = A dx + B du by chaining MuJoCo's own
one-step Jacobians (``mjd_transitionFD``), and the backward Riccati recursion gives gains
K (T, nu, 68) so that u = u* - K dx: a label is one matrix-vector product.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

from .. import humanoid as hum
from .. import quat


def tangent_difference(qpos_ref: np.ndarray, qpos: np.ndarray) -> np.ndarray:
    """dq (N, nv) with qpos = qpos_ref "+" dq, as mujoco.mj_differentiatePos(dt = 1): root
    position difference [m] (world), root rotation [rad] in the reference root's local frame,
    hinge differences [rad].  qpos_ref, qpos: (N, nq)."""
    qpos_ref, qpos = np.atleast_2d(qpos_ref), np.atleast_2d(qpos)
    rot = quat.to_rotvec(quat.mul(quat.conj(qpos_ref[:, hum.ROOT_QUAT]), qpos[:, hum.ROOT_QUAT]))
    return np.concatenate([qpos[:, hum.ROOT_POS] - qpos_ref[:, hum.ROOT_POS], rot,
                           qpos[:, hum.HINGE_QPOS] - qpos_ref[:, hum.HINGE_QPOS]], axis=1)


def state_deviation(qpos_ref, qvel_ref, qpos, qvel) -> np.ndarray:
    """dx (N, 2 nv): tangent_difference of the positions, then qvel - qvel_ref."""
    return np.concatenate([tangent_difference(qpos_ref, qpos), np.atleast_2d(qvel) - np.atleast_2d(qvel_ref)], axis=1)


def linearise(model: mujoco.MjModel, states: np.ndarray, ctrl: np.ndarray, substeps: int, *,
              eps: float = 1e-6, progress: Callable[[int, int], None] | None = None):
    """A (T, 2nv, 2nv), B (T, 2nv, nu) of each control step of a trajectory: states (T + 1,
    nstate) integration-state rows, ctrl (T, nu) held for substeps physics steps each.  The
    product of the substeps' mjd_transitionFD Jacobians (centred differences) taken along the
    step's own physics states."""
    nx, nu = 2 * model.nv + model.na, model.nu
    data = mujoco.MjData(model)
    a_step, b_step = np.zeros((nx, nx)), np.zeros((nx, nu))
    a_out, b_out = np.zeros((len(ctrl), nx, nx)), np.zeros((len(ctrl), nx, nu))
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    for k, u in enumerate(ctrl):
        mujoco.mj_setState(model, data, states[k], spec)
        data.ctrl[:] = u
        a, b = np.eye(nx), np.zeros((nx, nu))
        for _ in range(substeps):  # x_{i+1} = A_i x_i + B_i u: chain them over the control step
            mujoco.mjd_transitionFD(model, data, eps, True, a_step, b_step, None, None)
            a, b = a_step @ a, a_step @ b + b_step
            mujoco.mj_step(model, data)
        a_out[k], b_out[k] = a, b
        if progress:
            progress(k + 1, len(ctrl))
    return a_out, b_out


def riccati_gains(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Gains K (T, nu, nx) of the finite-horizon discrete LQR on dx_{k+1} = A_k dx_k + B_k du_k
    with stage cost dx' Q dx + du' R du and terminal cost dx' Q dx: du_k = -K_k dx_k.
    a: (T, nx, nx); b: (T, nx, nu); q: (nx, nx); r: (nu, nu)."""
    p = q.copy()
    gains = np.zeros((len(a), b.shape[2], a.shape[1]))
    for k in range(len(a) - 1, -1, -1):
        bp = b[k].T @ p
        gains[k] = np.linalg.solve(r + bp @ b[k], bp @ a[k])
        p = q + a[k].T @ p @ (a[k] - b[k] @ gains[k])
        p = 0.5 * (p + p.T)  # keep it symmetric against round-off
    return gains
