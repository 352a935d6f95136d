"""Katib's ``enas`` algorithm: an LSTM controller trained with REINFORCE, emitting Katib's wire
format (``architecture`` + ``nn_config``) so the same trial command runs on both engines.

Per layer the controller picks an operation (softmax over Katib's numbered operations) and, for
each earlier layer (the network input counts as layer 0), a skip bit (sigmoid attention, as in ENAS'
macro search). Unlike Katib's service — which takes the policy gradient on freshly sampled
architectures against the mean reward of all trials — each update uses the log-probabilities of
the architectures that were actually trained and their own rewards:
``loss = -log p(arch) * (reward + entropy_weight * entropy - baseline) + skip_weight * KL``, with
an exponential moving-average baseline (started at the first reward) and
``controller_train_steps`` Adam steps per batch of newly finished trials. Settings and defaults
are Katib's (docs/katib.md §1.4). Sampling draws from NumPy generators seeded by (seed, trial
index), so a search replays exactly on resume.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.katib import search_space
from pipeline.katib.manifest import Problem
from pipeline.katib.settings import Setting
from pipeline.suggestion.base import SearchContext, Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm

_POSITIVE_OR_NONE = Setting("float", low=0, low_open=True, none_ok=True)
# Katib's settings and defaults (docs/katib.md §1.4)
SETTINGS = {
    "controller_hidden_size": Setting("int", low=1, high=4096, default="64"),
    "controller_temperature": replace(_POSITIVE_OR_NONE, default="5.0"),
    "controller_tanh_const": replace(_POSITIVE_OR_NONE, default="2.25"),
    "controller_entropy_weight": replace(_POSITIVE_OR_NONE, default="1e-05"),
    "controller_baseline_decay": Setting("float", low=0, high=1, low_open=True,
                                         default="0.999"),
    "controller_learning_rate": Setting("float", low=0, high=1, low_open=True,
                                        default="5e-05"),
    "controller_skip_target": Setting("float", low=0, high=1, low_open=True, default="0.4"),
    "controller_skip_weight": replace(_POSITIVE_OR_NONE, default="0.8"),
    "controller_train_steps": Setting("int", low=1, high=10_000, default="50"),
    "controller_log_every_steps": Setting("int", low=1, honoured=None),
}
DEFAULTS = {name: float(s.default) for name, s in SETTINGS.items() if s.default}


def tensorflow() -> Any:
    """TensorFlow, imported with file descriptor 2 pointed away: its C++ start-up lines (oneDNN,
    CPU features) are written before TF_CPP_MIN_LOG_LEVEL applies and would land between the
    engine's progress lines."""
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    return sys.modules["tensorflow"]


class Controller:
    """The LSTM policy; ``run`` samples (choices None) or scores given choices, differentiably."""

    def __init__(self, num_ops: int, hidden: int, rng: np.random.Generator) -> None:
        tf = tensorflow()
        self.tf = tf

        def weight(*shape: int) -> tf.Variable:
            return tf.Variable(rng.uniform(-0.1, 0.1, shape).astype("float32"))

        self.lstm_kernel = weight(2 * hidden, 4 * hidden)
        self.lstm_bias = tf.Variable(np.zeros(4 * hidden, "float32"))
        self.start = weight(1, hidden)
        self.op_embedding = weight(num_ops, hidden)
        self.op_softmax = weight(hidden, num_ops)
        self.attend_prev = weight(hidden, hidden)
        self.attend_curr = weight(hidden, hidden)
        self.attend_v = weight(hidden, 1)
        self.hidden = hidden

    @property
    def variables(self) -> list:
        return [self.lstm_kernel, self.lstm_bias, self.start, self.op_embedding,
                self.op_softmax, self.attend_prev, self.attend_curr, self.attend_v]

    def _lstm(self, x, state):
        tf = self.tf
        h, c = state
        gates = tf.matmul(tf.concat([x, h], 1), self.lstm_kernel) + self.lstm_bias
        i, f, g, o = tf.split(gates, 4, axis=1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return h, (h, c)

    def run(self, layers: int, settings: dict[str, float], rng: np.random.Generator | None,
            choices: list[list[int]] | None = None):
        """Returns (architecture, log_prob, entropy, skip_kl)."""
        tf = self.tf
        zeros = tf.zeros((1, self.hidden))
        state = (zeros, zeros)
        x = self.start
        h, state = self._lstm(x, state)
        anchors = [tf.matmul(h, self.attend_prev)]  # layer 0: the network input
        anchor_states = [h]
        arc: list[list[int]] = []
        log_prob = entropy = skip_kl = tf.constant(0.0)
        target = settings["controller_skip_target"]
        for layer in range(layers):
            h, state = self._lstm(x, state)
            logits = tf.matmul(h, self.op_softmax)
            if settings["controller_temperature"]:
                logits = logits / settings["controller_temperature"]
            if settings["controller_tanh_const"]:
                logits = settings["controller_tanh_const"] * tf.tanh(logits)
            log_p = tf.nn.log_softmax(logits)[0]
            op = (choices[layer][0] if choices is not None
                  else int(rng.choice(len(log_p), p=_normalised(np.exp(log_p.numpy())))))
            log_prob += log_p[op]
            entropy -= tf.reduce_sum(tf.exp(log_p) * log_p)
            row = [op]
            x = tf.nn.embedding_lookup(self.op_embedding, [op])
            h, state = self._lstm(x, state)
            if layer > 0:
                query = tf.matmul(h, self.attend_curr)
                scores = tf.concat([tf.matmul(tf.tanh(a + query), self.attend_v)
                                    for a in anchors[:layer]], 0)[:, 0]
                p_skip = tf.sigmoid(scores)
                bits = (choices[layer][1:] if choices is not None
                        else [int(b) for b in rng.uniform(size=layer) < p_skip.numpy()])
                bits_t = tf.constant(bits, "float32")
                eps = 1e-6
                log_prob += tf.reduce_sum(bits_t * tf.math.log(p_skip + eps)
                                          + (1 - bits_t) * tf.math.log(1 - p_skip + eps))
                entropy -= tf.reduce_sum(p_skip * tf.math.log(p_skip + eps)
                                         + (1 - p_skip) * tf.math.log(1 - p_skip + eps))
                skip_kl += tf.reduce_sum(p_skip * tf.math.log(p_skip / target + eps)
                                         + (1 - p_skip) * tf.math.log((1 - p_skip) / (1 - target)
                                                                      + eps))
                row += bits
                chosen = [anchor_states[k] for k, b in enumerate(bits) if b]
                x = tf.add_n([h, *chosen]) / (1.0 + len(chosen))
            else:
                x = h
            anchors.append(tf.matmul(h, self.attend_prev))
            anchor_states.append(h)
            arc.append(row)
        return arc, log_prob, entropy, skip_kl


def _normalised(p: np.ndarray) -> np.ndarray:
    p = p.astype("float64")
    return p / p.sum()


class Enas(Suggestion):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        self.settings = {k: (float(context.settings[k]) if context.settings.get(k, "None") != "None"
                             else (0.0 if k in context.settings else v))
                         for k, v in DEFAULTS.items()}
        nas = context.experiment.spec.nas_config
        self.graph = nas.graph_config
        self.operations = self.space.operations
        self.controller = Controller(len(self.operations),
                                     int(self.settings["controller_hidden_size"]),
                                     np.random.default_rng([context.seed, 0xE2A5]))
        self.optimizer = tensorflow().keras.optimizers.Adam(
            self.settings["controller_learning_rate"])
        self.baseline: float | None = None
        self.trained: set[int] = set()

    def _train(self, history: Sequence[TrialResult]) -> None:
        batch = [r for r in history if r.index not in self.trained
                 and r.score(self.context.maximize) is not None and "architecture" in r.assignments]
        self.trained.update(r.index for r in history)
        if not batch:
            return
        tf = self.controller.tf
        s = self.settings
        arcs = [search_space.enas_architecture(r.assignments) for r in batch]
        rewards = [float(r.score(self.context.maximize)) for r in batch]
        advantages = []
        for reward in rewards:
            if self.baseline is None:
                self.baseline = reward
            advantages.append(reward - self.baseline)
            self.baseline -= (1 - s["controller_baseline_decay"]) * (self.baseline - reward)
        for _ in range(int(s["controller_train_steps"])):
            with tf.GradientTape() as tape:
                loss = tf.constant(0.0)
                for arc, advantage in zip(arcs, advantages, strict=True):
                    _, log_prob, entropy, skip_kl = self.controller.run(
                        len(arc), s, None, choices=arc)
                    reward = advantage + s["controller_entropy_weight"] * entropy
                    loss += -log_prob * tf.stop_gradient(reward)
                    loss += s["controller_skip_weight"] * skip_kl
                loss /= len(arcs)
            grads = tape.gradient(loss, self.controller.variables)
            self.optimizer.apply_gradients(zip(grads, self.controller.variables, strict=True))

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        self._train(history)
        arc, *_ = self.controller.run(self.graph.num_layers, self.settings, self.rng(index))
        return search_space.enas_assignments(arc, self.operations, self.graph)


def _graph_sizes(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    """Katib's enas service reads the input and output sizes of the graph it builds."""
    graph = spec.nas_config.graph_config if spec.nas_config else None
    if graph is None:
        return []
    return [Problem(f"spec.nasConfig.graphConfig.{field}", "required for enas")
            for field, value in (("inputSizes", graph.input_sizes),
                                 ("outputSizes", graph.output_sizes)) if not value]


ALGORITHMS = (Algorithm(
    "enas", "An LSTM controller trained with REINFORCE on the rewards of the architectures it "
    "sampled; Katib's exact ENAS wire format, so the same trial command runs on Katib", SETTINGS,
    Enas, space="nas", outputs=frozenset({"architecture", "nn_config"}),
    checks=(_graph_sizes,), ignored_note="nasflow's controller logs no training steps"),)
