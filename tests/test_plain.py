"""Reference nets (nn/plain.py): what a searched architecture is compared with. A plain CNN or a
gluoncv model is built untrained, scored by the same path graph as our networks, saved and loaded
back as a reference, and refused by the tools that need an architecture."""
import mxnet as mx
import numpy as np
import pytest

from oneshot_nas.errors import UserError
from oneshot_nas.nn.pathgraph import PathGraph
from oneshot_nas.nn.plain import reference_net
from oneshot_nas.runs.modelfile import load_model, save_model


def test_a_plain_cnn_halves_the_image_but_in_its_last_layer_and_scores_like_itself(rng):
    net = reference_net("plain-8-16-32", 7)
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(rng.normal(size=(4, 3, 32, 32)))
    assert net.features[:6](x).shape == (4, 16, 8, 8) and net.features[:9](x).shape == (4, 32, 8, 8)
    assert net(x).shape == (4, 7)
    labels = rng.integers(0, 7, 4)
    graph = PathGraph(net)
    np.testing.assert_allclose(graph.predict(x).asnumpy(), net(x).asnumpy(), rtol=1e-5, atol=1e-5)
    assert graph.counts([(x, labels)])[2] == 4
    with pytest.raises(UserError, match="is not made of paths"):
        PathGraph(net, arch="tiny4_B0-0-0-0_C0-0-0-0")


def test_a_reference_net_is_saved_loaded_and_refused_where_an_architecture_is_needed(rng, tmp_path):
    net = reference_net("plain-8-16-32-64", 10)
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(rng.normal(size=(2, 3, 32, 32)))
    path = save_model(net, tmp_path / "plain.params", {"top1": 0.5})
    loaded, meta = load_model(path, kind="reference")
    assert meta["name"] == "plain-8-16-32-64" and meta["record"] == {"top1": 0.5}
    np.testing.assert_array_equal(loaded(x).asnumpy(), net(x).asnumpy())
    for kind in (None, "subnet", "supernet"):
        with pytest.raises(UserError, match="holds the reference net plain-8-16-32-64"):
            load_model(path, kind=kind)


def test_gluoncv_models_are_references_too_and_unknown_names_are_one_line():
    net = reference_net("mobilenetv2_0.25", 10)
    net.initialize()
    assert net(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 10)
    with pytest.raises(UserError, match="unknown reference net 'mobilenet9'.*plain-W1-W2"):
        reference_net("mobilenet9", 10)
    with pytest.raises(UserError, match="give the widths of its layers"):
        reference_net("plain", 10)
