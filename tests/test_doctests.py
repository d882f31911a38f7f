"""The ``Examples`` sections of the package's docstrings run as doctests, and the main
public functions have one.

Outputs in the examples are portable by construction: floats are rounded (``round``,
``np.round``) or exact small binary fractions, arrays are shown through ``.tolist()``
(NumPy 1 and 2 print scalars and dtypes differently). Each docstring runs in a fresh
temporary working directory (some examples write files), with ELLIPSIS and
NORMALIZE_WHITESPACE.
"""

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import factorgraph_ebm

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

#: Objects whose docstrings must carry an ``Examples`` section with at least one example.
MUST_HAVE_EXAMPLES = [
    "FactorGraph",
    "FactorGraph.add_variable",
    "FactorGraph.add_variables",
    "FactorGraph.add_factor",
    "FactorGraph.add_factors",
    "FactorGraph.add_potts_factors",
    "FactorGraph.add_truncated_linear_factors",
    "FactorGraph.add_truncated_quadratic_factors",
    "FactorGraph.energy",
    "belief_propagation",
    "min_sum",
    "sum_product",
    "InferenceResult",
    "certified.trws",
    "most_offending",
    "EnergyLoss",
    "PerceptronLoss",
    "HingeLoss",
    "LogLoss",
    "LVQ2Loss",
    "MCELoss",
    "SquareSquareLoss",
    "SquareExpLoss",
    "NLLLoss",
    "MEELoss",
    "TableModel",
    "LinearModel",
    "fit",
    "predict",
    "score",
    "viterbi",
    "forward_backward",
    "kbest",
    "best_incorrect",
    "path_energy",
    "SequenceLabeler",
    "token_accuracy",
    "chunk_scores",
    "chunks",
    "io.read_uai",
    "io.write_uai",
    "io.read_fg",
    "io.write_fg",
]


#: Modules of optional extras, left out when their dependency is not installed.
OPTIONAL = {"factorgraph_ebm.torch": "torch"}


def package_modules():
    """Every module of the package except ``__main__`` (importing it runs the CLI) and
    those of extras whose dependency is missing."""
    yield factorgraph_ebm
    for info in pkgutil.walk_packages(factorgraph_ebm.__path__, "factorgraph_ebm."):
        needs = OPTIONAL.get(info.name)
        if needs and importlib.util.find_spec(needs) is None:
            continue
        if not info.name.endswith("__main__"):
            yield importlib.import_module(info.name)


def collect_doctests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = {}
    for module in package_modules():
        for test in finder.find(module, module.__name__):
            # A lazily exported object is found again through the package: keep one.
            if test.examples and test.name not in found:
                found[test.name] = test
    return sorted(found.values(), key=lambda t: t.name)


DOCTESTS = collect_doctests()


def resolve(dotted):
    obj = factorgraph_ebm
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_examples(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test.globs = dict(test.globs)  # each run starts from the module's namespace
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


@pytest.mark.parametrize("name", MUST_HAVE_EXAMPLES)
def test_main_public_objects_have_examples(name):
    doc = resolve(name).__doc__ or ""
    assert "Examples\n" in doc and ">>> " in doc.split("Examples\n", 1)[1], (
        f"{name} has no Examples section"
    )
