"""Input limits and safety (issue 8, item 5).

* plan files over the size limit are refused before any parser runs (the parsers are replaced by
  tripwires that fail the test if reached) and without being read (a sparse 8 GB file returns at once);
* YAML is loaded safely: object-constructing tags are refused and run nothing; billion-laughs alias
  bombs and alias amplification of one long string are refused in well under 2 s;
* text from plans is shown literally: rich markup in the CLI, markdown/HTML in the Streamlit UI;
* ``zolab ui`` binds Streamlit to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.reliability.db_rows import count_rows
from zolab.cli import app
from zolab.platform.errors import PlanError
from zolab.platform.parsers import load_plan
from zolab.platform.parsers.source import MAX_BYTES
from zolab.platform.upload import prepare, upload_plan

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SMALL = (FIXTURES / "plan_small.yaml").read_text()
JSONL = (FIXTURES / "ablationbench.jsonl").read_text()
MARKDOWN = (FIXTURES / "seed_001.md").read_text()
SUFFIX_TEXT = {".yaml": SMALL, ".jsonl": JSONL, ".md": MARKDOWN}


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every parser entry point fails the test if reached."""
    import json

    from zolab.platform import parsers
    from zolab.platform.parsers import ablationbench

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a parser ran on input that should have been refused first")

    monkeypatch.setattr(yaml.reader.Reader, "__init__", boom)  # any PyYAML loader, safe or not
    monkeypatch.setattr(ablationbench, "json", type("NoJson", (), {"loads": staticmethod(boom),
                                                                   "JSONDecodeError": json.JSONDecodeError}))
    monkeypatch.setattr(parsers, "parse_yaml", boom)
    monkeypatch.setattr(parsers, "parse_ablationbench", boom)
    monkeypatch.setattr(parsers, "parse_planner_markdown", boom)


@pytest.mark.parametrize("suffix", sorted(SUFFIX_TEXT))
def test_tripwires_do_trip_on_input_within_the_limit(suffix: str, tmp_path: Path, tripwires: None) -> None:
    """The check of the check: the same plans, within the limit, reach a (tripwired) parser."""
    path = tmp_path / f"ok{suffix}"
    path.write_text(SUFFIX_TEXT[suffix])
    with pytest.raises(AssertionError, match="a parser ran"):
        load_plan(path)


def _oversize(text: str, size: int = MAX_BYTES + 1) -> str:
    """A plan padded (with a trailing comment or blank lines) to ``size`` bytes."""
    return text + "\n" + "#" * (size - len(text.encode()) - 1)


# ------------------------------------------------------------------------------------------------
# size limit


@pytest.mark.parametrize("suffix", sorted(SUFFIX_TEXT))
def test_oversize_file_is_refused_before_parsing(suffix: str, tmp_path: Path, tripwires: None) -> None:
    path = tmp_path / f"big{suffix}"
    path.write_text(_oversize(SUFFIX_TEXT[suffix]))
    assert path.stat().st_size == MAX_BYTES + 1
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.file == str(path)
    assert f"{MAX_BYTES + 1:,} bytes" in str(info.value) and f"limited to {MAX_BYTES:,}" in str(info.value)


@pytest.mark.parametrize("kind", ["str", "bytes"])
def test_oversize_text_is_refused_before_parsing(kind: str, tripwires: None) -> None:
    text = _oversize(SMALL)
    with pytest.raises(PlanError, match="limited to"):
        load_plan(text.encode() if kind == "bytes" else text, fmt="yaml")


def test_huge_file_is_refused_without_reading_it(tmp_path: Path, tripwires: None) -> None:
    """A sparse 8 GB file: refused from its size alone, at once and without reading it into memory."""
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(8 * 1024**3)
    start = time.perf_counter()
    with pytest.raises(PlanError, match="limited to"):
        load_plan(path)
    assert time.perf_counter() - start < 0.5


def test_a_plan_at_the_limit_is_still_accepted(tmp_path: Path) -> None:
    """The limit is not off by one: exactly MAX_BYTES bytes parse."""
    path = tmp_path / "edge.yaml"
    path.write_text(_oversize(SMALL, MAX_BYTES))
    assert path.stat().st_size == MAX_BYTES
    assert load_plan(path).name == "tiny"


def test_oversize_upload_through_cli_exits_1_and_writes_nothing(tmp_path: Path, sqlite_url: str,
                                                                tripwires: None) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(_oversize(SMALL))
    runner = CliRunner()
    for args in (["plan", "validate", str(path)], ["plan", "upload", str(path), "--db", sqlite_url]):
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 1, result.output
        assert result.output.count("error:") == 1 and "limited to" in result.output
        assert "Traceback" not in result.output
    assert not any(count_rows(sqlite_url).values())


def test_ui_upload_is_refused_by_size_before_parsing(tripwires: None) -> None:
    from zolab.ui import actions

    with pytest.raises(PlanError, match="limited to"):
        actions.prepare_upload(_oversize(SMALL).encode(), "big.yaml")
    # Streamlit itself is started with an upload cap of the same size (MB, rounded down, at least 1)
    from zolab.cli.ui_cmds import streamlit_command

    cmd = streamlit_command(8501, "127.0.0.1")
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(max(1, MAX_BYTES // 1_000_000))


# ------------------------------------------------------------------------------------------------
# YAML safe loading

TAGS = {
    "os.system via apply": "!!python/object/apply:os.system ['touch {marker}']",
    "os.system via new": "!!python/object/new:os.system ['touch {marker}']",
    "subprocess via apply": "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "python name": "!!python/name:os.system",
    "python module": "!!python/module:os",
    "python object": "!!python/object:zolab.platform.plan.Plan {{name: x}}",
    "python tuple": "!!python/tuple [1, 2]",
    "binary": "!!binary dG91Y2g=",
    "set": "!!set {{a, b}}",
    "omap": "!!omap [a: 1]",
    "custom local tag": "!Marker {{x: 1}}",
    "verbatim tag": "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
}


@pytest.mark.parametrize("where", ["name", "baseline.model", "ablations[0].replacement"])
@pytest.mark.parametrize("tag", sorted(TAGS))
def test_object_constructing_tags_are_refused_and_run_nothing(
    tag: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("loading a plan ran a command")

    monkeypatch.setattr(os, "system", forbidden)
    monkeypatch.setattr(subprocess, "call", forbidden)
    marker = tmp_path / "pwned"
    value = TAGS[tag].format(marker=marker)
    text = {
        "name": SMALL.replace("name: tiny", f"name: {value}"),
        "baseline.model": SMALL.replace("model: tiny-opt", f"model: {value}"),
        "ablations[0].replacement": SMALL.replace("replacement: [1, 5]", f"replacement: {value}"),
    }[where]
    assert text != SMALL
    with pytest.raises(PlanError) as info:
        load_plan(text, fmt="yaml", filename="evil.yaml")
    assert "not allowed" in str(info.value) and "tag" in str(info.value)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "!" in row)
    assert info.value.line == line and info.value.file == "evil.yaml"
    assert not marker.exists()


def _laughs(levels: int, fan: int = 9) -> str:
    rows = ["a0: &a0 lol"]
    for i in range(1, levels + 1):
        rows.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan)}]")
    return "\n".join(rows) + f"\nname: *a{levels}\n"


@pytest.mark.parametrize("levels", [9, 30])
def test_billion_laughs_is_refused_quickly(levels: int) -> None:
    """9 levels of 9 aliases = 387 million strings if expanded; 30 levels would never finish."""
    text = _laughs(levels)
    assert len(text) < 2000
    start = time.perf_counter()
    with pytest.raises(PlanError, match="alias") as info:
        load_plan(text, fmt="yaml")
    assert time.perf_counter() - start < 2.0
    assert info.value.line is not None


def test_alias_amplification_of_one_long_string_is_refused_quickly() -> None:
    """Few nodes, many characters: a 400 KB string aliased 1000 times passed the node count and
    took minutes in the resolver before the expanded-characters cap."""
    text = SMALL.replace("replacement: [1, 5]", f"replacement: [&b {'x' * 400_000}, {', '.join(['*b'] * 1000)}]")
    assert len(text.encode()) < MAX_BYTES
    start = time.perf_counter()
    with pytest.raises(PlanError, match="characters of text through aliases"):
        prepare(text, fmt="yaml")
    assert time.perf_counter() - start < 2.0 * _slowdown()


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(PlanError, match="recursive"):
        load_plan(SMALL + "loop: &r [*r]\n", fmt="yaml")


def test_long_free_text_is_refused_by_field_not_resolved_for_minutes() -> None:
    """The resolver's fuzzy matching is slow on huge text (a 200 KB ablated part: ~17 s); a located
    limit keeps a plan inside the file-size limit from tying up an upload."""
    text = SMALL.replace("ablated_part: number of sampled directions", "ablated_part: " + "y " * 50_000)
    start = time.perf_counter()
    with pytest.raises(PlanError) as info:
        prepare(text, fmt="yaml")
    assert info.value.field == "ablations[0].ablated_part" and info.value.line == 12
    assert time.perf_counter() - start < 3.0 * _slowdown()


def _slowdown() -> float:
    """Time limits stretch on a loaded 2-core CI box (os.getloadavg per core, at least 1)."""
    try:
        return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    except OSError:  # pragma: no cover - no load average on this platform
        return 1.0


# ------------------------------------------------------------------------------------------------
# plan text shown literally: CLI

EVIL_NAME = "[bold red]x[/] <script>alert(1)</script> [link=http://e.vil]y[/link]"
EVIL_ABLATION = "[blink]z[/blink] **bold** :red[c]"


def _evil_plan(tmp_path: Path) -> Path:
    path = tmp_path / "evil.yaml"
    path.write_text(SMALL.replace("name: tiny", f"name: '{EVIL_NAME}'")
                    .replace("- name: sampled directions", f"- name: '{EVIL_ABLATION}'"))
    return path


def test_cli_prints_plan_text_literally(tmp_path: Path, sqlite_url: str) -> None:
    path = _evil_plan(tmp_path)
    runner = CliRunner()
    env = {"COLUMNS": "400"}  # wide enough that the tables do not wrap the names
    outputs = {}
    for name, args in {
        "validate": ["plan", "validate", str(path)],
        "upload": ["plan", "upload", str(path), "--db", sqlite_url],
        "list": ["plan", "list", "--db", sqlite_url],
        "show": ["plan", "show", "1", "--db", sqlite_url],
    }.items():
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
        outputs[name] = result.output
    for name in ("validate", "upload", "list", "show"):
        assert EVIL_NAME in outputs[name], (name, outputs[name])
    for name in ("validate", "show"):
        assert EVIL_ABLATION in outputs[name], (name, outputs[name])


def test_cli_error_messages_print_plan_text_literally(tmp_path: Path) -> None:
    """A refused plan's message quotes the offending key as written, markup and all."""
    path = tmp_path / "bad.yaml"
    path.write_text(SMALL + "'[red]unknown[/red]': 1\n")
    result = CliRunner().invoke(app, ["plan", "validate", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 1
    assert "[red]unknown[/red]" in result.output and result.output.count("error:") == 1


@pytest.mark.parametrize("escape", ["\\e[31m", "\\e]0;title\\a", "\\x9b2J", "\\0"])
def test_terminal_control_sequences_in_plan_text_are_refused(escape: str) -> None:
    """YAML/JSON escapes can put ESC, CSI or NUL into a name; such text would drive the terminal that
    prints it (colours, window title, clear screen) or fail on PostgreSQL, so it is refused, located."""
    text = SMALL.replace("name: tiny", f'name: "ti{escape}ny"')
    with pytest.raises(PlanError, match="control characters") as info:
        load_plan(text, fmt="yaml")
    assert info.value.field == "name" and info.value.line == 2
    line = '{"name": "a\\u001b[2Jb", "ablated_part": "perturbation scale", "action": "REMOVE"}'
    with pytest.raises(PlanError, match="control characters"):
        load_plan(line, fmt="jsonl")


# ------------------------------------------------------------------------------------------------
# plan text shown literally: UI


def test_ui_shows_plan_text_as_text_not_markup(tmp_path: Path, sqlite_url: str) -> None:
    """A plan uploaded the real way, then the Plans page: the names appear verbatim only in elements
    that never interpret markup (dataframes, selectbox options, st.text); markdown elements carry no
    raw HTML or markdown from the plan."""
    from streamlit.testing.v1 import AppTest

    import zolab.ui

    upload_plan(_evil_plan(tmp_path), url=sqlite_url)
    pages = Path(zolab.ui.__file__).resolve().parent / "pages"
    at = AppTest.from_file(str(pages / "plans.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    literal = [str(o) for sb in at.selectbox for o in sb.options]
    for df in at.dataframe:
        literal += [str(v) for v in df.value.astype(str).to_numpy().ravel()]
    literal += [str(t.value) for t in at.text]
    assert any(EVIL_NAME in v for v in literal), "the plan name must still be shown"
    assert any(EVIL_ABLATION in v for v in literal), "the ablation name must still be shown"

    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader", "header"):
        for el in getattr(at, kind):
            shown = str(el.value)
            assert "<script>" not in shown and "**bold**" not in shown and ":red[c]" not in shown, (kind, shown)
            assert getattr(el, "allow_html", False) is False or "<script" not in shown
    labels = [str(getattr(w, "label", "")) for w in (*at.selectbox, *at.button, *at.checkbox)]
    assert not any("<script>" in label or "**bold**" in label for label in labels), labels


# ------------------------------------------------------------------------------------------------
# the UI binds to localhost


def test_streamlit_command_binds_localhost() -> None:
    from zolab.cli.ui_cmds import streamlit_command

    cmd = streamlit_command(8501, "127.0.0.1")
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert "0.0.0.0" not in cmd


@pytest.mark.parametrize(("args", "address"), [([], "127.0.0.1"), (["--host", "0.0.0.0"], "0.0.0.0")])
def test_zolab_ui_binds_localhost_unless_told(args: list[str], address: str, sqlite_url: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``zolab ui`` (no options) starts Streamlit on 127.0.0.1; exposing it takes an explicit --host."""
    from zolab.cli import ui_cmds

    calls: list[list[str]] = []
    monkeypatch.setattr(ui_cmds, "serve", lambda cmd, env, **_k: calls.append(list(cmd)) or 0)
    result = CliRunner().invoke(app, ["ui", "--db", sqlite_url, *args])
    assert result.exit_code == 0, result.output
    (cmd,) = calls
    assert cmd[cmd.index("--server.address") + 1] == address
    assert f"http://{address}:8501" in result.output
