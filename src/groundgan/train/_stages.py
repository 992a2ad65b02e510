"""WGAN-GP training stages: a step is ``n_critic`` critic updates and one generator update.

The stages know networks and tensors only (no genes, no AnnData). Each step returns its losses
as one detached device tensor, so the loop can log them without a host sync per step. How a
step is computed (fused or foreach AdamW, one critic pass over real and fake cells, shared
labeler passes, TF32, bfloat16 autocast, CUDA graphs) is set by
:class:`~groundgan.train._performance.PerformanceOptions`; every speed path has a plain
fallback that computes the same losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import GroundGANModule
from . import _ema, _performance
from ._graphs import CapturedStep, CudaGraphBackend
from ._performance import PerformanceOptions


@dataclass(frozen=True)
class StageSettings:
    """Hyperparameters of one training stage (defaults: the paper's stage 2)."""

    max_steps: int = 1_000_000
    batch_size: int = 1024
    n_critic: int = 5
    gp_lambda: float = 10.0
    lr_generator: float = 1e-3
    lr_generator_final: float = 1e-4
    lr_critic: float = 1e-3
    lr_critic_final: float = 1e-3
    lr_labeler: float = 1e-4
    weight_decay: float = 0.01
    #: decay of the moving average of the generator's weights (``None``: no average)
    ema_decay: float | None = None


def make_optimizer(
    params, lr: float, weight_decay: float, flags: dict[str, bool] | None = None
) -> torch.optim.Optimizer:
    """AdamW with AMSGrad and betas (0.5, 0.9), as in the paper (``flags``: see
    :func:`~groundgan.train._performance.optimizer_flags`)."""
    return _performance.make_optimizer(params, lr, weight_decay, flags)


def exponential_decay(
    optimizer: torch.optim.Optimizer, lr: float, lr_final: float, max_steps: int
) -> torch.optim.lr_scheduler.ExponentialLR:
    """Decay from ``lr`` to ``lr_final`` over ``max_steps`` steps: gamma = (final/lr)^(1/steps)."""
    gamma = (lr_final / lr) ** (1.0 / max(max_steps, 1))
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", lr)  # a float also where the optimiser holds a tensor
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=gamma)


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, eps: Tensor) -> Tensor:
    """``mean((||grad D(x_hat)||_2 - 1)^2)`` at ``x_hat = eps * real + (1 - eps) * fake``."""
    interpolated = (eps * real + (1 - eps) * fake).requires_grad_(True)
    scores = critic(interpolated)
    (grad,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


class WGANGPStage:
    """One WGAN-GP stage over resident training data.

    Subclasses say how fake cells are generated (:meth:`generate`), which parameters the
    generator optimiser updates and which critic judges; they may add generator losses.

    Parameters
    ----------
    module
        The networks; on the same device as ``data``.
    data
        Training cells (cells, genes), resident on the training device.
    settings
        Hyperparameters.
    rng
        Generator of all training randomness, on ``data``'s device.
    performance
        Speed paths (default: all, float32); :meth:`PerformanceOptions.plain` for none.
    """

    name = "stage"
    #: attribute of the module that this stage's generator optimiser trains (and averages)
    generator_name = ""
    metric_names: tuple[str, ...] = (
        "critic_loss",
        "wasserstein",
        "gradient_penalty",
        "generator_loss",
    )
    #: The critic scores each cell on its own (no BatchNorm, no per-batch state), so real and
    #: fake cells may be scored in one pass. Subclasses with such a critic set it to True.
    critic_is_per_cell: bool = False

    def __init__(
        self,
        module: GroundGANModule,
        data: Tensor,
        settings: StageSettings,
        rng: torch.Generator,
        *,
        performance: PerformanceOptions | None = None,
    ):
        self.module, self.data, self.settings, self.rng = module, data, settings, rng
        self.performance = PerformanceOptions() if performance is None else performance
        self.device = _performance.check_resident(module, data, rng)
        _performance.check_precision(self.performance.precision, self.device)
        _performance.check_cuda_graphs(self.performance.cuda_graphs, self.device)
        #: capture-ready step: gradients zeroed in place, learning rates as device tensors
        self.capture_ready = self.performance.cuda_graphs
        self.optimizer_flags = _performance.optimizer_flags(
            self.device, self.performance.optimizer, cuda_graphs=self.capture_ready
        )
        self.tensor_learning_rates = self.capture_ready and (
            _performance.takes_tensor_learning_rate(self.optimizer_flags)
        )
        self.completed_steps = 0
        self._schedule_loaded = False
        s = settings
        self.critic_optimizer = self.new_optimizer(self.critic.parameters(), s.lr_critic)
        self.generator_optimizer = self.new_optimizer(self.generator_parameters(), s.lr_generator)
        self.schedulers = [
            exponential_decay(self.critic_optimizer, s.lr_critic, s.lr_critic_final, s.max_steps),
            exponential_decay(
                self.generator_optimizer, s.lr_generator, s.lr_generator_final, s.max_steps
            ),
        ]
        if self.tensor_learning_rates:
            self.schedule_to(0)  # the schedulers' own records of the rates as floats
        self.captured_step: CapturedStep | None = None
        if self.capture_ready and self.device.type == "cuda":
            self.captured_step = CapturedStep(self.step_body, CudaGraphBackend((rng,)))

    def new_optimizer(self, params, lr: float) -> torch.optim.Optimizer:
        """AdamW of the paper with this stage's implementation flags."""
        optimizer = make_optimizer(params, lr, self.settings.weight_decay, self.optimizer_flags)
        if self.tensor_learning_rates:
            _performance.learning_rates_to_tensors(optimizer, self.device)
        return optimizer

    def autocast(self):
        """Context of the forward passes: bfloat16 autocast when asked for, else nothing."""
        return _performance.autocast(
            self.device, self.performance.precision, cache_enabled=not self.capture_ready
        )

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Clear ``optimizer``'s gradients: freed, or zeroed in place for a capture-ready step
        (a captured step writes them at fixed addresses)."""
        optimizer.zero_grad(set_to_none=not self.capture_ready)

    # what subclasses define ----------------------------------------------------------------
    @property
    def critic(self) -> nn.Module:
        raise NotImplementedError

    def generator_parameters(self):
        raise NotImplementedError

    def generate(self, n: int) -> Tensor:
        """``n`` fake cells (with gradients to the generator)."""
        raise NotImplementedError

    def extra_generator_losses(self, fake: Tensor, real: Tensor) -> list[Tensor]:
        """Further generator losses (added to the adversarial one)."""
        return []

    def after_generator_step(self, fake: Tensor, real: Tensor) -> None:
        """Update auxiliary networks from the step's (detached) fake and real cells."""

    # the step ------------------------------------------------------------------------------
    def real_batch(self) -> Tensor:
        idx = torch.randint(
            self.data.shape[0],
            (self.settings.batch_size,),
            generator=self.rng,
            device=self.data.device,
        )
        return self.data[idx]

    def critic_scores(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Mean critic score (float32) of the real and of the fake cells.

        One pass over both stacked when the critic is per-cell and the option is on;
        otherwise one pass each.
        """
        if self.critic_is_per_cell and self.performance.joint_critic_forward:
            scores = self.critic(torch.cat([real, fake])).float()
            n = real.shape[0]
            return scores[:n].mean(), scores[n:].mean()
        return self.critic(real).float().mean(), self.critic(fake).float().mean()

    def critic_step(self) -> tuple[Tensor, Tensor, Tensor]:
        real = self.real_batch()
        with self.autocast():
            with torch.no_grad():
                fake = self.generate(real.shape[0])
            eps = torch.rand(real.shape[0], 1, generator=self.rng, device=real.device)
            real_score, fake_score = self.critic_scores(real, fake)
            wasserstein = real_score - fake_score
            penalty = gradient_penalty(self.critic, real, fake, eps).float()
            loss = -wasserstein + self.settings.gp_lambda * penalty
        self.zero_grad(self.critic_optimizer)
        loss.backward()
        self.critic_optimizer.step()
        return loss.detach(), wasserstein.detach(), penalty.detach()

    def before_generator_backward(self) -> None:
        """Called after the generator's losses and just before their backward pass."""

    def generator_step(self) -> list[Tensor]:
        real = self.real_batch()
        with self.autocast():
            fake = self.generate(real.shape[0])
            adversarial = -self.critic(fake).float().mean()
            extra = [e.float() for e in self.extra_generator_losses(fake, real)]
        loss = adversarial + sum(extra)
        self.zero_grad(self.generator_optimizer)
        self.before_generator_backward()
        loss.backward()
        self.generator_optimizer.step()
        self.after_generator_step(fake.detach(), real)
        return [loss.detach(), *(e.detach() for e in extra)]

    def step(self) -> Tensor:
        """One training step; returns the losses (see :attr:`metric_names`) as a device tensor.

        Nothing in a step reads a value back to the host: minibatches and noise are drawn on
        the device and the losses stay there. With CUDA graphs, :meth:`step_body` is replayed
        from its capture; the learning-rate schedules advance outside it.
        """
        self.module.train()  # outside the body: a replayed graph runs no Python
        with _performance.cuda_matmul_precision(self.device, self.performance.tf32):
            if self.captured_step is not None:
                losses = self.captured_step()
            else:
                losses = self.step_body()
        self.advance_schedules()
        self.update_average()
        return losses

    def start_average(self) -> None:
        """Begin the moving average of the generator's weights (if asked for and not begun)."""
        if self.settings.ema_decay is not None:
            self.module.start_average(self.generator_name)

    def update_average(self) -> None:
        """Move the generator's average towards its weights after a step (outside any graph)."""
        decay = self.settings.ema_decay
        if decay is None:
            return
        average = self.module.start_average(self.generator_name)
        current = getattr(self.module, self.generator_name)
        _ema.update_average(average, current, _ema.decay_at(decay, self.completed_steps))

    def step_body(self) -> Tensor:
        """The work of one step: ``n_critic`` critic updates, then the generator update."""
        for p in self.critic.parameters():
            p.requires_grad_(True)
        for _ in range(self.settings.n_critic):
            critic_metrics = self.critic_step()
        for p in self.critic.parameters():
            p.requires_grad_(False)
        generator_metrics = self.generator_step()
        return torch.stack([*critic_metrics, *generator_metrics])

    def advance_schedules(self) -> None:
        """Decay the learning rates by one step (closed form, in place, for tensor rates)."""
        if self.tensor_learning_rates:
            self.schedule_to(self.schedulers[0].last_epoch + 1)
        else:
            for scheduler in self.schedulers:
                scheduler.step()

    # state ---------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"critic": self.critic_optimizer, "generator": self.generator_optimizer}

    def state_dict(self) -> dict:
        return {
            "optimizers": {
                k: _performance.portable_optimizer_state(o) for k, o in self.optimizers().items()
            },
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict, same_schedule: bool = True) -> None:
        """Restore optimisers; and the schedules when they were made with the same settings."""
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
            _performance.conform_optimizer(o, self.optimizer_flags)
            if self.tensor_learning_rates:
                _performance.learning_rates_to_tensors(o, self.device)
        if self.captured_step is not None:
            self.captured_step.reset()  # the optimiser state it read was replaced
        if same_schedule:
            for s, s_state in zip(self.schedulers, state["schedulers"], strict=True):
                s.load_state_dict(s_state)
            self._schedule_loaded = True

    def fast_forward(self, steps: int, keep_loaded: bool = False) -> None:
        """Put the schedules at ``steps`` completed steps (closed form), unless loaded exactly."""
        if keep_loaded and getattr(self, "_schedule_loaded", False):
            return
        self.schedule_to(steps)

    def schedule_to(self, steps: int) -> None:
        """Set the learning rates of ``steps`` completed steps: ``base * gamma**steps``."""
        for scheduler in self.schedulers:
            scheduler.last_epoch = steps
            rates = [base * scheduler.gamma**steps for base in scheduler.base_lrs]
            for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
                _performance.set_learning_rate(group, rate)
            scheduler._last_lr = rates


class ControllerStage(WGANGPStage):
    """Stage 1: the causal controller (with LSN) as the generator of a WGAN-GP on all genes."""

    name = "stage1"
    generator_name = "controller"
    critic_is_per_cell = True

    @property
    def critic(self) -> nn.Module:
        return self.module.controller_critic

    def generator_parameters(self):
        return self.module.controller.parameters()

    def generate(self, n: int) -> Tensor:
        noise = torch.randn(
            n, self.module.controller.latent_dim, generator=self.rng, device=self.data.device
        )
        return self.module.generate_stage1(noise)


class GroundGANStage(WGANGPStage):
    """Stage 2: frozen causal controller -> target generators -> LSN, with labelers.

    Generator loss: ``-mean D(fake) + MSE(labeler(targets), TFs) + MSE(antilabeler(targets), TFs)``.
    The labeler learns on fake and real cells, the anti-labeler on fake cells, every step.
    """

    name = "stage2"
    generator_name = "target_generators"
    metric_names = WGANGPStage.metric_names + ("labeler_loss", "antilabeler_loss")
    critic_is_per_cell = True

    def __init__(self, module, data, settings, rng, *, performance=None):
        for p in module.controller.parameters():
            p.requires_grad_(False)
        super().__init__(module, data, settings, rng, performance=performance)
        self.labeler_optimizer = self.new_optimizer(
            module.labeler.parameters(), settings.lr_labeler
        )
        self.antilabeler_optimizer = self.new_optimizer(
            module.antilabeler.parameters(), settings.lr_labeler
        )

    @property
    def critic(self) -> nn.Module:
        return self.module.critic

    def calibrate(self, n_cells: int = 4096) -> None:
        """Start the target generators on the causal controller's per-gene scale (see
        :meth:`GroundGANModule.calibrate_target_generators`)."""
        m, device = self.module, self.data.device
        controller_noise = torch.randn(
            n_cells, m.controller.latent_dim, generator=self.rng, device=device
        )
        target_noise = torch.randn(n_cells, m.n_targets, generator=self.rng, device=device)
        m.train()
        m.calibrate_target_generators(controller_noise, target_noise)

    def generator_parameters(self):
        return self.module.target_generators.parameters()

    def generate(self, n: int) -> Tensor:
        m, device = self.module, self.data.device
        controller_noise = torch.randn(
            n, m.controller.latent_dim, generator=self.rng, device=device
        )
        target_noise = torch.randn(n, m.n_targets, generator=self.rng, device=device)
        return m.generate(controller_noise, target_noise)

    def split(self, cells: Tensor) -> tuple[Tensor, Tensor]:
        """(labeler inputs, labeler outputs) columns of cells: (targets, TFs) for a bipartite
        GRN; see :func:`groundgan.nn.labeler_genes`."""
        return cells[:, self.module.labeler_inputs], cells[:, self.module.labeler_outputs]

    def extra_generator_losses(self, fake: Tensor, real: Tensor) -> list[Tensor]:
        m = self.module
        fake_targets, fake_tfs = self.split(fake)
        # the labels are detached: otherwise the generator lowers these losses by inflating the
        # targets so that LSN shrinks the TFs, instead of making targets informative of TFs
        fake_tfs = fake_tfs.detach()
        labeler_loss = F.mse_loss(m.labeler(fake_targets), fake_tfs)
        antilabeler_loss = F.mse_loss(m.antilabeler(fake_targets), fake_tfs)
        return [labeler_loss, antilabeler_loss]

    def before_generator_backward(self) -> None:
        """With the shared labeler pass, the generator loss's backward pass leaves in the
        labelers' gradients exactly those of their fake-cell losses: start them from zero."""
        if self.performance.shared_labeler_pass:
            self.zero_grad(self.labeler_optimizer)
            self.zero_grad(self.antilabeler_optimizer)

    def after_generator_step(self, fake: Tensor, real: Tensor) -> None:
        """The labeler learns on fake and real cells, the anti-labeler on fake cells."""
        if self.performance.shared_labeler_pass:
            self._labeler_steps_shared(real)
        else:
            self._labeler_steps_plain(fake, real)

    def _labeler_steps_plain(self, fake: Tensor, real: Tensor) -> None:
        """Fresh forward and backward passes of both labelers on the step's cells."""
        m = self.module
        fake_targets, fake_tfs = self.split(fake)
        real_targets, real_tfs = self.split(real)
        with self.autocast():
            labeler_loss = F.mse_loss(m.labeler(fake_targets), fake_tfs) + F.mse_loss(
                m.labeler(real_targets), real_tfs
            )
            antilabeler_loss = F.mse_loss(m.antilabeler(fake_targets), fake_tfs)
        for optimizer, loss in (
            (self.labeler_optimizer, labeler_loss),
            (self.antilabeler_optimizer, antilabeler_loss),
        ):
            self.zero_grad(optimizer)
            loss.backward()
            optimizer.step()

    def _labeler_steps_shared(self, real: Tensor) -> None:
        """The labelers' fake-cell gradients are already there (from the generator loss, whose
        labeler terms are the labelers' own fake-cell losses at unchanged weights); add the
        labeler's real-cell term and step both."""
        m = self.module
        real_targets, real_tfs = self.split(real)
        with self.autocast():
            real_loss = F.mse_loss(m.labeler(real_targets), real_tfs)
        real_loss.backward()
        self.labeler_optimizer.step()
        self.antilabeler_optimizer.step()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            **super().optimizers(),
            "labeler": self.labeler_optimizer,
            "antilabeler": self.antilabeler_optimizer,
        }


#: The stage class of each GroundGAN stage, by name.
GROUNDGAN_STAGES: dict[str, type[WGANGPStage]] = {
    ControllerStage.name: ControllerStage,
    GroundGANStage.name: GroundGANStage,
}
