"""DARTS' bi-level optimisation with ``tf.GradientTape`` and compiled steps.

The training split is halved: the network weights w learn on one half (SGD with momentum,
weight decay, a cosine learning rate from ``w_lr`` to ``w_lr_min`` and gradient clipping), the
architecture α on the other (Adam, β₁ = 0.5 as in DARTS, L2 ``alpha_weight_decay``). Each step
first moves α on a batch of the α half, then w on a batch of the w half. The α gradient is
first-order (∇α L_val(w, α)) unless ``unrolled``: then DARTS' second-order approximation,
∇α L_val(w′, α) − ξ·(∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / 2ε with w′ = w − ξ∇w L_train(w, α)
and w± = w ± ε∇w′ L_val(w′, α), ε = 0.01 / ‖∇w′ L_val‖.

Memory: the super-net holds every primitive of every edge, so activations grow with
``batch_size × edges × primitives``; about (2 + 2·unrolled) forward/backward passes per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from trial_image import termination
from trial_image.darts.settings import NONE, DartsSettings
from trial_image.darts.supernet import SupernetShape
from trial_image.data import Split
from trial_image.training import predict_classes


def _gradient(tape: tf.GradientTape, loss: tf.Tensor, variables: list) -> list[tf.Tensor]:
    """Zeros where a variable does not reach the loss (α of reduction cells when the network
    has none, e.g. Katib's 1-layer darts-cpu example)."""
    grads = tape.gradient(loss, variables)
    return [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)]


@dataclass
class EpochResult:
    train_loss: float
    train_accuracy: float
    validation_accuracy: float
    learning_rate: float


class BilevelSearch:
    def __init__(self, model: keras.Model, shape: SupernetShape, settings: DartsSettings,
                 seed: int) -> None:
        self.model = model
        self.shape = shape
        self.settings = settings
        init = tf.random.stateless_normal((2, shape.edges, len(shape.primitives)), (seed, 7),
                                          stddev=1e-3)  # DARTS: 1e-3 · N(0, 1)
        self.alpha_normal = tf.Variable(init[0], name="alpha_normal")
        self.alpha_reduce = tf.Variable(init[1], name="alpha_reduce")
        self.alphas = [self.alpha_normal, self.alpha_reduce]
        self.weights = model.trainable_variables
        self.w_lr = tf.Variable(settings.w_lr, trainable=False, dtype=tf.float32)  # ξ, unrolled
        self.w_optimizer = keras.optimizers.SGD(learning_rate=settings.w_lr,
                                                momentum=settings.w_momentum)
        self.alpha_optimizer = keras.optimizers.Adam(learning_rate=settings.alpha_lr,
                                                     beta_1=0.5, beta_2=0.999)
        self.w_optimizer.build(self.weights)  # their variables exist before any tf.function
        self.alpha_optimizer.build(self.alphas)
        self.loss = keras.losses.SparseCategoricalCrossentropy()
        # Not XLA: it cannot compile max-pool gradients under op determinism, and without
        # determinism it was slower (docs/benchmarks.md, "Figures behind the code").
        self.alpha_step = tf.function(self._unrolled_alpha_step if settings.unrolled
                                      else self._alpha_step)
        self.weight_step = tf.function(self._weight_step)
        self.predict = tf.function(self._predict)

    # ---- the forward pass --------------------------------------------------------------------

    def mixing(self) -> list[tf.Tensor]:
        return [tf.nn.softmax(a, axis=-1)[None] for a in self.alphas]

    def _loss(self, x: tf.Tensor, y: tf.Tensor, mixing: list[tf.Tensor]) -> tuple:
        probabilities = self.model([x, *mixing], training=True)
        return self.loss(y, probabilities), probabilities

    def _predict(self, x: tf.Tensor) -> tf.Tensor:
        return self.model([x, *self.mixing()], training=False)

    # ---- the two steps -----------------------------------------------------------------------

    def _apply_alpha(self, grads: list[tf.Tensor]) -> None:
        decay = self.settings.alpha_weight_decay
        self.alpha_optimizer.apply_gradients(
            [(g + decay * a, a) for g, a in zip(grads, self.alphas, strict=True)])

    def _alpha_step(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        """First order: ∇α L_val(w, α) on a batch of the α half; w is not touched."""
        with tf.GradientTape() as tape:
            loss, _ = self._loss(x, y, self.mixing())
        self._apply_alpha(_gradient(tape, loss, self.alphas))
        return loss

    def _train_grads(self, x, y, mixing) -> tuple:
        with tf.GradientTape() as tape:
            loss, probabilities = self._loss(x, y, mixing)
        grads = _gradient(tape, loss, self.weights)
        decay = self.settings.w_weight_decay
        grads = [g + decay * w for g, w in zip(grads, self.weights, strict=True)]
        return loss, probabilities, grads

    def _unrolled_alpha_step(self, x: tf.Tensor, y: tf.Tensor, x_train: tf.Tensor,
                             y_train: tf.Tensor) -> tf.Tensor:
        """Second order (DARTS eq. 7–8): look one w step ahead, correct with a finite
        difference of the Hessian-vector product. w is restored before returning."""
        xi = self.w_lr
        saved = [tf.identity(w) for w in self.weights]
        mixing = [tf.stop_gradient(m) for m in self.mixing()]
        _, _, grads = self._train_grads(x_train, y_train, mixing)
        for w, g in zip(self.weights, grads, strict=True):
            w.assign_sub(xi * g)  # w′
        with tf.GradientTape() as tape:
            loss, _ = self._loss(x, y, self.mixing())
        d_alpha_and_w = _gradient(tape, loss, [*self.alphas, *self.weights])
        d_alpha, d_w = d_alpha_and_w[:2], d_alpha_and_w[2:]
        eps = 0.01 / (tf.linalg.global_norm(d_w) + 1e-12)
        hessian = []
        for sign in (1.0, -1.0):
            for w, saved_w, dw in zip(self.weights, saved, d_w, strict=True):
                w.assign(saved_w + sign * eps * dw)  # w⁺, then w⁻
            with tf.GradientTape() as tape:
                train_loss, _ = self._loss(x_train, y_train, self.mixing())
            hessian.append(_gradient(tape, train_loss, self.alphas))
        for w, saved_w in zip(self.weights, saved, strict=True):
            w.assign(saved_w)
        self._apply_alpha([da - xi * (hp - hm) / (2 * eps)
                           for da, hp, hm in zip(d_alpha, *hessian, strict=True)])
        return loss

    def _weight_step(self, x: tf.Tensor, y: tf.Tensor) -> tuple:
        """SGD on a batch of the w half with α fixed (no gradient reaches α)."""
        mixing = [tf.stop_gradient(m) for m in self.mixing()]
        loss, probabilities, grads = self._train_grads(x, y, mixing)
        grads, _ = tf.clip_by_global_norm(grads, self.settings.w_grad_clip)
        self.w_optimizer.apply_gradients(zip(grads, self.weights, strict=True))
        correct = tf.reduce_sum(tf.cast(
            tf.equal(tf.argmax(probabilities, -1, output_type=tf.int32),
                     tf.cast(y, tf.int32)), tf.float32))
        return loss, correct

    # ---- an epoch ----------------------------------------------------------------------------

    def learning_rate(self, epoch: int) -> float:
        """Cosine annealing from w_lr to w_lr_min over num_epochs (DARTS' schedule)."""
        s = self.settings
        return s.w_lr_min + 0.5 * (s.w_lr - s.w_lr_min) * (1 + math.cos(math.pi * epoch /
                                                                      s.num_epochs))

    def epoch(self, epoch: int, weight_half: tf.data.Dataset, alpha_half: tf.data.Dataset,
              validation: Split, log=None) -> EpochResult:
        lr = self.learning_rate(epoch)
        self.w_lr.assign(lr)
        self.w_optimizer.learning_rate = lr
        losses, correct, seen = [], 0.0, 0
        warm = epoch < self.settings.warmup_epochs
        for step, ((xw, yw), (xa, ya)) in enumerate(zip(weight_half, alpha_half, strict=False)):
            if warm:
                pass  # weights only: α stays where it is
            elif self.settings.unrolled:
                self.alpha_step(xa, ya, xw, yw)
            else:
                self.alpha_step(xa, ya)
            loss, right = self.weight_step(xw, yw)
            termination.check()
            losses.append(float(loss))
            correct += float(right)
            seen += int(yw.shape[0])
            if log and step % self.settings.print_step == 0:
                log(f"epoch {epoch + 1} step {step}: loss {float(loss):.4f}, lr {lr:.5f}")
        return EpochResult(float(np.mean(losses)), correct / max(seen, 1),
                           self.accuracy(validation), lr)

    def accuracy(self, split: Split) -> float:
        truth, predicted = predict_classes(lambda x: self.predict(tf.constant(x)), split)
        return float((truth == predicted).mean())

    # ---- the result --------------------------------------------------------------------------

    def probabilities(self) -> dict[str, np.ndarray]:
        return {kind: tf.nn.softmax(a, axis=-1).numpy()
                for kind, a in zip(("normal", "reduce"), self.alphas, strict=True)}

    def genotype(self) -> dict:
        """DARTS' derivation: per node, the two strongest inputs (edge strength = its best
        non-``none`` weight), each with its best non-``none`` primitive."""
        probabilities = self.probabilities()
        columns = [i for i, p in enumerate(self.shape.primitives) if p != NONE]
        genotype: dict = {}
        for kind, weights in probabilities.items():
            nodes, edge = [], 0
            for node in range(self.shape.num_nodes):
                candidates = []
                for source in self.shape.inputs_of(node):
                    best = max(columns, key=lambda c, e=edge: weights[e, c])
                    candidates.append((weights[edge, best], self.shape.primitives[best], source))
                    edge += 1
                strongest = sorted(candidates, key=lambda c: -c[0])[:2]
                nodes.append([(op, source) for _, op, source in strongest])
            genotype[kind] = nodes
            genotype[f"{kind}_concat"] = list(range(2, 2 + self.shape.num_nodes))
        return genotype


def skip_share(genotype: dict) -> tuple[int, float]:
    """Skip connections in the normal cell's genotype: count and share of its edges."""
    edges = [op for node in genotype["normal"] for op, _ in node]
    skips = sum(op == "skip_connection" for op in edges)
    return skips, skips / len(edges)


class CollapseGuard:
    """DARTS+ early stopping against the collapse to skip connections.

    :meth:`step` takes each epoch's genotype and says whether to go on. The search stops once a
    genotype of a trained epoch (after the warm-up; before it α is its random initialisation)
    has more skip connections in the normal cell than ``limit``, provided an earlier trained
    genotype was within the limit: that one is :attr:`kept`. Otherwise the latest genotype is
    kept, as DARTS derives its result from the final α.
    """

    def __init__(self, limit: int | None, warmup_epochs: int) -> None:
        self.limit = limit
        self.warmup_epochs = warmup_epochs
        self.kept: tuple[int, dict] | None = None
        self._fallback_ok = False
        self.reason = "all epochs"

    def step(self, epoch: int, genotype: dict) -> bool:
        skips, _ = skip_share(genotype)
        trained = epoch >= self.warmup_epochs
        within = self.limit is None or skips <= self.limit
        if trained and not within and self._fallback_ok:
            self.reason = (f"collapse guard: {skips} skip connections > max_skip_connections "
                           f"{self.limit} at epoch {epoch + 1}")
            return False
        self.kept, self._fallback_ok = (epoch, genotype), trained and within
        return True
