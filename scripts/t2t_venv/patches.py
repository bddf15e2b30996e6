"""Source patches that make tensor2tensor 1.15.7 run on the legacy stack of requirements.txt.

Run by ``make_t2t_venv.sh`` with the venv's python; each patch inserts or replaces text in an
installed file and fails loudly when the text it expects is not there (a changed pin).
Idempotent: a patched file is recognised by its marker and left alone.
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig

MARK = "# imagined_rl t2t-venv patch"
SITE = pathlib.Path(sysconfig.get_paths()["purelib"])

# (file, text to find, text to put in its place)
PATCHES = [
    # TF 2.15 removed the private aliases tf_slim 1.1.0 still uses (ops.Tensor, ops.IndexedSlices,
    # control_flow_ops.cond/case); restore them once, when tf_slim is imported.
    ("tf_slim/__init__.py", "from __future__ import print_function\n",
     "from __future__ import print_function\n"
     f"{MARK}: TF 2.15 moved these; tf_slim 1.1.0 uses the old names\n"
     "from tensorflow.python.framework import ops as _ops, tensor as _tensor\n"
     "from tensorflow.python.framework import indexed_slices as _indexed_slices\n"
     "from tensorflow.python.ops import cond as _cond, control_flow_case as _case\n"
     "from tensorflow.python.ops import control_flow_ops as _cfo\n"
     "_ops.Tensor = getattr(_ops, 'Tensor', _tensor.Tensor)\n"
     "_ops.IndexedSlices = getattr(_ops, 'IndexedSlices', _indexed_slices.IndexedSlices)\n"
     "_cfo.cond = getattr(_cfo, 'cond', _cond.cond)\n"
     "_cfo.case = getattr(_cfo, 'case', _case.case)\n"),
    # t2t's optimizer wrapper asks any optimizer under TF 2 for Keras' get_gradients; its own
    # tf.compat.v1 optimizers (Adafactor, ...) only have compute_gradients.
    ("tensor2tensor/utils/optimize.py",
     "  def compute_gradients(self, loss, var_list=None, **kwargs):  "
     "# pylint: disable=arguments-differ\n    if contrib.is_tf2:\n",
     "  def compute_gradients(self, loss, var_list=None, **kwargs):  "
     "# pylint: disable=arguments-differ\n"
     f"    {MARK}: v1 optimizers have no get_gradients\n"
     "    if contrib.is_tf2 and hasattr(self._opt, 'get_gradients'):\n"),
]


def apply(path: str, old: str, new: str) -> str:
    file = SITE / path
    text = file.read_text()
    if MARK in text:
        return f"already patched: {path}"
    if old not in text:
        sys.exit(f"t2t venv patch: {path} has no {old!r}; were the pins changed?")
    file.write_text(text.replace(old, new, 1))
    return f"patched: {path}"


if __name__ == "__main__":
    for patch in PATCHES:
        print(apply(*patch))
