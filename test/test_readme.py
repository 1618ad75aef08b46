"""The README's library example runs as written (the public API a newcomer starts from)."""

from __future__ import annotations

import re

from conftest import REPO


def test_readme_library_example_runs(capsys):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The library")[1].split("\n## ")[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md (library example)", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "metric depth: median relative error" in out and "hazard map" in out


def test_public_api_names_resolve():
    import lunar_recon

    for name in lunar_recon.__all__:
        assert getattr(lunar_recon, name) is not None, name
    try:
        lunar_recon.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
