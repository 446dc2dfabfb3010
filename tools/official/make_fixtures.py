"""Write the golden fixtures of ``tests/fixtures/official/`` by running the
authors' code on fixed seeded inputs (float64).

Run it through ``tools/official/make_fixtures.sh`` (it builds the TensorFlow
virtualenv first); see tools/official/README.md. Arguments are the checkouts of
the three official repositories; nothing of them is copied into this
repository: ``framework/`` is staged and patched (float64) in a temp dir at run
time (``official_import.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import official_import  # noqa: E402

F64 = np.float64
#: one fixed seed per fixture file
SEEDS = {
    "gsp_layer.npz": 0,
    "zsr.npz": 1,
    "gsp_loss_chain.npz": 2,
    "keras_adam.npz": 3,
    "gsp_torch.npz": 4,
    "mpn.npz": 5,
    "ccp_losses.npz": 6,
    "ccp_proxies.npz": 7,
    "ccp_regularizer.npz": 8,
    "ccp_switch.npz": 9,
    "gsp_init.npz": 10,
}


def commit_of(repo: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def save(out_dir: Path, name: str, meta: dict, arrays: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == np.float32:
            raise TypeError(f"{name}:{k} is float32; fixtures are float64")
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    np.savez_compressed(out_dir / name, **arrays)
    print(f"wrote {out_dir / name}: {sorted(arrays)}")


# ---------------------------------------------------------------------------
# GSP (TensorFlow framework of yetigurbuz/generalized-sum-pooling)
# ---------------------------------------------------------------------------
class _StubModel:
    """What the framework's loss constructors read from its model object."""

    def __init__(self, tf, num_classes: int, dim: int):
        inp = tf.keras.Input(shape=(dim,), dtype=tf.float64)
        self.arch = tf.keras.Model(inp, tf.keras.layers.Lambda(lambda x: x)(inp))
        self.num_classes = num_classes
        self.learning_rate_multipliers = {}
        self.training_callbacks = []
        self.gradient_transformers = []


def official_gsp_layer(d: int, k: int, **kw):
    """The official layer (μ 0.3, γ 5, 100 steps: the configs' values)."""
    from framework.layers.pooling.generalized_sum_pooling import (
        GeneralizedSumPooling,
    )

    return GeneralizedSumPooling(
        embedding_size=d,
        support_size=k,
        transport_ratio=0.3,
        entropy_regularizer_weight=5.0,
        optimization_steps=100,
        dtype="float64",
        **kw,
    )


def gsp_layer_cases(tf, rng):
    """The official GSP layer (transport branch) on fixed inputs."""

    b, h, w, c, d, k = 3, 3, 4, 6, 5, 4
    cases = {
        "avg_inv": dict(grad_method="inv"),
        "avg_auto": dict(grad_method="auto"),
        "gem_inv": dict(grad_method="inv", use_gemp=True),
        "maxaug_inv": dict(grad_method="inv", augment_max_pool=True),
    }
    out = {}
    for name, kw in cases.items():
        x = np.abs(rng.normal(size=(b, h, w, c))) + 0.05 * rng.normal(size=(b, h, w, c))
        head = rng.normal(size=(c, d)) * 0.6
        protos = rng.normal(size=(k, d)) * 0.7
        cot = rng.normal(size=(b, d + k))
        # memory_size <= support_size: always the transport branch
        layer = official_gsp_layer(d, k, memory_size=k, **kw)
        xt = tf.constant(x)
        layer(xt, training=True)  # build
        layer._pre_feature_head.kernel.assign(head[None, None])
        layer._partial_transport._target_support.assign(protos)
        watch = [
            xt,
            layer._pre_feature_head.kernel,
            layer._partial_transport._target_support,
        ]
        if kw.get("use_gemp"):
            watch.append(layer._p)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, training=True)
            scalar = tf.reduce_sum(y * cot)
        grads = tape.gradient(scalar, watch)
        p = {
            "fmap": np.transpose(x, (0, 3, 1, 2)),  # NCHW for the project
            "head_weight": head.T,  # Linear(C, D).weight
            "prototypes": protos,
            "cot_emb": cot[:, :d],
            "cot_attr": cot[:, d:],
            "emb": y.numpy()[:, :d],
            "attr": y.numpy()[:, d:],
            "grad_fmap": np.transpose(grads[0].numpy(), (0, 3, 1, 2)),
            "grad_head_weight": grads[1].numpy()[0, 0].T,
            "grad_prototypes": grads[2].numpy(),
        }
        if kw.get("use_gemp"):
            p["gem_power"] = np.array(3.0)
            p["grad_gem_power"] = np.array(grads[3].numpy().reshape(()))
        for key, v in p.items():
            out[f"{name}/{key}"] = np.asarray(v, dtype=F64)
    meta = {
        "cases": list(cases),
        "transport_ratio": 0.3,
        "entropy_weight": 5.0,
        "solver_iterations": 100,
        "num_prototypes": k,
        "dim": d,
        "what": "GeneralizedSumPooling.transport_pool (training=True): emb = "
        "pooled (D), attr = attribute vector (K); grads of sum(out * cot)",
    }
    return meta, out


def gsp_init_cases(tf, rng):
    """The official layer's prototype initialisation in training: GAP output
    while the memory fills (``fill_memory``: a batch that does not fit is
    written over the last rows), greedy k-center once it is full, then the
    transport branch. Memory 10 rows, K 3, batches of 4: ready at step 3."""

    b, h, w, c, d, k, mem, steps = 4, 2, 3, 5, 4, 3, 10, 4
    layer = official_gsp_layer(d, k, memory_size=mem)
    xs = [np.abs(rng.normal(size=(b, h, w, c))) for _ in range(steps)]
    head = rng.normal(size=(c, d)) * 0.8
    # built symbolically, as inside the official model (both branches traced,
    # nothing executed: no step counted, the memory untouched)
    layer(tf.keras.Input(shape=(h, w, c), dtype=tf.float64), training=True)
    layer._pre_feature_head.kernel.assign(head[None, None])
    outs = [layer(tf.constant(x), training=True).numpy() for x in xs]
    out = {
        "fmap": np.transpose(np.stack(xs), (0, 1, 4, 2, 3)),  # (T, B, C, h, w)
        "head_weight": head.T,
        "emb": np.stack([o[:, :d] for o in outs]),
        "attr": np.stack([o[:, d:] for o in outs]),
        "memory": layer._memory.numpy(),
        "prototypes": layer._partial_transport.kernel.numpy(),
    }
    meta = {
        "num_prototypes": k,
        "init_memory_size": mem,
        "dim": d,
        "transport_ratio": 0.3,
        "entropy_weight": 5.0,
        "solver_iterations": 100,
        "what": "per training step t: emb (B, D) and attr (B, K) of the layer; "
        "memory and prototypes after the last step",
    }
    return meta, {k_: np.asarray(v, dtype=F64) for k_, v in out.items()}


def zsr_cases(tf, fw, rng):
    """The official ZSR term (LossWithZSR.train_predictor + attribute_loss)."""
    from framework.configs import default

    out = {}
    cases = {"uncapped": 0.2, "capped": 6.0}  # scale of the class embeddings
    p, kk, k, d, n_cls = 4, 3, 5, 4, 7
    for name, e_scale in cases.items():
        cfg = default.cfg.clone()
        cfg.defrost()
        cfg.model.embedding_head.embedding_size = d
        cfg.model.embedding_head.GeneralizedSumPooling.support_size = k
        cfg.loss.zsr.function = "original_contrastive"
        cfg.training.classes_per_batch = p
        cfg.training.sample_per_class = kk
        model = _StubModel(tf, n_cls, d + k)
        loss = fw.losses.factory.zsr(model=model, cfg=cfg).loss_fn
        classes = rng.choice(n_cls, size=p, replace=False)
        labels = np.tile(classes, kk)  # the TF class-interleaved layout
        attr = rng.dirichlet(np.ones(k), size=p * kk)
        class_emb = rng.normal(size=(n_cls, d)) * e_scale
        loss.meta_proxy.assign(class_emb)
        at = tf.constant(attr)
        lab = tf.constant(labels.reshape(-1, 1).astype(np.int32))
        with tf.GradientTape() as tape:
            tape.watch(at)
            pred, lbls = loss.train_predictor(at, lab)
            value = loss.attribute_loss(lbls, pred)
        g_attr, g_emb = tape.gradient(value, [at, loss.meta_proxy])
        if isinstance(g_emb, tf.IndexedSlices):
            g_emb = tf.convert_to_tensor(g_emb)
        # per-sample probabilities of the own class (to show which are capped)
        logits = 9.5 * (pred.numpy() @ class_emb.T)
        logits -= logits.max(1, keepdims=True)
        prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        own = prob[np.arange(len(prob)), lbls.numpy().reshape(-1)]
        for key, v in {
            "attr": attr,
            "labels": labels,
            "class_emb": class_emb,
            "loss": value.numpy(),
            "grad_attr": g_attr.numpy(),
            "grad_class_emb": g_emb.numpy(),
            "own_prob": own,
        }.items():
            out[f"{name}/{key}"] = np.asarray(
                v, dtype=np.int64 if key == "labels" else F64
            )
    meta = {
        "cases": list(cases),
        "ridge": 0.05,
        "scale": 9.5,
        "epsilon": 1e-16,
        "what": "ZSR term alone on a class-interleaved batch (TF layout): even "
        "positions vs odd positions; loss = mean -log(p + 1e-16)",
    }
    return meta, out


def loss_chain_cases(tf, fw, rng):
    """``--loss=zsr/xbm/original_contrastive`` over a batch sequence: the
    memory fills, then its term switches on (batches_in_mem 3, start_at 2)."""
    from framework.configs import default

    p, kk, k, d, n_cls, steps = 4, 2, 3, 4, 9, 8
    cfg = default.cfg.clone()
    cfg.defrost()
    cfg.model.embedding_head.embedding_size = d
    cfg.model.embedding_head.GeneralizedSumPooling.support_size = k
    cfg.training.classes_per_batch = p
    cfg.training.sample_per_class = kk
    cfg.loss.function = "zsr"
    cfg.loss.zsr.function = "xbm"
    cfg.loss.xbm.function = "original_contrastive"
    cfg.loss.xbm.batches_in_mem = 3
    cfg.loss.xbm.start_at = 2
    cfg.loss.computation_head.normalize_embeddings = True
    cfg.loss.computation_head.avg_nonzero_only = True
    model = _StubModel(tf, n_cls, d + k)
    loss = fw.losses.factory.zsr(model=model, cfg=cfg)
    class_emb = rng.normal(size=(n_cls, d))
    loss.loss_fn.meta_proxy.assign(class_emb)
    rec = {k_: [] for k_ in ("emb", "attr", "labels", "loss", "grad_emb", "grad_attr")}
    for _ in range(steps):
        classes = rng.choice(n_cls, size=p, replace=False)
        labels = np.tile(classes, kk)
        emb = rng.normal(size=(p * kk, d))
        attr = rng.dirichlet(np.ones(k), size=p * kk)
        y = tf.constant(np.concatenate([emb, attr], axis=1))
        lab = tf.constant(labels.reshape(-1, 1).astype(np.int32))
        with tf.GradientTape() as tape:
            tape.watch(y)
            value = loss.call(lab, y)
        g = tape.gradient(value, y).numpy()
        for key, v in (
            ("emb", emb),
            ("attr", attr),
            ("labels", labels),
            ("loss", value.numpy()),
            ("grad_emb", g[:, :d]),
            ("grad_attr", g[:, d:]),
        ):
            rec[key].append(v)
    out = {
        key: np.asarray(v, dtype=np.int64 if key == "labels" else F64)
        for key, v in rec.items()
    }
    out["class_emb"] = class_emb
    meta = {
        "batches_in_mem": 3,
        "start_at": 2,
        "margin": 0.5,
        "eps": 1e-5,
        "zsr_weight": 0.1,
        "ridge": 0.05,
        "scale": 9.5,
        "what": "total loss (1-w)(C1 + XBM term) + w ZSR per step, memory "
        "term on from step index start_at + batches_in_mem - 1; grads wrt "
        "the unnormalised pooled embedding and the attributes",
    }
    return meta, out


def keras_adam_cases(tf, rng):
    """Keras Adam (both tf.keras optimizer families) on fixed gradients."""
    n, steps, lr = 6, 12, 1e-3
    theta0 = rng.normal(size=n)
    grads = rng.normal(size=(steps, n)) * np.logspace(-9, 0, n)  # tiny to unit
    out = {"theta0": theta0, "grads": grads, "lr": np.array(lr)}
    for key, ctor in (
        ("new", tf.keras.optimizers.Adam),
        ("legacy", tf.keras.optimizers.legacy.Adam),
    ):
        var = tf.Variable(theta0)
        opt = ctor(learning_rate=lr)
        traj = []
        for g in grads:
            opt.apply_gradients([(tf.constant(g), var)])
            traj.append(var.numpy().copy())
        out[f"{key}/trajectory"] = np.asarray(traj, dtype=F64)
        out[f"{key}/epsilon"] = np.array(float(opt.epsilon))
    meta = {"beta_1": 0.9, "beta_2": 0.999, "what": "theta after each step"}
    return meta, out


# ---------------------------------------------------------------------------
# CCP (TensorFlow framework of yetigurbuz/ccp-dml)
# ---------------------------------------------------------------------------
class _StubCcpModel(_StubModel):
    """A model whose ``EmbeddingHead`` layer tells ``makeProxy`` the size."""

    def __init__(self, tf, num_classes: int, dim: int):
        inp = tf.keras.Input(shape=(dim,), dtype=tf.float64)
        head = tf.keras.layers.Lambda(lambda x: x, name="EmbeddingHead")
        head._embedding_size = dim
        self.arch = tf.keras.Model(inp, head(inp))
        self.num_classes = num_classes
        self.learning_rate_multipliers = {}
        self.training_callbacks = []
        self.gradient_transformers = []


#: the project's CCP loss names -> (official loss name, official cfg values)
CCP_BASES = {
    "contrastive_c2": ("contrastive", {"pos_margin": 0.0, "neg_margin": 0.3841}),
    "multi_similarity": (
        "multi_similarity",
        {"alpha_margin": 2.0, "beta_margin": 40.0, "lambda_margin": 0.5},
    ),
    "triplet": ("triplet", {"margin": 0.0961}),
}


def ccp_loss_cases(tf, fw, rng):
    """``--loss=ccp/<base>``: LossWithCCP = 0.1 * in-batch term + 1.0 * proxy
    term, Lipschitz (clip-to-ball) normalisation, l2 distances."""
    from framework import losses as flosses
    from framework.configs import default
    from framework.utilities import proxy_utils

    p, kk, m, d, n_cls = 4, 3, 2, 5, 6
    out = {}
    for name, (official, values) in CCP_BASES.items():
        cfg = default.cfg.clone()
        cfg.defrost()
        cfg.training.classes_per_batch = p
        cfg.training.sample_per_class = kk
        cfg.loss.computation_head.normalize_embeddings = True
        cfg.loss.computation_head.avg_nonzero_only = True
        cfg.loss.computation_head.distance_function = "l2"
        cfg.loss.computation_head.lipschitz_cont = True
        for key, v in values.items():
            cfg.loss.get(official)[key] = v
        model = _StubCcpModel(tf, n_cls, d)
        reps, _ = proxy_utils.makeProxy(
            model=model.arch,
            num_classes=n_cls,
            proxy_per_class=m,
            num_sets=1,
            trainable=True,
            name="ccp",
        )
        base = getattr(flosses, official)

        class LossWithCCP(base):  # as CCPLoss builds it (loss.py)
            def call(self, y_true, y_pred):
                from framework.layers import L2Normalization
                from framework.utilities.loss_and_metric_utils import labels2Pairs

                labels, embeddings = y_true, y_pred
                if self.normalize_embeddings:
                    embeddings = L2Normalization()(embeddings)
                pdists = self.pdist_fn(
                    embeddings=embeddings,
                    ref_embeddings=embeddings,
                    squared=self.squared_distance,
                )
                pos, neg = labels2Pairs(
                    labels=labels,
                    ref_labels=None,
                    structured=self.structured_batch,
                    num_classes=self.classes_per_batch,
                )
                loss0 = self._computeLoss(pdists, pos, neg, labels)
                proxy = super().call(y_true, y_pred)
                return 0.1 * loss0 + 1.0 * proxy

        loss = LossWithCCP(model=model, cfg=cfg)
        classes = rng.choice(n_cls, size=p, replace=False)
        labels = np.tile(classes, kk)
        # norms around 1: some clipped onto the ball, some not
        emb = rng.normal(size=(p * kk, d)) * rng.uniform(0.15, 0.7, size=(p * kk, 1))
        proxies = rng.normal(size=(n_cls * m, d)) * rng.uniform(
            0.15, 0.7, size=(n_cls * m, 1)
        )
        reps[0].assign(proxies)
        e = tf.constant(emb)
        lab = tf.constant(labels.reshape(-1, 1).astype(np.int32))
        with tf.GradientTape() as tape:
            tape.watch(e)
            value = loss.call(lab, e)
        g_e, g_p = tape.gradient(value, [e, reps[0]])
        for key, v in {
            "emb": emb,
            "labels": labels,
            "proxies": proxies,
            "loss": value.numpy(),
            "grad_emb": g_e.numpy(),
            "grad_proxies": tf.convert_to_tensor(g_p).numpy(),
        }.items():
            out[f"{name}/{key}"] = np.asarray(
                v, dtype=np.int64 if key == "labels" else F64
            )
        out[f"{name}/margins"] = np.array(list(values.values()), dtype=F64)
    meta = {
        "cases": list(CCP_BASES),
        "official_names": {k: v[0] for k, v in CCP_BASES.items()},
        "margins": {k: v[1] for k, v in CCP_BASES.items()},
        "proxies_per_class": m,
        "proxy_layout": "m-major: row m*C + c has label c (ProxyLabelInitializer)",
        "what": "0.1 * in-batch term + 1.0 * proxy term; clip-to-ball, l2",
    }
    return meta, out


def _ccp_callback(tf, n_cls, m, d, pool_size, lam0=2e-4, decay=1.0, proxies=True):
    """An ``AlternatingProjectionCallback`` on small variables. Its
    representative sampler returns pass ``i`` (C, D) of the pool variable at
    its i-th call (graph-safe: a counter variable, as the official one reads a
    tf.data iterator)."""
    from framework.losses.ccp.callback import AlternatingProjectionCallback

    reps = tf.Variable(np.zeros((n_cls * m, d))) if proxies else None
    pool = tf.Variable(np.zeros((n_cls, pool_size, d)))
    count = tf.Variable(0, dtype=tf.int64)

    def sampler():
        i = count.assign_add(1) - 1
        return tf.gather(pool, i % pool_size, axis=1)

    cb = AlternatingProjectionCallback(
        curr_weights=[tf.Variable(np.zeros(3))],
        model_weigths=[tf.Variable(np.zeros(3))],
        ccp_lambda=tf.Variable(lam0, dtype=tf.float64),
        lambda_decay=decay,
        ccp_iterations=1,
        step_at_batch=False,
        early_stopping=True,
        early_stopping_patience=3,
        monitor_to_stop="MAPatR",
        stop_at_min=False,
        class_representatives=reps,
        proxy_per_class=m,
        representative_sampler=sampler if proxies else None,
        representative_pool_size=pool_size,
        random_init=False,
        normalized_embeddings=False,
    )
    return cb, reps, pool, count


def ccp_proxy_cases(tf, fw, rng):
    """Proxy (re-)selection: the callback's ``_updateRepresentatives`` (pool of
    b passes of one image per class, greedy k-center per class seeded by the
    best proxies), first from zero seeds, then from given seeds."""
    n_cls, m, d, b = 5, 3, 4, 7
    cb, reps, pool_var, count = _ccp_callback(tf, n_cls, m, d, b)
    out = {}
    for name, seeds in (
        ("first", np.zeros((n_cls * m, d))),
        ("second", rng.normal(size=(n_cls * m, d)) * 0.5),
    ):
        pool = rng.normal(size=(n_cls, b, d))
        pool_var.assign(pool)
        count.assign(0)
        cb.best_class_representatives.assign(seeds)
        _, _, pool_seen = cb._updateRepresentatives()
        out[f"{name}/pool"] = pool
        out[f"{name}/seeds"] = seeds
        out[f"{name}/pool_seen"] = pool_seen.numpy()
        out[f"{name}/proxies"] = reps.numpy()  # m-major (C*M, D)
    meta = {
        "num_classes": n_cls,
        "proxies_per_class": m,
        "pool_per_class": b,
        "what": "seeds and proxies m-major (C*M, D) (row m*C + c: class c); "
        "pool (C, b, D); pool_seen is the pool as the callback stacks it",
    }
    return meta, {k: np.asarray(v, dtype=F64) for k, v in out.items()}


def ccp_regularizer_cases(tf, fw, rng):
    """``DistanceRegularizer`` (g + λ(θ − θ̄) on the network weights, the
    proxies untouched) and the λ schedule of ``_updateLambdaCoeff``."""
    from framework.solvers.gradient_transformers import DistanceRegularizer

    shapes = [(3, 4), (4,)]
    net = [tf.Variable(rng.normal(size=s)) for s in shapes]
    proxies = tf.Variable(rng.normal(size=(6, 4)))
    reg = DistanceRegularizer(model_weights=net, penalty_weight=2e-4)
    anchors = [rng.normal(size=s) for s in shapes]
    for v, a in zip(reg._prev_weights, anchors, strict=True):
        v.assign(a)
    grads = [rng.normal(size=s) for s in shapes] + [rng.normal(size=(6, 4))]
    out_gv = reg(
        list(zip([tf.constant(g) for g in grads], net + [proxies], strict=True))
    )
    out = {
        "lambda": np.array(2e-4),
        "net0": net[0].numpy(),
        "net1": net[1].numpy(),
        "proxies": proxies.numpy(),
        "anchor0": anchors[0],
        "anchor1": anchors[1],
        "grad0": grads[0],
        "grad1": grads[1],
        "grad_proxies": grads[2],
        "out0": out_gv[0][0].numpy(),
        "out1": out_gv[1][0].numpy(),
        "out_proxies": out_gv[2][0].numpy(),
    }
    # λ per instance: ccpInitialize (instance 0) then ccpUpdate k times
    for decay in (1.0, 0.5):
        cb, _, _, _ = _ccp_callback(tf, 2, 1, 3, 2, 2e-4, decay, proxies=False)
        seq = [float(cb.ccpInitialize()[1].numpy())]
        for _ in range(4):
            seq.append(float(cb.ccpUpdate()[1].numpy()))
        out[f"lambda_schedule/decay_{decay}"] = np.array(seq)
    meta = {
        "what": "out* = transformed gradients; lambda_schedule/decay_x = λ "
        "in instances 0..4 (reg_lambda 2e-4)"
    }
    return meta, {k: np.asarray(v, dtype=F64) for k, v in out.items()}


#: validation sequences (the metric computed at the end of each epoch)
SWITCH_SEQUENCES = {
    "rise_then_flat": [
        0.10,
        0.20,
        0.25,
        0.25,
        0.25,
        0.25,
        0.26,
        0.26,
        0.26,
        0.26,
        0.30,
        0.31,
        0.31,
        0.31,
        0.31,
        0.31,
    ],
    "noisy": [
        0.30,
        0.32,
        0.31,
        0.33,
        0.329995,
        0.33,
        0.33001,
        0.328,
        0.327,
        0.35,
        0.34,
        0.34,
        0.36,
        0.36,
        0.36,
        0.36,
        0.37,
        0.36,
    ],
    "monotone": [0.1 + 0.01 * i for i in range(12)],
}


def ccp_switch_cases(tf, fw, rng):
    """The callback's ``stepFn`` at each epoch end, with its default
    min_delta (1e-5), patience (3), ccp_iterations (1). The value it sees is
    the compiled metric's stored result, written by the metric callback that
    runs after it in the callback list: the previous epoch's value (0.0, the
    metric's initial value, at epoch 0)."""

    class Recorder:  # stands in for the two tf.functions the step calls
        def __init__(self):
            self.epoch, self.switch, self.best = 0, [], []

        def update(self):
            self.switch.append(self.epoch)

        def best_update(self):
            self.best.append(self.epoch)

    out = {}
    for name, seq in SWITCH_SEQUENCES.items():
        cb, _, _, _ = _ccp_callback(tf, 2, 1, 3, 2)
        rec = Recorder()
        cb.ccpUpdate, cb._updateBest = rec.update, rec.best_update
        seen = [0.0] + list(seq[:-1])
        for epoch, value in enumerate(seen):
            rec.epoch = epoch
            cb.stepFn(epoch, {"MAPatR": value})
        events = {"switch": rec.switch, "best": rec.best}
        sw = np.zeros(len(seq), dtype=np.int64)
        sw[events["switch"]] = 1
        best = np.zeros(len(seq), dtype=np.int64)
        best[events["best"]] = 1
        out[f"{name}/val_metric"] = np.asarray(seq, dtype=F64)
        out[f"{name}/seen"] = np.asarray(seen, dtype=F64)
        out[f"{name}/switch"] = sw
        out[f"{name}/best_update"] = best
        out[f"{name}/switch_epochs"] = np.asarray(events["switch"], dtype=np.int64)
    meta = {
        "cases": list(SWITCH_SEQUENCES),
        "min_improvement_margin": 1e-5,
        "early_stopping_patience": 3,
        "ccp_iterations": 1,
        "monitor_lag_epochs": 1,
        "what": "epochs 0-based. val_metric[e]: validation value computed at "
        "the end of epoch e; seen[e]: the value stepFn receives at the end of "
        "epoch e (val_metric[e-1]; 0.0 at e = 0); switch[e] = 1: ccpUpdate "
        "(instance switch: anchor <- best, lambda update, proxies re-selected) "
        "at the end of epoch e; best_update[e] = 1: _updateBest (new best "
        "weights and proxies) at the end of epoch e; switch_epochs: the e "
        "with switch[e] = 1",
    }
    return meta, out


# ---------------------------------------------------------------------------
# PyTorch modules: GSP for Intra-Batch (generalized-sum-pooling/pytorch/gsp)
# and the Intra-Batch message-passing network (dvl-tum/intra_batch)
# ---------------------------------------------------------------------------
def gsp_torch_cases(gsp_repo: Path, rng):
    """The official PyTorch GSP module (``GSP``: weighted max pooling, classifier
    k-center prototypes at the first forward), float64."""
    import torch

    torch.set_default_dtype(torch.float64)
    # its parent-relative imports (``..gsp.norm_layer``) need the parent package
    embed_layer = official_import.import_torch_package(
        gsp_repo, "pytorch", "gsp.embed_layer"
    )
    b, c, h, w, d, n_cls = 3, 6, 3, 4, 8, 70
    torch.manual_seed(0)
    mod = embed_layer.GSP(in_channels=c, emb_dim=d, num_classes=n_cls)
    params = {
        "embed_weight": rng.normal(size=(d, c)) * 0.5,
        "embed_bias": rng.normal(size=d) * 0.1,
        "classifier_weight": rng.normal(size=(n_cls, d)) * 0.5,
        "classifier_bias": rng.normal(size=n_cls) * 0.1,
    }
    with torch.no_grad():
        mod.embed.weight.copy_(torch.from_numpy(params["embed_weight"]))
        mod.embed.bias.copy_(torch.from_numpy(params["embed_bias"]))
        mod.classifier.weight.copy_(torch.from_numpy(params["classifier_weight"]))
        mod.classifier.bias.copy_(torch.from_numpy(params["classifier_bias"]))
    x = np.abs(rng.normal(size=(b, c, h, w)))
    xt = torch.from_numpy(x).requires_grad_(True)
    probs, emb, attr = mod(xt)
    cots = {
        "probs": rng.normal(size=probs.shape),
        "emb": rng.normal(size=emb.shape),
        "attr": rng.normal(size=attr.shape),
    }
    scalar = sum(
        (t * torch.from_numpy(cots[k])).sum()
        for k, t in (("probs", probs), ("emb", emb), ("attr", attr))
    )
    scalar.backward()
    out = {f"param/{k}": v for k, v in params.items()}
    out.update(
        {
            "fmap": x,
            "probs": probs.detach().numpy(),
            "emb": emb.detach().numpy(),
            "attr": attr.detach().numpy(),
            "prototypes": mod.prototypes.detach().numpy(),
            "grad_fmap": xt.grad.numpy(),
            "grad_embed_weight": mod.embed.weight.grad.numpy(),
            "grad_embed_bias": mod.embed.bias.grad.numpy(),
            "grad_classifier_weight": mod.classifier.weight.grad.numpy(),
            "grad_prototypes": mod.prototypes.grad.numpy(),
            **{f"cot_{k}": v for k, v in cots.items()},
        }
    )
    torch.set_default_dtype(torch.float32)
    meta = {
        "num_prototypes": int(mod.num_protos),
        "transport_ratio": mod.transport_ratio,
        "entropy_weight": mod.entropy_regularizer_weight,
        "solver_iterations": mod.optimization_steps,
        "pooling_method": mod.pooling_method,
        "what": "GSP(in_channels, emb_dim, num_classes) forward in train mode: "
        "probs = classifier(embed(GMP(n t f))), emb = normalize(embed(...)), "
        "attr; prototypes picked from the classifier rows at the first forward",
    }
    return meta, {k: np.asarray(v, dtype=F64) for k, v in out.items()}


def mpn_cases(ib_repo: Path, rng):
    """The Intra-Batch MPN (``GNNReID``: dim_red + one DotAttentionLayer over
    the complete graph with self-loops, the released CUB config), eval mode
    (no dropout), float64."""
    import torch

    torch.set_default_dtype(torch.float64)
    gnn_base = official_import.import_torch_package(ib_repo, "net", "gnn_base")
    b, d, n_cls, heads = 6, 8, 5, 2
    params = {
        "red": 1,
        "cat": 0,
        "every": 0,
        "gnn": {
            "num_layers": 1,
            "aggregator": "add",
            "num_heads": heads,
            "attention": "dot",
            "mlp": 1,
            "dropout_mlp": 0.1,
            "norm1": 1,
            "norm2": 1,
            "res1": 1,
            "res2": 1,
            "dropout_1": 0.1,
            "dropout_2": 0.1,
            "mult_attr": 0,
        },
        "classifier": {
            "neck": 1,
            "num_classes": n_cls,
            "dropout_p": 0.4,
            "use_batchnorm": 0,
        },
    }
    torch.manual_seed(0)
    gnn = gnn_base.GNNReID("cpu", params, embed_dim=d).eval()
    weights = {}
    with torch.no_grad():
        for name, p in gnn.named_parameters():
            if name.startswith(("dim_red", "gnn_model")):
                v = rng.normal(size=tuple(p.shape)) * 0.4
                if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                    v = 1.0 + v
                p.copy_(torch.from_numpy(v))
                weights[f"param/{name}"] = v
    x = rng.normal(size=(b, d))
    xt = torch.from_numpy(x).requires_grad_(True)
    idx = torch.arange(b)
    edge_index = torch.stack(torch.meshgrid(idx, idx, indexing="ij"), -1).reshape(-1, 2)
    feats, _, _ = gnn.gnn_model(gnn.dim_red(xt), edge_index, None)
    out_feats = feats[-1]
    cot = rng.normal(size=out_feats.shape)
    (out_feats * torch.from_numpy(cot)).sum().backward()
    grads = {
        f"grad/{n}": p.grad.numpy()
        for n, p in gnn.named_parameters()
        if p.grad is not None
    }
    torch.set_default_dtype(torch.float32)
    out = {
        **weights,
        **grads,
        "x": x,
        "feats": out_feats.detach().numpy(),
        "cot": cot,
        "grad_x": xt.grad.numpy(),
    }
    meta = {
        "heads": heads,
        "layers": 1,
        "dim": d,
        "what": "node features after dim_red and the attention layer "
        "(eval mode); grad/<official parameter name>",
    }
    return meta, {k: np.asarray(v, dtype=F64) for k, v in out.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--gsp",
        type=Path,
        required=True,
        help="checkout of yetigurbuz/generalized-sum-pooling",
    )
    ap.add_argument(
        "--ccp", type=Path, required=True, help="checkout of yetigurbuz/ccp-dml"
    )
    ap.add_argument(
        "--intra-batch",
        type=Path,
        required=True,
        help="checkout of dvl-tum/intra_batch",
    )
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/official"))
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="fixture groups to write (gsp, ccp, torch)",
    )
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ("gsp", "ccp", "torch"))

    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "numpy": np.__version__}
    if "gsp" in only:
        fw = official_import.import_framework(args.gsp / "tensorflow")
        base = {
            "repo": "yetigurbuz/generalized-sum-pooling",
            "commit": commit_of(args.gsp),
            "dtype": "float64",
            **versions,
        }
        for name, fn in (
            ("gsp_layer.npz", lambda r: gsp_layer_cases(tf, r)),
            ("gsp_init.npz", lambda r: gsp_init_cases(tf, r)),
            ("zsr.npz", lambda r: zsr_cases(tf, fw, r)),
            ("gsp_loss_chain.npz", lambda r: loss_chain_cases(tf, fw, r)),
            ("keras_adam.npz", lambda r: keras_adam_cases(tf, r)),
        ):
            meta, arrays = fn(np.random.default_rng(SEEDS[name]))
            save(args.out, name, {**base, **meta}, arrays)
    if "ccp" in only:
        fw = official_import.import_framework(args.ccp)
        base = {
            "repo": "yetigurbuz/ccp-dml",
            "commit": commit_of(args.ccp),
            "dtype": "float64",
            **versions,
        }
        for name, fn in (
            ("ccp_losses.npz", ccp_loss_cases),
            ("ccp_proxies.npz", ccp_proxy_cases),
            ("ccp_regularizer.npz", ccp_regularizer_cases),
            ("ccp_switch.npz", ccp_switch_cases),
        ):
            meta, arrays = fn(tf, fw, np.random.default_rng(SEEDS[name]))
            save(args.out, name, {**base, **meta}, arrays)
    if "torch" in only:
        import torch

        base = {"dtype": "float64", "torch": torch.__version__, "numpy": np.__version__}
        meta, arrays = gsp_torch_cases(
            args.gsp, np.random.default_rng(SEEDS["gsp_torch.npz"])
        )
        meta.update(
            base, repo="yetigurbuz/generalized-sum-pooling", commit=commit_of(args.gsp)
        )
        save(args.out, "gsp_torch.npz", meta, arrays)
        meta, arrays = mpn_cases(
            args.intra_batch, np.random.default_rng(SEEDS["mpn.npz"])
        )
        meta.update(
            base, repo="dvl-tum/intra_batch", commit=commit_of(args.intra_batch)
        )
        save(args.out, "mpn.npz", meta, arrays)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
