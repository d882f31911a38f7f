"""What the installed package ships besides its modules."""

from pathlib import Path

import factorgraph_ebm


def test_py_typed_marker_is_in_the_package():
    """PEP 561: the ``py.typed`` marker tells type checkers to use the package's inline
    annotations. It must sit in the package directory (in a wheel: installed as package
    data, declared in pyproject.toml)."""
    package = Path(factorgraph_ebm.__file__).resolve().parent
    assert (package / "py.typed").is_file()
    pyproject = package.parent / "pyproject.toml"
    if pyproject.is_file():  # a source checkout
        assert 'factorgraph_ebm = ["py.typed"]' in pyproject.read_text()
