"""Public import paths of modules that moved keep working (issue 15's layout)."""

import importlib

import pytest

import factorgraph_ebm as fe


@pytest.mark.parametrize("name", ["labeler", "features", "metrics", "datasets"])
def test_old_sequence_module_paths_are_the_new_modules(name):
    old = importlib.import_module(f"factorgraph_ebm.{name}")
    new = importlib.import_module(f"factorgraph_ebm.sequence.{name}")
    assert old is new


def test_old_names_import_from_their_old_modules():
    from factorgraph_ebm.labeler import SequenceLabeler
    from factorgraph_ebm.metrics import token_accuracy
    from factorgraph_ebm.train import LBFGS, SGD, Adam, fit
    from factorgraph_ebm.trellis import forward_backward, viterbi, viterbi_kernel

    assert SequenceLabeler is fe.SequenceLabeler and token_accuracy is fe.token_accuracy
    assert (LBFGS, SGD, Adam, fit) == (fe.LBFGS, fe.SGD, fe.Adam, fe.fit)
    assert (forward_backward, viterbi) == (fe.forward_backward, fe.viterbi)
    assert viterbi_kernel.__module__ == "factorgraph_ebm.trellis.paths"
