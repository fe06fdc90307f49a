"""Third-party plugins discovered through real entry points.

Each test lays out installed distributions (a `*.dist-info` folder with METADATA and entry_points.txt, beside
their modules) in a temporary folder and runs a fresh interpreter with that folder on its path, so
`importlib.metadata` finds them exactly as it finds a pip-installed package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

GOOD_MODULE = """
import torch
from trl_plus import LossOutput, PairedLogps, register_loss

@register_loss("plugin_hinge", aliases=("plugin_slic",), requires_reference=False, paper="plugin paper")
def plugin_hinge(lp: PairedLogps, *, margin: float = 1.0) -> LossOutput:
    return LossOutput(torch.relu(margin - (lp.chosen_logps - lp.rejected_logps)))

def plain_loss(lp: PairedLogps, *, scale: float = 1.0) -> LossOutput:
    return LossOutput(scale * (lp.rejected_logps - lp.chosen_logps))

class PluginHead(torch.nn.Module):
    def __init__(self, hidden_size: int, *, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
"""

PROBE = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import trl_plus
    losses = [spec.name for spec in trl_plus.list_losses()]
    heads = [spec.name for spec in trl_plus.list_reward_heads()]
    try:
        trl_plus.get_loss("plugin_hinj")
        unknown = ""
    except trl_plus.UnknownNameError as error:
        unknown = str(error)
    plain = trl_plus.get_loss("plain") if "plain" in losses else None
    hinge = trl_plus.get_loss("plugin_slic") if "plugin_hinge" in losses else None
print(json.dumps({
    "losses": losses,
    "heads": heads,
    "unknown": unknown,
    "errors": [str(e) for e in trl_plus.plugin_errors()],
    "warnings": [str(w.message) for w in caught if issubclass(w.category, trl_plus.PluginLoadWarning)],
    "plain": None if plain is None else [plain.origin, plain.requires_reference,
                                         [h.name for h in plain.hyperparameters]],
    "hinge": None if hinge is None else [hinge.name, hinge.requires_reference, hinge.origin],
}))
"""


def _distribution(root: Path, name: str, module: str, source: str, entry_points: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    _distribution(
        tmp_path,
        "good-plugin",
        "good_plugin_mod",
        GOOD_MODULE,
        """
        [trl_plus.losses]
        hinge_module = good_plugin_mod
        plain = good_plugin_mod:plain_loss

        [trl_plus.reward_heads]
        plugin_head = good_plugin_mod:PluginHead
        """,
    )
    _distribution(
        tmp_path,
        "broken-plugin",
        "broken_plugin_mod",
        'raise ImportError("No module named frobnicate")\n',
        """
        [trl_plus.losses]
        broken = broken_plugin_mod
        """,
    )
    return tmp_path


def _run(site: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(site), **env}
    environment.pop("TRL_PLUS_DISABLE_PLUGIN_AUTOLOAD", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=site, env=environment, capture_output=True, text=True, check=True
    )


def test_plugins_load_through_entry_points_and_a_broken_one_is_isolated(site: Path) -> None:
    result = json.loads(_run(site, ["-c", PROBE]).stdout)
    # The good distribution's module registered its decorated loss; the plain function took its entry-point name.
    assert {"dpo", "plugin_hinge", "plain"} <= set(result["losses"])
    assert "broken" not in result["losses"]
    assert result["heads"] == ["bt", "ensemble", "gpm", "pl", "plugin_head"]
    assert result["hinge"] == ["plugin_hinge", False, "good_plugin_mod.plugin_hinge"]
    origin, requires_reference, hyperparameters = result["plain"]
    assert origin == "good-plugin (entry point 'plain')" and requires_reference and hyperparameters == ["scale"]
    # The broken one is reported once, with its distribution's name and the cause, and in lookup errors.
    assert len(result["errors"]) == 1
    assert "broken = broken_plugin_mod from distribution 'broken-plugin'" in result["errors"][0]
    assert "No module named frobnicate" in result["errors"][0]
    assert len(result["warnings"]) == 1 and "broken-plugin" in result["warnings"][0]
    assert "Did you mean 'plugin_hinge'" in result["unknown"]
    assert "Plugins that failed to load: broken = broken_plugin_mod" in result["unknown"]


def test_cli_lists_plugins_and_warns_about_the_broken_one(site: Path) -> None:
    result = _run(site, ["-m", "trl_plus.cli", "losses"])
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[2:]}
    assert "plugin_hinge" in rows and "plugin_slic" in rows["plugin_hinge"] and "margin=1.0" in rows["plugin_hinge"]
    assert "plain" in rows and "dpo" in rows
    assert "plugin failed to load: broken = broken_plugin_mod from distribution 'broken-plugin'" in result.stderr


def test_autoload_can_be_switched_off(site: Path) -> None:
    result = json.loads(_run(site, ["-c", PROBE], TRL_PLUS_DISABLE_PLUGIN_AUTOLOAD="1").stdout)
    assert "dpo" in result["losses"]  # built-ins still load
    assert "plugin_hinge" not in result["losses"] and "plain" not in result["losses"]
    assert result["heads"] == ["bt", "ensemble", "gpm", "pl"]  # built-in heads only
    assert result["errors"] == [] and result["warnings"] == []
