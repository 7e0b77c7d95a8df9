"""Write tests/data/convert/tf/: a tiny network of the authors' TensorFlow code, saved as a real TF checkpoint with
EMA shadow variables, and its outputs on fixed inputs. Run it in a throwaway TensorFlow environment (not the
project's), with the authors' repository checked out somewhere:

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu tf_slim pillow
    /tmp/tfenv/bin/python tests/data/convert/make_tf_fixture.py --diffusion_repo /tmp/diffusion \\
        --contrib_normalization /tmp/normalization.py

Nothing of the authors' code is copied here: their `diffusion_tf.models.unet.model` builds the network and their
`diffusion_tf.utils.ema_scope` builds its EMA twin, both imported from --diffusion_repo. Their code is TF1: it runs
under `tf.compat.v1` with v2 behaviour off. Its one import that TF 2 lacks, `tensorflow.contrib.layers.group_norm`,
is TF 1.x's own source file (tensorflow/contrib/layers/python/layers/normalization.py, --contrib_normalization),
loaded with its contrib imports pointed at tf_slim's copies of them (`add_arg_scope`, `variables`, `utils`).
"""

import argparse
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import tensorflow.compat.v1 as tf

# A tiny network of the paper's family: GroupNorm's 32 groups make 32 channels the least; attention at 4×4 (the
# second level), so that both a plain and an attention level, and the middle block's attention, are exercised.
CONFIG = {"ch": 32, "ch_mult": [1, 1], "num_res_blocks": 1, "attn_resolutions": [4], "resolution": 8}
STEP = 3  # the checkpoint's global step, as in model.ckpt-790000
EMA_DECAY = 0.5  # one EMA update with this decay leaves the shadow halfway between its start and the raw weights


def install_contrib_group_norm(normalization_py: Path) -> None:
    """Make `import tensorflow.contrib as tf_contrib; tf_contrib.layers.group_norm` give TF 1.x's group_norm."""
    from tf_slim.layers import utils
    from tf_slim.ops import variables
    from tf_slim.ops.arg_scope import add_arg_scope

    framework_ops = types.ModuleType("tensorflow.contrib.framework.python.ops")
    framework_ops.add_arg_scope, framework_ops.variables = add_arg_scope, variables
    layers_layers = types.ModuleType("tensorflow.contrib.layers.python.layers")
    layers_layers.utils = utils
    sys.modules["tensorflow.contrib.framework.python.ops"] = framework_ops
    sys.modules["tensorflow.contrib.layers.python.layers"] = layers_layers
    spec = importlib.util.spec_from_file_location("contrib_normalization", normalization_py)
    normalization = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(normalization)
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers = types.SimpleNamespace(group_norm=normalization.group_norm)
    sys.modules["tensorflow.contrib"] = contrib


def random_values(variables: list, rng: np.random.Generator) -> list[np.ndarray]:
    """Random values for every variable, none of them near zero: the reference initialises the last conv of each
    residual branch, the attention output and the output conv at scale 1e-10, which would hide a wrongly converted
    layer behind a near-zero contribution. GroupNorm scales stay near 1; weights are fan-in scaled."""
    values = []
    for v in variables:
        shape = v.shape.as_list()
        if v.op.name.endswith("/gamma"):
            values.append(1.0 + 0.2 * rng.standard_normal(shape))
        elif len(shape) == 1:  # biases and GroupNorm offsets
            values.append(0.2 * rng.standard_normal(shape))
        else:
            fan_in = int(np.prod(shape[:-1]))
            values.append(rng.standard_normal(shape) / np.sqrt(fan_in))
    return [value.astype(np.float32) for value in values]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--diffusion_repo", required=True, help="a checkout of github.com/hojonathanho/diffusion")
    parser.add_argument("--contrib_normalization", required=True, help="TF 1.x's contrib normalization.py")
    parser.add_argument("--output_dir", default=str(Path(__file__).with_name("tf")))
    args = parser.parse_args()

    tf.disable_v2_behavior()
    install_contrib_group_norm(Path(args.contrib_normalization))
    sys.path.insert(0, args.diffusion_repo)
    from diffusion_tf import utils
    from diffusion_tf.models import unet

    rng = np.random.default_rng(2020)
    size = CONFIG["resolution"]
    x = rng.standard_normal((2, size, size, 3)).astype(np.float32)
    t = np.array([3, 617], dtype=np.int32)
    x_ph, t_ph = tf.placeholder(tf.float32, x.shape), tf.placeholder(tf.int32, t.shape)

    def network(x_in, t_in):
        return unet.model(
            x_in,
            t=t_in,
            y=None,
            name="model",
            num_classes=1,
            ch=CONFIG["ch"],
            out_ch=3,
            ch_mult=tuple(CONFIG["ch_mult"]),
            num_res_blocks=CONFIG["num_res_blocks"],
            attn_resolutions=tuple(CONFIG["attn_resolutions"]),
            dropout=0.0,
        )

    eps_raw = network(x_ph, t_ph)
    global_step = tf.train.get_or_create_global_step()
    trainable = tf.trainable_variables()
    ema = tf.train.ExponentialMovingAverage(decay=EMA_DECAY)  # as the authors' training (decay 0.9999 there)
    ema_op = ema.apply(trainable)
    with utils.ema_scope(ema):  # as the authors' evaluation builds the EMA network
        eps_ema = network(x_ph, t_ph)

    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        # Shadows start at one random set, the raw weights move to another, one EMA step mixes them.
        for v, value in zip(trainable, random_values(trainable, rng), strict=True):
            v.load(value, sess)
            ema.average(v).load(value, sess)
        for v, value in zip(trainable, random_values(trainable, rng), strict=True):
            v.load(value, sess)
        sess.run(ema_op)
        global_step.load(STEP, sess)

        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        saver = tf.train.Saver(save_relative_paths=True)
        saver.save(sess, str(out / "model.ckpt"), global_step=STEP, write_meta_graph=False)
        raw, averaged = sess.run([eps_raw, eps_ema], {x_ph: x, t_ph: t})
        # A few stored values as TF itself reads them back, for the checkpoint reader's own test.
        reader = tf.train.load_checkpoint(str(out / f"model.ckpt-{STEP}"))
        shapes = {name: list(shape) for name, shape in sorted(reader.get_variable_to_shape_map().items())}
        conv_in = {key: reader.get_tensor(f"model/conv_in/W{key}") for key in ("", "/ExponentialMovingAverage")}

    nchw = (0, 3, 1, 2)  # the project's networks take [N, C, H, W]
    np.savez(
        out / "reference_outputs.npz",
        x=x.transpose(nchw),
        t=t,
        eps_raw=raw.transpose(nchw),
        eps_ema=averaged.transpose(nchw),
        conv_in_W=conv_in[""],
        conv_in_W_ema=conv_in["/ExponentialMovingAverage"],
    )
    record = {"config": CONFIG, "step": STEP, "ema_decay": EMA_DECAY, "tensorflow": tf.__version__, "shapes": shapes}
    (out / "fixture.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}: {len(shapes)} variables; |eps_raw - eps_ema| max {abs(raw - averaged).max():.3f}")


if __name__ == "__main__":
    main()
