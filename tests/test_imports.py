"""The pure side of the package (space, costs, budgets, samplers, strategies) needs no MXNet."""
import subprocess
import sys

from tests.conftest import ROOT

PURE = ["oneshot_nas.space", "oneshot_nas.recipe", "oneshot_nas.cost.counting", "oneshot_nas.cost.model",
        "oneshot_nas.cost.limits", "oneshot_nas.cost.latency", "oneshot_nas.sample.genes",
        "oneshot_nas.sample.samplers", "oneshot_nas.sample.strolling", "oneshot_nas.sample.training",
        "oneshot_nas.sample.schedule", "oneshot_nas.sample.stratified", "oneshot_nas.search.strategies",
        "oneshot_nas.search.objective", "oneshot_nas.search.settings", "oneshot_nas.bench.strategies",
        "oneshot_nas.agreement", "oneshot_nas.runs.claims", "oneshot_nas.train.truthtable",
        "oneshot_nas.sample.learned", "oneshot_nas.sample.stages", "oneshot_nas.search.predictor"]


def test_the_pure_side_imports_and_runs_with_mxnet_blocked():
    code = ("import sys; sys.modules['mxnet'] = None\n"
            + "".join(f"import {m}\n" for m in PURE)
            + "import numpy as np\n"
            "from oneshot_nas.cost.limits import Limits\n"
            "from oneshot_nas.cost.model import CostModel\n"
            "from oneshot_nas.sample.samplers import RejectionSampler, UniformSampler\n"
            "costs = CostModel(oneshot_nas.space.get_space('tiny'))\n"
            "limits = Limits(costs, {'macs': (None, 0.6e6)})\n"
            "arch = RejectionSampler(UniformSampler(costs.space), limits)(np.random.default_rng(0))\n"
            "assert costs.measure(arch)['macs'] <= 0.6e6\n"
            "from oneshot_nas.sample.learned import LearnedDistribution\n"
            "from oneshot_nas.search.predictor import for_space\n"
            "dist = LearnedDistribution(costs.space)\n"
            "model = for_space(costs.space, costs.space.gene_choices(), costs).fit(\n"
            "    [dist.sample(np.random.default_rng(i)) for i in range(8)], list(range(8)))\n"
            "assert 'mxnet' not in {k for k, v in sys.modules.items() if v is not None}\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
