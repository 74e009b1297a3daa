"""Fuzzed plan input (issue 8, item 4): malformed plans only ever surface as zolab's PlanError.

Properties, checked on mutated seed plans of all three formats (see ``strategies.py``):

* ``prepare`` (parse + validate + resolve + expand: everything an upload does before writing) either
  returns a plan — which then survives a round trip through its canonical form — or raises
  :class:`PlanError` with at least one located, non-empty issue. Any other exception is a bug;
* ``upload_plan`` on a fresh database after a PlanError leaves zero rows in every table, and an
  accepted plan is stored without a database error (on SQLite and PostgreSQL);
* the CLI (``zolab plan validate`` / ``plan upload``) exits 0 or 1, prints one ``error:`` message
  on 1, never a traceback and never "internal error" (exit 2).

The default suite runs a few hundred cases per format (< 1 min); ``-m fuzz`` runs
``ZOLAB_FUZZ_CASES`` (default 10,000) and prints how many were executed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.reliability import strategies as S
from tests.reliability.db_rows import clear_rows, count_rows
from tests.reliability.strategies import FUZZ_CASES
from zolab.cli import app
from zolab.platform.errors import PlanError
from zolab.platform.parsers import load_plan
from zolab.platform.plan import validate_plan
from zolab.platform.upload import prepare, upload_plan

DEFAULT = settings.get_profile("zolab-default")
SUFFIX = {"markdown": ".md", "yaml": ".yaml", "jsonl": ".jsonl"}


# ------------------------------------------------------------------------------------------------
# inputs: (format given to the parser or None for detection, file name, text)


def _choose(seeds: dict[str, str]) -> st.SearchStrategy[str]:
    assert seeds, "no seed inputs found"
    return st.sampled_from(sorted(seeds.values()))


MARKDOWN = _choose(S.markdown_seeds()).flatmap(S.mutated_text)
YAML = _choose(S.yaml_seeds()).flatmap(S.mutated_yaml)
JSONL = _choose(S.jsonl_seeds()).flatmap(S.jsonl_documents)
TEXTS = {"markdown": MARKDOWN, "yaml": YAML, "jsonl": JSONL}


@st.composite
def plan_case(draw: st.DrawFn, fmt: str) -> tuple[str | None, str, str]:
    """A mutated plan, with the format either given or left to detection (extension or content)."""
    text = draw(TEXTS[fmt])
    how = draw(st.sampled_from(["fmt", "extension", "content"]))
    if how == "fmt":
        return fmt, f"fuzz{SUFFIX[fmt]}", text
    if how == "extension":
        return None, f"fuzz{SUFFIX[fmt]}", text
    return None, "fuzz.txt", text


ANY_CASE = st.sampled_from(sorted(TEXTS)).flatmap(plan_case)

_all_seed_files = {**{f"{k}.md": v for k, v in S.markdown_seeds().items()},
                   **{f"{k}.yaml": v for k, v in S.yaml_seeds().items()},
                   **{f"{k}.jsonl": v for k, v in S.jsonl_seeds().items()}}
BYTES_CASE = st.sampled_from(sorted(_all_seed_files)).flatmap(
    lambda name: st.tuples(st.just(Path(name).suffix), S.mutated_bytes(_all_seed_files[name].encode("utf-8")))
)


@pytest.fixture
def plan_file(tmp_path: Path) -> Callable[[str | bytes, str], Path]:
    """Write plan text or bytes to one file under ``tmp_path`` (rewritten for each example)."""

    def write(content: str | bytes, suffix: str) -> Path:
        path = tmp_path / f"plan{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        return path

    return write


# ------------------------------------------------------------------------------------------------
# the properties


def prepare_or_plan_error(source: str | bytes | Path, *, fmt: str | None, filename: str | None) -> str:
    """``'ok'`` or ``'plan_error'``; any other exception propagates (and fails the test)."""
    try:
        prepared = prepare(source, fmt=fmt, filename=filename)
    except PlanError as exc:
        assert exc.issues, "a PlanError must say what is wrong"
        for issue in exc.issues:
            assert issue.message.strip(), exc.issues
            assert issue.line is None or issue.line >= 1
            assert issue.column is None or issue.column >= 1
        assert str(exc).strip()
        return "plan_error"
    canonical = prepared.plan.canonical()
    assert validate_plan(canonical) == prepared.plan, "an accepted plan must survive its canonical form"
    return "ok"


def upload_leaves_nothing_on_error(source: str, *, fmt: str | None, filename: str, url: str) -> str:
    """Upload to a database that starts empty; a PlanError must leave it empty."""
    try:
        result = upload_plan(source, fmt=fmt, filename=filename, url=url, allow_unresolved=True)
    except PlanError:
        counts = count_rows(url)
        assert not any(counts.values()), f"rows written by a refused upload: {counts}"
        return "plan_error"
    counts = count_rows(url)
    assert counts["plans"] == 1 and result.created, counts
    assert counts["ablations"] == len(result.prepared.plan.ablations), counts
    clear_rows(url)  # the next example starts from a fresh database again
    return "ok"


def cli_exits_cleanly(runner: CliRunner, path: Path, url: str) -> tuple[int, int]:
    """``plan validate`` then ``plan upload``: exit 0/1, one message, no traceback, nothing written on 1."""
    codes = []
    for args in (["plan", "validate", str(path)], ["plan", "upload", str(path), "--db", url, "--allow-unresolved"]):
        result = runner.invoke(app, args)
        out = result.output
        assert result.exit_code in (0, 1), f"{args} exited {result.exit_code}:\n{out}"
        assert "Traceback" not in out and "internal error" not in out, out
        if result.exception is not None:
            assert isinstance(result.exception, SystemExit), repr(result.exception)
        if result.exit_code == 1:
            assert out.count("error:") == 1, out
        codes.append(result.exit_code)
    if codes[1] == 1:
        assert not any(count_rows(url).values()), "rows written by a refused CLI upload"
    else:
        clear_rows(url)
    return codes[0], codes[1]


# ------------------------------------------------------------------------------------------------
# default suite


def test_seed_inputs_are_valid_plans() -> None:
    """The mutations start from valid plans, so a PlanError after mutating one means the mutation broke it."""
    for name, text in S.yaml_seeds().items():
        assert load_plan(text, fmt="yaml", filename=name).ablations, name
    for name, text in S.markdown_seeds().items():
        assert len(load_plan(text, fmt="markdown", filename=name).ablations) == 5, name
    for name, text in S.jsonl_seeds().items():
        assert len(load_plan(text, fmt="jsonl", filename=name).ablations) == 4, name
    assert len(S.markdown_seeds()) >= 2 and len(S.yaml_seeds()) >= 2


@pytest.mark.parametrize("fmt", sorted(TEXTS))
def test_mutated_plans_parse_or_raise_plan_error(fmt: str) -> None:
    seen: Counter[str] = Counter()

    @DEFAULT
    @given(plan_case(fmt))
    def run(case: tuple[str | None, str, str]) -> None:
        given_fmt, name, text = case
        seen[prepare_or_plan_error(text, fmt=given_fmt, filename=name)] += 1

    run()
    # the fuzz must exercise both outcomes, or it is testing nothing
    assert seen["plan_error"] > 0 and sum(seen.values()) >= DEFAULT.max_examples // 2, seen


def test_byte_mutated_files_parse_or_raise_plan_error(plan_file: Callable[[str | bytes, str], Path]) -> None:
    """Bit flips, invalid UTF-8, NULs and BOMs in files read from disk."""
    seen: Counter[str] = Counter()

    @settings(DEFAULT, max_examples=150)
    @given(BYTES_CASE)
    def run(case: tuple[str, bytes]) -> None:
        suffix, data = case
        seen[prepare_or_plan_error(plan_file(data, suffix), fmt=None, filename=None)] += 1

    run()
    assert seen["plan_error"] > 0, seen


def test_refused_uploads_write_no_rows(db_url: str) -> None:
    """On SQLite and PostgreSQL: a refused upload leaves every table empty; an accepted one stores cleanly."""
    seen: Counter[str] = Counter()
    assert not any(count_rows(db_url).values())

    @settings(DEFAULT, max_examples=60)
    @given(ANY_CASE)
    def run(case: tuple[str | None, str, str]) -> None:
        fmt, name, text = case
        seen[upload_leaves_nothing_on_error(text, fmt=fmt, filename=name, url=db_url)] += 1

    run()
    assert seen["plan_error"] > 0, seen


def test_cli_validate_and_upload_exit_cleanly(sqlite_url: str,
                                              plan_file: Callable[[str | bytes, str], Path]) -> None:
    runner = CliRunner()
    seen: Counter[tuple[int, int]] = Counter()

    @settings(DEFAULT, max_examples=40)
    @given(ANY_CASE)
    def run(case: tuple[str | None, str, str]) -> None:
        _, name, text = case
        seen[cli_exits_cleanly(runner, plan_file(text, Path(name).suffix), sqlite_url)] += 1

    run()
    assert any(code == (1, 1) for code in seen), seen


# ------------------------------------------------------------------------------------------------
# minimal inputs that crashed the parsers before (each once a fuzz finding; see the commit log)

REGRESSIONS: dict[str, tuple[str, str | None]] = {
    "one line longer than a file name (OSError ENAMETOOLONG)": ("name: " + "x" * 300, None),
    "non-printable character in YAML (ReaderError)": ("name: a\x01b\n", "yaml"),
    "YAML nested 1000 deep (RecursionError)": ("x: " + "[" * 1000 + "]" * 1000 + "\n", "yaml"),
    "YAML mapping nested 600 deep (RecursionError)": ("x: " + "{a: " * 600 + "1" + "}" * 600 + "\n", "yaml"),
    "YAML integer of 5000 digits (ValueError)": ("zolab: " + "9" * 5000 + "\n", "yaml"),
    "JSON line nested 100000 deep (RecursionError)": ("[" * 100000 + "\n", "jsonl"),
    "JSON integer of 5000 digits (ValueError)": ('{"a": ' + "9" * 5000 + "}\n", "jsonl"),
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_former_crashes_are_plan_errors(name: str) -> None:
    text, fmt = REGRESSIONS[name]
    start = time.perf_counter()
    with pytest.raises(PlanError) as info:
        load_plan(text, fmt=fmt)
    assert time.perf_counter() - start < 1.0, "refusing bad input must be fast"
    assert info.value.issues[0].message


NUL_PLANS = {
    "jsonl": '{"name": "a\\u0000b", "ablated_part": "perturbation scale", "action": "REPLACE", "replacement": [0.1]}',
    "yaml": (S.FIXTURES / "plan_small.yaml").read_text().replace("name: tiny", 'name: "ti\\0ny"'),
}


@pytest.mark.parametrize("fmt", sorted(NUL_PLANS))
def test_nul_in_plan_text_is_refused_before_the_database(fmt: str, db_url: str) -> None:
    """A JSON ``\\u0000`` or YAML ``\\0`` escape used to validate, then fail the upload on PostgreSQL
    ("text fields cannot contain NUL") with a DatabaseError: exit 2 instead of a located PlanError."""
    with pytest.raises(PlanError) as info:
        upload_plan(NUL_PLANS[fmt], fmt=fmt, filename=f"nul.{fmt}", url=db_url)
    assert "control characters (found U+0000)" in str(info.value) and info.value.line is not None
    assert info.value.field in ("name", "ablations[0].name")
    assert not any(count_rows(db_url).values())


def test_deep_flow_nesting_is_refused_while_scanning() -> None:
    """PyYAML's scanner is quadratic in flow depth: 3 KB of '[' took ~4 s before the depth check moved
    into the scanner. The error names the line and column where the limit was crossed."""
    start = time.perf_counter()
    with pytest.raises(PlanError) as info:
        load_plan("name: x\nx: " + "[" * 3000, fmt="yaml")
    assert time.perf_counter() - start < 0.5
    assert info.value.line == 2 and "nested" in str(info.value)


# ------------------------------------------------------------------------------------------------
# the long run: -m fuzz


@pytest.mark.fuzz
@pytest.mark.timeout(7200)
def test_fuzz_long_run(sqlite_url: str, plan_file: Callable[[str | bytes, str], Path],
                       capsys: pytest.CaptureFixture[str]) -> None:
    """``ZOLAB_FUZZ_CASES`` cases (default 10,000), a quarter per family: text mutations of each of the
    three formats through ``prepare`` (1 in 5 also through upload on a fresh SQLite database), and byte
    mutations of files read from disk. Prints the number of cases executed and the time per family."""
    per_family = max(1, FUZZ_CASES // 4)
    profile = settings(settings.get_profile("zolab-fuzz"), max_examples=per_family)
    executed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()

    def family(fmt: str) -> Callable[[], None]:
        @profile
        @given(plan_case(fmt))
        def run(case: tuple[str | None, str, str]) -> None:
            given_fmt, name, text = case
            executed[fmt] += 1
            outcome = prepare_or_plan_error(text, fmt=given_fmt, filename=name)
            if executed[fmt] % 5 == 0:  # 1 in 5 cases also goes through upload on the database
                outcome = upload_leaves_nothing_on_error(text, fmt=given_fmt, filename=name, url=sqlite_url)
            outcomes[f"{fmt}:{outcome}"] += 1

        return run

    @profile
    @given(BYTES_CASE)
    def run_bytes(case: tuple[str, bytes]) -> None:
        suffix, data = case
        executed["bytes"] += 1
        outcomes[f"bytes:{prepare_or_plan_error(plan_file(data, suffix), fmt=None, filename=None)}"] += 1

    start = time.perf_counter()
    timings: dict[str, float] = {}
    for name, run in [*((f, family(f)) for f in sorted(TEXTS)), ("bytes", run_bytes)]:
        t0 = time.perf_counter()
        run()
        timings[name] = time.perf_counter() - t0
    total = sum(executed.values())
    with capsys.disabled():
        print(f"\nfuzz: {total} cases executed in {time.perf_counter() - start:.1f} s "
              f"({dict(executed)}; seconds {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}); "
              f"outcomes {dict(sorted(outcomes.items()))}")
    assert total >= FUZZ_CASES, f"only {total} of {FUZZ_CASES} cases ran"
