"""Numba kernels of the two peer loss laws (cdfast.models.annealing, cdfast.models.mpl).

Kernels assume validated input (the models' ``prepare``/``basis`` check it), write into
arrays the caller owns and never allocate.  Indexing is cdfast's: ``lr[i] = eta_{i+1}``,
``steps`` are 1-based and strictly increasing, the loss at step ``tau`` follows the
updates with ``eta_1 .. eta_tau``.  ``K >= 1`` is the last warmup step: ``eta_K`` plays
the role of the papers' ``eta_0`` and the decrements ``d_k = eta_{k-1} - eta_k`` are
counted for ``k = K+1 ..``.
"""

from __future__ import annotations

import math

import numba

from ._numba import _OPTS


@numba.njit(**_OPTS)
def _annealing_area(lr, K, lam, steps, out):
    # S2(tau) = sum_{i<=tau} m_i with m_i = lam m_{i-1} + d_i (Tissue et al. 2024), d_i = 0
    # up to the end of warmup.  The recursion itself (not the closed form
    # (D - lam m) / (1 - lam)) keeps every partial sum a sum of terms of one sign for a
    # monotone decay: the closed form cancels right after a decay starts when lam ~ 1.
    n = steps.shape[0]
    m = 0.0
    s2 = 0.0
    j = 0
    prev = lr[K - 1]
    for t in range(1, steps[n - 1] + 1):
        d = 0.0
        if t > K:
            eta = lr[t - 1]
            d = prev - eta
            prev = eta
        m = lam * m + d
        s2 += m
        while j < n and steps[j] == t:
            out[j] = s2
            j += 1


# Below these arguments a short Taylor series is exact to a few ulp (the first omitted
# term is below x^5/120 <= 1e-17 relative), above X_BIG exp(-x) < 4.3e-18 is dropped.
X_SMALL = 1e-3
X_BIG = 40.0
LOG_X_SMALL = math.log(X_SMALL)
LOG_X_BIG = math.log(X_BIG)


@numba.njit(inline="always", **_OPTS)
def _decay_pair(v, u0, h, lo, hi, eta, q, p):
    # q[m] = exp(-v[m] eta), p[m] = 1 - q[m] on nodes lo..hi-1.  v is geometric, so the
    # nodes split into three runs by x = v eta: x < X_SMALL (Taylor series), x > X_BIG
    # (q = 0, p = 1: q A <= 4e-18 A is below rounding, since A <= W) and the rest (expm1).
    le = math.log(eta)
    m1 = min(max(int(math.ceil((LOG_X_SMALL - le - u0) / h)), lo), hi)
    m2 = min(max(int(math.ceil((LOG_X_BIG - le - u0) / h)), m1), hi)
    for m in range(lo, m1):
        x = v[m] * eta
        pm = x * (1.0 - x * (0.5 - x * (1.0 / 6.0 - x * (1.0 / 24.0 - x * (1.0 / 120.0)))))
        p[m] = pm
        q[m] = 1.0 - pm
    for m in range(m1, m2):
        em = math.expm1(-v[m] * eta)
        q[m] = 1.0 + em
        p[m] = -em
    for m in range(m2, hi):
        q[m] = 0.0
        p[m] = 1.0


@numba.njit(inline="always", **_OPTS)
def _add_weights(w, ad, u, v, u0, h, ma, mb, beta, lg, rb):
    # w[m] += ad phi(s_m) Gamma(beta), s_m = v[m] e^lg, for m = ma..mb.  Where s < X_SMALL,
    # s^beta runs along the geometric grid (s_{m+1}^beta = s_m^beta e^{beta h} = rb s_m^beta,
    # one rounding per node) and e^-s is a Taylor series; above, one exp per node.
    g = math.exp(lg)
    mc = min(max(int(math.ceil((LOG_X_SMALL - lg - u0) / h)), ma), mb + 1)
    if mc > ma:
        pw = math.exp(beta * (u[ma] + lg))
        for m in range(ma, mc):
            sm = v[m] * g
            w[m] += ad * (pw * (1.0 - sm * (1.0 - sm * (0.5 - sm * (1.0 / 6.0 - sm * (1.0 / 24.0))))))
            pw *= rb
    bl = beta * lg
    for m in range(mc, mb + 1):
        w[m] += ad * math.exp(beta * u[m] + bl - v[m] * g)



@numba.njit(**_OPTS)
def _mpl_drop(lr, K, steps, gamma, beta, log_c, u, v, h, scale, win, work, out_pos, out_neg):
    # For every requested tau, the positive and negative parts of
    #     sum_{k=K+1..tau} d_k G_k(tau),  G_k(tau) = 1 - (1 + C eta_k^-gamma S_k(tau))^-beta,
    # S_k(tau) = eta_k + ... + eta_tau, in O(T M) instead of O(T^2).
    #
    # G(x) = int_0^inf phi(v / (C y)) (1 - exp(-v x)) dv/v with y = eta^-gamma and
    # phi(s) = s^beta exp(-s) / Gamma(beta): the exponential rate v is the same for every
    # k, so on a fixed grid v_m = exp(u_m) (trapezoid in log v, weight h; `scale` =
    # h / Gamma(beta)) each node is a first-order causal recursion over t:
    #     W_m(t) = W_m(t-1) + |d_t| phi(v_m eta_t^gamma / C)
    #     A_m(t) = exp(-v_m eta_t) A_m(t-1) + (1 - exp(-v_m eta_t)) W_m(t)
    # (from 1 - e^{-v(x + eta)} = e^{-v eta}(1 - e^{-v x}) + (1 - e^{-v eta})), so that
    # A_m(t) = sum_k |d_k| phi_k,m (1 - exp(-v_m S_k(t))).  Positive and negative d_k have
    # their own states: every state is a sum of non-negative terms, updated by products
    # of numbers in [0, 1] and additions, so it keeps a small relative error and no
    # exp(+v P) is ever formed.  1 - exp(-v eta) never comes from a subtraction
    # (_decay_pair); the pair (q, p) is recomputed only when eta changes.
    #
    # A term only needs the nodes where s = v eta^gamma / C lies in its window
    # [s_lo(z), s_hi] (plus one node beyond each end): outside, the integrand is monotone
    # and the omitted nodes sum to less than the tail integrals, which the error bound
    # already counts.  win = (log s_hi, log s_lo for small z, a, log x_max) with
    # log s_lo = min(win[1], (win[2] - log z) / (beta + 1)), z = C eta^-gamma x_max.
    # Nodes that no term has touched yet hold zero states and are skipped.
    #
    # A step with eta_k = 0 makes eta_k^-gamma infinite: its G is 1 as soon as some later
    # LR is positive (S_k > 0) and 0 before (no progress yet).  Such terms wait in `pend`
    # and move to `settled` at the next positive LR; they never enter the quadrature.
    T = lr.shape[0]
    M = u.shape[0]
    n = steps.shape[0]
    a_pos = work[0]
    a_neg = work[1]
    w_pos = work[2]
    w_neg = work[3]
    q = work[4]
    p = work[5]
    for m in range(M):
        a_pos[m] = 0.0
        a_neg[m] = 0.0
        w_pos[m] = 0.0
        w_neg[m] = 0.0
    u0 = u[0] if M > 0 else 0.0
    rb = math.exp(beta * h)
    lo_act = M  # nodes [lo_act, hi_act) have been touched
    hi_act = 0
    j = 0
    while j < n and steps[j] <= K:
        out_pos[j] = 0.0
        out_neg[j] = 0.0
        j += 1
    prev = lr[K - 1]
    qp_eta = -1.0  # eta for which q, p hold exp(-v eta), 1 - exp(-v eta) on the touched nodes
    pend_pos = 0.0
    pend_neg = 0.0
    set_pos = 0.0
    set_neg = 0.0
    has_neg = False
    for t in range(K + 1, T + 1):
        if j >= n:
            break
        eta = lr[t - 1]
        d = prev - eta
        prev = eta
        if eta > 0.0:
            set_pos += pend_pos
            set_neg += pend_neg
            pend_pos = 0.0
            pend_neg = 0.0
            if d != 0.0:
                lg = gamma * math.log(eta) - log_c  # log(eta^gamma / C) = -log(C y)
                ls_lo = min(win[1], (win[2] - (win[3] - lg)) / (beta + 1.0))
                ma = max(int(math.floor((ls_lo - lg - u0) / h)), 0)
                mb = min(int(math.ceil((win[0] - lg - u0) / h)), M - 1)
                if lo_act >= hi_act:
                    lo_act = ma
                    hi_act = ma
                    qp_eta = eta
                if ma < lo_act:
                    _decay_pair(v, u0, h, ma, lo_act, qp_eta, q, p)
                    lo_act = ma
                if mb + 1 > hi_act:
                    _decay_pair(v, u0, h, hi_act, mb + 1, qp_eta, q, p)
                    hi_act = mb + 1
                if d > 0.0:
                    _add_weights(w_pos, d, u, v, u0, h, ma, mb, beta, lg, rb)
                else:
                    has_neg = True
                    _add_weights(w_neg, -d, u, v, u0, h, ma, mb, beta, lg, rb)
            if eta != qp_eta:
                _decay_pair(v, u0, h, lo_act, hi_act, eta, q, p)
                qp_eta = eta
            for m in range(lo_act, hi_act):
                a_pos[m] = q[m] * a_pos[m] + p[m] * w_pos[m]
            if has_neg:
                for m in range(lo_act, hi_act):
                    a_neg[m] = q[m] * a_neg[m] + p[m] * w_neg[m]
        elif d > 0.0:
            pend_pos += d
        elif d < 0.0:
            pend_neg -= d
        while j < n and steps[j] == t:
            sp = 0.0
            sn = 0.0
            for m in range(lo_act, hi_act):
                sp += a_pos[m]
                sn += a_neg[m]
            out_pos[j] = scale * sp + set_pos
            out_neg[j] = scale * sn + set_neg
            j += 1
