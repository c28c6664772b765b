"""The user's own model by reference (models/imports.py, models/registry.py): the contract.

Files are written to tmp_path, as a user's `nets.py` beside their spec would be.
"""

import os
import subprocess
import sys
import textwrap
import time

import cloudpickle
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import ImportModelSpec, imports, make_model
from models.specs import DataShape

SHAPE = DataShape(n_outputs=3, input_shape=(4,), num_classes=3)
X = jnp.ones((2, 4), jnp.float32)

NETS = textwrap.dedent(
    """
    from flax import nnx
    import jax.numpy as jnp

    from helpers import double   # a sibling file: the folder is on the path while this runs

    class Net(nnx.Module):
        def __init__(self, *, width, n_features, n_outputs, rngs):
            self.seen = (width, n_features, n_outputs)
            self.a = nnx.Linear(n_features, width, rngs=rngs)
            self.b = nnx.Linear(width, n_outputs, rngs=rngs)

        def __call__(self, x):
            return self.b(double(nnx.relu(self.a(x))))

    def make_net(*, n_outputs, input_shape, rngs, width=5):
        return Net(width=width, n_features=input_shape[0], n_outputs=n_outputs, rngs=rngs)

    class Cached(nnx.Module):
        def __init__(self, *, n_features, n_outputs, rngs):
            self.l = nnx.Linear(n_features, n_outputs, rngs=rngs)
            self.memo = nnx.Cache(jnp.zeros(3))

        def __call__(self, x):
            return self.l(x)

    def not_a_module(*, rngs):
        return 42
    """
)


@pytest.fixture()
def user_dir(tmp_path):
    (tmp_path / "nets.py").write_text(NETS)
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    return tmp_path


def _ref(folder, name):
    return imports.canonical(f"nets.py:{name}", folder)


def test_class_gets_its_args_and_the_data_arguments_it_asks_for(user_dir):
    fns = make_model(ImportModelSpec(import_=_ref(user_dir, "Net"), args={"width": 7}), SHAPE)
    assert fns.num_params == (4 * 7 + 7) + (7 * 3 + 3)
    params, state = fns.init(jax.random.key(0))
    pred, _ = fns.apply(params, state, X, False)
    assert pred.shape == (2, 3) and state == {}
    # the sibling's `double` ran: the output is the model computed by hand with it
    a, b = params["a"], params["b"]
    hand = 2 * jax.nn.relu(X @ a["kernel"] + a["bias"]) @ b["kernel"] + b["bias"]
    np.testing.assert_allclose(pred, hand, rtol=1e-5, atol=1e-6)


def test_factory_function_and_defaults(user_dir):
    fns = make_model(ImportModelSpec(import_=_ref(user_dir, "make_net")), SHAPE)
    assert fns.num_params == (4 * 5 + 5) + (5 * 3 + 3)


def test_unknown_argument_names_the_valid_ones(user_dir):
    spec = ImportModelSpec(import_=_ref(user_dir, "Net"), args={"widht": 7})
    with pytest.raises(ValueError, match=r"model.import: unknown argument\(s\) widht.*width"):
        make_model(spec, SHAPE)


def test_other_variable_types_are_refused_by_name(user_dir):
    with pytest.raises(TypeError, match="Cache variable at 'memo'"):
        make_model(ImportModelSpec(import_=_ref(user_dir, "Cached")), SHAPE)


def test_a_factory_must_return_a_module(user_dir):
    with pytest.raises(TypeError, match="returned a int, not an nnx.Module"):
        make_model(ImportModelSpec(import_=_ref(user_dir, "not_a_module")), SHAPE)


def test_missing_file_and_name_say_what_is_missing(user_dir):
    with pytest.raises(imports.ImportFailed, match="file not found"):
        imports.resolve(_ref(user_dir / "elsewhere", "Net"))
    with pytest.raises(imports.ImportFailed, match="has no 'Nett'"):
        imports.resolve(_ref(user_dir, "Nett"))
    with pytest.raises(imports.ImportFailed, match="cannot import module 'no_such_pkg"):
        imports.resolve("no_such_pkg.nets:Net")


def test_an_edited_file_is_loaded_again(user_dir):
    ref = _ref(user_dir, "Net")
    first = imports.resolve(ref)
    assert imports.resolve(ref) is first  # unchanged: the same module, no reload
    path = user_dir / "nets.py"
    path.write_text(NETS + "\nVERSION = 2\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = imports.resolve(ref)
    assert second is not first
    assert imports.identity([ref]) == (id(second),)  # a new program key for the new class


def test_objects_from_python_get_distinct_references():
    class Net:  # two classes of one name (a notebook cell run twice)
        pass

    first = Net

    class Net:  # noqa: F811
        pass

    a, b = imports.register_object(first), imports.register_object(Net)
    assert a != b and a.startswith("obj:") and imports.register_object(first) == a
    assert imports.resolve(a) is first and imports.resolve(b) is Net
    assert ImportModelSpec(import_=a).name.endswith("Net")


def test_file_classes_travel_by_value(user_dir, tmp_path_factory):
    """A worker that never saw the file (here: a fresh interpreter, the file deleted) still
    gets the class: it is pickled by value."""
    cls = imports.resolve(_ref(user_dir, "Net"))
    blob = cloudpickle.dumps(cls)
    (user_dir / "nets.py").unlink()
    (user_dir / "helpers.py").unlink()
    out = tmp_path_factory.mktemp("elsewhere")
    (out / "blob.pkl").write_bytes(blob)
    code = (
        "import pickle, sys; from flax import nnx; cls = pickle.load(open('blob.pkl', 'rb'));"
        "m = cls(width=2, n_features=4, n_outputs=3, rngs=nnx.Rngs(0)); print(m.seen)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=out, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(2, 4, 3)"
