"""Model solutions of the coding exercises (``seqdiff_kit.exercises.CODE``), for teachers.

Students do not need this file: ``exercises.check`` grades their function against the kit's own version. The
nbgrader course (``scripts/make_course.py``) puts each function's body between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` in the instructor's copy; ``exercises.solution(id)`` prints it on explicit request. Each
function has exactly the signature of the stub in the lesson notebook."""
import torch


def alpha_bars_from_betas(betas):
    return torch.cumprod(1 - betas, dim=0)


def add_noise(x0, t, noise, schedule):
    a = schedule.alpha_bar(t).reshape(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def gauss_eps(x, alpha_bar, mean, var):
    a = alpha_bar
    return (1 - a) ** 0.5 * (x - a ** 0.5 * mean) / (a * var + 1 - a)


def my_simple_loss(model, x0, t, noise, schedule):
    a = schedule.alpha_bar(t).reshape(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    return (noise - model(x_t, t)).pow(2).flatten(1).sum(1).mean()


def ddim_step(x, eps, t, s, schedule):
    a_t, a_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    x0_pred = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return a_s ** 0.5 * x0_pred + (1 - a_s) ** 0.5 * eps


def ddim_sampler(model, x_T, schedule, timesteps):
    xs = [x_T]
    for t, s in zip(timesteps, list(timesteps[1:]) + [-1]):
        eps = model(xs[-1], torch.full((x_T.shape[0],), t))
        xs.append(ddim_step(xs[-1], eps, t, s, schedule))
    return torch.stack(xs)


def sa_term(model, x0, t, noise, schedule, K):
    total = 0
    for k in range(K):
        t_k = (t - k).clamp(min=0)
        a = schedule.alpha_bar(t_k).reshape(-1, *[1] * (x0.ndim - 1)).to(x0.dtype)
        x_tk = a.sqrt() * x0 + (1 - a).sqrt() * noise[k]
        keep = (t >= k).to(x0.dtype).reshape(-1, *[1] * (x0.ndim - 1))
        total = total + keep * (noise[k] - model(x_tk, t_k))
    return total.pow(2).flatten(1).sum(1).mean() / K**2


def heun_step(model, x, t, s, schedule):
    a_t, a_s = float(schedule.alpha_bar(t)), float(schedule.alpha_bar(s))
    eps_t = model(x, torch.full((x.shape[0],), t))
    if s < 0:
        return (x - (1 - a_t) ** 0.5 * eps_t) / a_t ** 0.5
    sig_t, sig_s = ((1 - a_t) / a_t) ** 0.5, ((1 - a_s) / a_s) ** 0.5
    guess = a_s ** 0.5 * (x / a_t ** 0.5 + (sig_s - sig_t) * eps_t)
    eps_s = model(guess, torch.full((x.shape[0],), s))
    return a_s ** 0.5 * (x / a_t ** 0.5 + (sig_s - sig_t) * (eps_t + eps_s) / 2)
